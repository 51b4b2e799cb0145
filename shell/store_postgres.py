"""The shared durable store: the transaction log and checkpoints in a PostgreSQL database.

Several server processes may serve one PostgreSQL store. Writers of all processes take turns on a
session advisory lock (``lock_writers``: first come first served, so no process starves) and each
append also locks the log's head row: it checks that the log still ends where the writer's value does
(else it reports the entries it missed, ``StoreConflict``: the connection applies them and
transacts again), inserts its entries, moves the head and commits. ``t`` therefore stays serial and
gap-free whichever process commits, and a process that dies mid-transaction leaves nothing behind
(PostgreSQL rolls its transaction back). Each commit sends a notification on the channel
``datsync_<db_id>`` so the other processes read the new entries at once (``CommitListener``).

Errors are ``StoreError`` values with the codes the connection reports to writers:
``db.error/unavailable`` (PostgreSQL cannot be reached: nothing was written),
``db.error/commit-unknown`` (the connection broke during the commit: it may or may not have
happened; the log tells, and the next append reads it) and ``db.error/storage`` (any other failure).
A broken connection is reopened on the next call. The tables live in the schema the URL's
``search_path`` names (``?options=-csearch_path%3Dname``), ``public`` by default.
"""

from __future__ import annotations

import contextlib
import re
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import psycopg

from datsync.core.sync.submissions import Recorded

from .store import SCHEMA_VERSION, LogEntry, Store, StoreConflict, StoreError, decode_tempids, encode_tempids

R = TypeVar("R")

TABLES = (
    "CREATE TABLE IF NOT EXISTS datsync_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS datsync_head (id INTEGER PRIMARY KEY CHECK (id = 1), t BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS datsync_log (t BIGINT PRIMARY KEY, tx BIGINT NOT NULL, payload BYTEA NOT NULL)",
    "CREATE TABLE IF NOT EXISTS datsync_checkpoint (t BIGINT PRIMARY KEY, payload BYTEA NOT NULL)",
    "CREATE TABLE IF NOT EXISTS datsync_submission (client TEXT NOT NULL, seq BIGINT NOT NULL, t BIGINT NOT NULL, "
    "tempids TEXT NOT NULL, PRIMARY KEY (client, seq))",
    "CREATE TABLE IF NOT EXISTS datsync_submission_floor (client TEXT PRIMARY KEY, floor BIGINT NOT NULL)",
)
INIT_LOCK = 0x6461747379
"""The advisory lock key that serialises processes creating the tables at the same time."""


def redact(url: str) -> str:
    """``url`` without its password, for logs and the status endpoint."""
    url = re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", url)
    return re.sub(r"([?&]password=)[^&]*", r"\1***", url)


def with_search_path(url: str, schema: str) -> str:
    """``url`` whose sessions keep their tables in ``schema`` (libpq ``options``)."""
    return f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"


def channel_name(db_id: str) -> str:
    """The LISTEN/NOTIFY channel of a database: commits of ``db_id`` are announced on it."""
    return "datsync_" + db_id.replace("-", "")


class PostgresStore(Store):
    """A datsync store in the PostgreSQL database at ``url`` (tables created if missing)."""

    shared = True

    def __init__(self, url: str, *, _db_id: str | None = None):
        self.url = url
        self.location = redact(url)
        self._conn: psycopg.Connection | None = None
        if _db_id is None:
            self._db_id = self._run(self._init, writing=False)
        else:
            self._db_id = _db_id

    # -- connections and errors ------------------------------------------------------------------

    def _connection(self) -> psycopg.Connection:
        conn = self._conn
        if conn is None or conn.closed or conn.broken:
            if conn is not None:
                conn.close()
            self._conn = None
            conn = self._conn = psycopg.connect(self.url, autocommit=True, connect_timeout=5)
        return conn

    def _run(self, fn: Callable[[psycopg.Connection, list[str]], R], *, writing: bool) -> R:
        """``fn(connection, phase)`` with PostgreSQL's errors turned into ``StoreError`` codes;
        ``fn`` appends ``"commit"`` to ``phase`` just before its transaction commits."""
        phase: list[str] = []
        try:
            return fn(self._connection(), phase)
        except StoreConflict:
            raise
        except psycopg.OperationalError as e:
            self._drop()
            if writing and phase:
                raise StoreError("db.error/commit-unknown",
                                 f"the connection to PostgreSQL broke during the commit: it may or may not "
                                 f"have happened ({_first_line(e)})") from None
            raise StoreError("db.error/unavailable",
                             f"PostgreSQL at {self.location} is unavailable: {_first_line(e)}") from None
        except psycopg.Error as e:
            raise StoreError("db.error/storage", f"PostgreSQL error: {_first_line(e)}") from None

    def _drop(self) -> None:
        _close_quietly(self._conn)
        self._conn = None

    # -- the interface ---------------------------------------------------------------------------

    def _init(self, conn: psycopg.Connection, phase: list[str]) -> str:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (INIT_LOCK,))
            for sql in TABLES:
                conn.execute(sql)
            conn.execute("INSERT INTO datsync_head VALUES (1, 0) ON CONFLICT DO NOTHING")
            rows = dict(conn.execute("SELECT key, value FROM datsync_meta").fetchall())
            version = rows.get("schema_version")
            if version is None:
                rows["db_id"] = str(uuid.uuid4())
                conn.execute("INSERT INTO datsync_meta VALUES ('schema_version', %s), ('db_id', %s)",
                             (SCHEMA_VERSION, rows["db_id"]))
            elif version != SCHEMA_VERSION:
                raise StoreError("store/version",
                                 f"{self.location} has store format {version}; this datsync reads {SCHEMA_VERSION}")
        return rows["db_id"]

    @property
    def db_id(self) -> str:
        return self._db_id

    def adopt(self, db_id: str) -> None:
        def write(conn: psycopg.Connection, phase: list[str]) -> None:
            with conn.transaction():
                (head,) = conn.execute("SELECT t FROM datsync_head WHERE id = 1 FOR UPDATE").fetchone()
                if head != 0:
                    raise StoreError("store/not-empty", f"{self.location} already holds transactions")
                conn.execute("UPDATE datsync_meta SET value = %s WHERE key = 'db_id'", (db_id,))
                phase.append("commit")

        self._run(write, writing=True)
        self._db_id = db_id

    def append(self, entries: Iterable[LogEntry], submissions: Iterable[Recorded] = (), *,
               after_t: int | None = None) -> None:
        rows = list(entries)
        subs = list(submissions)
        if not rows:
            return

        def write(conn: psycopg.Connection, phase: list[str]) -> None:
            with conn.transaction():
                (head,) = conn.execute("SELECT t FROM datsync_head WHERE id = 1 FOR UPDATE").fetchone()
                if after_t is not None and head != after_t:
                    raise StoreConflict(_read(conn, after_t, None))
                # executemany pipelines each statement's rows: one round trip per statement, not per row
                with conn.cursor() as cur:
                    cur.executemany("INSERT INTO datsync_log (t, tx, payload) VALUES (%s, %s, %s)", rows)
                    if subs:  # rows first, then floors: every row is above its client's floor when made
                        cur.executemany("INSERT INTO datsync_submission (client, seq, t, tempids) "
                                        "VALUES (%s, %s, %s, %s) ON CONFLICT (client, seq) "
                                        "DO UPDATE SET t = EXCLUDED.t, tempids = EXCLUDED.tempids",
                                        [(r.client, r.seq, r.answer.t, encode_tempids(r.answer.tempids))
                                         for r in subs])
                    floors = [(r.client, r.floor) for r in subs if r.floor is not None]
                    if floors:
                        cur.executemany("DELETE FROM datsync_submission WHERE client = %s AND seq <= %s", floors)
                        cur.executemany("INSERT INTO datsync_submission_floor (client, floor) VALUES (%s, %s) "
                                        "ON CONFLICT (client) DO UPDATE SET floor = GREATEST("
                                        "datsync_submission_floor.floor, EXCLUDED.floor)", floors)
                last = max(head, rows[-1].t)
                conn.execute("WITH moved AS (UPDATE datsync_head SET t = %s WHERE id = 1 RETURNING t) "
                             "SELECT pg_notify(%s, %s) FROM moved", (last, channel_name(self._db_id), str(last)))
                phase.append("commit")

        self._run(write, writing=True)

    def lock_writers(self) -> None:
        # a session lock (FIFO among waiting processes): released by unlock, or by PostgreSQL when
        # this connection or process dies
        self._run(lambda conn, _: conn.execute("SELECT pg_advisory_lock(hashtext(%s))", (self._db_id,)),
                  writing=False)

    def unlock_writers(self) -> None:
        with contextlib.suppress(StoreError):  # a lost connection released it already
            self._run(lambda conn, _: conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (self._db_id,)),
                      writing=False)

    def last_t(self) -> int:
        return self._run(lambda conn, _: conn.execute("SELECT t FROM datsync_head WHERE id = 1").fetchone()[0],
                         writing=False)

    def read_log(self, after_t: int, *, limit: int | None = None) -> list[LogEntry]:
        return self._run(lambda conn, _: _read(conn, after_t, limit), writing=False)

    def read_submissions(self, after_t: int = 0) -> tuple[list[tuple[str, int, int, dict]], dict[str, int]]:
        def read(conn: psycopg.Connection, _: Any) -> tuple[list, dict]:
            rows = [(c, seq, t, decode_tempids(tempids)) for c, seq, t, tempids in conn.execute(
                "SELECT client, seq, t, tempids FROM datsync_submission WHERE t > %s", (after_t,))]
            floors = dict(conn.execute("SELECT client, floor FROM datsync_submission_floor").fetchall())
            return rows, floors

        return self._run(read, writing=False)

    def write_checkpoint(self, t: int, payload: bytes) -> None:
        def write(conn: psycopg.Connection, phase: list[str]) -> None:
            with conn.transaction():
                conn.execute("INSERT INTO datsync_checkpoint (t, payload) VALUES (%s, %s) "
                             "ON CONFLICT (t) DO UPDATE SET payload = EXCLUDED.payload", (t, payload))
                conn.execute("DELETE FROM datsync_checkpoint WHERE t < %s", (t,))
                phase.append("commit")

        self._run(write, writing=True)

    def latest_checkpoint(self) -> tuple[int, bytes] | None:
        row = self._run(lambda conn, _: conn.execute(
            "SELECT t, payload FROM datsync_checkpoint ORDER BY t DESC LIMIT 1").fetchone(), writing=False)
        return None if row is None else (row[0], bytes(row[1]))

    def stats(self) -> dict[str, int]:
        def read(conn: psycopg.Connection, _: Any) -> dict[str, int]:
            (last,) = conn.execute("SELECT t FROM datsync_head WHERE id = 1").fetchone()
            n = last  # the log runs from t=1 without a gap: no COUNT(*) over a long log per health check
            (cp,) = conn.execute("SELECT COALESCE(MAX(t), 0) FROM datsync_checkpoint").fetchone()
            (size,) = conn.execute("SELECT pg_total_relation_size('datsync_log') "
                                   "+ pg_total_relation_size('datsync_checkpoint')").fetchone()
            return {"log_entries": n, "last_t": last, "checkpoint_t": cp, "db_bytes": size}

        return self._run(read, writing=False)

    def reader(self) -> PostgresStore:
        return PostgresStore(self.url, _db_id=self._db_id)

    def listener(self) -> CommitListener:
        """A connection listening for other processes' commits (see ``CommitListener``)."""
        return CommitListener(self.url, channel_name(self._db_id))

    def close(self) -> None:
        self._drop()


def _read(conn: psycopg.Connection, after_t: int, limit: int | None) -> list[LogEntry]:
    sql = "SELECT t, tx, payload FROM datsync_log WHERE t > %s ORDER BY t"
    args: tuple = (after_t,)
    if limit is not None:
        sql += " LIMIT %s"
        args = (after_t, limit)
    return [LogEntry(t, tx, bytes(p)) for t, tx, p in conn.execute(sql, args)]


def _close_quietly(conn: psycopg.Connection | None) -> None:
    if conn is not None:
        with contextlib.suppress(psycopg.Error):
            conn.close()


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


class CommitListener:
    """``wait(timeout)`` returns when a process announces a commit or after ``timeout`` seconds.
    The LISTEN connection is reopened after a failure; a notification lost while it was down is why
    callers also read the log now and then."""

    def __init__(self, url: str, channel: str):
        self.url = url
        self.channel = channel
        self._conn: psycopg.Connection | None = None

    def wait(self, timeout: float) -> int | None:
        """The highest ``t`` announced (0: unknown, the log must be read), or None after
        ``timeout`` seconds without an announcement."""
        try:
            if self._conn is None or self._conn.closed or self._conn.broken:
                self.close()
                self._conn = psycopg.connect(self.url, autocommit=True, connect_timeout=5)
                self._conn.execute(f'LISTEN "{self.channel}"')
                return 0  # commits may have been missed while not listening
            announced = None
            for n in self._conn.notifies(timeout=timeout, stop_after=1):
                announced = int(n.payload) if n.payload.isdigit() else 0
            return announced
        except psycopg.Error:
            self.close()
            time.sleep(timeout)  # PostgreSQL is away: try again later, do not spin
            return None

    def close(self) -> None:
        _close_quietly(self._conn)
        self._conn = None
