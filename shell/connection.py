"""The connection: the single atom-like reference to the server's current database value.

``transact`` is the core's pure ``transact`` + a durable append to the store + a swap of the
reference + a notification to listeners, in that order: nobody sees a value that is not on disk.
Transactions queue to one writer task, which applies every waiting transaction in order and makes
them durable in one commit (group commit), then acknowledges each. A transaction the core rejects
gets its ``TxError`` and changes nothing; the others in its batch are not affected.

``submit(tx, (client, seq))`` is ``transact`` committed at most once: the submission is recorded
with its log entry in the same durable commit, and a resubmission gets the original answer (``t``
and tempids) and commits nothing (``core.sync.submissions``: bounded memory per client; one past
it gets ``sync/submission-expired``).

Listeners get ``(report, delta, payload)`` on bounded channels (Datomic's tx-report-queue): a
listener that does not keep up is dropped and told so, it never stalls the writer.

On a store several processes share (PostgreSQL), writers of all processes take turns
(``Store.lock_writers``); another process may have committed before this one's turn: the append is
conditional on the log ending at this value's ``t``, and when it does not, the connection applies
the entries it missed (``core.sync.server_db_with``) and transacts the batch again on the new value.
``follow`` applies other processes' commits as they are announced, so listeners see every
transaction of the log in order, whichever process committed it (their ``report`` is None then).
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import trio

from datsync.core import DB, TxError, TxReport, empty_db, from_history, transact
from datsync.core.history import basis_t, history
from datsync.core.sync import (
    DEFAULT_MAX_SIZE,
    Delta,
    decode,
    decode_value,
    delta_from_report,
    encode,
    encode_value,
    history_events,
    server_db_with,
)
from datsync.core.sync.delta import Origin
from datsync.core.sync.evolve import evolve
from datsync.core.sync.submissions import (
    EXPIRED,
    EXPIRED_ANSWER,
    KEEP_PER_CLIENT,
    Answer,
    Recorded,
    Submissions,
    learn,
    origin_at,
    recall,
    record,
    submissions_from_rows,
)
from datsync.core.sync.writes import answer_tempids

from .store import LogEntry, Store, StoreConflict, StoreError

log = logging.getLogger("datsync.connection")

Clock = Callable[[], _dt.datetime]


def utc_now() -> _dt.datetime:
    """The wall clock, in UTC: the shell's only source of transaction instants."""
    return _dt.datetime.now(_dt.UTC)


@dataclass
class _Pending:
    tx_data: Any
    tx_meta: Any
    submission: tuple[str, int] | None = None
    done: trio.Event = field(default_factory=trio.Event)
    report: TxReport | None = None
    answer: Answer | None = None
    duplicate: bool = False
    error: BaseException | None = None
    check: Callable[[TxReport], TxError | None] | None = None
    """Run on the report before committing (the policy's write rules): an error rejects it."""
    context: Any = None
    """The enqueuer's own: a ticket with a context is handed to ``Connection.on_answers``."""


class Submitted(NamedTuple):
    """The answer to ``Connection.submit``: the transaction's ``t`` and tempids (server ids), and
    whether this was a resubmission answered from the record (nothing committed this time)."""

    t: int
    tempids: dict
    duplicate: bool


@dataclass(frozen=True)
class Committed:
    """What listeners receive for every committed transaction: the report, its delta (with its
    ``origin`` when it was a submission), and the delta's encoded bytes without the origin (encoded
    once, stored in the log and sent as is to every replica that may see all of it)."""

    report: TxReport | None
    """None for a transaction another process committed (read back from the shared log)."""
    delta: Delta
    payload: bytes


class ListenerOverflow(Exception):
    """A listener fell more than its buffer behind and was dropped."""


def encode_events(db: DB) -> bytes:
    """Every assertion and retraction of ``db`` (its history), as checkpoint bytes. Read straight
    from the history index's keys ``(e, a, rank, v, tx, added)``, no datom made: the whole history
    is what a checkpoint writes (the 20k-people database: ~0.2 s, against ~0.75 through datoms)."""
    if db.is_view:
        raise ValueError("a checkpoint is of a database value, not of a view")
    events = [(k[0], k[1], encode_value(k[3]), k[4], k[5]) for k in db.heavt]
    return json.dumps({"t": basis_t(db), "events": events}, separators=(",", ":")).encode()


def last_instant(db: DB) -> _dt.datetime | None:
    """The ``db/txInstant`` of ``db``'s newest transaction (None before the first)."""
    from datsync.core import datoms

    found = datoms(db, "eavt", db.max_tx, "db/txInstant")
    return found[0].v if found else None


def history_datoms(db: DB) -> list:
    """All of ``db``'s history datoms (assertions and retractions)."""
    from datsync.core import datoms

    return datoms(history(db), "eavt")


def decode_events(payload: bytes) -> list[tuple]:
    """The events of a checkpoint payload."""
    data = json.loads(payload)
    return [(e, a, decode_value(v), tx, added) for e, a, v, tx, added in data["events"]]


def delta_events(delta: Delta) -> list[tuple]:
    """The datoms of a delta as history events."""
    return [(e, a, v, delta.tx, added) for e, a, v, added in delta.datoms]


class Connection:
    """The server's database: ``conn.db`` is the current value; ``await conn.transact(...)``.

    Create with ``await Connection.open(store)`` inside a nursery-owning task and run
    ``conn.run_writer`` in a nursery (``Connection.serve`` does both)."""

    def __init__(self, store: Store, db: DB, *, clock: Clock = utc_now, max_batch: int = 1000,
                 submissions: Submissions | None = None, events: int | None = None, checkpoint_events: int = 0):
        self.store = store
        self.db = db
        self.events = len(db.heavt) if events is None else events
        """Assertions and retractions in ``db``'s history: what a checkpoint of it would write."""
        self.checkpoint_events = checkpoint_events
        """Events in the store's newest checkpoint that this connection knows of (0: none)."""
        self.submissions = submissions if submissions is not None else Submissions()
        self._clock = clock
        self._max_batch = max_batch
        self._queue_send, self._queue_recv = trio.open_memory_channel[_Pending](math.inf)
        self._listeners: list[trio.MemorySendChannel] = []
        # instants never go back, also after a restart or a move to a machine whose clock is behind
        self._last_instant: _dt.datetime | None = last_instant(db)
        # The store's one connection is used from worker threads: one call at a time (two threads
        # interleaving BEGIN/COMMIT on it would break each other's transactions).
        self._store_lock = trio.Lock()
        # Changes of ``db``: the writer's commits and ``catch_up``'s entries from other processes.
        self._db_lock = trio.Lock()
        self.caught_up = 0
        """Transactions of other processes applied to this value (read from the shared log)."""
        self.appends = 0
        """Durable appends to the store (group commits) made by this connection's writer."""
        self.on_answers: Callable[[list[_Pending]], None] | None = None
        """Called by the writer with the tickets of each batch that were enqueued with a ``context``,
        once they are settled (``answer(ticket)``): a batch's answers handled in one go, no task
        woken per transaction."""

    @classmethod
    def recover(cls, store: Store, *, clock: Clock = utc_now, keep_submissions: int = KEEP_PER_CLIENT) -> Connection:
        """The connection over ``store``'s database: the latest checkpoint plus the log after it,
        rebuilt in bulk (no transaction is re-run), and the remembered submissions."""
        cp = store.latest_checkpoint()
        if cp is not None:
            cp_t, payload = cp
            events = decode_events(payload)
            checkpoint_events = len(events)
        else:
            cp_t, events = 0, [tuple(d) for d in history_datoms(empty_db(flavor="datomic"))]
            checkpoint_events = 0
        tail = store.read_log(cp_t)
        for entry in tail:
            delta = decode(entry.payload)
            if delta.schema.renames:  # the server renamed history too: replay that, not just the datoms
                events = history_events(events, delta)
            else:
                events += delta_events(delta)
        db = from_history(events) if (cp is not None or tail) else empty_db(flavor="datomic")
        log.info("recovered database at t=%d (checkpoint t=%d, %d events)", basis_t(db), cp_t, len(events))
        rows, floors = store.read_submissions()
        return cls(store, db, clock=clock, submissions=submissions_from_rows(rows, floors, keep_submissions),
                   events=len(events), checkpoint_events=checkpoint_events)

    @property
    def t(self) -> int:
        """The basis ``t`` of the current value."""
        return basis_t(self.db)

    async def transact(self, tx_data: Any, tx_meta: Any = None) -> TxReport:
        """Transact, wait until durable, return the report; raise ``TxError`` if the core rejects it."""
        pending = self.enqueue(tx_data, tx_meta=tx_meta)
        await pending.done.wait()
        if pending.error is not None:
            raise pending.error
        assert pending.report is not None
        return pending.report

    def enqueue(self, tx_data: Any, submission: tuple[str, int] | None = None, *, tx_meta: Any = None,
                check: Callable[[TxReport], TxError | None] | None = None, context: Any = None) -> _Pending:
        """Queue a transaction for the writer at once, so transactions queued one after another
        commit in that order; ``await outcome(ticket)`` for the answer (or, with a ``context``, get it
        through ``on_answers``). ``check(report)``: an error it returns rejects the transaction
        (checked against the value it applies to)."""
        pending = _Pending(tx_data, tx_meta, None if submission is None else (submission[0], submission[1]),
                           check=check, context=context)
        self._queue_send.send_nowait(pending)
        return pending

    async def outcome(self, pending: _Pending) -> Submitted:
        """The answer to an ``enqueue``d transaction: its ``t`` and tempids (server ids), and whether
        it was a resubmission; ``TxError`` if it was rejected."""
        await pending.done.wait()
        return self.answer(pending)

    def answer(self, pending: _Pending) -> Submitted:
        """``outcome`` of a settled ticket (``pending.done`` is set)."""
        if pending.error is not None:
            raise pending.error
        if pending.answer is not None:
            return Submitted(pending.answer.t, dict(pending.answer.tempids), pending.duplicate)
        assert pending.report is not None
        return Submitted(basis_t(pending.report.db_after), answer_tempids(pending.report), False)

    async def submit(self, tx_data: Any, submission: tuple[str, int]) -> Submitted:
        """Transact ``tx_data`` as the client's submission ``(client, seq)``, at most once: the first
        time it commits (and is recorded in the same durable commit); a resubmission is answered with
        the original ``t`` and tempids and commits nothing. ``TxError`` if the core rejects it (not
        recorded: a resubmission is tried again) or with code ``sync/submission-expired`` when it is
        older than what the server remembers of that client."""
        return await self.outcome(self.enqueue(tx_data, submission))

    def origin_at(self, t: int) -> Origin | None:
        """The origin of transaction ``t`` if it was a submission the server still remembers."""
        return origin_at(self.submissions, t)

    def listen(self, buffer: int = 1000) -> trio.MemoryReceiveChannel:
        """A channel of ``Committed`` values, one per transaction from now on. If the listener
        falls ``buffer`` transactions behind, its channel is closed (it must resync)."""
        send, recv = trio.open_memory_channel[Committed](buffer)
        self._listeners.append(send)
        return recv

    def _instant(self) -> _dt.datetime:
        now = self._clock()
        if self._last_instant is not None and now < self._last_instant:
            now = self._last_instant
        self._last_instant = now
        return now

    async def run_writer(self, *, task_status: trio.TaskStatus = trio.TASK_STATUS_IGNORED) -> None:
        """The one task that changes the database: batch, apply, make durable, swap, notify."""
        task_status.started()
        async with self._queue_recv:
            while True:
                batch = [await self._queue_recv.receive()]
                while len(batch) < self._max_batch:
                    try:
                        batch.append(self._queue_recv.receive_nowait())
                    except trio.WouldBlock:
                        break
                await self._commit(batch)

    async def _commit(self, batch: list[_Pending]) -> None:
        shared = self.store.shared
        async with self._db_lock:
            try:
                if shared:  # writers of all processes take turns: read what others did, transact, append
                    await self._store_call(self.store.lock_writers)
            except StoreError as e:
                self._fail(batch, e)
            else:
                try:
                    while not await self._try_commit(batch):
                        pass  # another process committed first; its entries are applied: transact again
                finally:
                    if shared:
                        with trio.CancelScope(shield=True):
                            await self._store_call(self.store.unlock_writers)
        for p in batch:
            p.done.set()
        answered = [p for p in batch if p.context is not None]
        if answered and self.on_answers is not None:
            try:
                self.on_answers(answered)
            except Exception:  # the writer must go on: the next batch does not depend on these answers
                log.exception("handing the answers of a batch over failed")

    async def _store_call(self, fn: Callable[[], Any]) -> Any:
        async with self._store_lock:
            return await trio.to_thread.run_sync(fn)

    def _fail(self, batch: list[_Pending], e: Exception) -> None:
        """The store could not commit ``batch``: every transaction in it gets the store's error code,
        except answers recalled from earlier, durable commits."""
        code = e.code if isinstance(e, StoreError) and e.code.startswith("db.error/") else "db.error/storage"
        message = e.message if isinstance(e, StoreError) else f"The store could not commit: {e}"
        log.error("store append failed; %d transactions not committed: %s", len(batch), message)
        for p in batch:
            durable = p.duplicate and recall(self.submissions, *p.submission) is not None  # type: ignore[misc]
            if p.error is None and not durable:
                p.error, p.answer = TxError(code, message, {}), None

    async def _try_commit(self, batch: list[_Pending]) -> bool:
        """Transact ``batch`` on the current value and append it; False when the log had moved on
        (the entries missed are applied then, nothing of ``batch`` is committed)."""
        db = self.db
        subs = self.submissions
        recorded: list[Recorded] = []
        done: list[tuple[_Pending, Committed]] = []
        for p in batch:
            p.error, p.answer, p.duplicate = None, None, False
            if p.submission is not None:
                prior = recall(subs, *p.submission)
                if prior is EXPIRED_ANSWER:
                    client, seq = p.submission
                    p.error = TxError(EXPIRED, f"Submission {seq} of client {client} is older than what the "
                                      "server remembers: it may or may not have committed", {})
                    continue
                if prior is not None:
                    p.answer, p.duplicate = prior, True  # type: ignore[assignment]
                    continue
            try:
                report = transact(db, p.tx_data, p.tx_meta, instant=self._instant())
                refused = p.check(report) if p.check is not None else None
                if refused is not None:
                    raise refused
            except TxError as e:
                p.error = e
                continue
            except Exception as e:  # a bug or a bad input the core did not classify: reject, keep serving
                log.exception("transaction failed unexpectedly")
                p.error = TxError("db.error/internal", f"Transaction failed: {type(e).__name__}: {e}", {})
                continue
            delta = delta_from_report(report)
            payload = encode(delta)
            if p.submission is not None:
                client, seq = p.submission
                p.answer = Answer(delta.t, answer_tempids(report))
                subs, rec = record(subs, client, seq, p.answer)
                recorded.append(rec)
                delta = evolve(delta, origin=Origin(client, seq, p.answer.tempids))
            done.append((p, Committed(report, delta, payload)))
            db = report.db_after
        if self.store.shared and len(done) < len(batch):
            # a rejection must be by the log's latest value, not by a value another process moved past
            async with self._store_lock:
                missed = await trio.to_thread.run_sync(self._read_after, self.t)
            if missed:
                await self._apply_missed(missed)
                return False
        if not done:
            return True
        entries = [LogEntry(c.delta.t, c.delta.tx, c.payload) for _, c in done]
        try:
            async with self._store_lock:
                await trio.to_thread.run_sync(lambda: self.store.append(entries, recorded, after_t=self.t))
        except StoreConflict as conflict:
            await self._apply_missed(conflict.entries)
            return False
        except Exception as e:
            self._fail(batch, e)
            return True
        self.appends += 1
        self.db = db
        self.events += sum(len(c.delta.datoms) for _, c in done)
        self.submissions = subs
        for p, c in done:
            p.report = c.report
            self._notify(c)
        return True

    async def _apply_missed(self, entries: list[LogEntry]) -> None:
        """Apply what another process committed, and learn its submissions first (so a resubmission
        to this process is answered, and the deltas carry their origin)."""
        async with self._store_lock:
            rows, floors = await trio.to_thread.run_sync(self.store.read_submissions, self.t)
        self.submissions = learn(self.submissions, rows, floors)
        self._apply(entries)

    def _apply(self, entries: list[LogEntry]) -> None:
        """Apply the log ``entries`` another process committed after this value, in order."""
        for entry in entries:
            if entry.t <= self.t:
                continue
            if entry.t != self.t + 1:
                raise RuntimeError(f"the log skips from t={self.t} to t={entry.t}")
            delta = decode(entry.payload, max_size=max(len(entry.payload), DEFAULT_MAX_SIZE))
            self.db = server_db_with(self.db, delta)
            self.events += len(delta.datoms)
            self._last_instant = max(self._last_instant or delta.instant, delta.instant)
            self.caught_up += 1
            origin = origin_at(self.submissions, delta.t)
            self._notify(Committed(None, delta if origin is None else evolve(delta, origin=origin), entry.payload))

    async def catch_up(self) -> int:
        """Apply what other processes committed since this value (a shared store); the new ``t``."""
        async with self._db_lock:
            while True:
                async with self._store_lock:
                    entries = await trio.to_thread.run_sync(self._read_after, self.t)
                if not entries:
                    return self.t
                await self._apply_missed(entries)

    def _read_after(self, t: int) -> list[LogEntry]:
        return self.store.read_log(t, limit=1000)

    async def follow(self, *, poll: float = 1.0, task_status: trio.TaskStatus = trio.TASK_STATUS_IGNORED) -> None:
        """Keep applying other processes' commits as they are announced (LISTEN/NOTIFY; the log is
        also read every ``poll`` seconds, for announcements lost while PostgreSQL was away)."""
        listener = self.store.listener()  # type: ignore[attr-defined]
        task_status.started()
        try:
            while True:
                announced = await trio.to_thread.run_sync(listener.wait, poll)
                if announced is not None and 0 < announced <= self.t:
                    continue  # this process's own commit, or one already applied
                try:
                    await self.catch_up()
                except StoreError as e:
                    log.warning("cannot read the shared log: %s", e.message)
                    await trio.sleep(poll)
        finally:
            listener.close()

    def _notify(self, committed: Committed) -> None:
        for ch in list(self._listeners):
            try:
                ch.send_nowait(committed)
            except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
                self._listeners.remove(ch)
                ch.close()

    async def checkpoint(self) -> int:
        """Write a checkpoint of the current value; returns its ``t``."""
        db, events = self.db, self.events
        payload = await trio.to_thread.run_sync(encode_events, db)
        async with self._store_lock:
            await trio.to_thread.run_sync(self.store.write_checkpoint, basis_t(db), payload)
        self.checkpoint_events = events
        return basis_t(db)
