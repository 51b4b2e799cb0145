"""The embedded durable store: one SQLite file in WAL mode holding the transaction log and checkpoints.

One server process serves a file at a time (the server's ``STORE.lock``). A transaction is
acknowledged only after the SQLite commit that holds it returns (``synchronous=FULL``: the commit is
on disk); many transactions share one commit when they arrive together (group commit), which is what
makes durability cheap.

The methods block (SQLite does I/O); the trio shell calls them from a worker thread, one at a time.
``shell/store.py`` describes the interface.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterable
from pathlib import Path

from datsync.core.sync.submissions import Recorded

from .store import SCHEMA_VERSION, LogEntry, Store, StoreConflict, StoreError, decode_tempids, encode_tempids


class SqliteStore(Store):
    """A datsync store file. ``SqliteStore(path)`` creates it if missing and checks it otherwise."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.location = str(self.path)
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
            db.execute(
                "CREATE TABLE IF NOT EXISTS submission (client TEXT NOT NULL, seq INTEGER NOT NULL, "
                "t INTEGER NOT NULL, tempids TEXT NOT NULL, PRIMARY KEY (client, seq))"
            )
            db.execute("CREATE TABLE IF NOT EXISTS submission_floor (client TEXT PRIMARY KEY, floor INTEGER NOT NULL)")
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
            _rollback(db)
            raise

    def _meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    @property
    def db_id(self) -> str:
        value = self._meta("db_id")
        assert value is not None
        return value

    def adopt(self, db_id: str) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            if self.last_t() != 0:
                raise StoreError("store/not-empty", f"{self.location} already holds transactions")
            db.execute("UPDATE meta SET value = ? WHERE key = 'db_id'", (db_id,))
            db.execute("COMMIT")
        except BaseException:
            _rollback(db)
            raise

    def append(self, entries: Iterable[LogEntry], submissions: Iterable[Recorded] = (), *,
               after_t: int | None = None) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            if after_t is not None and self.last_t() != after_t:
                raise StoreConflict(self.read_log(after_t))
            db.executemany("INSERT INTO log (t, tx, payload) VALUES (?, ?, ?)", entries)
            for r in submissions:
                db.execute("INSERT OR REPLACE INTO submission (client, seq, t, tempids) VALUES (?, ?, ?, ?)",
                           (r.client, r.seq, r.answer.t, encode_tempids(r.answer.tempids)))
                if r.floor is not None:
                    db.execute("DELETE FROM submission WHERE client = ? AND seq <= ?", (r.client, r.floor))
                    db.execute("INSERT OR REPLACE INTO submission_floor (client, floor) VALUES (?, ?)",
                               (r.client, r.floor))
            db.execute("COMMIT")
        except BaseException:
            _rollback(db)
            raise

    def lock_writers(self) -> None:
        pass  # one server process per file (its STORE.lock): it is the only writer

    def unlock_writers(self) -> None:
        pass

    def last_t(self) -> int:
        row = self._db.execute("SELECT MAX(t) FROM log").fetchone()
        return row[0] or 0

    def read_log(self, after_t: int, *, limit: int | None = None) -> list[LogEntry]:
        sql = "SELECT t, tx, payload FROM log WHERE t > ? ORDER BY t"
        args: tuple = (after_t,)
        if limit is not None:
            sql += " LIMIT ?"
            args = (after_t, limit)
        return [LogEntry(t, tx, bytes(p)) for t, tx, p in self._db.execute(sql, args)]

    def read_submissions(self, after_t: int = 0) -> tuple[list[tuple[str, int, int, dict]], dict[str, int]]:
        rows = [(c, seq, t, decode_tempids(tempids)) for c, seq, t, tempids in self._db.execute(
            "SELECT client, seq, t, tempids FROM submission WHERE t > ?", (after_t,))]
        floors = dict(self._db.execute("SELECT client, floor FROM submission_floor").fetchall())
        return rows, floors

    def write_checkpoint(self, t: int, payload: bytes) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("INSERT OR REPLACE INTO checkpoint (t, payload) VALUES (?, ?)", (t, payload))
            db.execute("DELETE FROM checkpoint WHERE t < ?", (t,))
            db.execute("COMMIT")
        except BaseException:
            _rollback(db)
            raise

    def latest_checkpoint(self) -> tuple[int, bytes] | None:
        row = self._db.execute("SELECT t, payload FROM checkpoint ORDER BY t DESC LIMIT 1").fetchone()
        return None if row is None else (row[0], bytes(row[1]))

    def stats(self) -> dict[str, int]:
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

    def reader(self) -> SqliteStore:
        return SqliteStore(self.path)

    def close(self) -> None:
        self._db.close()


def _rollback(db: sqlite3.Connection) -> None:
    """Roll back the open transaction, if SQLite has not already (it does on a full disk, and a
    second ROLLBACK would hide the error that matters)."""
    if db.in_transaction:
        db.execute("ROLLBACK")
