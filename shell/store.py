"""The durable store: the transaction log and checkpoints, behind one interface with two engines.

``open_store(location)`` picks the engine from the location: a ``postgresql://`` URL opens a
PostgreSQL store (several server processes may share it), anything else is the path of a SQLite
file (one server process at a time). A transaction is acknowledged only after the store's commit
that holds it returns; many transactions share one commit when they arrive together (group commit).
The log is kept whole, so it stays readable from any ``t`` for replicas catching up; a checkpoint
(the whole database at some ``t``) keeps start-up from replaying the whole log. Payloads are opaque
bytes here: the connection decides what a log entry and a checkpoint hold.

Exactly-once submission: a committed submission ``(client, seq)`` is recorded with its answer (``t``
and tempids) in the same commit as its log entry (engines keep a ``submission`` table and a
``submission_floor`` table: each client's floor, the highest forgotten ``seq``; see
``core.sync.submissions``).

The methods block (they do I/O); the trio shell calls them from worker threads, one at a time per
store object (``reader()`` gives a second object for concurrent reads).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from datsync.core.sync import decode_value, encode_value
from datsync.core.sync.submissions import Answer, Recorded

SCHEMA_VERSION = "1"
URL_SCHEMES = ("postgresql://", "postgres://")


class LogEntry(NamedTuple):
    """One committed transaction: its basis ``t``, transaction id, and encoded payload."""

    t: int
    tx: int
    payload: bytes


class StoreError(Exception):
    """The store is unusable (not a datsync store, a newer format, corrupt, unreachable)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class StoreConflict(Exception):
    """An append found the log already past the ``t`` it extends: another process committed first.
    ``entries`` are the log entries it missed (append them to the in-memory value and retry)."""

    def __init__(self, entries: list[LogEntry]):
        super().__init__(f"another process committed {len(entries)} transactions first")
        self.entries = entries


class Store(ABC):
    """A datsync store: an append-only log of ``LogEntry`` plus the latest checkpoint."""

    location: str
    """Where the store is (a file path, or a URL without its password): for logs and status."""

    shared: bool = False
    """True when other processes may append to the same log (they serialise on the store)."""

    @property
    @abstractmethod
    def db_id(self) -> str:
        """This database's identity: replicas of another database must bootstrap, not resume."""

    @abstractmethod
    def adopt(self, db_id: str) -> None:
        """Take the identity ``db_id`` (this store becomes a copy of that database, so its replicas
        resume here); ``StoreError`` ``store/not-empty`` unless the log is empty."""

    @abstractmethod
    def append(self, entries: Iterable[LogEntry], submissions: Iterable[Recorded] = (), *,
               after_t: int | None = None) -> None:
        """Make ``entries`` durable in one commit (group commit), with the submissions they answer
        (and the clients' raised floors: rows at or below a floor are deleted); returns once they
        are durable. With ``after_t``, the append happens only if the log ends at ``after_t``;
        otherwise nothing is written and ``StoreConflict`` carries the entries after ``after_t``."""

    @abstractmethod
    def lock_writers(self) -> None:
        """Wait until this process is the only writer of a shared store (until ``unlock_writers``),
        so that after reading what others committed its append cannot be overtaken again. Nothing
        to do where one process is the only writer."""

    @abstractmethod
    def unlock_writers(self) -> None:
        """Let the other processes' writers go on (see ``lock_writers``)."""

    @abstractmethod
    def read_submissions(self, after_t: int = 0) -> tuple[list[tuple[str, int, int, dict]], dict[str, int]]:
        """The remembered submissions ``(client, seq, t, tempids)`` committed after ``after_t``, and
        every client's floor."""

    @abstractmethod
    def last_t(self) -> int:
        """The ``t`` of the newest logged transaction (0 when the log is empty)."""

    @abstractmethod
    def read_log(self, after_t: int, *, limit: int | None = None) -> list[LogEntry]:
        """Log entries with ``t > after_t`` in order, at most ``limit`` of them."""

    @abstractmethod
    def write_checkpoint(self, t: int, payload: bytes) -> None:
        """Record the whole database as of ``t``; older checkpoints are dropped (the log stays)."""

    @abstractmethod
    def latest_checkpoint(self) -> tuple[int, bytes] | None:
        """``(t, payload)`` of the newest checkpoint, or None."""

    @abstractmethod
    def stats(self) -> dict[str, int]:
        """Sizes for the status endpoint: log length, last ``t``, checkpoint ``t``, bytes."""

    @abstractmethod
    def reader(self) -> Store:
        """A second handle on the same store, for reads that run beside this one's writes."""

    @abstractmethod
    def close(self) -> None:
        """Release the store's file or connections."""


def encode_tempids(tempids: Mapping[Any, int]) -> str:
    """A submission's tempids as stored text (keys are ints or strings: the codec's tagged JSON)."""
    return json.dumps(encode_value(dict(tempids)), separators=(",", ":"))


def decode_tempids(text: str) -> dict:
    """The tempids ``encode_tempids`` stored."""
    return dict(decode_value(json.loads(text)))


def copy_store(src: Store, dst: Store, *, batch: int = 1000,
               on_progress: Callable[[int, int], Any] | None = None) -> int:
    """Copy the database of ``src`` into the empty store ``dst`` (either engine): its identity, its
    log up to ``src``'s last ``t`` when the copy starts, the remembered submissions and the latest
    checkpoint; then verify both logs are equal. ``on_progress(copied, total)`` after each batch.
    Returns the last ``t`` copied; ``StoreError`` ``store/copy-differs`` if the verification fails."""
    last = src.last_t()
    dst.adopt(src.db_id)
    rows, floors = src.read_submissions()
    rows = [r for r in rows if r[2] <= last]
    done = 0
    while done < last:
        entries = src.read_log(done, limit=min(batch, last - done))
        if not entries:
            break
        final = entries[-1].t >= last
        dst.append(entries, _recorded(rows, floors) if final else (), after_t=done)
        done = entries[-1].t
        if on_progress is not None:
            on_progress(done, last)
    cp = src.latest_checkpoint()
    if cp is not None and cp[0] <= last:
        dst.write_checkpoint(*cp)
    verify_copy(src, dst, last, batch=batch)
    return last


def _recorded(rows: list[tuple[str, int, int, dict]], floors: Mapping[str, int]) -> list[Recorded]:
    out, floored = [], set()
    for client, seq, t, tempids in sorted(rows):
        floor = floors.get(client) if client not in floored else None
        floored.add(client)
        out.append(Recorded(client, seq, Answer(t, tempids), floor))
    return out


def verify_copy(src: Store, dst: Store, last_t: int, *, batch: int = 1000) -> None:
    """``StoreError`` ``store/copy-differs`` unless ``dst`` holds the same identity, log up to
    ``last_t`` and submissions as ``src``."""

    def differs(what: str) -> StoreError:
        return StoreError("store/copy-differs", f"the copy differs from {src.location}: {what}")

    if dst.db_id != src.db_id:
        raise differs("db_id")
    if dst.last_t() != last_t:
        raise differs(f"its log ends at t={dst.last_t()}, not {last_t}")
    t = 0
    while t < last_t:
        a = src.read_log(t, limit=min(batch, last_t - t))
        b = dst.read_log(t, limit=min(batch, last_t - t))
        if a != b:
            bad = next((x.t for x, y in zip(a, b) if x != y), t + 1)
            raise differs(f"log entry t={bad}")
        t = a[-1].t
    src_rows, src_floors = src.read_submissions()
    dst_rows, dst_floors = dst.read_submissions()
    if sorted(r for r in src_rows if r[2] <= last_t) != sorted(dst_rows) or src_floors != dst_floors:
        raise differs("the remembered submissions")


def is_store_url(location: str | Path) -> bool:
    """Does ``location`` name a database server (a URL) rather than a store file?"""
    return isinstance(location, str) and location.startswith(URL_SCHEMES)


def open_store(location: str | Path) -> Store:
    """The store at ``location``: a ``postgresql://`` URL, else the path of a SQLite file (created
    if missing). Raises ``StoreError`` if it is not a usable datsync store."""
    if is_store_url(location):
        try:
            from .store_postgres import PostgresStore
        except ImportError as e:
            raise StoreError("store/driver-missing", f"a PostgreSQL store needs psycopg ({e}): "
                             "pip install 'datsync[postgresql]'") from None

        return PostgresStore(str(location))
    from .store_sqlite import SqliteStore

    return SqliteStore(location)
