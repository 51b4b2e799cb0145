"""A replica kept on disk: one SQLite file (WAL) holding the confirmed replica, the deltas applied
since, the queue of submissions not answered yet, and the client's identity.

Tables: ``meta`` (format marker, version, the client id, the next submission ``seq``), ``base``
(the confirmed replica at some ``t``: a snapshot header and its datoms, as protocol messages),
``delta`` (every delta applied after the base, as received: with its origin when it was this
client's), ``queue`` (the submissions, oldest first: request id, ``seq``, tx data in local ids).

Opening is a bulk build of the base plus the deltas after it (no server involved), so a restarted
process reads its data and its pending writes at once. Every write is one SQLite transaction: a
queued submission is on disk before it is sent; a delta of this client's own submission and the
removal of that submission from the queue commit together. The deltas since the base are the
replica's history (time travel after a restart); a replica that does not keep it folds them into a
new base every ``COMPACT_EVERY``. A file that is not a replica store (or is corrupt) raises
``ReplicaStoreError``; the queued writes of a damaged file can still be read with ``export_pending``.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from itertools import repeat
from pathlib import Path
from typing import Any, NamedTuple

from datsync.core.sync import DEFAULT_MAX_SIZE, Delta, EidMap, decode, decode_value, encode, encode_value
from datsync.core.sync.client import Queued
from datsync.core.sync.codec import decode_column_doc, encode_datom_columns
from datsync.core.sync.replica import Replica, apply_delta, server_datoms
from datsync.core.sync.snapshot import SnapshotBegin, replica_from_columns, replica_from_datoms

FORMAT = "datsync-replica"
VERSION = "3"
READS = ("1", "2", VERSION)
"""Formats this datsync opens: 1 kept the base as one snapshot chunk; 2 in columns; 3 in columns
sorted as the indexes, with their EAVT order (written as 3 from the next base on)."""
COMPACT_EVERY = 1000
"""Deltas kept after the base before a compaction is due (replicas that do not keep their history)."""


class ReplicaStoreError(Exception):
    """The replica store file is unusable: ``replica/unreadable`` (not SQLite, corrupt),
    ``replica/foreign`` (another kind of file), ``replica/version`` (a newer format)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class Restored(NamedTuple):
    """What a replica store holds: the confirmed replica (None before the first bootstrap), the
    queue of submissions, the client id and the next ``seq``."""

    replica: Replica | None
    queue: tuple[Queued, ...]
    client_id: str
    next_seq: int


def _unreadable(path: Path, e: Exception) -> ReplicaStoreError:
    return ReplicaStoreError("replica/unreadable", f"{path} is not a usable datsync replica store: {e}")


class ReplicaStore:
    """A replica store file; ``ReplicaStore(path)`` creates it if missing and checks it otherwise."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self._db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._init()
        except sqlite3.DatabaseError as e:
            raise _unreadable(self.path, e) from None
        self.deltas = self._db.execute("SELECT COUNT(*) FROM delta").fetchone()[0]

    def _init(self) -> None:
        db = self._db
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if tables and "meta" not in tables:
            raise ReplicaStoreError("replica/foreign", f"{self.path} is not a datsync replica store "
                                    f"(it holds the tables {', '.join(sorted(tables))})")
        with self._tx():
            db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            db.execute("CREATE TABLE IF NOT EXISTS base (id INTEGER PRIMARY KEY CHECK (id = 1), t INTEGER NOT NULL, "
                       "head BLOB NOT NULL, datoms BLOB NOT NULL)")
            db.execute("CREATE TABLE IF NOT EXISTS delta (t INTEGER PRIMARY KEY, payload BLOB NOT NULL)")
            db.execute("CREATE TABLE IF NOT EXISTS queue (seq INTEGER PRIMARY KEY, req TEXT NOT NULL, "
                       "tx TEXT NOT NULL)")
            fmt = self._meta("format")
            if fmt is None:
                if tables:
                    raise ReplicaStoreError("replica/foreign", f"{self.path} is not a datsync replica store")
                db.executemany("INSERT INTO meta VALUES (?, ?)", [
                    ("format", FORMAT), ("version", VERSION), ("client_id", uuid.uuid4().hex), ("next_seq", "1"),
                ])
            elif fmt != FORMAT:
                raise ReplicaStoreError("replica/foreign", f"{self.path} is not a datsync replica store ({fmt})")
            elif self._meta("version") not in READS:
                raise ReplicaStoreError("replica/version", f"{self.path} has replica store format "
                                        f"{self._meta('version')}; this datsync reads {', '.join(READS)}")

    def _tx(self) -> Any:
        return _Transaction(self._db)

    def _meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    @property
    def client_id(self) -> str:
        """This client's id: made once, kept for the life of the file."""
        value = self._meta("client_id")
        assert value is not None
        return value

    # -- reading ----------------------------------------------------------------------------------

    def load(self) -> Restored:
        """The replica (base plus deltas, pending transactions not applied), the queue, the client
        id and the next ``seq``. ``ReplicaStoreError`` if the data is damaged (``export_pending``
        still reads the queue)."""
        try:
            queue = self.queue()
            row = self._db.execute("SELECT head, datoms FROM base WHERE id = 1").fetchone()
            replica = None
            if row is not None:
                head = decode(bytes(row[0]), max_size=max(len(row[0]), DEFAULT_MAX_SIZE))
                replica = _base_replica(bytes(row[1]), head)
                for (payload,) in self._db.execute("SELECT payload FROM delta WHERE t > ? ORDER BY t", (replica.t,)):
                    delta = decode(bytes(payload), max_size=max(len(payload), DEFAULT_MAX_SIZE))
                    replica, outcome = apply_delta(replica, delta)
                    if not outcome.applied:
                        break  # deltas of a later bootstrap whose base was not written: the server resends
            return Restored(replica, queue, self.client_id, int(self._meta("next_seq") or 1))
        except ReplicaStoreError:
            raise
        except Exception as e:
            raise _unreadable(self.path, e) from None

    def queue(self) -> tuple[Queued, ...]:
        """The queued submissions, oldest first."""
        rows = self._db.execute("SELECT seq, req, tx FROM queue ORDER BY seq").fetchall()
        return tuple(Queued(decode_value(json.loads(req)), seq, decode_value(json.loads(tx))) for seq, req, tx in rows)

    # -- writing ----------------------------------------------------------------------------------

    def enqueue(self, q: Queued) -> None:
        """Keep ``q`` (on disk before it is sent) and move the next ``seq`` past it."""
        with self._tx():
            self._db.execute("INSERT OR REPLACE INTO queue (seq, req, tx) VALUES (?, ?, ?)",
                             (q.seq, _dumps(q.req), _dumps(list(q.tx_data))))
            self._db.execute("UPDATE meta SET value = ? WHERE key = 'next_seq' AND CAST(value AS INTEGER) <= ?",
                             (str(q.seq + 1), q.seq))

    def settle(self, seq: int) -> None:
        """Forget the submission ``seq`` (answered)."""
        with self._tx():
            self._db.execute("DELETE FROM queue WHERE seq = ?", (seq,))

    def add_delta(self, delta: Delta, data: bytes | None = None) -> None:
        """Keep ``delta`` (applied to the replica); the queued submission it commits, if it is this
        client's, leaves the queue in the same transaction."""
        payload = data if data is not None else encode(delta)
        with self._tx():
            self._db.execute("INSERT OR REPLACE INTO delta (t, payload) VALUES (?, ?)", (delta.t, payload))
            o = delta.origin
            if o is not None and o.client == self.client_id:
                self._db.execute("DELETE FROM queue WHERE seq = ?", (o.seq,))
        self.deltas += 1

    def set_base(self, replica: Replica) -> None:
        """Make the confirmed ``replica`` the base (after a bootstrap, or to compact): the deltas up
        to its ``t`` are dropped."""
        self.write_base(replica.t, *base_messages(replica))

    @property
    def view(self) -> str | None:
        """The key of the credentials (principal and scopes) the base was synced under (None: not
        recorded; ``""``: unknown, the replica must bootstrap)."""
        return self._meta("view")

    def set_view(self, view: str) -> None:
        """Record the key of the credentials the stored replica holds the share of."""
        with self._tx():
            self._db.execute("INSERT OR REPLACE INTO meta VALUES ('view', ?)", (view,))

    def write_base(self, t: int, head: bytes, chunk: bytes, view: str | None = None) -> None:
        """``set_base`` with the messages already made (``base_messages``, e.g. in a worker thread),
        synced under the credentials of key ``view`` (None: leave the key as it is)."""
        with self._tx():
            self._db.execute("INSERT OR REPLACE INTO base (id, t, head, datoms) VALUES (1, ?, ?, ?)", (t, head, chunk))
            self._db.execute("UPDATE meta SET value = ? WHERE key = 'version'", (VERSION,))
            self._db.execute("DELETE FROM delta WHERE t <= ?", (t,))
            if view is not None:
                self._db.execute("INSERT OR REPLACE INTO meta VALUES ('view', ?)", (view,))
        self.deltas = self._db.execute("SELECT COUNT(*) FROM delta").fetchone()[0]

    def clear_deltas(self) -> None:
        """Drop every stored delta (a new bootstrap: they extend the old base, not the new one)."""
        with self._tx():
            self._db.execute("DELETE FROM delta")
        self.deltas = 0

    def close(self) -> None:
        """Close the file."""
        self._db.close()


def base_messages(replica: Replica) -> tuple[bytes, bytes]:
    """The confirmed ``replica`` as the base: a snapshot header and its datoms in sorted columns
    (``encode_datom_columns``)."""
    datoms = tuple(server_datoms(replica))
    head = SnapshotBegin(replica.t, replica.db.max_tx, replica.db.max_eid, len(datoms), 1, replica.db_id,
                         tuple(sorted(replica.aliases.items())))
    return encode(head), encode_datom_columns(datoms)


def _base_replica(data: bytes, head: SnapshotBegin) -> Replica:
    """The base's replica: columns with their EAVT order (``encode_datom_columns``, format 3: built
    without sorting), columns alone (format 2), or one snapshot chunk as format 1 wrote them."""
    if data.startswith(b'{"columns":'):
        columns, order = decode_column_doc(data)
        if order is not None:
            return replica_from_columns(columns, order, head)
        datoms = [d for a, es, vs, txs in columns for d in zip(es, repeat(a), vs, txs)]
    else:
        datoms = list(decode(data, max_size=max(len(data), DEFAULT_MAX_SIZE)).datoms)
    return replica_from_datoms(datoms, head, EidMap.identity())


def export_pending(path: str | Path) -> list[dict]:
    """The queued submissions of the replica store at ``path``, oldest first, as ``{"seq", "req",
    "tx_data"}``: readable even when the rest of the file is not (to resubmit them elsewhere)."""
    try:
        db = sqlite3.connect(f"file:{Path(path)}?mode=ro", uri=True)
        try:
            rows = db.execute("SELECT seq, req, tx FROM queue ORDER BY seq").fetchall()
        finally:
            db.close()
    except sqlite3.DatabaseError as e:
        raise _unreadable(Path(path), e) from None
    return [{"seq": seq, "req": decode_value(json.loads(req)), "tx_data": decode_value(json.loads(tx))}
            for seq, req, tx in rows]


def _dumps(v: Any) -> str:
    return json.dumps(encode_value(v), separators=(",", ":"))


class _Transaction:
    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: Any, *_: Any) -> None:
        self.db.execute("COMMIT" if kind is None else "ROLLBACK")


__all__ = ["COMPACT_EVERY", "ReplicaStore", "ReplicaStoreError", "Restored", "base_messages", "export_pending"]
