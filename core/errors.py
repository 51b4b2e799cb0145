"""Errors as values with codes: every failure the core detects carries a stable ``code``.

Codes are Datomic's keyword names where Datomic has one (``"db.error/unique-conflict"``), otherwise
DataScript's (``"transact/syntax"``). ``data`` holds the offending form or datom for programs.
"""

from __future__ import annotations

from typing import Any


class DatsyncError(Exception):
    """Base of every error the core raises: a ``code``, a message, and ``data`` about the cause."""

    def __init__(self, code: str, message: str, data: dict[str, Any] | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data or {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code!r}, {self.message!r})"

    def to_value(self) -> dict[str, Any]:
        """The error as plain data (for the wire and for logs)."""
        return {"code": self.code, "message": self.message}


class TxError(DatsyncError):
    """A transaction was rejected; the database is unchanged."""


class SchemaError(TxError):
    """A schema is malformed or an alteration is not allowed."""


class ResolveError(DatsyncError):
    """An entity id, lookup ref or ident given to a read could not be resolved."""


class QueryError(DatsyncError):
    """A query or pull pattern is malformed or cannot be evaluated."""
