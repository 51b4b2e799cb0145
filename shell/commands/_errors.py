"""Errors and exit statuses shared by the commands.

Every failure ends as one line on stderr, ``datsync COMMAND: CODE: message``, and an exit status:

* 0 — done;
* 1 — the database refused: a transaction, query or pull was rejected (``TxError``, ``QueryError``,
  ``ResolveError``, ... with their codes, e.g. ``db.error/unique-conflict``);
* 2 — usage or I/O: bad arguments, unreadable files or EDN, a missing or busy store, a server that
  cannot be reached;
* 3 — a bug in datsync (the traceback is printed);
* 130 — interrupted (Ctrl-C).
"""

from __future__ import annotations

import sys
import traceback

OK = 0
REFUSED = 1
USAGE = 2
BUG = 3
INTERRUPTED = 130


class CliError(Exception):
    """A failure the command reports as ``CODE: message`` and exits with ``status``."""

    def __init__(self, code: str, message: str, status: int = USAGE):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


def classify(e: BaseException) -> tuple[int, str, str]:
    """``(exit status, code, message)`` for an exception raised while running a command."""
    from datsync.core.edn import EdnError
    from datsync.core.errors import DatsyncError

    from ..store import StoreError

    if isinstance(e, CliError):
        return e.status, e.code, e.message
    if isinstance(e, EdnError):
        return USAGE, e.code, e.message
    if isinstance(e, DatsyncError):
        return REFUSED, e.code, e.message
    if isinstance(e, StoreError):
        return USAGE, e.code, e.message
    code = getattr(e, "code", None)
    if isinstance(code, str):  # an error of the replica client (connection lost, unauthorized, ...)
        return USAGE, code, str(getattr(e, "message", None) or e)
    if isinstance(e, TimeoutError):
        return USAGE, "io/timeout", str(e) or "timed out"
    if isinstance(e, OSError):
        return USAGE, "io/error", str(e)
    return BUG, "internal", f"{type(e).__name__}: {e}"


def report(command: str, e: BaseException) -> int:
    """Print ``e`` on stderr as ``datsync COMMAND: CODE: message`` and return its exit status."""
    status, code, message = classify(e)
    if status == BUG:
        traceback.print_exception(e, file=sys.stderr)
    print(f"datsync {command}: {code}: {message}", file=sys.stderr)
    return status
