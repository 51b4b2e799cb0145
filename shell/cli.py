"""The ``datsync`` command line."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``datsync`` command."""
    print("datsync: no commands yet", file=sys.stderr)
    return 2
