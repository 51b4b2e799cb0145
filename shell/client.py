"""Python replicas over WebSocket: the core's ``ClientSession`` driven on trio, and a blocking facade.

trio::

    async with open_replica("ws://127.0.0.1:8765/") as rep:
        r = await rep.transact([{"db/id": "ann", "person/name": "Ann"}])   # TxResult(t, tx, tempids)
        pull(rep.db, "[*]", r.tempids["ann"])                             # the replica has it already

scripts and notebooks (trio in a background thread)::

    with connect("ws://127.0.0.1:8765/") as rep:
        rep.transact([...]); rep.db; rep.t; rep.wait_for_t(t, timeout=5); unsubscribe = rep.listen(fn)

``rep.db`` is the replica's current database value (DataScript flavor, immutable: hold on to it as
long as you like; the next change makes a new one). The replica reconnects with exponential backoff
and jitter, resumes from its ``t`` (the server sends only what it missed), and bootstraps from a
snapshot only when it has nothing or the server tells it to resync. Given several URLs (server
processes sharing one store), it moves to the next one when its own goes away and resumes there.

Errors: ``TxError`` (the server's code, e.g. ``db.error/unique-conflict``) when a transaction is
rejected; ``TxOutcomeUnknown`` (a ``ConnectionError``) when the connection dropped before the
answer: the transaction may or may not have committed; ``Unauthorized`` when the server refuses the
credentials; ``ReplicaClosed`` after ``close``.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import math
import random
import ssl
import threading
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

import trio

from datsync.core import TX0, Datom, TxError
from datsync.core.errors import DatsyncError
from datsync.core.sync import (
    Ack,
    ChangeScopes,
    ClientConfig,
    Close,
    Closed,
    Deltas,
    EidMap,
    Notify,
    Opened,
    Received,
    Send,
    SetTimer,
    SubmitTx,
    Timer,
    client_step,
    datoms_to_local,
    new_client_session,
    receive,
)
from datsync.core.sync.client import BOOTSTRAPPING, LIVE, Queued
from datsync.core.sync.pending import find_pending, needs_rebase
from datsync.core.sync.pending import rebase as rebase_pending
from datsync.core.sync.pending import resolve as resolve_id
from datsync.core.sync.replica import replica_as_of, replica_history, replica_since
from datsync.core.sync.snapshot import SnapshotChunk

from .changes import ChangeSignal
from .replica_store import COMPACT_EVERY, ReplicaStore, base_messages
from .timer import SessionTimer
from .ws_client import ClientWebSocket, WebSocketClosed, WebSocketRejected, open_websocket

log = logging.getLogger("datsync.client")

DEFAULT_MAX_MESSAGE_SIZE = 64 << 20
FATAL_CODES = frozenset({"protocol/unauthorized", "protocol/version"})
"""Errors from the server after which reconnecting cannot help."""


# ------------------------------------------------------------------------------------------------
# Values and errors


class TxResult(NamedTuple):
    """A committed transaction: its ``t``, its transaction id, and the tempids resolved to the
    replica's entity ids (``"db/current-tx"`` included)."""

    t: int
    tx: int
    tempids: dict


class ReplicaChange(NamedTuple):
    """What a listener receives after every change of the replica: the database before and after,
    the change's ``t``, ``kind``, the server's ``Delta`` (None unless one arrived) and its datoms in
    the replica's ids (``tx_data``, as in a DataScript report). Kinds: ``"bootstrap"`` (a snapshot
    became the replica), ``"delta"`` (another client's transaction arrived), ``"local"`` (this
    application submitted ``pending``), ``"confirmed"`` (the delta of this client's own ``pending``
    transaction arrived), ``"rejected"`` (the server refused ``pending``: ``error`` is its
    ``TxError``, with code and message), ``"rebased"`` (pending transactions were re-applied on a
    new confirmed database), ``"scopes"`` (a change of scopes brought or took away ``tx_data``, at
    the same ``t``), ``"failed"`` (the replica gave up for good: ``error`` says why, e.g.
    ``Unauthorized`` or ``sync/untrusted-certificate``; the database stays readable)."""

    db_before: Any
    db_after: Any
    t: int
    kind: str
    delta: Any
    tx_data: tuple
    pending: Any = None
    error: Any = None


class ScopesRefused(DatsyncError):
    """The server refused a change of scopes (``policy/unknown-scope``, ``policy/invalid``, or
    ``policy/none``: it serves no policy); the replica keeps its scopes."""


class ReplicaConnectionError(ConnectionError):
    """The replica's connection failed (``code`` says how, when the server said so)."""

    def __init__(self, message: str, code: str | None = None):
        super().__init__(message)
        self.code = code or "sync/connection"
        self.message = message


class TxOutcomeUnknown(ReplicaConnectionError):
    """The connection dropped after the transaction was sent and before the server answered: it
    may or may not have committed. Look for its effects once the replica has reconnected."""

    def __init__(self, req: Any, reason: str):
        super().__init__(
            f"the connection to the server was lost before it answered transaction request {req!r} ({reason}); "
            "the transaction may or may not have committed: check the replica for its effects after it "
            "reconnects", "sync/tx-unknown",
        )
        self.req = req


class Unauthorized(ReplicaConnectionError):
    """The server refused this replica's credentials (or speaks another protocol version)."""


class ReplicaClosed(ReplicaConnectionError):
    """The replica is closed (``aclose``/``close``, or it gave up reconnecting)."""


@dataclass
class ReplicaStats:
    """Counters about the replica's connection (``rep.stats``)."""

    connects: int = 0
    """WebSocket connections opened."""
    resumes: int = 0
    """Welcomes in ``resume`` mode: caught up from the replica's ``t`` without a snapshot."""
    bootstraps: int = 0
    """Snapshots that became the replica (the first one, and after each resync)."""
    resyncs: int = 0
    """Times the server said the replica had fallen too far behind."""
    deltas: int = 0
    """Deltas applied."""
    batches: int = 0
    """``deltas`` messages received (several deltas in one, when the replica was behind)."""
    disconnects: int = 0
    failovers: int = 0
    """Moves to another of the server URLs after the current one failed or went away."""
    last_mode: str | None = None
    """``resume`` or ``bootstrap``: the last welcome's mode."""
    last_close: str | None = None
    last_error: tuple[str, str] | None = None
    """The server's last ``error`` message: ``(code, message)``."""

    def as_dict(self) -> dict:
        return dict(vars(self))


class PendingTx:
    """A submitted transaction (``rep.submit``): queued, sent to the server whenever connected, and
    committed there at most once. ``tempids``: its tempids in this replica's ids once known (the
    confirmed ones after the server answered); ``status``: ``"pending"``, ``"confirmed"`` or
    ``"rejected"``; ``await result()`` (trio) waits for the server: ``TxResult``, or the server's
    ``TxError`` if it rejected the transaction."""

    def __init__(self, req: Any, tx_data: Any, seq: int | None = None):
        self.req = req
        self.seq = seq
        self.tx_data = tx_data
        self.tempids: dict = {}
        self.conflict: tuple[str, str] | None = None
        """``(code, message)`` when it did not apply locally (the server decides)."""
        self.status = "pending"
        self.done = trio.Event()
        self.outcome: TxResult | None = None
        self.error: BaseException | None = None

    async def result(self) -> TxResult:
        """Wait for the server's answer: the ``TxResult`` once committed and applied here, else the
        ``TxError`` it was rejected with (or ``TxOutcomeUnknown``/``ReplicaClosed``)."""
        await self.done.wait()
        if self.error is not None:
            raise self.error
        assert self.outcome is not None
        return self.outcome

    def _settle(self, outcome: TxResult | None, error: BaseException | None) -> None:
        if self.done.is_set():
            return
        self.outcome, self.error = outcome, error
        if outcome is not None:
            self.status, self.tempids = "confirmed", dict(outcome.tempids)
        else:
            self.status = "rejected"
        self.done.set()

    def __repr__(self) -> str:
        return f"<PendingTx {self.req!r} seq={self.seq} {self.status}>"


_WS_CODES = {"normal": 1000, "protocol/timeout": 1001, "protocol/internal": 1011, "protocol/too-large": 1009}


# ------------------------------------------------------------------------------------------------
# The trio replica


def view_key(credentials: Any) -> str:
    """A stored replica's record of the credentials it was synced under (a digest: the token stays
    out of the file): under a policy they decide what the replica holds, so a replica opened with
    other credentials bootstraps instead of resuming."""
    return hashlib.sha256(json.dumps(credentials, sort_keys=True, default=str).encode()).hexdigest()


def _credentials(token: str | None, scopes: Sequence[tuple[str, Sequence[Any]]] | None) -> dict | None:
    """The hello's credentials: the token, and the scopes to subscribe to under the server's policy
    (``[("team", ["red"])]``: a scope's name and arguments; docs/security.md)."""
    if scopes is None:
        return {"token": token} if token is not None else None
    return {"token": token, "scopes": [[name, list(args)] for name, args in scopes]}


class ReplicaConnection:
    """A replica of a server's database kept live over WebSocket (create with ``open_replica``)."""

    def __init__(
        self,
        url: str | Sequence[str],
        *,
        token: str | None = None,
        id_cap: int | None = None,
        reconnect: bool = True,
        backoff: tuple[float, float] = (0.1, 5.0),
        rng: random.Random | None = None,
        heartbeat_interval: float = 10.0,
        heartbeat_timeout: float = 30.0,
        connect_timeout: float = 10.0,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        max_pending: int = 32,
        on_progress: Callable[..., Any] | None = None,
        replica: Any = None,
        client_id: str | None = None,
        exactly_once: bool = True,
        store: str | Path | None = None,
        keep_history: bool = True,
        ca: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        scopes: Sequence[tuple[str, Sequence[Any]]] | None = None,
    ):
        self.urls = server_urls(url)
        self.url = self.urls[0]
        """The server URL in use (or tried next)."""
        self.reconnect = reconnect
        self.backoff = backoff
        self.rng = rng if rng is not None else random.Random()
        self.connect_timeout = connect_timeout
        self.max_message_size = max_message_size
        self.on_progress = on_progress
        self.ssl_context = ssl_context or (ssl.create_default_context(cafile=ca) if ca is not None else None)
        eids = EidMap.identity() if id_cap is None else EidMap.capped(id_cap)
        self.keep_history = keep_history
        self.store: ReplicaStore | None = None
        restored = None
        if store is not None:
            if id_cap is not None:
                raise ValueError("a persisted replica keeps the server's entity ids: no id_cap with store")
            self.store = ReplicaStore(store)
            try:
                restored = self.store.load()
            except BaseException:
                self.store.close()
                raise
            client_id, exactly_once = restored.client_id, True
            stored = self.store.view
            if replica is None and (stored is None or stored == view_key(_credentials(token, scopes))):
                replica = restored.replica  # else: synced under other credentials, bootstraps (queue kept)
        if exactly_once and client_id is None:
            client_id = uuid.uuid4().hex
        self.client_id = client_id if exactly_once else None
        config = ClientConfig(
            credentials=_credentials(token, scopes), eids=eids,
            heartbeat_interval=heartbeat_interval, heartbeat_timeout=heartbeat_timeout, client_id=self.client_id,
        )
        if restored is not None:
            self.session = new_client_session(config, replica, restored.queue, restored.next_seq)
        else:
            self.session = new_client_session(config, replica)
        self.stats = ReplicaStats()
        self._pending: dict[Any, PendingTx] = {}
        r = self.session.replica
        for q in self.session.queue:  # restored from disk: answered once the server is reachable
            p = PendingTx(q.req, q.tx_data, q.seq)
            core = None if r is None else find_pending(r, self.client_id, q.seq)  # type: ignore[arg-type]
            if core is not None:
                p.tempids, p.conflict = dict(core.tempids), core.conflict
            self._pending[q.req] = p
        self._reqs = itertools.count(max([0, *(q.req for q in self.session.queue if type(q.req) is int)]) + 1)
        self._slots = trio.Semaphore(max_pending)
        self._listeners: list[Callable[[ReplicaChange], Any]] = []
        self._watch_each_delta()
        self._waiters: list[tuple[int, trio.Event]] = []
        self._scoping: dict[Any, list] = {}
        self._changes = ChangeSignal()
        self._ws: ClientWebSocket | None = None
        self._conn_scope: trio.CancelScope | None = None
        self._timer = SessionTimer()
        self._events: list = []
        self._busy = False
        self._closing = False
        self._failure: BaseException | None = None
        self._scope: trio.CancelScope | None = None
        self._db = None
        self._tasks: trio.Nursery | None = None
        self._base_wanted: Any = None
        self._base_view: str | None = None

    # -- reading -------------------------------------------------------------------------------

    @property
    def replica(self) -> Any:
        """The core ``Replica`` value (db, t, server schema, id map), or None before the first sync."""
        return self.session.replica

    @property
    def db(self) -> Any:
        """What the application reads (DataScript flavor; None before the first sync): the confirmed
        database, equal to the server's at ``t``, with the pending transactions applied on top."""
        r = self.session.replica
        return None if r is None else r.view

    @property
    def confirmed_db(self) -> Any:
        """The confirmed database alone: the server's at ``t`` (None before the first sync)."""
        r = self.session.replica
        return None if r is None else r.db

    @property
    def t(self) -> int:
        """The server ``t`` the replica reflects (-1 before the first sync)."""
        r = self.session.replica
        return -1 if r is None else r.t

    @property
    def db_id(self) -> str | None:
        """The server database's identity (a replica resumes only against the same one)."""
        r = self.session.replica
        return None if r is None else r.db_id

    @property
    def connected(self) -> bool:
        """True while the replica is live (connected and caught up or catching up)."""
        return self.session.phase == LIVE

    def listen(self, fn: Callable[[ReplicaChange], Any]) -> Callable[[], None]:
        """Call ``fn(change)`` after every change of the replica (bootstraps included); returns the
        function that unsubscribes. ``fn`` runs in the replica's trio task: keep it short."""
        self._listeners.append(fn)
        self._watch_each_delta()

        def unsubscribe() -> None:
            if fn in self._listeners:
                self._listeners.remove(fn)
                self._watch_each_delta()

        return unsubscribe

    def _watch_each_delta(self) -> None:
        """Have every delta of a ``deltas`` message come with its replica while someone looks at
        them (listeners, the replica store); else they are applied in one go."""
        want = bool(self._listeners) or self.store is not None
        config = self.session.config
        if config.each_delta != want:
            self.session = replace(self.session, config=replace(config, each_delta=want))

    async def wait_for_t(self, t: int) -> None:
        """Return once the replica reflects ``t`` (raises if the replica closes first)."""
        while self.t < t:
            self._check_usable()
            event = trio.Event()
            self._waiters.append((t, event))
            await event.wait()

    # -- writing -------------------------------------------------------------------------------

    async def transact(self, tx_data: Any) -> TxResult:
        """Transact on the server; return once it is durable there *and* applied here, with the
        tempids in this replica's ids. ``TxError`` with the server's code if rejected. With
        ``exactly_once`` (the default) a dropped connection only delays the answer: the transaction
        is sent again after the reconnect and commits at most once; without it,
        ``TxOutcomeUnknown`` if the connection dropped before the answer."""
        async with self._slots:
            if self.client_id is None:
                await self._until_usable()
            pending = await self.submit(tx_data)
            return await pending.result()

    async def submit(self, tx_data: Any) -> PendingTx:
        """Queue ``tx_data`` for the server and return at once with its ``PendingTx`` (``await
        p.result()`` for the answer). Works offline: the queue is sent, in order, whenever the
        replica is connected, and each transaction commits at most once."""
        self._check_usable()
        if self.client_id is None:
            await self._until_usable()
        req = next(self._reqs)
        pending = PendingTx(req, tx_data)
        self._pending[req] = pending
        self._feed(SubmitTx(req, tx_data))
        if pending.done.is_set():
            self._pending.pop(req, None)
        return pending

    @property
    def pending(self) -> tuple[PendingTx, ...]:
        """The submitted transactions not answered yet, oldest first."""
        return tuple(p for q in self.session.queue if (p := self._pending.get(q.req)) is not None)

    async def set_scopes(self, scopes: Sequence[tuple[str, Sequence[Any]]]) -> tuple[Datom, ...]:
        """Under the server's policy: hold ``scopes`` (the full list, ``[("team", ["red"])]``) instead
        of the current ones, without a new bootstrap. Returns once the replica holds exactly them, with
        the datoms that came (added) or went (retracted), in the replica's ids; later connections
        subscribe to them. ``ScopesRefused`` with the server's code for an unknown scope or wrong
        arguments (nothing changes). A change interrupted by a lost connection is asked again."""
        scopes = tuple((str(name), tuple(args)) for name, args in scopes)
        while True:
            await self._until_live()
            req = next(self._reqs)
            slot = self._scoping[req] = [trio.Event(), None]
            self._feed(ChangeScopes(req, scopes))
            await slot[0].wait()
            self._check_usable()
            outcome = slot[1]
            if isinstance(outcome, tuple):
                return outcome
            if outcome.code not in ("sync/not-connected", "sync/retry"):
                raise outcome
            await self._changes.wait()

    async def _until_live(self) -> None:
        while True:
            self._check_usable()
            if self.session.replica is not None and self.session.phase == LIVE:
                return
            await self._changes.wait()

    def as_of(self, t: Any) -> Any:
        """The confirmed database as it was right after ``t`` (a basis ``t``, a tx id or a datetime),
        over what this replica saw: from its bootstrap on (``SyncError`` ``sync/before-history``
        before that). A persisted replica keeps that history across restarts."""
        return replica_as_of(self._require_replica(), t)

    def since(self, t: Any) -> Any:
        """The confirmed datoms added after ``t`` (Datomic's ``since``)."""
        return replica_since(self._require_replica(), t)

    def history(self) -> Any:
        """Every assertion and retraction this replica saw (Datomic's ``history``)."""
        return replica_history(self._require_replica())

    def _require_replica(self) -> Any:
        r = self.session.replica
        if r is None:
            raise ReplicaConnectionError("the replica has no data yet (it has not bootstrapped)", "sync/no-replica")
        return r

    def resolve(self, eid: Any) -> Any:
        """The entity id ``eid`` stands for now: a provisional id (a ``PendingTx``'s tempids) maps to
        the local id of the server's entity once its transaction is confirmed; any other id is itself."""
        r = self.session.replica
        return eid if r is None else resolve_id(r, eid)

    # -- lifecycle -----------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the connection (code 1000) and stop reconnecting."""
        if self._closing:
            return
        self._closing = True
        ws = self._ws
        if ws is not None and self.session.phase != "closed":
            ws.close_soon(_WS_CODES["normal"], "closed by the application")
        with trio.move_on_after(2.0):
            await self._changes.until(lambda: self._ws is None)
        self._fail(ReplicaClosed("the replica was closed", "sync/closed"))
        if self._scope is not None:
            self._scope.cancel()

    async def run(self, *, task_status: trio.TaskStatus = trio.TASK_STATUS_IGNORED) -> None:
        """Connect, keep the replica live, reconnect with backoff; ``task_status.started()`` once
        the replica holds the server's database. Raises if it never can: refused credentials, or
        the first connection failed with ``reconnect=False``."""
        try:
            await self._run(task_status)
        finally:
            if self.store is not None:
                self.store.close()
                self.store = None

    async def _run(self, task_status: trio.TaskStatus) -> None:
        with trio.CancelScope() as self._scope:
            async with trio.open_nursery() as nursery:
                self._tasks = nursery
                nursery.start_soon(self._connection_loop)
                await self._changes.until(lambda: self.session.replica is not None or self._failure is not None)
                if self.session.replica is None and self._failure is not None:
                    raise self._failure
                task_status.started()

    async def _connection_loop(self) -> None:
        attempt = 0
        while not self._closing:
            self._was_live = False
            error: BaseException | None = None
            try:
                await self._connect_once()
            except _CONNECTION_ERRORS as e:
                error = e
            except BaseExceptionGroup as group:
                leaves = _leaves(group)
                if not all(isinstance(x, _CONNECTION_ERRORS) for x in leaves):
                    raise
                error = leaves[0]
            if self.session.phase != "closed":
                self._feed(Closed(f"connection lost: {error}" if error else "connection closed"))
            if self._closing:
                return
            fatal = self._fatal_error(error)
            if fatal is not None:
                log.warning("giving up", extra={"url": self.url, "error": str(fatal)})
                self._fail(fatal)
                return
            if not self.reconnect:
                self._fail(ReplicaClosed(f"the connection to {self.url} was lost{f' ({error})' if error else ''} "
                                         "and reconnect=False", "sync/closed"))
                return
            attempt = 0 if self._was_live else attempt + 1
            if len(self.urls) > 1:  # the next server first; back off once every one has failed
                self.url = self.urls[(self.urls.index(self.url) + 1) % len(self.urls)]
                self.stats.failovers += 1
                log.info("failing over", extra={"url": self.url, "error": str(error or "")})
                if attempt < len(self.urls):
                    continue
            lo, hi = self.backoff
            delay = min(hi, lo * 2 ** (attempt // len(self.urls)))
            delay = delay / 2 + self.rng.random() * delay / 2
            log.info("reconnecting", extra={"url": self.url, "in_s": round(delay, 3), "error": str(error or "")})
            await trio.sleep(delay)

    _was_live = False
    _close_why: str | None = None

    def _fatal_error(self, error: BaseException | None) -> BaseException | None:
        """The error to give up with, when reconnecting cannot help (refused credentials, another
        protocol version, a server certificate this replica does not trust, an HTTP server that is not a
        datsync server)."""
        cert = _certificate_error(error)
        if cert is not None:
            return ReplicaConnectionError(f"{self.url}: the server's certificate is not trusted "
                                          f"({cert.verify_message or cert.reason}); pass ca=... with the CA that "
                                          "signed it", "sync/untrusted-certificate")
        last = self.stats.last_error
        if last is not None and last[0] in FATAL_CODES and not self._was_live:
            return Unauthorized(f"{self.url} refused this replica: {last[1]}", last[0])
        if isinstance(error, WebSocketRejected) and not (len(self.urls) > 1 and error.status_code == 503):
            body = error.body.decode(errors="replace").strip() if error.body else ""
            return ReplicaConnectionError(f"{self.url} refused the WebSocket handshake: HTTP {error.status_code}"
                                          f"{': ' + body if body else ''}", "sync/rejected")
        return None

    async def _connect_once(self) -> None:
        if self.url.startswith("wss:"):
            await _check_certificate(self.url, self.ssl_context or ssl.create_default_context(), self.connect_timeout)
        # the whole opening handshake is bounded here, including a peer that accepts the TCP
        # connection and never answers
        with trio.CancelScope(deadline=trio.current_time() + self.connect_timeout) as connecting:
            ws = await open_websocket(self.url, max_message_size=self.max_message_size,
                                      ssl_context=self.ssl_context if self.url.startswith("wss:") else None)
            connecting.deadline = math.inf
            try:
                await self._session_on(ws)
            finally:
                await ws.aclose()
        if connecting.cancelled_caught:
            raise OSError(f"no WebSocket handshake with {self.url} within {self.connect_timeout:g} s")

    async def _session_on(self, ws: ClientWebSocket) -> None:
        """Run the session over the open connection ``ws`` until it closes."""
        self.stats.connects += 1
        self.stats.last_error = None
        self._close_why = None
        self._ws = ws
        try:
            async with trio.open_nursery() as nursery:
                self._conn_scope = nursery.cancel_scope
                nursery.start_soon(self._reader, ws)
                nursery.start_soon(self._writer, ws)
                nursery.start_soon(self._timer.run, lambda now: self._feed(Timer(now)))
                self._feed(Opened(trio.current_time()))
        finally:
            self._ws = None
            self._conn_scope = None
            self._timer.reset()
            self._changes.pulse()

    async def _reader(self, ws: ClientWebSocket) -> None:
        """Feed the session every message of each read, in this task (no hand-off per message)."""
        max_size = self.max_message_size
        while True:
            try:
                messages = await ws.receive()
            except WebSocketClosed as e:
                self._connection_closed(e)
                return
            for data in messages:
                event = receive(data, max_size=max_size)
                if type(event) is Received and type(event.message) is Deltas:
                    self.stats.batches += 1
                before = self.session.builder
                self._feed(event)
                if self.on_progress is not None and type(event) is Received and type(event.message) is SnapshotChunk:
                    self._progress(before)

    def _progress(self, before: Any) -> None:
        """Call ``on_progress(datoms received, datoms in the snapshot)`` after a snapshot chunk."""
        b = self.session.builder
        if b is not None:
            done, total = b.count, b.head.datoms
        elif before is not None:  # that chunk completed the snapshot
            done = total = before.head.datoms
        else:
            return
        try:
            self.on_progress(done, total)
        except Exception:
            log.exception("progress callback failed")

    async def _writer(self, ws: ClientWebSocket) -> None:
        """Write what the session queued, several messages in one write; after this side's close
        frame, wait (2 s at most) for the server's answer and end the connection."""
        try:
            await ws.write_queued()
        except WebSocketClosed as e:
            self._connection_closed(e)
            return
        with trio.move_on_after(2.0):
            await ws.wait_ended()
        self._cancel_conn()

    def _connection_closed(self, e: WebSocketClosed) -> None:
        self._close_why = e.why
        self._feed(Closed(f"server closed the connection: {self._close_why}"))
        self._cancel_conn()

    def _cancel_conn(self) -> None:
        if self._conn_scope is not None:
            self._conn_scope.cancel()

    # -- the state machine ---------------------------------------------------------------------

    def _feed(self, event: Any) -> None:
        self._events.append(event)
        if self._busy:
            return
        self._busy = True
        try:
            while self._events:
                e = self._events.pop(0)
                before = self.session.replica
                self.session, effects = client_step(self.session, e)
                for f in effects:
                    before = self._perform(f, before)
        finally:
            self._busy = False

    def _perform(self, f: Any, before: Any) -> Any:
        """Carry out ``f``; the replica before the next change (a ``deltas`` message notifies one delta
        after another: each one's replica is the next one's ``before``)."""
        t = type(f)
        if t is Send:
            if self._ws is not None:  # acks are cumulative: of several queued in a row, the last is enough
                self._ws.send_soon(f.data, kind="ack" if type(f.message) is Ack else None)
        elif t is Notify:
            after = self._notify(f.kind, f.data, before)
            return before if after is None else after
        elif t is SetTimer:
            self._timer.set(f.at)
        elif t is Close and self._ws is not None:
            self._ws.close_soon(_WS_CODES.get(f.code, 1002), f.reason)
        return before

    def _notify(self, kind: str, data: Any, before: Any) -> Any:
        """Tell the application (and the replica store) about ``kind``; for a delta, the replica it
        brought (else None)."""
        if self.store is not None:
            self._persist(kind, data)
        if kind == "delta":
            self.stats.deltas += 1
            delta, own, replica = data["delta"], None, data["replica"]
            if replica is None:  # inside a `deltas` message applied in one go: nobody looks at it
                return None
            if delta.origin is not None and delta.origin.client == self.client_id:
                own = next((p for p in self._pending.values() if p.seq == delta.origin.seq), None)
            kind = "confirmed" if own is not None else "rebased" if replica.pending else "delta"
            if needs_rebase(replica):  # inside a `deltas` message: re-based only for whoever looks
                if not self._listeners:
                    self._changed_to(before, replica, kind, delta, own, pending_changed=False)
                    return replica
                replica = rebase_pending(replica)
            self._changed_to(before, replica, kind, delta, own)
            return replica
        elif kind == "synced":
            self.stats.bootstraps += 1
            self._was_live = True
            self._changed_to(before, data["replica"], "bootstrap", None)
        elif kind == "connected":
            self.stats.last_mode = data["mode"]
            if data["mode"] == "resume":
                self.stats.resumes += 1
                self._was_live = True
            log.info("connected", extra={"url": self.url, "mode": data["mode"], "server_t": data["t"]})
            self._changes.pulse()
        elif kind == "tx-queued":
            p = self._pending.get(data["req"])
            if p is not None:
                p.seq, p.tempids, p.conflict = data["seq"], dict(data["tempids"]), data["conflict"]
                self._event("local", p, before, data["replica"])
        elif kind == "tx-ok":
            p = self._pending.pop(data["req"], None)
            if p is not None:
                tempids = dict(data["tempids"])
                p._settle(TxResult(data["t"], tempids.get("db/current-tx", TX0 + data["t"]), tempids), None)
        elif kind == "tx-rejected":
            p = self._pending.pop(data["req"], None)
            if p is not None:
                error = TxError(data["code"], data["message"], {"req": data["req"], "tx_data": p.tx_data})
                p._settle(None, error)
                self._event("rejected", p, before, data.get("replica"), error)
        elif kind == "scopes-ok":
            r, datoms = data["replica"], data["datoms"]
            local = datoms_to_local(r.eids, r.refs, datoms)[1] if r is not None else ()
            tx_data = tuple(Datom(e, a, v, r.db.max_tx, added) for e, a, v, added in local)
            if r is not None:
                self._changed_to(before, r, "scopes", None, tx_data=tx_data)
            self._answer_scopes(data["req"], tx_data)
        elif kind == "scopes-rejected":
            self._answer_scopes(data["req"], ScopesRefused(data["code"], data["message"]))
        elif kind == "tx-unknown":
            p = self._pending.pop(data["req"], None)
            if p is not None:
                p._settle(None, TxOutcomeUnknown(data["req"], self._close_why or "connection lost"))
        elif kind == "resync":
            self.stats.resyncs += 1
            log.info("resync", extra={"url": self.url, "reason": data["reason"]})
        elif kind == "error":
            prev = self.stats.last_error
            # a refusal comes with two errors: the server's detailed one first, keep that
            if prev is None or prev[0] != data["code"] or data["code"] not in FATAL_CODES:
                self.stats.last_error = (data["code"], data["message"])
            log.warning("server error", extra={"url": self.url, "code": data["code"], "detail": data["message"]})
        elif kind == "closed":
            self.stats.disconnects += 1
            self.stats.last_close = self._close_why or data.get("reason")
            self._changes.pulse()

    def _answer_scopes(self, req: Any, outcome: Any) -> None:
        slot = self._scoping.pop(req, None)
        if slot is not None:
            slot[1] = outcome
            slot[0].set()

    def _persist(self, kind: str, data: Any) -> None:
        """Keep the replica and the queue on disk as they change (before a queued submission is sent)."""
        store = self.store
        assert store is not None
        if kind == "tx-queued":
            store.enqueue(Queued(data["req"], data["seq"], data["tx_data"]))
        elif kind in ("tx-ok", "tx-rejected") and data.get("seq") is not None:
            store.settle(data["seq"])
        elif kind == "delta":
            store.add_delta(data["delta"])
            if not self.keep_history and store.deltas >= COMPACT_EVERY:
                self._write_base_soon(data["replica"])
        elif kind == "synced" or kind == "scopes-ok":
            if kind == "scopes-ok":
                store.set_view("")  # the base is of the old scopes until the new one is written
            if data["replica"] is not None:  # (None: a snapshot under the new scopes follows)
                store.clear_deltas()
                self._write_base_soon(data["replica"])

    def _write_base_soon(self, replica: Any) -> None:
        """Write ``replica`` as the store's base, made in a worker thread (a large replica takes a
        while to encode; the replica keeps running meanwhile)."""
        wanted = self._base_wanted
        self._base_wanted = replica
        self._base_view = view_key(self.session.config.credentials)
        if wanted is None and self._tasks is not None:
            self._tasks.start_soon(self._write_base)

    async def _write_base(self) -> None:
        while self._base_wanted is not None and self.store is not None:
            replica = self._base_wanted
            head, chunk = await trio.to_thread.run_sync(base_messages, replica)
            if self.store is None:
                return
            self.store.write_base(replica.t, head, chunk, self._base_view)
            if self._base_wanted is replica:
                self._base_wanted = None

    def _event(self, kind: str, pending: PendingTx, before: Any, after: Any, error: Any = None) -> None:
        """Tell listeners about one of this application's own transactions (``local``,
        ``rejected``): the view before and after."""
        if not self._listeners:
            return
        change = ReplicaChange(None if before is None else before.view, None if after is None else after.view,
                               self.t, kind, None, (), pending, error)
        for fn in tuple(self._listeners):
            try:
                fn(change)
            except Exception:
                log.exception("replica listener failed")

    def _changed_to(self, before: Any, replica: Any, kind: str, delta: Any, pending: Any = None, *,
                    tx_data: tuple = (), pending_changed: bool = True) -> None:
        if pending_changed and replica.pending and self._pending:  # re-based: provisional ids and conflicts may change
            by_seq = {p.seq: p for p in self._pending.values()}
            for core in replica.pending:
                p = by_seq.get(core.seq)
                if p is not None and core.client == self.client_id:
                    p.tempids, p.conflict = dict(core.tempids), core.conflict
        if self._listeners:
            if delta is not None:
                local = datoms_to_local(replica.eids, replica.refs, delta.datoms)[1]
                tx_data = tuple(Datom(e, a, v, delta.tx, added) for e, a, v, added in local)
            change = ReplicaChange(None if before is None else before.view, replica.view, replica.t, kind, delta,
                                   tx_data, pending)
            for fn in tuple(self._listeners):
                try:
                    fn(change)
                except Exception:
                    log.exception("replica listener failed")
        if self._waiters:
            keep = []
            for t, event in self._waiters:
                if t <= replica.t:
                    event.set()
                else:
                    keep.append((t, event))
            self._waiters = keep
        self._changes.pulse()

    # -- waiting -------------------------------------------------------------------------------

    def _check_usable(self) -> None:
        if self._failure is not None:
            raise self._failure
        if self._closing:
            raise ReplicaClosed("the replica is closed", "sync/closed")

    async def _until_usable(self) -> None:
        while True:
            self._check_usable()
            s = self.session
            if s.replica is not None and s.phase in (LIVE, BOOTSTRAPPING):
                return
            await self._changes.wait()

    @property
    def failure(self) -> BaseException | None:
        """Why the replica gave up for good (refused credentials, another protocol version, an
        untrusted certificate, reconnect=False), or None while it is usable or reconnecting."""
        return None if isinstance(self._failure, ReplicaClosed) and self._closing else self._failure

    def _fail(self, error: BaseException) -> None:
        if self._failure is None:
            self._failure = error
            if not self._closing and self._listeners:  # a fatal error reaches the application at once
                db = self.db
                change = ReplicaChange(db, db, self.t, "failed", None, (), None, error)
                for fn in tuple(self._listeners):
                    try:
                        fn(change)
                    except Exception:
                        log.exception("replica listener failed")
        for _, event in self._waiters:
            event.set()
        self._waiters = []
        for slot in self._scoping.values():
            slot[0].set()
        self._scoping = {}
        kept = self.store.path if self.store is not None else None
        for p in list(self._pending.values()):
            if kept is not None and p.seq is not None:  # on disk: sent when the replica is opened again
                p._settle(None, ReplicaClosed(f"the replica closed before the server answered; the transaction "
                                              f"stays queued in {kept} and is sent when it is opened again",
                                              "sync/closed"))
            else:
                p._settle(None, TxOutcomeUnknown(p.req, str(error)))
        self._changes.pulse()


def server_urls(url: str | Sequence[str]) -> tuple[str, ...]:
    """One server URL or several (processes sharing one store), as a non-empty tuple."""
    urls = (url,) if isinstance(url, str) else tuple(url)
    if not urls:
        raise ValueError("connect needs at least one server URL")
    return urls


_CONNECTION_ERRORS = (OSError, trio.BrokenResourceError, trio.ClosedResourceError)
"""What ends one connection (``WebSocketClosed``, ``WebSocketRejected`` and the handshake's errors are
``OSError``s): the replica reconnects, unless ``_fatal_error`` says it cannot help."""


async def _check_certificate(url: str, context: ssl.SSLContext, timeout: float) -> None:
    """A TLS handshake with the server of a ``wss://`` url, so that a certificate this side does not
    trust fails here at once (trio-websocket would wait out its connect timeout instead)."""
    parts = urllib.parse.urlsplit(url)
    with trio.move_on_after(timeout) as scope:
        stream = await trio.open_ssl_over_tcp_stream(parts.hostname or "", parts.port or 443, ssl_context=context,
                                                      https_compatible=True)
        try:
            await stream.do_handshake()
        finally:
            with suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                await trio.aclose_forcefully(stream)
    if scope.cancelled_caught:
        raise OSError(f"no TLS handshake with {parts.netloc} within {timeout:g} s")


def _certificate_error(error: BaseException | None) -> ssl.SSLCertVerificationError | None:
    """The certificate verification failure behind ``error`` (trio wraps it), if that is what it is."""
    seen = 0
    while error is not None and seen < 8:
        if isinstance(error, ssl.SSLCertVerificationError):
            return error
        error = error.__cause__ or error.__context__
        seen += 1
    return None


def _leaves(group: BaseExceptionGroup) -> list[BaseException]:
    out: list[BaseException] = []
    for e in group.exceptions:
        out.extend(_leaves(e) if isinstance(e, BaseExceptionGroup) else [e])
    return out


@asynccontextmanager
async def open_replica(
    url: str | Sequence[str],
    *,
    token: str | None = None,
    id_cap: int | None = None,
    reconnect: bool = True,
    on_progress: Callable[[int, int], Any] | None = None,
    **options: Any,
) -> AsyncIterator[ReplicaConnection]:
    """A live replica of the server at ``url`` for the duration of the ``async with`` block; entered
    once the replica holds the server's database (after a bootstrap). ``url`` may be a list: server
    processes sharing one store, tried in turn; the replica fails over to the next and resumes there.
    ``token``: the server's token (servers without one accept loopback clients only). ``id_cap``:
    hold entity ids below it (``EidMap.capped``; None: the server's ids). ``reconnect``: reconnect
    with exponential backoff (``backoff=(first, max)`` seconds, jitter from ``rng``, a
    ``random.Random``) and resume from the replica's ``t``. Other options: ``heartbeat_interval``,
    ``heartbeat_timeout``, ``connect_timeout``, ``max_message_size``, ``max_pending``, ``on_progress(datoms, total)``
    (bootstrap progress), ``replica`` (a ``Replica`` value kept from an earlier connection, e.g.
    ``rep.replica``: resumed from its ``t`` when the server still has its database), ``ca`` (a PEM
    file of the CAs to trust for ``wss://``; default the system's) or ``ssl_context``, ``scopes``
    (under a server's policy: ``[("team", ["red"])]``, the scopes to hold; docs/security.md).
    A certificate that is not trusted fails at once, without retrying (``sync/untrusted-certificate``).
    Raises ``Unauthorized`` if the server refuses the credentials, ``ReplicaClosed`` if the first
    connection fails and ``reconnect`` is False (bound the wait with ``trio.fail_after``)."""
    rep = ReplicaConnection(url, token=token, id_cap=id_cap, reconnect=reconnect, on_progress=on_progress, **options)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(rep.run)
            try:
                yield rep
            finally:
                await rep.aclose()
    except BaseExceptionGroup as group:
        leaves = _leaves(group)
        if len(leaves) == 1:
            raise leaves[0] from None
        raise


# ------------------------------------------------------------------------------------------------
# The blocking facade


class Replica:
    """A replica for scripts and notebooks: the trio replica in a background thread, with the same
    API without ``await`` (create with ``connect``). Listeners run in that background thread."""

    def __init__(self, url: str | Sequence[str], *, token: str | None = None, timeout: float | None = 10.0,
                 **options: Any):
        self.urls = server_urls(url)
        self._rep: ReplicaConnection | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._scope: trio.CancelScope | None = None
        self._stop: trio.Event | None = None
        self._closed = False
        self._thread = threading.Thread(target=trio.run, args=(self._main, url, token, options),
                                        name=f"datsync replica {self.urls[0]}", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            last = None
            if self._rep is not None:
                last = self._rep.stats.last_close or self._rep.stats.last_error
            self.close()
            raise ReplicaConnectionError(f"could not connect to {' or '.join(self.urls)} within {timeout} s"
                                         f"{f' (last: {last})' if last else ''}", "sync/connect-timeout")
        if self._error is not None:
            self._thread.join()
            raise self._error

    async def _main(self, url: str | Sequence[str], token: str | None, options: dict) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._stop = trio.Event()
        with trio.CancelScope() as self._scope:
            try:
                rep = ReplicaConnection(url, token=token, **options)
                self._rep = rep
                async with trio.open_nursery() as nursery:
                    await nursery.start(rep.run)
                    self._ready.set()
                    await self._stop.wait()
                    await rep.aclose()
            except BaseExceptionGroup as group:
                leaves = _leaves(group)
                self._error = leaves[0] if len(leaves) == 1 else group
            except Exception as e:
                self._error = e
            finally:
                self._ready.set()

    def _call(self, fn: Callable, *args: Any, timeout: float | None = None) -> Any:
        if self._closed or self._token is None or self._rep is None:
            raise ReplicaClosed("the replica is closed", "sync/closed")

        async def call() -> Any:
            if timeout is None:
                return await fn(*args)
            with trio.fail_after(timeout):
                return await fn(*args)

        try:
            return trio.from_thread.run(call, trio_token=self._token)
        except trio.TooSlowError:
            raise TimeoutError(f"{getattr(fn, '__name__', 'call')} did not finish within {timeout} s") from None
        except trio.RunFinishedError:
            raise ReplicaClosed("the replica is closed", "sync/closed") from None

    @property
    def db(self) -> Any:
        """The replica's current database value (DataScript flavor)."""
        return self._rep.db if self._rep is not None else None

    @property
    def t(self) -> int:
        return self._rep.t if self._rep is not None else -1

    @property
    def db_id(self) -> str | None:
        return self._rep.db_id if self._rep is not None else None

    @property
    def replica(self) -> Any:
        return self._rep.replica if self._rep is not None else None

    @property
    def stats(self) -> ReplicaStats:
        assert self._rep is not None
        return self._rep.stats

    @property
    def connected(self) -> bool:
        return self._rep is not None and self._rep.connected

    @property
    def failure(self) -> BaseException | None:
        """``ReplicaConnection.failure``: why the replica gave up for good, or None."""
        return self._rep.failure if self._rep is not None else None

    def transact(self, tx_data: Any, *, timeout: float | None = None) -> TxResult:
        """``ReplicaConnection.transact`` (``TimeoutError`` after ``timeout`` seconds: the outcome is
        then unknown, as for a dropped connection)."""
        assert self._rep is not None
        return self._call(self._rep.transact, tx_data, timeout=timeout)

    def submit(self, tx_data: Any) -> SubmittedTx:
        """``ReplicaConnection.submit``: returns at once; ``.result(timeout=None)`` blocks for the
        server's answer."""
        assert self._rep is not None
        return SubmittedTx(self, self._call(self._rep.submit, tx_data))

    def set_scopes(self, scopes: Sequence[tuple[str, Sequence[Any]]], *, timeout: float | None = None) -> tuple:
        """``ReplicaConnection.set_scopes``: hold ``scopes`` instead (under the server's policy)."""
        assert self._rep is not None
        return self._call(self._rep.set_scopes, scopes, timeout=timeout)

    @property
    def pending(self) -> tuple[SubmittedTx, ...]:
        """The submitted transactions not answered yet, oldest first."""
        return tuple(SubmittedTx(self, p) for p in self._rep.pending) if self._rep is not None else ()

    def resolve(self, eid: Any) -> Any:
        """``ReplicaConnection.resolve``."""
        return self._rep.resolve(eid) if self._rep is not None else eid

    def as_of(self, t: Any) -> Any:
        """``ReplicaConnection.as_of``."""
        assert self._rep is not None
        return self._rep.as_of(t)

    def since(self, t: Any) -> Any:
        """``ReplicaConnection.since``."""
        assert self._rep is not None
        return self._rep.since(t)

    def history(self) -> Any:
        """``ReplicaConnection.history``."""
        assert self._rep is not None
        return self._rep.history()

    def wait_for_t(self, t: int, *, timeout: float | None = None) -> None:
        """Block until the replica reflects ``t`` (``TimeoutError`` after ``timeout`` seconds)."""
        assert self._rep is not None
        if self._rep.t >= t:
            return
        self._call(self._rep.wait_for_t, t, timeout=timeout)

    def listen(self, fn: Callable[[ReplicaChange], Any]) -> Callable[[], None]:
        """``fn(change)`` after every change; runs in the replica's background thread."""
        if self._rep is None:
            raise ReplicaClosed("the replica is closed", "sync/closed")
        return self._rep.listen(fn)

    def close(self) -> None:
        """Close the connection and stop the background thread (idempotent)."""
        if self._closed:
            return
        self._closed = True
        token = self._token
        if token is not None and self._thread.is_alive():
            def stop() -> None:
                if self._stop is not None and self._rep is not None and self._ready.is_set():
                    self._stop.set()
                elif self._scope is not None:
                    self._scope.cancel()

            with suppress(trio.RunFinishedError):
                trio.from_thread.run_sync(stop, trio_token=token)
        self._thread.join(timeout=10.0)

    def __enter__(self) -> Replica:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def url(self) -> str:
        """The server URL in use (or tried next)."""
        return self._rep.url if self._rep is not None else self.urls[0]

    def __repr__(self) -> str:
        return f"<Replica {self.url} t={self.t}{'' if self.connected else ' (disconnected)'}>"


class SubmittedTx:
    """A ``PendingTx`` for blocking code: the same fields, and ``result(timeout=None)`` blocks."""

    def __init__(self, replica: Replica, pending: PendingTx):
        self._replica = replica
        self.pending = pending

    def __getattr__(self, name: str) -> Any:
        if name in ("req", "seq", "tx_data", "tempids", "status", "conflict"):
            return getattr(self.pending, name)
        raise AttributeError(name)

    def result(self, timeout: float | None = None) -> TxResult:
        """Block until the server answered: the ``TxResult``, or its ``TxError`` (``TimeoutError``
        after ``timeout`` seconds: the transaction stays queued)."""
        if self.pending.done.is_set():
            if self.pending.error is not None:
                raise self.pending.error
            assert self.pending.outcome is not None
            return self.pending.outcome
        return self._replica._call(self.pending.result, timeout=timeout)

    def __repr__(self) -> str:
        return repr(self.pending)


def connect(
    url: str | Sequence[str],
    *,
    token: str | None = None,
    timeout: float | None = 10.0,
    on_progress: Callable[[int, int], Any] | None = None,
    **options: Any,
) -> Replica:
    """A blocking replica of the server at ``url`` (or of the first of several that answers), once it
    holds the server's database (at most ``timeout`` seconds: else ``ReplicaConnectionError``).
    ``on_progress(datoms, total)`` is called as the bootstrap snapshot arrives (in the replica's
    thread). Same options as ``open_replica``."""
    return Replica(url, token=token, timeout=timeout, on_progress=on_progress, **options)


__all__ = [
    "PendingTx",
    "Replica",
    "SubmittedTx",
    "ReplicaChange",
    "ReplicaClosed",
    "ReplicaConnection",
    "ReplicaConnectionError",
    "ReplicaStats",
    "TxOutcomeUnknown",
    "TxResult",
    "Unauthorized",
    "connect",
    "open_replica",
]
