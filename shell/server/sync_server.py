"""The server: the Connection (the one reference to the server database), the fan-out of committed
transactions to every session, checkpoints, the listeners and each TCP connection (connection
limits, TLS, the HTTP head, the WebSocket upgrade), health and shutdown."""

from __future__ import annotations

import collections
import contextlib
import gc
import itertools
import os
import signal
import ssl
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import h11
import trio

from datsync.core import TxError
from datsync.core.history import basis_t
from datsync.core.sync import (
    DEFAULT_MAX_SIZE,
    PROTOCOL_VERSION,
    Delta,
    RequestTransact,
    ServerConfig,
    TxAccepted,
    TxCommitted,
    TxCommittedBatch,
    TxFailed,
    decode,
)

from ..access import Access
from ..changes import ChangeSignal
from ..connection import Connection
from ..jwt_auth import JwtAuth
from ..limits import CONNECTIONS, ConnectionCounts, Limits, ThrottledLog
from ..store import Store, StoreError, is_store_url, open_store
from .auth import is_loopback
from .frames import WS_CLOSE_CODES, ws_frame
from .http import BadRequest, HttpRequest, answer, http_connection, linger, read_request, respond
from .lock import StoreLock
from .logs import log
from .readers import Readers
from .schema_file import schema_is_installed, schema_tx_from_edn
from .session import _Session
from .stream import _Prefixed
from .ws import ServerWebSocket, handshake_refusal, upgrade_leftover

FRAME_CACHE = 256
"""Recent shared deltas whose WebSocket frame is kept, so each is framed once for every session."""


class SyncServer:
    """A running sync server (``serve`` builds one; ``task_status.started`` hands it over)."""

    def __init__(
        self,
        store_path: str | Path,
        *,
        host: str,
        port: int,
        schema_file: str | Path | None,
        static_dir: str | Path | None = None,
        token: str | None,
        checkpoint_every: int,
        max_message_size: int,
        config: ServerConfig,
        handle_signals: bool,
        shutdown_timeout: float,
        listen_buffer: int,
        banner: Callable[[str], None] | None,
        limits: Limits | None = None,
        tls: ssl.SSLContext | None = None,
        jwt: JwtAuth | None = None,
        access: Access | None = None,
        checkpoint_growth: float = 0.5,
        freeze_recovered: bool = False,
    ):
        self.store_path = store_path
        self.access = access
        self.host = host
        self.port = port
        self.schema_file = schema_file
        self.static_dir = Path(static_dir) if static_dir is not None else None
        self.token = token
        self.checkpoint_every = checkpoint_every
        self.checkpoint_growth = checkpoint_growth
        self.freeze_recovered = freeze_recovered
        self.max_message_size = max_message_size
        self.ws_max_message_size = 2 * max_message_size
        self.config = config
        self.handle_signals = handle_signals
        self.shutdown_timeout = shutdown_timeout
        self.close_timeout = 2.0
        self.handshake_timeout = config.handshake_timeout
        self.listen_buffer = listen_buffer
        self.banner = banner
        self.limits = limits or Limits()
        self.tls = tls
        self.jwt = jwt
        self.connections = ConnectionCounts(self.limits)
        self.throttled = ThrottledLog(log)
        self.closed_by_code: collections.Counter = collections.Counter()
        self.url = ""
        self.started_at = time.time()
        self.sessions: dict[int, _Session] = {}
        self.counters: collections.Counter = collections.Counter()
        self.fed_t = 0
        self.frozen = False
        self.stopping = False
        self.stopped = trio.Event()
        self._ids = itertools.count(1)
        self._recent: collections.deque[tuple[Delta, bytes]] = collections.deque(maxlen=config.max_buffered + 64)
        self.frames: dict[int, tuple[bytes, bytes]] = {}
        """Recent shared deltas' WebSocket frames, by the payload's identity (``_frame_once``)."""
        self._frame_order: collections.deque[bytes] = collections.deque()
        self._inflight_tx = 0
        self._changes = ChangeSignal()
        self._checkpoint_t = 0
        self._checkpointing = False
        self._lock: StoreLock | None = None
        self.store: Store | None = None
        self._readers: Readers | None = None
        self.conn: Connection = None  # type: ignore[assignment]
        self._root: trio.Nursery | None = None
        self._accept_scope = trio.CancelScope()
        self._final_scope = trio.CancelScope()
        self._conn_nursery: trio.Nursery | None = None
        self._started = False
        self._pending_stop: str | None = None

    @property
    def auth_mode(self) -> str:
        """How clients authenticate: ``token``, ``jwt``, ``token+jwt`` or ``loopback-only``."""
        modes = [m for m, on in (("token", self.token is not None), ("jwt", self.jwt is not None)) if on]
        return "+".join(modes) or "loopback-only"

    # -- start and stop --------------------------------------------------------------------------

    def _open(self) -> None:
        if not is_store_url(self.store_path):  # a file: one server at a time; a database server: many
            self._lock = StoreLock(self.store_path).acquire()
        try:
            self.store = open_store(self.store_path)
            self._readers = Readers(self.store)
            t0 = time.perf_counter()
            self.conn = Connection.recover(self.store)
            if self.freeze_recovered:  # kept for long, freed by reference counts: no collection need scan it
                gc.freeze()
            cp = self.store.latest_checkpoint()
            self._checkpoint_t = cp[0] if cp else 0
            self.fed_t = self.conn.t
            self.config = replace(self.config, db_id=self.store.db_id)
            log.info("store opened", extra={"store": self.store.location, "t": self.conn.t,
                                            "checkpoint_t": self._checkpoint_t, "db_id": self.config.db_id,
                                            "recovery_s": round(time.perf_counter() - t0, 3)})
        except BaseException:
            self._close_store()
            raise

    def _close_store(self) -> None:
        if self._readers is not None:
            self._readers.close()
        if self.store is not None:
            try:
                self.store.close()
            except Exception:
                log.exception("closing the store failed")
        self._readers = self.store = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    async def run(self, *, task_status: trio.TaskStatus = trio.TASK_STATUS_IGNORED) -> None:
        signals = (trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) if self.handle_signals
                   else contextlib.nullcontext(None))
        with signals as signal_aiter:  # held to the end: a signal during the final checkpoint is ours too
            self._open()
            try:
                async with trio.open_nursery() as outer:
                    if signal_aiter is not None:
                        outer.start_soon(self._signals, signal_aiter)
                    await self._serve(task_status)
                    # every task is done: the writer is stopped, no transaction is in flight
                    with self._final_scope:
                        if self.conn.t > self._checkpoint_t and await self._checkpoint_needed():
                            t = await self.conn.checkpoint()
                            log.info("checkpoint written", extra={"t": t})
                    outer.cancel_scope.cancel()
            finally:
                self._close_store()
                self.stopped.set()
                log.info("stopped", extra={"t": self.conn.t if self.conn is not None else None})

    async def _serve(self, task_status: trio.TaskStatus) -> None:
        async with trio.open_nursery() as root:
            self._root = root
            self.conn.on_answers = self._answer
            await root.start(self.conn.run_writer)
            await root.start(self._fanout)
            if self.store_shared:  # other processes commit too: follow them
                await root.start(self.conn.follow)
            if self.schema_file is not None:
                await self._install_schema(self.schema_file)
            if not self._checkpointing and self._checkpoint_due(self.conn.t):
                self._start_checkpoint()
            listeners = await self._listen()
            await root.start(self._connections)
            root.start_soon(self._accept, listeners)
            if self.banner is not None:
                self.banner(f"datsync serving {self.url} store={self.store.location} t={self.conn.t} "
                            f"health={self.url.replace('ws', 'http', 1)}health")
            log.info("serving", extra={"url": self.url, "auth": self.auth_mode})
            task_status.started(self)
            self._started = True
            if self._pending_stop is not None:
                root.start_soon(self.shutdown, self._pending_stop)

    async def _listen(self) -> list[trio.SocketListener]:
        listeners = await trio.open_tcp_listeners(self.port, host=self.host)
        if self.port == 0 and len(listeners) > 1:  # several addresses would get different ports
            for extra in listeners[1:]:
                await extra.aclose()
            listeners = listeners[:1]
        host, port = listeners[0].socket.getsockname()[:2]
        self.port = port
        scheme = "wss" if self.tls is not None else "ws"
        self.url = f"{scheme}://[{host}]:{port}/" if ":" in host else f"{scheme}://{host}:{port}/"
        if self.token is None and self.jwt is None and not is_loopback(host):
            log.warning("no token configured: only loopback clients will be accepted", extra={"host": host})
        return listeners

    async def _accept(self, listeners: list[trio.SocketListener]) -> None:
        try:
            with self._accept_scope:
                await trio.serve_listeners(self._handle_stream, listeners, handler_nursery=self._conn_nursery)
        finally:
            with trio.CancelScope(shield=True):
                for listener in listeners:
                    await listener.aclose()

    async def _connections(self, *, task_status: trio.TaskStatus = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._conn_nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    async def _signals(self, signal_aiter: Any) -> None:
        async for signum in signal_aiter:
            name = signal.Signals(signum).name
            if self._root is None or not self._started:  # still starting: shut down once serving
                log.info("signal received while starting: shutting down once started", extra={"signal": name})
                self._pending_stop = name
            elif not self.stopping:
                log.info("signal received: shutting down", extra={"signal": name})
                self._root.start_soon(self.shutdown, name)
            else:
                log.warning("second signal: stopping now, without a final checkpoint", extra={"signal": name})
                self._final_scope.cancel()
                self._force_stop()

    def _force_stop(self) -> None:
        if self._root is not None:
            self._root.cancel_scope.cancel()

    async def shutdown(self, reason: str = "requested") -> None:
        """Graceful shutdown: stop accepting, take no more requests, let in-flight commits finish and
        reach every session, close the sessions with going-away, stop the writer; ``run`` then writes
        a checkpoint and closes the store."""
        if self.stopping:
            return
        self.stopping = True
        self._accept_scope.cancel()
        self.frozen = True
        with trio.move_on_after(self.shutdown_timeout) as scope:
            await self._changes.until(lambda: self._inflight_tx == 0)
            await self._changes.until(lambda: self.fed_t >= self.conn.t)
            for s in list(self.sessions.values()):
                s.shutdown()
            await self._changes.until(lambda: not self.sessions)
        if scope.cancelled_caught:
            log.warning("shutdown timed out; closing what is left", extra={"sessions": len(self.sessions),
                                                                           "inflight_tx": self._inflight_tx})
        log.info("sessions closed; stopping", extra={"reason": reason, "t": self.conn.t})
        self._force_stop()

    # -- schema ----------------------------------------------------------------------------------

    async def _install_schema(self, path: str | Path) -> None:
        tx = schema_tx_from_edn(Path(path).read_text())
        if schema_is_installed(self.conn.db, tx):
            log.info("schema already installed", extra={"schema": str(path), "attributes": len(tx)})
            return
        report = await self.conn.transact(tx)
        log.info("schema installed", extra={"schema": str(path), "attributes": len(tx),
                                            "t": basis_t(report.db_after)})

    # -- committed transactions to every session -------------------------------------------------

    async def _fanout(self, *, task_status: trio.TaskStatus = trio.TASK_STATUS_IGNORED) -> None:
        channel = self.conn.listen(self.listen_buffer)
        task_status.started()
        while True:
            async for c in channel:
                commits = [c]  # and every commit already waiting: a group commit goes out together
                while True:
                    try:
                        commits.append(channel.receive_nowait())
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break
                await self._feed_commits(commits)
            # the channel was closed: this task fell `listen_buffer` commits behind. Listen again, then
            # deliver what was missed from the log (commits made meanwhile are in the new channel).
            self.counters["fanout_overflows"] += 1
            log.warning("fan-out fell behind; delivering the missed commits from the log",
                        extra={"fed_t": self.fed_t, "t": self.conn.t})
            channel = self.conn.listen(self.listen_buffer)
            await self._repair_feed(self.conn.t)

    async def _feed_commits(self, commits: list) -> None:
        """Deliver ``commits`` (``Committed``, in ``t`` order) after what was fed: runs of consecutive
        ones together."""
        run: list = []
        for c in commits:
            t = c.delta.t
            last = run[-1].delta.t if run else self.fed_t
            if t <= last:
                continue
            if t != last + 1:  # cannot happen (the writer notifies in order); repair anyway
                self._deliver_run(run)
                run = []
                await self._repair_feed(t - 1)
                if t != self.fed_t + 1:
                    continue
            run.append(c)
        self._deliver_run(run)

    def _deliver_run(self, commits: list) -> None:
        """Deliver consecutive commits: each session steps once for all of them (and writes once),
        unless a policy routes each commit to the sessions' views."""
        if len(commits) <= 1 or (self.access is not None and self.access.policy is not None):
            for c in commits:
                self._deliver(c.delta, c.payload, own=c.report is not None, report=c.report)
            return
        for c in commits:
            self._recent.append((c.delta, c.payload))
        self.fed_t = commits[-1].delta.t
        if len(self.sessions) > 1:
            for c in commits:
                self._frame_once(c.payload)
        event = TxCommittedBatch(tuple(TxCommitted(c.delta, c.payload) for c in commits))
        for s in list(self.sessions.values()):
            s.feed(event)
        own = any(c.report is not None for c in commits)
        self._maybe_checkpoint(own)
        self._changes.pulse()

    async def _repair_feed(self, to_t: int) -> None:
        while self.fed_t < to_t:
            batch = await self._read_store(self.fed_t, min(to_t, self.fed_t + 1000))
            if not batch:
                raise RuntimeError(f"the log has no transaction after t={self.fed_t}")
            for d, payload in batch:
                if d.t == self.fed_t + 1:
                    self._deliver(d, payload, own=False)

    def _deliver(self, d: Delta, payload: bytes, *, own: bool = True, report: Any = None) -> None:
        self._recent.append((d, payload))
        self.fed_t = d.t
        if self.access is not None and self.access.policy is not None:
            self._route(d, report)
        if len(self.sessions) > 1:
            self._frame_once(payload)
        event = TxCommitted(d, payload)
        for s in list(self.sessions.values()):
            s.feed(event)
        self._maybe_checkpoint(own)
        self._changes.pulse()

    def _maybe_checkpoint(self, own: bool) -> None:
        # On a shared store the process whose commit crosses the mark checkpoints, not every process.
        if not self._checkpointing and (own or not self.store_shared) and self._checkpoint_due(self.fed_t):
            self._start_checkpoint()

    def _checkpoint_due(self, t: int) -> bool:
        """Is a checkpoint due at ``t``: ``checkpoint_every`` transactions after the last one, once the
        log after it holds ``checkpoint_growth`` times the events the checkpoint holds? A checkpoint
        writes the whole history, so checkpoints at a fixed interval would cost ever more per
        transaction as the database grows; this way they cost in all a bounded multiple of the events
        written, and start-up replays at most about that share of the checkpoint from the log."""
        conn = self.conn
        return (t - self._checkpoint_t >= self.checkpoint_every
                and conn.events - conn.checkpoint_events >= self.checkpoint_growth * conn.checkpoint_events)

    def _route(self, d: Delta, report: Any) -> None:
        """Route a commit to the sessions under the policy; close those whose view cannot follow."""
        assert self.access is not None
        sessions = [s for s in self.sessions.values() if s.share is not None and not s.closed]
        lost = self.access.route([s.share for s in sessions], d, report)  # type: ignore[misc]
        for s in sessions:
            if any(s.share is x for x in lost):
                log.info("session view lost; closing it to bootstrap again", extra={"session": s.id, "t": d.t})
                s.abort("policy/resync", "the view cannot follow this commit: reconnect")

    def _frame_once(self, payload: bytes) -> None:
        """Frame a delta every session may get once; session writers find it by identity."""
        frames, order = self.frames, self._frame_order
        if len(order) >= FRAME_CACHE:
            frames.pop(id(order.popleft()), None)
        frames[id(payload)] = (payload, ws_frame(payload))
        order.append(payload)

    # -- effects that need the store or the writer -----------------------------------------------

    def frame_of(self, payload: bytes) -> bytes:
        """``payload``'s WebSocket frame: the shared one when the fan-out framed it, else a new one."""
        cached = self.frames.get(id(payload))
        return cached[1] if cached is not None and cached[0] is payload else ws_frame(payload)

    async def read_deltas(self, from_t: int, to_t: int) -> tuple[tuple[Delta, bytes], ...]:
        """The deltas ``from_t < t <= to_t`` with their stored bytes: from memory when recent, else
        from the store's log (read and decoded in a worker thread)."""
        recent = self._recent
        if to_t <= from_t:
            return ()
        if recent and recent[0][0].t <= from_t + 1 and recent[-1][0].t >= to_t:
            start = from_t + 1 - recent[0][0].t
            return tuple(itertools.islice(recent, start, start + to_t - from_t))
        self.counters["log_reads"] += 1
        return await self._read_store(from_t, to_t)

    async def _read_store(self, from_t: int, to_t: int) -> tuple[tuple[Delta, bytes], ...]:
        assert self._readers is not None

        def read(reader: Store) -> tuple[tuple[Delta, bytes], ...]:
            entries = reader.read_log(from_t, limit=to_t - from_t)
            return tuple((decode(e.payload, max_size=max(len(e.payload), DEFAULT_MAX_SIZE)), e.payload)
                         for e in entries)

        deltas = await self._readers.run(read)
        # the log holds deltas without their origin: give each submission's back (its client's
        # session sends it; the others strip it)
        origin_at = self.conn.origin_at
        return tuple((d if (o := origin_at(d.t)) is None else replace(d, origin=o), p) for d, p in deltas)

    def start_transact(self, session: _Session, f: RequestTransact) -> None:
        self._inflight_tx += 1
        # queued now, in the order the session asked: one client's submissions commit in order
        check = self.access.write_check(session.principal) if self.access is not None else None
        self.conn.enqueue(f.tx_data, f.submission, check=check, context=(session, f))

    def _answer(self, tickets: list) -> None:
        """The answers of one committed batch (``Connection.on_answers``), each to its session; a
        session's answers leave in one write."""
        held = []
        for ticket in tickets:
            session, f = ticket.context
            if not session.closed and session.hold():
                held.append(session)
            try:
                answer = self.conn.answer(ticket)
            except TxError as e:
                self.counters["tx_rejected"] += 1
                session.feed(TxFailed(f.req, e.code, e.message))
            except Exception as e:
                log.exception("transaction failed", extra={"session": session.id})
                self.counters["tx_rejected"] += 1
                session.feed(TxFailed(f.req, "db.error/internal", f"{type(e).__name__}: {e}"))
            else:
                if answer.duplicate:
                    self.counters["tx_resubmitted"] += 1
                self.counters["tx_committed"] += 1
                session.feed(TxAccepted(f.req, answer.t, answer.tempids))
        for session in held:
            session.release()
        self._inflight_tx -= len(tickets)
        self._changes.pulse()

    def _start_checkpoint(self) -> None:
        assert self._root is not None
        self._checkpointing = True
        self._root.start_soon(self._checkpoint)

    @property
    def store_shared(self) -> bool:
        """Do other processes write to this server's store (PostgreSQL)?"""
        return self.store is not None and self.store.shared

    async def _checkpoint_needed(self) -> bool:
        """False when another process sharing the store wrote a checkpoint since which none is due
        yet (``_checkpoint_due``), or the store cannot be read now."""
        if not self.store_shared:
            return True
        try:
            latest = (await self._store_stats())["checkpoint_t"]
        except StoreError:
            return False
        if latest > self._checkpoint_t:  # another process wrote it: about as many events as ours now
            self._checkpoint_t, self.conn.checkpoint_events = latest, self.conn.events
        return self._checkpoint_due(self.conn.t)

    async def _checkpoint(self) -> None:
        try:
            t0 = time.perf_counter()
            if not await self._checkpoint_needed():
                return
            t = await self.conn.checkpoint()
            self._checkpoint_t = t
            self.counters["checkpoints"] += 1
            log.info("checkpoint written", extra={"t": t, "events": self.conn.checkpoint_events,
                                                  "seconds": round(time.perf_counter() - t0, 3)})
        except Exception:
            log.exception("checkpoint failed")
        finally:
            self._checkpointing = False

    # -- connections -----------------------------------------------------------------------------

    async def _start_tls(self, raw: trio.SocketStream, peer: Any) -> trio.SSLStream | None:
        """The TLS side of a new connection, or None (after answering) when it does not speak TLS or
        its handshake fails."""
        assert self.tls is not None
        first = await raw.receive_some(1)
        if not first:
            return None
        if first[0] != 0x16:  # not a TLS handshake record: a plain HTTP or ws:// client
            self.counters["tls_refused"] += 1
            self.throttled.warning("tls/plain", "plain connection refused: this server speaks TLS only", peer=peer[0])
            await respond(raw, 400, "datsync: this server speaks TLS only: connect with wss:// (or https://)\n")
            return None
        stream = trio.SSLStream(_Prefixed(raw, first), self.tls, server_side=True, https_compatible=True)
        try:
            await stream.do_handshake()
        except trio.BrokenResourceError as e:
            self.counters["tls_failures"] += 1
            self.throttled.warning("tls/handshake", "TLS handshake failed", peer=peer[0], why=str(e.__cause__ or e))
            return None
        return stream

    async def _handle_stream(self, raw: trio.SocketStream) -> None:
        try:
            peer = raw.socket.getpeername()
        except OSError:
            await raw.aclose()
            return
        self.counters["connections"] += 1
        refused = self.connections.admit(peer[0])
        if refused is not None:
            self.counters["refused_connections"] += 1
            self.throttled.warning(CONNECTIONS, "connection refused: limit reached", peer=peer[0], why=refused)
            if self.tls is None:  # (a TLS client could not read a plain answer: it sees the connection close)
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    await respond(raw, 503, f"datsync: {CONNECTIONS}: {refused}\n")
            with trio.CancelScope(shield=True):
                await raw.aclose()
            return
        stream: trio.abc.Stream = raw
        http = http_connection()
        try:
            with trio.move_on_after(self.handshake_timeout) as scope:
                if self.tls is not None:
                    tls_stream = await self._start_tls(raw, peer)
                    if tls_stream is None:
                        return
                    stream = tls_stream
                _, request = await read_request(stream, http)
            if scope.cancelled_caught and self.tls is not None and stream is raw:  # no TLS yet: just close
                self.counters["handshake_timeouts"] += 1
                return
            if scope.cancelled_caught:
                self.counters["handshake_timeouts"] += 1
                self.throttled.warning("http/timeout", "connection closed: no request within the handshake timeout",
                                       peer=peer[0], timeout=self.handshake_timeout)
                await respond(stream, 408, f"datsync: no request within {self.handshake_timeout:g} s\n", http=http)
                return
            if request is None:
                return
            if type(request) is BadRequest:
                await respond(stream, request.status, f"datsync: bad HTTP request: {request.why}\n", http=http)
            elif request.is_upgrade:
                await self._websocket(stream, http, request, (peer[0], peer[1]))
            else:
                await answer(self, stream, http, request, peer[0])
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        finally:
            self.connections.release(peer[0])
            with trio.CancelScope(shield=True):
                await raw.aclose()

    async def _websocket(self, stream: trio.abc.Stream, http: h11.Connection, request: HttpRequest,
                         peer: tuple[str, int]) -> None:
        """Answer the opening handshake (or refuse it saying why), run the session, close."""
        refused = handshake_refusal(request)
        leftover = upgrade_leftover(http) if refused is None else None
        if refused is None and leftover is None:
            refused = (400, "a WebSocket upgrade has no body", [])
        if refused is not None:
            status, why, headers = refused
            await respond(stream, status, f"datsync: not a WebSocket handshake: {why}\n", http=http, headers=headers)
            return
        if self.stopping:
            await respond(stream, 503, "datsync: the server is shutting down\n", http=http)
            return
        ws = ServerWebSocket(_Prefixed(stream, leftover or b""), self.ws_max_message_size)
        with trio.move_on_after(self.handshake_timeout) as scope:
            await ws.accept(request.headers["sec-websocket-key"])
        if scope.cancelled_caught:
            return
        session = _Session(self, ws, peer, next(self._ids))
        self.sessions[session.id] = session
        self.counters["sessions"] += 1
        log.info("session opened", extra={"session": session.id, "peer": session.peer_str})
        try:
            await session.run()
        finally:
            self.sessions.pop(session.id, None)
            if not session.closed:
                session.abort("normal", "server task ended")
            with trio.CancelScope(shield=True):
                await ws.close(WS_CLOSE_CODES.get(session.close_code or "normal", 1000), session.close_reason,
                               self.close_timeout)
            self.closed_by_code[session.close_code or "normal"] += 1
            log.info("session closed", extra={"session": session.id, "code": session.close_code,
                                              "why": session.close_reason, "messages_in": session.messages_in,
                                              "messages_out": session.messages_out})
            self._changes.pulse()
        await linger(stream)

    async def _store_stats(self) -> dict:
        assert self._readers is not None
        return await self._readers.run(lambda reader: reader.stats())

    async def health(self, *, detail: bool = False) -> dict:
        """The health document (``GET /health``; ``detail`` adds every session: ``GET /status``)."""
        stats: dict = {}
        status = "stopping" if self.stopping else "ok"
        if self._readers is not None:
            try:
                stats = await self._store_stats()
            except StoreError as e:  # the database server is away: reads are still served, writes refused
                stats = {"error": f"{e.code}: {e.message}"}
                status = "stopping" if self.stopping else "store-unavailable"
        out = {
            "status": status,
            "db_id": self.config.db_id,
            "t": self.conn.t,
            "protocol": PROTOCOL_VERSION,
            "url": self.url,
            "uptime_s": round(time.time() - self.started_at, 3),
            "sessions": len(self.sessions),
            "auth": self.auth_mode,
            "tls": self.tls is not None,
            "store": stats,
            "counters": {**self.counters, "store_appends": self.conn.appends},
            "history_events": self.conn.events,
            "sessions_closed": dict(self.closed_by_code),
            "connections": self.connections.total,
            "limits": {**self.limits.as_dict(), "max_message_size": self.max_message_size,
                       "handshake_timeout": self.handshake_timeout, "max_pending_tx": self.config.max_pending_tx},
            "rss_bytes": _rss_bytes(),
        }
        if detail:  # GET /status: for whoever may connect a replica
            out["store"] = {"path": self.store.location if self.store else str(self.store_path), **stats}
            out["session_detail"] = [s.status() for s in self.sessions.values()]
            out["connection_detail"] = self.connections.status()
        return out


def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None
