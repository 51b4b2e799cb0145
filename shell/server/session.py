"""A WebSocket session: one connection's ``ServerSession`` value and the tasks carrying out its effects
(reading, writing the outbound queue, timers, log reads, authorization), with the shell's bounds on a
client that does not read."""

from __future__ import annotations

import collections
import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import trio

from datsync.core.errors import DatsyncError
from datsync.core.sync import (
    AuthDecision,
    Authorize,
    Close,
    Closed,
    Error,
    LogRead,
    Opened,
    Received,
    RequestLogRead,
    RequestScopes,
    RequestSnapshot,
    RequestTransact,
    Resync,
    ScopesDecided,
    Send,
    SendStream,
    SetTimer,
    SnapshotReady,
    Timer,
    Welcome,
    encode,
    encode_snapshot,
    new_server_session,
    receive,
    server_step,
)
from datsync.core.sync.errors import TOO_LARGE
from datsync.core.sync.evolve import evolve
from datsync.core.sync.messages import Ack, Ping, Pong, Submit, TxRejected
from datsync.core.sync.server import LIVE

from ..access import Access, SessionAccess
from ..limits import IDLE, RATE, RateBucket
from ..timer import SessionTimer
from ..websocket import (
    CLOSE_ABNORMAL,
    CLOSE_TOO_BIG,
    OP_PONG,
    CloseReceived,
    Violation,
    WebSocketClosed,
    close_name,
    frame,
)
from ..websocket import Ping as WsPing
from .auth import authorize, credential_token
from .frames import SHUTDOWN, TOO_SLOW, WS_CLOSE_CODES, _next_batch, ws_frame
from .logs import log
from .stream import _Prefixed
from .ws import ServerWebSocket

if TYPE_CHECKING:
    from .sync_server import SyncServer

MAX_RESYNCS_WITHOUT_ACK = 3
"""A session resynced this many times in a row without the client acknowledging anything is closed:
the client is not reading."""
COALESCE_BYTES = 256 << 10
"""Messages waiting for one client go out in one write up to this many bytes."""


@dataclass(frozen=True)
class _CloseMarker:
    code: str
    reason: str


class _Stream:
    """A ``SendStream``'s messages: produced lazily (in a worker thread: encoding a snapshot chunk is
    CPU work) by the connection's writer."""

    __slots__ = ("messages",)

    def __init__(self, messages: Any):
        self.messages = messages


class _Framed:
    """Frames ready to write as they are: a pong, or nothing (what the socket did not take of a direct
    write goes first)."""

    __slots__ = ("data",)

    def __init__(self, data: bytes | memoryview):
        self.data = data


class _Session:
    """One WebSocket connection: its ``ServerSession`` value and the tasks carrying out its effects."""

    def __init__(self, server: SyncServer, ws: ServerWebSocket, peer: tuple[str, int], sid: int):
        cfg = server.config
        self.server = server
        self.ws = ws
        self.stream = ws.stream
        self.peer = peer
        self.id = sid
        self.state = new_server_session(cfg, server.fed_t)
        self.capacity = cfg.window + cfg.max_pending_tx + cfg.max_errors + 64
        """High-water mark of the outbound queue: above it no further message is read from the client."""
        self.out_send, self.out_recv = trio.open_memory_channel[Any](math.inf)
        self.out_bytes = 0
        self.queued = 0
        """Items in the outbound queue (the writer's receive has not returned them yet)."""
        self._writer_idle = False
        """The writer waits for the queue and holds nothing: a frame may go straight to the socket."""
        self._drained: trio.Event | None = None
        self.timer = SessionTimer()
        self._events: collections.deque = collections.deque()
        self._busy = False
        self._held: list[bytes] | None = None
        """Messages held back while the session steps (``hold``), written together on ``release``."""
        self.closed = False
        self.close_code: str | None = None
        self.close_reason = ""
        self.scope: trio.CancelScope | None = None
        self.nursery: trio.Nursery | None = None
        self.resyncs_without_ack = 0
        self.opened_at = time.time()
        self.messages_in = 0
        self.messages_out = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.principal: Any = None
        self.share: SessionAccess | None = None
        self.bucket = RateBucket(server.limits.max_message_rate, server.limits.message_burst, trio.current_time())
        self.last_active = trio.current_time()

    @property
    def peer_str(self) -> str:
        host, port = self.peer[0], self.peer[1]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def status(self) -> dict:
        s = self.state
        return {
            "id": self.id, "peer": self.peer_str, "phase": s.phase, "t": s.cursor_t, "acked_t": s.acked_t,
            "queued": len(s.queue), "inflight": len(s.inflight), "buffered_bytes": s.queue_bytes + s.inflight_bytes,
            "outbound": self.out_send.statistics().current_buffer_used, "outbound_capacity": self.capacity,
            "outbound_bytes": self.out_bytes,
            "unread_s": round(self.stream.unread_for(trio.current_time()), 3) if self.stream is not None else 0.0,
            "pending_tx": len(s.pending_tx), "messages_in": self.messages_in, "messages_out": self.messages_out,
            "bytes_in": self.bytes_in, "bytes_out": self.bytes_out,
            "connected_s": round(time.time() - self.opened_at, 3),
        }

    # -- stepping the state machine --------------------------------------------------------------

    def feed(self, event: Any) -> None:
        """Step the session with ``event`` and carry out the effects (events that effects produce
        at once, like an authorization, are processed after the current effects, in order)."""
        if self.closed:
            return
        self._events.append(event)
        if self._busy:
            return
        self._busy = True
        held = self.hold()
        try:
            while self._events and not self.closed:
                e = self._events.popleft()
                if type(e) is Received and type(e.message) is Ack:
                    self.resyncs_without_ack = 0
                self.state, effects = server_step(self.state, e)
                for f in effects:
                    self._perform(f)
                    if self.closed:
                        break
        finally:
            self._busy = False
            if self.closed:
                self._events.clear()
            if held:
                self.release()

    def hold(self) -> bool:
        """Hold back the messages sent from now on until ``release``, which writes them in one go
        (several messages, one system call); False when already held (the outer holder releases)."""
        if self._held is not None:
            return False
        self._held = []
        return True

    def release(self) -> None:
        """Send what was held back since ``hold``, in order."""
        held, self._held = self._held, None
        if not held:
            return
        if self._writer_idle and not self.queued and self._write_now(held):
            return
        for item in held:
            self._queue(item)

    def _perform(self, f: Any) -> None:
        t = type(f)
        srv = self.server
        if t is Send:
            m = f.message
            if m is not None:
                mt = type(m)
                if mt is Resync:
                    srv.counters["resyncs"] += 1
                    self.resyncs_without_ack += 1
                    log.info("session resync", extra={"session": self.id, "reason": m.reason})
                    if self.resyncs_without_ack >= MAX_RESYNCS_WITHOUT_ACK:
                        self.close_slow(f"resynced {self.resyncs_without_ack} times without an ack: "
                                        "the client is not reading")
                        return
                elif mt is Welcome:
                    srv.counters["resumes" if m.mode == "resume" else "bootstraps"] += 1
                    log.info("session welcome", extra={"session": self.id, "mode": m.mode, "t": m.t})
                elif mt is Error:
                    srv.counters["protocol_errors"] += 1
                    log.info("session error", extra={"session": self.id, "code": m.code, "detail": m.message})
                elif mt is TxRejected and m.code == "sync/overloaded":
                    srv.counters["tx_overloaded"] += 1
                    srv.throttled.warning("sync/overloaded", "submission refused: too many pending",
                                          session=self.id, peer=self.peer_str, limit=srv.config.max_pending_tx)
            self._push(f.data)
        elif t is SendStream:
            self._push(_Stream(f.messages))
        elif t is SetTimer:
            self.timer.set(f.at)
        elif t is Close:
            self._close(f.code, f.reason)
        elif t is Authorize:
            principal = srv.access.principal(credential_token(f.credentials)) if srv.access else None
            why = "token of the tokens file"
            if principal is None:
                principal, why = authorize(f.credentials, self.peer[0], srv.token, srv.jwt)
            self.principal = principal
            if principal is not None and srv.access is not None and srv.access.policy is not None:
                self._share(principal, f.credentials)
            if principal is None:
                srv.counters["refused"] += 1
                log.warning("client refused", extra={"session": self.id, "peer": self.peer_str, "why": why})
            hello = self.state.hello
            if principal is not None and hello is not None and hello.t is not None and hello.t > srv.fed_t \
                    and srv.store_shared:
                self._start(self._authorize_when_caught_up, principal, hello.t)
            else:
                self._events.append(AuthDecision(principal, f"Not authorized: {why}"))
        elif t is RequestLogRead:
            self._start(self._log_read, f)
        elif t is RequestSnapshot:
            keep = srv.access.open(self.share, srv.conn.db) if self.share is not None and srv.access else None
            snap_t, messages = encode_snapshot(srv.conn.db, f.chunk_size, db_id=srv.config.db_id, keep=keep)
            srv.counters["snapshots"] += 1
            self._events.append(SnapshotReady(f.seq, snap_t, messages))
        elif t is RequestTransact:
            srv.start_transact(self, f)
        elif t is RequestScopes:
            self._events.append(self._change_scopes(f))

    def _change_scopes(self, f: RequestScopes) -> ScopesDecided:
        """A live change of scopes: the datoms the session gains or loses at its ``t`` (its view follows
        every commit routed to it, so ``t`` is the last delta queued for the client)."""
        share, st, access = self.share, self.state, self.server.access
        if share is None or access is None or access.policy is None:
            return ScopesDecided(f.req, code="policy/none", message="this server has no policy: no scopes")
        if st.phase != LIVE or share.view is None or share.t != st.cursor_t:
            return ScopesDecided(f.req, code="sync/retry", message="the session is catching up: send the scopes again")
        try:
            datoms = access.change(share, f.scopes)
        except DatsyncError as e:
            return ScopesDecided(f.req, code=e.code, message=e.message)
        log.info("session scopes", extra={"session": self.id, "scopes": len(f.scopes), "datoms": len(datoms)})
        return ScopesDecided(f.req, st.cursor_t, datoms)

    def _share(self, principal: Any, credentials: Any) -> None:
        """Under a policy: the session's share (its principal and the scopes its credentials ask for)
        and its deltas through the share's filter. A hello with a ``t`` resumes when every delta since
        is in memory (its view is opened as of ``t`` and routed through them); otherwise it bootstraps."""
        scopes = credentials.get("scopes") if isinstance(credentials, dict) else None
        asked = [(s[0], tuple(s[1])) for s in scopes] if scopes is not None else None
        st, share = self.state, SessionAccess(principal, asked)
        self.share = share
        cfg = replace(st.config, delta_filter=Access.delta_filter(share))
        hello = st.hello
        if hello is not None and hello.t is not None and not self._resume_share(hello.t, hello.db_id):
            hello = evolve(hello, t=None)
        self.state = evolve(st, config=cfg, hello=hello)

    def _resume_share(self, t: int, db_id: str | None) -> bool:
        """Route the in-memory deltas after ``t`` to the share (False: they are not all at hand)."""
        srv, share = self.server, self.share
        assert srv.access is not None and share is not None
        recent, fed = srv._recent, srv.fed_t
        if db_id != srv.config.db_id or not 0 <= t <= fed or fed - t > srv.config.max_buffered:
            return False
        if t < fed and (not recent or recent[0][0].t > t + 1):
            return False
        try:
            srv.access.resume(share, srv.conn.db, t, (d for d, _ in recent if t < d.t <= fed))
        except DatsyncError as e:
            log.info("session cannot resume under the policy", extra={"session": self.id, "code": e.code})
            return False
        return True

    def _enqueue(self, item: Any) -> None:
        if self._held:  # what was held back goes first
            held, self._held = self._held, []
            for x in held:
                self.out_send.send_nowait(x)
                self.queued += 1
                self.out_bytes += len(x)
        self.out_send.send_nowait(item)
        self.queued += 1
        if type(item) is bytes:
            self.out_bytes += len(item)

    def _push(self, item: Any) -> None:
        if type(item) is bytes:
            if self._held is not None:
                self._held.append(item)
                return
            if self._writer_idle and not self.queued and self._write_now([item]):
                return
        self._queue(item)

    def _queue(self, item: Any) -> None:
        try:
            self._enqueue(item)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            self.abort("normal", "connection closed")

    def _write_now(self, messages: list[bytes]) -> bool:
        """Write the frames of ``messages`` to the socket now, in one system call, without waking the
        writer (nothing is queued and nobody writes): what the socket does not take at once the writer
        writes first. False: the connection is not open; queue them (the writer reports the loss)."""
        if not self.ws.may_write_now():
            return False
        frame_of = self.server.frame_of
        if not self._write_frames_now(frame_of(messages[0]) if len(messages) == 1
                                      else b"".join(map(frame_of, messages))):
            return False
        self.messages_out += len(messages)
        self.bytes_out += sum(map(len, messages))
        return True

    def _write_frames_now(self, data: bytes) -> bool:
        """Write ``data`` (frames) to the socket in one system call; what it does not take the connection
        keeps and the writer, woken, writes first. False: the connection is lost (queue them: the
        writer reports it)."""
        sent = self.ws.write_now(data)
        if sent is None:
            return False
        counters = self.server.counters
        counters["writes_direct"] += 1
        if sent < len(data):  # the connection keeps the rest: the writer writes it first
            counters["writes_partial"] += 1
            self._enqueue(_Framed(b""))
        return True

    def _push_frame(self, data: bytes) -> None:
        """Send a ready-made control frame (a pong): now when nothing waits, else after what does."""
        if not (self._writer_idle and not self.queued and self.ws.may_write_now() and self._write_frames_now(data)):
            self._queue(_Framed(data))

    def _close(self, code: str, reason: str) -> None:
        """Send what is queued, then close with ``code`` (the session is already closed); a client
        that does not take it within the close timeout is cut off."""
        self.closed = True
        self.close_code, self.close_reason = code, reason
        try:
            self._enqueue(_CloseMarker(code, reason))
        except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
            self._cancel()
            return
        self._start(self._close_deadline)

    async def _close_deadline(self) -> None:
        await trio.sleep(2 * self.server.close_timeout)
        self._cancel()

    def _start(self, fn: Callable, *args: Any) -> None:
        try:
            assert self.nursery is not None
            self.nursery.start_soon(fn, *args)
        except RuntimeError:  # the session's tasks are gone already
            self.abort("normal", "connection closed")

    def close_slow(self, why: str) -> None:
        """Cut off a client that does not keep up: it is not reading, so nothing queued is flushed;
        the close frame (1013) says why."""
        self.abort(TOO_SLOW, why)

    def shutdown(self) -> None:
        """Server shutdown: tell the client, then close with going-away (1001)."""
        if self.closed:
            return
        why = "the server is shutting down"
        self.state, _ = server_step(self.state, Closed(why))
        with contextlib.suppress(trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
            self._enqueue(encode(Error(SHUTDOWN, why)))
        self._close(SHUTDOWN, why)

    def limit_close(self, code: str, why: str) -> None:
        """Close a session that went beyond a limit: a warning (throttled), the ``error``, then the close."""
        if self.closed:
            return
        srv = self.server
        srv.counters["closed_" + code.split("/")[-1]] += 1
        srv.throttled.warning(code, "closing a session: limit exceeded", session=self.id, peer=self.peer_str,
                              code=code, why=why)
        self.state, _ = server_step(self.state, Closed(why))
        with contextlib.suppress(trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
            self._enqueue(encode(Error(code, why)))
        self._close(code, why)

    def abort(self, code: str, why: str) -> None:
        """Close now, dropping whatever is queued."""
        if not self.closed:
            if code == TOO_SLOW:
                self.server.counters["closed_slow"] += 1
                log.warning("closing a slow client", extra={"session": self.id, "peer": self.peer_str, "why": why})
            self.state, _ = server_step(self.state, Closed(why))
            self.closed = True
            self.close_code, self.close_reason = code, why
        self._cancel()

    def _cancel(self) -> None:
        if self.scope is not None:
            self.scope.cancel()
        elif self.nursery is None:  # not started yet: run() will see it
            self.closed = True

    # -- tasks -----------------------------------------------------------------------------------

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            self.scope, self.nursery = nursery.cancel_scope, nursery
            nursery.start_soon(self._reader)
            nursery.start_soon(self._writer)
            nursery.start_soon(self.timer.run, lambda now: self.feed(Timer(now)))
            if self.server.limits.idle_timeout is not None:
                nursery.start_soon(self._idle_watch, self.server.limits.idle_timeout)
            if self.stream is not None:
                nursery.start_soon(self._send_watch, self.stream, self.server.limits.send_timeout)
            self.feed(Opened(trio.current_time()))

    async def _idle_watch(self, idle: float) -> None:
        while not self.closed:
            await trio.sleep_until(self.last_active + idle)
            if trio.current_time() - self.last_active >= idle:
                self.limit_close(IDLE, f"no message but pings and pongs for {idle:g} s")
                return

    async def _send_watch(self, stream: _Prefixed, timeout: float) -> None:
        """Cut off the client once its socket has taken none of the bytes waiting for it for ``timeout``
        seconds: that, not the length of its queue, is what "not reading" means."""
        while True:
            await trio.sleep(timeout / 4)
            unread = stream.unread_for(trio.current_time())
            if unread >= timeout:
                waiting = self.out_send.statistics().current_buffer_used
                self.close_slow(f"its socket took nothing for {unread:.0f} s, {waiting} messages "
                                f"({self.out_bytes} bytes) waiting: the client is not reading")
                return

    async def _backpressure(self) -> None:
        """While the outbound queue is above its high-water mark, read nothing more from the client
        (what it sends makes answers): resume once the writer brought it down to half."""
        while not self.closed and self.queued >= self.capacity:
            self._drained = trio.Event()
            await self._drained.wait()

    async def _reader(self) -> None:
        """Read the client's frames: every message a read completes is handled in this task, in order
        (pings answered here); the outbound queue above its high-water mark stops the reading."""
        ws = self.ws
        while True:
            await self._backpressure()
            try:
                events = await ws.receive()
            except WebSocketClosed:
                self._peer_gone(None)
                return
            for event in events:
                t = type(event)
                if t is bytes or t is str:
                    if self.queued >= self.capacity:
                        await self._backpressure()
                    self._message(event)  # type: ignore[arg-type]
                elif t is WsPing:
                    self._push_frame(frame(OP_PONG, event.payload))  # type: ignore[union-attr]
                elif t is CloseReceived or t is Violation:
                    self._peer_gone(event)
                    return

    def _peer_gone(self, event: CloseReceived | Violation | None) -> None:
        """The client closed (``CloseReceived``), broke the framing rules or sent a message far too big
        (``Violation``), or its connection was lost (None): the session ends (the close frame answers)."""
        if type(event) is CloseReceived or event is None:
            if self.closed:
                return  # we are closing: the close handshake completes when the session's tasks are done
            code, reason = (CLOSE_ABNORMAL, "") if event is None else (event.code, event.reason)
            why, code_name = f"peer closed: {code} {reason or close_name(code)}", "peer"
        elif event.code == CLOSE_TOO_BIG:  # a message far above the protocol's bound: refused from its header
            code_name, why = TOO_LARGE, f"a message above {self.server.ws_max_message_size} bytes"
            self.server.counters["closed_too_large"] += 1
            self.server.throttled.warning(TOO_LARGE, "closing a session: limit exceeded", session=self.id,
                                          peer=self.peer_str, code=code_name, why=why)
        else:
            code_name, why = "protocol/malformed", f"WebSocket: {event.reason}"
        if not self.closed:
            self.state, _ = server_step(self.state, Closed(why))
            self.closed = True
            self.close_code, self.close_reason = code_name, why
        self._cancel()

    def _message(self, data: bytes | str) -> None:
        """One message from the client: counted, rate-limited, decoded and stepped (dropped while closing:
        reading on lets the client get our error and close, not a reset)."""
        self.messages_in += 1
        self.bytes_in += len(data)
        if self.closed:
            return
        now = trio.current_time()
        if not self.bucket.take(now):
            lim = self.server.limits
            self.limit_close(RATE, f"more than {lim.max_message_rate:g} messages per second "
                                   f"(burst {lim.message_burst})")
            return
        event = receive(data, max_size=self.server.max_message_size)
        if type(event) is not Received or type(event.message) not in (Ping, Pong):
            self.last_active = now
        if self.server.frozen:  # shutting down: no more requests; a submit gets a definite answer
            if type(event) is Received and type(event.message) is Submit:
                self._push(encode(TxRejected(event.message.req, SHUTDOWN,
                                             "The server is shutting down: the transaction was not committed")))
            return
        self.feed(event)

    async def _writer(self) -> None:
        ws = self.ws
        recv = self.out_recv
        frame_of = self.server.frame_of
        held: Any = None
        try:
            while True:
                if held is None:
                    self._writer_idle = True
                    item = await recv.receive()
                    self._writer_idle = False
                    self.queued -= 1
                else:
                    item, held = held, None
                if type(item) is _Framed:
                    await ws.write(item.data)
                elif type(item) is bytes:
                    # everything waiting goes out in one write (up to COALESCE_BYTES), each shared
                    # delta in the frame made once for every session
                    out, n, count = [], 0, 0
                    while True:
                        out.append(frame_of(item))
                        n += len(item)
                        count += 1
                        if n >= COALESCE_BYTES:
                            break
                        try:
                            item = recv.receive_nowait()
                        except trio.WouldBlock:
                            break
                        self.queued -= 1
                        if type(item) is not bytes:
                            held = item
                            break
                    self._taken(count, n)
                    await ws.write(out[0] if count == 1 else b"".join(out))
                elif type(item) is _Stream:
                    it = iter(item.messages)
                    while batch := await trio.to_thread.run_sync(_next_batch, it):
                        self._taken(0, 0)
                        await ws.write(b"".join(map(ws_frame, batch)))
                        self.messages_out += len(batch)
                        self.bytes_out += sum(map(len, batch))
                else:
                    with trio.move_on_after(self.server.close_timeout):
                        await ws.send_close(WS_CLOSE_CODES.get(item.code, 1008), item.reason)
                    self._cancel()
                    return
        except WebSocketClosed:
            if not self.closed:
                self.state, _ = server_step(self.state, Closed("connection lost while sending"))
                self.closed = True
                self.close_code, self.close_reason = "peer", "connection lost while sending"
            self._cancel()

    def _taken(self, count: int, nbytes: int) -> None:
        """The writer took ``count`` messages (``nbytes``) off the outbound queue: count them, and let
        the reader go on once the queue is down to half its high-water mark."""
        self.out_bytes -= nbytes
        self.messages_out += count
        self.bytes_out += nbytes
        drained = self._drained
        if drained is not None and self.queued <= self.capacity // 2:
            self._drained = None
            drained.set()

    async def _authorize_when_caught_up(self, principal: Any, t: int) -> None:
        """A replica coming from another process of a shared store may be ahead of this one for a
        moment: read the log up to its ``t`` before answering, so it resumes (not bootstraps)."""
        srv = self.server
        with trio.move_on_after(srv.config.handshake_timeout / 2):
            await srv.conn.catch_up()
            await srv._changes.until(lambda: srv.fed_t >= t)
        self.feed(AuthDecision(principal))

    async def _log_read(self, f: RequestLogRead) -> None:
        try:
            deltas = await self.server.read_deltas(f.from_t, f.to_t)
        except Exception:
            log.exception("log read failed", extra={"session": self.id, "from_t": f.from_t, "to_t": f.to_t})
            deltas = None
        self.feed(LogRead(f.seq, f.from_t, deltas))
