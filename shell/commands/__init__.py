"""The ``datsync`` commands, one module each; ``datsync.shell.cli`` wires them into argparse.

A command module has ``NAME``, ``HELP`` (one line for the command list), ``DESCRIPTION`` and
``EPILOG`` (examples) for its ``--help``, ``configure(parser)`` adding its arguments, and
``run(args) -> int`` (the exit status; errors are raised and reported by the CLI, see ``_errors``).
"""

from __future__ import annotations

from . import copy, db, export, import_, pull, q, status, transact, why

COMMANDS = (q, pull, transact, import_, export, copy, status, db, why)
"""In the order ``datsync --help`` lists them."""

__all__ = ["COMMANDS"]
