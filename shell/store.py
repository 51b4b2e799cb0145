"""The embedded durable store: one SQLite file in WAL mode holding the transaction log and checkpoints.

A transaction is acknowledged only after the SQLite commit that holds it returns (``synchronous=FULL``:
the commit is on disk). Many transactions share one commit when they arrive together (group commit),
which is what makes durability cheap. The log is kept whole, so it stays readable from any ``t`` for
replicas catching up; a checkpoint (the whole database at some ``t``) keeps start-up from replaying
the whole log. Payloads are opaque bytes here: the connection decides what a log entry and a
checkpoint hold.

The methods block (SQLite does I/O); the trio shell calls them from a worker thread, one at a time.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

SCHEMA_VERSION = "1"


class LogEntry(NamedTuple):
    """One committed transaction: its basis ``t``, transaction id, and encoded payload."""

    t: int
    tx: int
    payload: bytes


class StoreError(Exception):
    """The store file is unusable (not a datsync store, a newer format, corrupt)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class Store:
    """A datsync store file. ``Store(path)`` creates it if missing and checks it otherwise."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self._db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._init()
        except sqlite3.DatabaseError as e:
            raise StoreError("store/unreadable", f"{self.path} is not a usable datsync store: {e}") from None

    def _init(self) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            db.execute(
                "CREATE TABLE IF NOT EXISTS log (t INTEGER PRIMARY KEY, tx INTEGER NOT NULL, payload BLOB NOT NULL)"
            )
            db.execute("CREATE TABLE IF NOT EXISTS checkpoint (t INTEGER PRIMARY KEY, payload BLOB NOT NULL)")
            version = self._meta("schema_version")
            if version is None:
                db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (SCHEMA_VERSION,))
                db.execute("INSERT INTO meta VALUES ('db_id', ?)", (str(uuid.uuid4()),))
            elif version != SCHEMA_VERSION:
                raise StoreError(
                    "store/version", f"{self.path} has store format {version}; this datsync reads {SCHEMA_VERSION}"
                )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    @property
    def db_id(self) -> str:
        """This database's identity: replicas of another database must bootstrap, not resume."""
        value = self._meta("db_id")
        assert value is not None
        return value

    def append(self, entries: Iterable[LogEntry]) -> None:
        """Make ``entries`` durable in one commit (group commit); returns once they are on disk."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany("INSERT INTO log (t, tx, payload) VALUES (?, ?, ?)", entries)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def last_t(self) -> int:
        """The ``t`` of the newest logged transaction (0 when the log is empty)."""
        row = self._db.execute("SELECT MAX(t) FROM log").fetchone()
        return row[0] or 0

    def read_log(self, after_t: int, *, limit: int | None = None) -> list[LogEntry]:
        """Log entries with ``t > after_t`` in order, at most ``limit`` of them."""
        sql = "SELECT t, tx, payload FROM log WHERE t > ? ORDER BY t"
        args: tuple = (after_t,)
        if limit is not None:
            sql += " LIMIT ?"
            args = (after_t, limit)
        return [LogEntry(t, tx, bytes(p)) for t, tx, p in self._db.execute(sql, args)]

    def write_checkpoint(self, t: int, payload: bytes) -> None:
        """Record the whole database as of ``t``; older checkpoints are dropped (the log stays)."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("INSERT OR REPLACE INTO checkpoint (t, payload) VALUES (?, ?)", (t, payload))
            db.execute("DELETE FROM checkpoint WHERE t < ?", (t,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def latest_checkpoint(self) -> tuple[int, bytes] | None:
        """``(t, payload)`` of the newest checkpoint, or None."""
        row = self._db.execute("SELECT t, payload FROM checkpoint ORDER BY t DESC LIMIT 1").fetchone()
        return None if row is None else (row[0], bytes(row[1]))

    def stats(self) -> dict[str, int]:
        """Sizes for the status endpoint: log length, checkpoint ``t``, file bytes."""
        (n,) = self._db.execute("SELECT COUNT(*) FROM log").fetchone()
        cp = self._db.execute("SELECT MAX(t) FROM checkpoint").fetchone()[0] or 0
        size = self.path.stat().st_size if self.path.exists() else 0
        return {"log_entries": n, "last_t": self.last_t(), "checkpoint_t": cp, "file_bytes": size}

    def backup(self, dest: str | Path) -> None:
        """A consistent copy of the store at ``dest``, taken while it is in use."""
        target = sqlite3.connect(str(dest))
        try:
            self._db.backup(target)
        finally:
            target.close()

    def close(self) -> None:
        """Close the file (after a checkpoint of the WAL)."""
        self._db.close()
