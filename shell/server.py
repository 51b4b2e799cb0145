"""The sync server: the Connection (the one reference to the server database) and WebSocket sessions
driving the core's ``ServerSession`` state machines, on trio.

One nursery owns everything::

    root nursery
      conn.run_writer                    the only task that changes the database (group commit)
      fan-out                            conn.listen() -> TxCommitted(delta, bytes) to every session
      conn.follow                        a shared store: other processes' commits into conn (LISTEN)
      connections nursery                one task group per TCP connection:
        HTTP head sniffing               GET /health, GET /status, or a WebSocket upgrade
        session reader                   bytes -> receive() -> server_step
        session writer                   the outbound queue drained to the socket (frames written
                                         directly: a shared delta is framed once for everyone)
        send watch                       cuts off a client whose socket takes no bytes for a while
        session timer                    SetTimer -> Timer
        log reads                        RequestLogRead -> LogRead (memory, else the store in a thread)
      transactions                       RequestTransact -> conn.transact -> TxAccepted / TxFailed
      checkpoints, signals

The sessions bound their own buffers (queue + window) and resync a client that falls too far behind;
the shell adds the last bounds: an outbound queue per connection that is drained to the socket,
several messages to one write when they wait; while it holds more than its high-water mark the
session reads no further messages from that client (so answers and pongs, which the client causes,
stay bounded); a client whose socket takes no bytes for ``Limits.send_timeout`` while some wait is
not reading and is cut off (1013), as is one resynced repeatedly without an ``ack``. "Not reading"
is what the socket says, never how long the queue is: a client that keeps reading, however loaded,
is never cut off. Every effect is carried out without awaiting anything but its own connection, so
a slow or broken client never stalls the others.

Entry points: ``serve(...)`` (async; ``task_status.started(server)`` gives the running
``SyncServer``), ``run_server(...)`` (blocking, for the CLI: logs, exit codes) and
``store_in_use(path)``. docs/operations.md describes running it.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as _dt
import errno
import fcntl
import hmac
import ipaddress
import itertools
import json
import logging
import math
import os
import signal
import ssl
import struct
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import trio
import trio_websocket
from trio_websocket import ConnectionClosed
from wsproto.connection import ConnectionState

from datsync.core import Keyword, TxError, transact
from datsync.core.errors import DatsyncError
from datsync.core.history import basis_t
from datsync.core.sync import (
    DEFAULT_MAX_SIZE,
    PROTOCOL_VERSION,
    AuthDecision,
    Authorize,
    Close,
    Closed,
    Delta,
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
    ServerConfig,
    SetTimer,
    SnapshotReady,
    Timer,
    TxAccepted,
    TxCommitted,
    TxFailed,
    Welcome,
    decode,
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

from .access import Access, SessionAccess
from .changes import ChangeSignal
from .connection import Connection, utc_now
from .jwt_auth import JwtAuth
from .limits import CONNECTIONS, IDLE, RATE, ConnectionCounts, Limits, RateBucket, ThrottledLog
from .static import CLIENT_PREFIX, static_file
from .store import Store, StoreError, is_store_url, open_store
from .timer import SessionTimer

log = logging.getLogger("datsync.server")

DEFAULT_PORT = 8765
MAX_HTTP_HEAD = 16 << 10
MAX_RESYNCS_WITHOUT_ACK = 3
SEND_SLICE = 64 << 10
"""Bytes handed to the socket at a time: each slice taken is progress (the client is reading)."""
COALESCE_BYTES = 256 << 10
"""Messages waiting for one client go out in one write up to this many bytes."""
FRAME_CACHE = 256
"""Recent shared deltas whose WebSocket frame is kept, so each is framed once for every session."""
"""A session resynced this many times in a row without the client acknowledging anything is closed:
the client is not reading."""

SHUTDOWN = "server/shutdown"
TOO_SLOW = "server/too-slow"

# WebSocket close codes (RFC 6455 section 7.4.1) for the protocol's reasons to close.
WS_CLOSE_CODES = {
    "normal": 1000,
    SHUTDOWN: 1001,
    "protocol/timeout": 1001,
    "protocol/malformed": 1002,
    "protocol/version": 1002,
    "protocol/unexpected": 1002,
    "protocol/unauthorized": 1008,
    "protocol/too-large": 1009,
    "protocol/internal": 1011,
    TOO_SLOW: 1013,
    RATE: 1008,
    IDLE: 1001,
}


# ------------------------------------------------------------------------------------------------
# The store lock


class StoreInUse(Exception):
    """Another process serves this store (it holds ``STORE.lock``)."""

    def __init__(self, path: Path):
        super().__init__(f"{path} is in use by another datsync process (lock file {lock_path(path)})")
        self.path = path


def lock_path(store_path: str | Path) -> Path:
    """The lock file of a store: ``STORE.lock`` next to it."""
    return Path(f"{store_path}.lock")


class StoreLock:
    """An exclusive ``flock`` on ``STORE.lock`` for as long as a server uses the store. The kernel
    releases it when the process ends, however it ends (``kill -9`` included)."""

    def __init__(self, store_path: str | Path):
        self.path = lock_path(store_path)
        self._fd: int | None = None

    def acquire(self) -> StoreLock:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise StoreError("store/unreadable", f"cannot create the lock file {self.path}: {e.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise StoreInUse(Path(str(self.path)[: -len(".lock")])) from None
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


class Readers:
    """Up to ``n`` extra handles on a store for reads that run at once, each in a worker thread
    (replicas catching up from the log, health); opened when first needed."""

    def __init__(self, store: Store, n: int = 4):
        self._store = store
        self._free: list[Store] = []
        self._limit = trio.Semaphore(n)

    async def run(self, fn: Callable[[Store], Any]) -> Any:
        """``fn(reader)`` in a worker thread, on a handle no other read is using."""
        async with self._limit:
            handle: list[Store] = [self._free.pop()] if self._free else []

            def call() -> Any:
                if not handle:
                    handle.append(self._store.reader())
                return fn(handle[0])

            try:
                return await trio.to_thread.run_sync(call)
            finally:
                self._free.extend(handle)

    def close(self) -> None:
        for reader in self._free:
            try:
                reader.close()
            except Exception:
                log.exception("closing a store reader failed")
        self._free = []


def store_in_use(path: str | Path) -> bool:
    """True while a server (this process or another) holds the store at ``path``."""
    lp = lock_path(path)
    try:
        fd = os.open(lp, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # closing drops the lock if we took it
    return False


# ------------------------------------------------------------------------------------------------
# Schema files


def schema_tx_from_edn(text: str) -> list[dict]:
    """The transaction installing the schema an EDN text describes: a map attribute -> properties
    (as ``:schema`` in docs/examples/people.edn; a whole such file works too) or a vector of
    attribute entity maps (``[{:db/ident :person/name :db/valueType :db.type/string ...}]``)."""
    from datsync.core.edn import read_edn

    data = read_edn(text)
    if isinstance(data, dict) and any(isinstance(k, Keyword) and k.name == "schema" for k in data):
        data = next(v for k, v in data.items() if isinstance(k, Keyword) and k.name == "schema")

    def attr_name(k: Any) -> str:
        if isinstance(k, Keyword):
            return k.name
        if isinstance(k, str):
            return k.lstrip(":")
        raise ValueError(f"attribute names are keywords, got {k!r}")

    def props(m: Any) -> dict:
        if not isinstance(m, dict):
            raise ValueError(f"attribute properties are a map, got {m!r:.80}")
        return {attr_name(k): v for k, v in m.items()}

    from datsync.core import kw

    if isinstance(data, dict):
        return [{"db/ident": kw(attr_name(a)), **props(p)} for a, p in data.items()]
    if isinstance(data, list | tuple):
        out = [props(m) for m in data]
        for m in out:
            if "db/ident" not in m:
                raise ValueError(f"an attribute entity map needs :db/ident: {m!r:.80}")
        return out
    raise ValueError("a schema file holds a map {attr {props}} or a vector of attribute maps")


def schema_is_installed(db: Any, tx: list) -> bool:
    """True when transacting ``tx`` into ``db`` would change nothing but the transaction's instant."""
    report = transact(db, tx, instant=utc_now())
    tx_id = report.db_after.max_tx
    return all(d.e == tx_id and d.a == "db/txInstant" for d in report.tx_data)


# ------------------------------------------------------------------------------------------------
# Credentials


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and their IPv4-mapped forms."""
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return bool(ip.is_loopback or (mapped is not None and mapped.is_loopback))


def credential_token(credentials: Any) -> str | None:
    """The token a hello carries: ``{"token": "..."}`` or the bare string."""
    if isinstance(credentials, str):
        return credentials
    if isinstance(credentials, dict) and isinstance(credentials.get("token"), str):
        return credentials["token"]
    return None


def authorize(credentials: Any, peer_host: str, token: str | None, jwt: JwtAuth | None = None) -> tuple[Any, str]:
    """``(principal or None, why)``: with a configured ``token`` or ``jwt`` verifier the hello must carry
    that token or a valid JWT (from any address); without either, only loopback clients are accepted."""
    if jwt is not None:
        supplied = credential_token(credentials)
        if supplied is None:
            return None, "missing token"
        if token is not None and hmac.compare_digest(supplied.encode("utf-8", "surrogatepass"),
                                                     token.encode("utf-8", "surrogatepass")):
            return {"auth": "token", "peer": peer_host}, "token accepted"
        principal, why = jwt.verify(supplied)
        return (None, why) if principal is None else ({**principal, "peer": peer_host}, why)
    if token is None:
        if is_loopback(peer_host):
            return {"auth": "loopback", "peer": peer_host}, "loopback client"
        return None, ("this server has no token configured and accepts loopback clients only; "
                      "start it with --token or --token-file to accept remote clients")
    supplied = credential_token(credentials)
    if supplied is not None and hmac.compare_digest(supplied.encode("utf-8", "surrogatepass"),
                                                    token.encode("utf-8", "surrogatepass")):
        return {"auth": "token", "peer": peer_host}, "token accepted"
    return None, "missing token" if supplied is None else "wrong token"


def read_token_file(path: str | Path) -> str:
    """The token in ``path`` (surrounding whitespace stripped); ValueError if empty."""
    token = Path(path).read_text().strip()
    if not token:
        raise ValueError(f"token file {path} is empty")
    return token


# ------------------------------------------------------------------------------------------------
# Logs


_RECORD_FIELDS = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


def _extras(record: logging.LogRecord) -> dict:
    return {k: v for k, v in vars(record).items() if k not in _RECORD_FIELDS and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``msg`` and the record's extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": _dt.datetime.fromtimestamp(record.created, _dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            **_extras(record),
        }
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    """``time level logger: message key=value ...``."""

    def format(self, record: logging.LogRecord) -> str:
        ts = _dt.datetime.fromtimestamp(record.created).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        extra = " ".join(f"{k}={v}" for k, v in _extras(record).items())
        line = f"{ts} {record.levelname:<7} {record.name}: {record.getMessage()}" + (f" {extra}" if extra else "")
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure_logging(level: str = "info", fmt: str = "text", stream: Any = None) -> None:
    """Send datsync's logs to ``stream`` (stderr) as ``text`` or ``json`` lines."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger("datsync")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
    logging.getLogger("trio-websocket").setLevel(logging.WARNING)


# ------------------------------------------------------------------------------------------------
# HTTP on the WebSocket port


class _Prefixed(trio.abc.Stream):
    """A stream whose first bytes were already read (the HTTP head we sniffed, a TLS record's first byte)."""

    def __init__(self, stream: trio.abc.Stream, prefix: bytes):
        self.stream = stream
        self._prefix = prefix
        self.sending_since: float | None = None
        """While a write is under way: when it began or last got a slice through (the peer read)."""

    def unread_for(self, now: float) -> float:
        """Seconds the peer has left a write waiting without taking any of it (0 when none waits)."""
        since = self.sending_since
        return 0.0 if since is None else now - since

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._prefix:
            n = len(self._prefix) if max_bytes is None else max_bytes
            data, self._prefix = self._prefix[:n], self._prefix[n:]
            await trio.lowlevel.checkpoint()
            return data
        return await self.stream.receive_some(max_bytes)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        n = len(data)
        self.sending_since = trio.current_time()
        try:
            if n <= SEND_SLICE:
                await self.stream.send_all(data)
                return
            view = memoryview(data)
            for i in range(0, n, SEND_SLICE):
                await self.stream.send_all(view[i:i + SEND_SLICE])
                self.sending_since = trio.current_time()
        finally:
            self.sending_since = None

    async def wait_send_all_might_not_block(self) -> None:
        await self.stream.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        """Leaves the socket open: the connection's handler closes it gracefully once the WebSocket's
        tasks are gone (``_linger``: closing with unread input would reset the connection, and a reset
        loses the answer, the ``error`` and the close frame, that the peer has not read yet)."""
        await trio.lowlevel.checkpoint()


@dataclass(frozen=True)
class _HttpHead:
    method: str
    target: str
    headers: dict[str, str]

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    @property
    def is_upgrade(self) -> bool:
        return "websocket" in self.headers.get("upgrade", "").lower()


async def _read_head(stream: trio.abc.ReceiveStream) -> tuple[bytes, _HttpHead | None]:
    """Read until the end of the HTTP head; ``(bytes read, head or None if not HTTP)``."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        if len(buf) > MAX_HTTP_HEAD:
            return buf, None
        data = await stream.receive_some(4096)
        if not data:
            return buf, None
        buf += data
    head = buf[: buf.index(b"\r\n\r\n")]
    try:
        lines = head.decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ")
        if not version.startswith("HTTP/"):
            return buf, None
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    except ValueError:
        return buf, None
    return buf, _HttpHead(method, target, headers)


_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed",
            408: "Request Timeout",
            431: "Request Header Fields Too Large", 503: "Service Unavailable"}


async def _http_respond(stream: trio.abc.Stream, status: int, body: Any, *, head_only: bool = False,
                        content_type: str = "application/octet-stream") -> None:
    if isinstance(body, bytes):
        data, ctype = body, content_type
    elif isinstance(body, str):
        data, ctype = body.encode(), "text/plain; charset=utf-8"
    else:
        data, ctype = json.dumps(body, indent=1, default=str).encode() + b"\n", "application/json"
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, '')}", f"Content-Type: {ctype}",
             f"Content-Length: {len(data)}", "Cache-Control: no-store", "Connection: close", "", ""]
    await stream.send_all("\r\n".join(lines).encode() + (b"" if head_only else data))
    await _linger(stream)


async def _linger(stream: Any) -> None:
    """Half-close and drain what the peer still sends (briefly), so closing with unread input does
    not reset the connection before the peer has read our answer."""
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        if isinstance(stream, trio.abc.HalfCloseableStream):  # TLS has no half-close: drain only
            await stream.send_eof()
        with trio.move_on_after(1.0):
            for _ in range(256):
                if not await stream.receive_some(65536):
                    break


# ------------------------------------------------------------------------------------------------
# Sessions


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


def ws_frame(payload: bytes) -> bytes:
    """``payload`` as one unmasked binary WebSocket frame (RFC 6455 5.2), what a server sends: the same
    bytes for every connection, so a shared delta is framed once and written to every socket."""
    n = len(payload)
    if n < 126:
        return bytes((0x82, n)) + payload
    if n < 1 << 16:
        return struct.pack("!BBH", 0x82, 126, n) + payload
    return struct.pack("!BBQ", 0x82, 127, n) + payload


def _next_batch(messages: Iterator[bytes], budget: int = 1 << 20) -> list[bytes]:
    """The next messages of ``messages``, about ``budget`` bytes of them (none once it is done): a
    snapshot is encoded in a few worker-thread calls, not one per chunk."""
    out: list[bytes] = []
    size = 0
    for data in messages:
        out.append(data)
        size += len(data)
        if size >= budget:
            break
    return out


def _frames_directly(ws: trio_websocket.WebSocketConnection) -> bool:
    """Whether frames may be written to ``ws``'s stream as they are: no extension (compression)
    was negotiated, so a data frame is the payload behind a header."""
    conn = getattr(getattr(ws, "_wsproto", None), "connection", None)
    proto = getattr(conn, "_proto", None)
    return (proto is not None and not proto.extensions and not getattr(ws, "is_client", True)
            and hasattr(ws, "_stream_lock") and hasattr(ws, "_stream"))


async def _send_frames(ws: trio_websocket.WebSocketConnection, data: bytes) -> None:
    """Write ready-made frames to ``ws``'s stream, under its lock (its own pongs and close go the same
    way); ``ConnectionClosed`` once the connection is closing or gone, like ``send_message``."""
    async with ws._stream_lock:
        if ws.closed is not None or ws._wsproto.state is not ConnectionState.OPEN:
            raise ConnectionClosed(ws.closed)
        try:
            await ws._stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            await ws._abort_web_socket()
            raise ConnectionClosed(ws.closed) from None


class _Session:
    """One WebSocket connection: its ``ServerSession`` value and the tasks carrying out its effects."""

    def __init__(self, server: SyncServer, ws: trio_websocket.WebSocketConnection, peer: tuple[str, int], sid: int,
                 stream: _Prefixed | None = None):
        cfg = server.config
        self.server = server
        self.ws = ws
        self.stream = stream
        self.peer = peer
        self.id = sid
        self.state = new_server_session(cfg, server.fed_t)
        self.capacity = cfg.window + cfg.max_pending_tx + cfg.max_errors + 64
        """High-water mark of the outbound queue: above it no further message is read from the client."""
        self.out_send, self.out_recv = trio.open_memory_channel[Any](math.inf)
        self.out_bytes = 0
        self._drained: trio.Event | None = None
        self.timer = SessionTimer()
        self._events: collections.deque = collections.deque()
        self._busy = False
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
        self.out_send.send_nowait(item)
        if type(item) is bytes:
            self.out_bytes += len(item)

    def _push(self, item: Any) -> None:
        try:
            self._enqueue(item)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            self.abort("normal", "connection closed")

    def _close(self, code: str, reason: str) -> None:
        """Send what is queued, then close with ``code`` (the session is already closed); a client
        that does not take it within the close timeout is cut off."""
        self.closed = True
        self.close_code, self.close_reason = code, reason
        try:
            self.out_send.send_nowait(_CloseMarker(code, reason))
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
        while not self.closed and self.out_send.statistics().current_buffer_used >= self.capacity:
            self._drained = trio.Event()
            await self._drained.wait()

    async def _reader(self) -> None:
        max_size = self.server.max_message_size
        while True:
            await self._backpressure()
            try:
                data = await self.ws.get_message()
            except ConnectionClosed as e:
                r = e.reason
                why = f"peer closed: {r.code} {r.reason or r.name}" if r is not None else "peer closed"
                code = "peer"
                if r is not None and r.code == 1009:  # the WebSocket layer refused a message far too big
                    code, why = TOO_LARGE, f"a message above {self.server.ws_max_message_size} bytes"
                    self.server.counters["closed_too_large"] += 1
                    self.server.throttled.warning(TOO_LARGE, "closing a session: limit exceeded", session=self.id,
                                                  peer=self.peer_str, code=code, why=why)
                if self.closed and code == "peer":
                    return  # we are closing: the writer completes the close handshake (bounded)
                if not self.closed:
                    self.state, _ = server_step(self.state, Closed(why))
                    self.closed = True
                    self.close_code, self.close_reason = code, why
                self._cancel()
                return
            self.messages_in += 1
            self.bytes_in += len(data)
            now = trio.current_time()
            if self.closed:
                continue  # closing: read on (and drop), so the peer gets our error and close, not a reset
            if not self.bucket.take(now):
                lim = self.server.limits
                self.limit_close(RATE, f"more than {lim.max_message_rate:g} messages per second "
                                       f"(burst {lim.message_burst})")
                continue
            event = receive(data, max_size=max_size)
            if type(event) is not Received or type(event.message) not in (Ping, Pong):
                self.last_active = now
            if self.server.frozen:  # shutting down: no more requests; a submit gets a definite answer
                if type(event) is Received and type(event.message) is Submit:
                    self._push(encode(TxRejected(event.message.req, SHUTDOWN,
                                                 "The server is shutting down: the transaction was not committed")))
                continue
            self.feed(event)

    async def _writer(self) -> None:
        ws = self.ws
        recv = self.out_recv
        direct = _frames_directly(ws)
        frames = self.server.frames
        held: Any = None
        try:
            while True:
                item = held if held is not None else await recv.receive()
                held = None
                if type(item) is bytes:
                    if not direct:
                        self._taken(1, len(item))
                        await ws.send_message(item)
                        continue
                    # everything waiting goes out in one write (up to COALESCE_BYTES), each shared
                    # delta in the frame made once for every session
                    out, n, count = [], 0, 0
                    while True:
                        cached = frames.get(id(item))
                        out.append(cached[1] if cached is not None and cached[0] is item else ws_frame(item))
                        n += len(item)
                        count += 1
                        if n >= COALESCE_BYTES:
                            break
                        try:
                            item = recv.receive_nowait()
                        except trio.WouldBlock:
                            break
                        if type(item) is not bytes:
                            held = item
                            break
                    self._taken(count, n)
                    await _send_frames(ws, out[0] if count == 1 else b"".join(out))
                elif type(item) is _Stream:
                    it = iter(item.messages)
                    direct = _frames_directly(ws)
                    while batch := await trio.to_thread.run_sync(_next_batch, it):
                        self._taken(0, 0)
                        if direct:
                            await _send_frames(ws, b"".join(map(ws_frame, batch)))
                        else:
                            for data in batch:
                                await ws.send_message(data)
                        self.messages_out += len(batch)
                        self.bytes_out += sum(map(len, batch))
                else:
                    code = WS_CLOSE_CODES.get(item.code, 1008)
                    with trio.move_on_after(self.server.close_timeout):
                        await ws.aclose(code, _close_reason(item.reason))
                    self._cancel()
                    return
        except ConnectionClosed:
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
        if drained is not None and self.out_send.statistics().current_buffer_used <= self.capacity // 2:
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


# ------------------------------------------------------------------------------------------------
# The server


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
    ):
        self.store_path = store_path
        self.access = access
        self.host = host
        self.port = port
        self.schema_file = schema_file
        self.static_dir = Path(static_dir) if static_dir is not None else None
        self.token = token
        self.checkpoint_every = checkpoint_every
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
            await root.start(self.conn.run_writer)
            await root.start(self._fanout)
            if self.store_shared:  # other processes commit too: follow them
                await root.start(self.conn.follow)
            if self.schema_file is not None:
                await self._install_schema(self.schema_file)
            if self.conn.t - self._checkpoint_t >= self.checkpoint_every:
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
                d = c.delta
                if d.t <= self.fed_t:
                    continue
                if d.t != self.fed_t + 1:  # cannot happen (the writer notifies in order); repair anyway
                    await self._repair_feed(d.t - 1)
                self._deliver(d, c.payload, own=c.report is not None, report=c.report)
            # the channel was closed: this task fell `listen_buffer` commits behind. Listen again, then
            # deliver what was missed from the log (commits made meanwhile are in the new channel).
            self.counters["fanout_overflows"] += 1
            log.warning("fan-out fell behind; delivering the missed commits from the log",
                        extra={"fed_t": self.fed_t, "t": self.conn.t})
            channel = self.conn.listen(self.listen_buffer)
            await self._repair_feed(self.conn.t)

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
        # On a shared store the process whose commit crosses the mark checkpoints, not every process.
        if not self._checkpointing and d.t - self._checkpoint_t >= self.checkpoint_every \
                and (own or not self.store_shared):
            self._start_checkpoint()
        self._changes.pulse()

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
        assert self._root is not None
        self._inflight_tx += 1
        # queued now, in the order the session asked: one client's submissions commit in order
        check = self.access.write_check(session.principal) if self.access is not None else None
        ticket = self.conn.enqueue(f.tx_data, f.submission, check=check)
        self._root.start_soon(self._transact, session, f, ticket)

    async def _transact(self, session: _Session, f: RequestTransact, ticket: Any) -> None:
        try:
            answer = await self.conn.outcome(ticket)
            t, tempids = answer.t, answer.tempids
            if answer.duplicate:
                self.counters["tx_resubmitted"] += 1
        except TxError as e:
            self.counters["tx_rejected"] += 1
            session.feed(TxFailed(f.req, e.code, e.message))
        except Exception as e:
            log.exception("transaction failed", extra={"session": session.id})
            self.counters["tx_rejected"] += 1
            session.feed(TxFailed(f.req, "db.error/internal", f"{type(e).__name__}: {e}"))
        else:
            self.counters["tx_committed"] += 1
            session.feed(TxAccepted(f.req, t, tempids))
        finally:
            self._inflight_tx -= 1
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
        """False when another process sharing the store wrote a checkpoint less than
        ``checkpoint_every`` transactions ago (or the store cannot be read now)."""
        if not self.store_shared:
            return True
        try:
            latest = (await self._store_stats())["checkpoint_t"]
        except StoreError:
            return False
        self._checkpoint_t = max(self._checkpoint_t, latest)
        return self.conn.t - latest >= self.checkpoint_every

    async def _checkpoint(self) -> None:
        try:
            t0 = time.perf_counter()
            if not await self._checkpoint_needed():
                return
            t = await self.conn.checkpoint()
            self._checkpoint_t = t
            log.info("checkpoint written", extra={"t": t, "seconds": round(time.perf_counter() - t0, 3)})
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
            await _http_respond(raw, 400, "datsync: this server speaks TLS only: connect with wss:// (or https://)\n")
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
                    await _http_respond(raw, 503, f"datsync: {CONNECTIONS}: {refused}\n")
            with trio.CancelScope(shield=True):
                await raw.aclose()
            return
        stream: trio.abc.Stream = raw
        try:
            with trio.move_on_after(self.handshake_timeout) as scope:
                if self.tls is not None:
                    tls_stream = await self._start_tls(raw, peer)
                    if tls_stream is None:
                        return
                    stream = tls_stream
                buf, head = await _read_head(stream)
            if scope.cancelled_caught and self.tls is not None and stream is raw:  # no TLS yet: just close
                self.counters["handshake_timeouts"] += 1
                return
            if scope.cancelled_caught:
                self.counters["handshake_timeouts"] += 1
                self.throttled.warning("http/timeout", "connection closed: no request within the handshake timeout",
                                       peer=peer[0], timeout=self.handshake_timeout)
                await _http_respond(stream, 408, f"datsync: no request within {self.handshake_timeout:g} s\n")
                return
            if head is None:
                if buf:
                    await _http_respond(stream, 431 if len(buf) > MAX_HTTP_HEAD else 400,
                                        "datsync: not an HTTP request\n")
                return
            if head.is_upgrade:
                await self._websocket(_Prefixed(stream, buf), (peer[0], peer[1]))
                await _linger(stream)
            elif head.method not in ("GET", "HEAD"):
                await _http_respond(stream, 405, "datsync: only GET /health and GET /status\n")
            elif head.path == "/health":
                await _http_respond(stream, 200, await self.health(), head_only=head.method == "HEAD")
            elif head.path == "/status":
                principal, why = authorize(_bearer(head.headers.get("authorization", "")), peer[0], self.token,
                                           self.jwt)
                if principal is None:
                    await _http_respond(stream, 401, f"datsync: not authorized: {why}\n")
                else:
                    await _http_respond(stream, 200, await self.health(detail=True),
                                        head_only=head.method == "HEAD")
            elif (found := static_file(head.path, self.static_dir)) is not None:
                data = await trio.to_thread.run_sync(found[0].read_bytes)
                await _http_respond(stream, 200, data, head_only=head.method == "HEAD", content_type=found[1])
            else:
                await _http_respond(stream, 404, f"datsync sync server: connect a replica with a WebSocket to "
                                                 f"{self.url}; GET /health for health, /status for sessions, "
                                                 f"{CLIENT_PREFIX}client.js for the browser client\n")
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        finally:
            self.connections.release(peer[0])
            with trio.CancelScope(shield=True):
                await raw.aclose()

    async def _websocket(self, stream: _Prefixed, peer: tuple[str, int]) -> None:
        async with trio.open_nursery() as nursery:
            request = None
            with trio.move_on_after(self.handshake_timeout):
                request = await trio_websocket.wrap_server_stream(
                    nursery, stream, message_queue_size=1, max_message_size=self.ws_max_message_size,
                )
            if request is None:  # a broken handshake: wsproto already answered 400
                nursery.cancel_scope.cancel()
                return
            if self.stopping:
                await request.reject(503, body=b"datsync: the server is shutting down\n")
                nursery.cancel_scope.cancel()
                return
            ws = await request.accept()
            session = _Session(self, ws, peer, next(self._ids), stream)
            self.sessions[session.id] = session
            self.counters["sessions"] += 1
            log.info("session opened", extra={"session": session.id, "peer": session.peer_str})
            try:
                await session.run()
            finally:
                self.sessions.pop(session.id, None)
                if not session.closed:
                    session.abort("normal", "server task ended")
                with trio.CancelScope(shield=True), trio.move_on_after(self.close_timeout):
                    await ws.aclose(WS_CLOSE_CODES.get(session.close_code or "normal", 1000),
                                    _close_reason(session.close_reason) or None)
                nursery.cancel_scope.cancel()
                self.closed_by_code[session.close_code or "normal"] += 1
                log.info("session closed", extra={"session": session.id, "code": session.close_code,
                                                  "why": session.close_reason, "messages_in": session.messages_in,
                                                  "messages_out": session.messages_out})
                self._changes.pulse()

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
            "counters": dict(self.counters),
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


def tls_context(cert: str | Path | None, key: str | Path | None) -> ssl.SSLContext | None:
    """The server's TLS context from PEM files (None without a certificate); ``ValueError`` when only
    one is given, ``ssl.SSLError``/``OSError`` when they cannot be loaded."""
    if cert is None and key is None:
        return None
    if cert is None:
        raise ValueError("--tls-key needs --tls-cert")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(cert), None if key is None else str(key))
    return ctx


def _close_reason(reason: str) -> str:
    """``reason`` cut to fit a WebSocket close frame (123 bytes of UTF-8)."""
    data = reason.encode("utf-8")
    return reason if len(data) <= 123 else data[:120].decode("utf-8", "ignore") + "..."


def _bearer(header: str) -> str | None:
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


# ------------------------------------------------------------------------------------------------
# Entry points


async def serve(
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    store_path: str | Path = "./datsync.sqlite",
    schema_file: str | Path | None = None,
    token: str | None = None,
    *,
    checkpoint_every: int = 1000,
    max_message_size: int = DEFAULT_MAX_SIZE,
    config: ServerConfig | None = None,
    handle_signals: bool = True,
    shutdown_timeout: float = 10.0,
    listen_buffer: int = 10_000,
    static_dir: str | Path | None = None,
    banner: Callable[[str], None] | None = None,
    limits: Limits | None = None,
    tls_cert: str | Path | None = None,
    tls_key: str | Path | None = None,
    jwt: JwtAuth | None = None,
    access: Access | None = None,
    task_status: trio.TaskStatus = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the store at ``store_path`` (a file, or a ``postgresql://`` URL) to replicas over WebSocket
    until cancelled or shut down (SIGINT/SIGTERM when ``handle_signals``; or ``await server.shutdown()``).

    ``port=0`` picks a free port; ``task_status.started(server)`` hands over the running
    ``SyncServer`` (``server.url``, ``server.port``, ``await server.health()``). ``token``: the
    credential every hello must carry; None accepts loopback clients only. ``schema_file``: an EDN
    schema installed on start unless already installed. ``static_dir``: an application's files, served
    over HTTP at ``/`` (the browser client is always at ``/datsync/client.js``). ``config``: the sessions' bounds
    (``ServerConfig``; its ``db_id`` is the store's). ``max_message_size``: the largest message
    decoded (bigger: a ``protocol/too-large`` error); the WebSocket closes the connection (1009)
    above twice that. ``limits``: connections in all and per address, message rate, idle sessions
    (``Limits``). ``tls_cert``/``tls_key``: PEM files; the server then speaks TLS only (``wss://``,
    ``https://``). ``jwt``: accept bearer JWTs (``JwtAuth``) as well as, or instead of, ``token``.
    ``access``: tokens (token -> principal) and the policy (docs/security.md). Raises ``StoreInUse``
    if another process serves the store."""
    server = SyncServer(
        store_path if is_store_url(store_path) else Path(store_path), host=host, port=port,
        schema_file=schema_file, static_dir=static_dir, token=token,
        checkpoint_every=max(1, checkpoint_every), max_message_size=max_message_size,
        config=config or ServerConfig(), handle_signals=handle_signals, shutdown_timeout=shutdown_timeout,
        listen_buffer=listen_buffer, banner=banner, limits=limits, tls=tls_context(tls_cert, tls_key), jwt=jwt,
        access=access,
    )
    await server.run(task_status=task_status)


def run_server(
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    store_path: str | Path = "./datsync.sqlite",
    schema_file: str | Path | None = None,
    token: str | None = None,
    *,
    log_level: str = "info",
    log_format: str = "text",
    **options: Any,
) -> int:
    """``datsync serve``: configure logs, print the bound URL as the first stdout line, serve until
    SIGINT/SIGTERM; the process exit code (0 after a graceful shutdown)."""
    configure_logging(log_level, log_format)

    def banner(line: str) -> None:
        print(line, flush=True)

    try:
        try:
            trio.run(lambda: serve(host, port, store_path, schema_file, token, banner=banner, **options))
        except BaseExceptionGroup as group:
            raise _sole(group) from None
    except StoreInUse as e:
        print(f"datsync serve: store/in-use: {e}", file=sys.stderr)
        return 2
    except StoreError as e:
        print(f"datsync serve: {e.code}: {e.message}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"datsync serve: cannot listen on {host}:{port}: {e.strerror or e}", file=sys.stderr)
        return 2
    except (ValueError, TxError) as e:  # the schema file
        print(f"datsync serve: {schema_file}: {getattr(e, 'code', 'schema')}: {e}", file=sys.stderr)
        return 2
    return 0


def _sole(e: BaseException) -> BaseException:
    """The one exception inside nested single-member exception groups (else the group itself)."""
    while isinstance(e, BaseExceptionGroup) and len(e.exceptions) == 1:
        e = e.exceptions[0]
    return e


__all__ = [
    "DEFAULT_PORT",
    "JsonFormatter",
    "StoreInUse",
    "StoreLock",
    "SyncServer",
    "authorize",
    "configure_logging",
    "is_loopback",
    "read_token_file",
    "run_server",
    "schema_tx_from_edn",
    "serve",
    "store_in_use",
]
