"""A WebSocket client connection on trio for Python replicas: the opening handshake read with h11, then
frames read where they are read and written in batches.

``receive()`` reads the socket once and returns every message those bytes completed, in the caller's
task: no reader task and no channel between the socket and the session, so a delta costs no task
switch. ``send_soon`` queues a message and ``write_queued`` (one task) writes everything queued
meanwhile in one ``send_all``: what the session asks while a batch of messages is handled goes out
together. Pings are answered and a close is answered before ``WebSocketClosed`` is raised.
"""

from __future__ import annotations

import os
import ssl
import urllib.parse
from collections.abc import Callable

import h11
import trio

from .websocket import (
    CLOSE_ABNORMAL,
    OP_BINARY,
    OP_PONG,
    CloseReceived,
    FrameReader,
    Ping,
    Violation,
    WebSocketClosed,
    close_frame,
    frame,
    handshake_accept,
    handshake_key,
)

MAX_RESPONSE_HEAD = 16 << 10
"""The largest handshake response head read."""
MAX_REJECTION_BODY = 64 << 10
"""The most of a refusal's body kept (the server says why in it)."""
RECEIVE_SIZE = 64 << 10
CLOSE_ANSWER_WAIT = 1.0
"""Seconds spent writing the close frame that answers the server's (or says why this side closes)."""


class WebSocketRejected(ConnectionError):
    """The server answered the opening handshake with ``status_code`` instead of switching protocols."""

    def __init__(self, status_code: int, headers: list[tuple[bytes, bytes]], body: bytes):
        super().__init__(f"the WebSocket handshake was refused: HTTP {status_code}")
        self.status_code = status_code
        self.headers = headers
        self.body = body


class WebSocketHandshakeError(ConnectionError):
    """The server's answer to the opening handshake is not a WebSocket one."""


_STREAM_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)


class ClientWebSocket:
    """An open client connection (``open_websocket``). One task calls ``receive``, one runs
    ``write_queued``; anybody may ``send_soon``/``close_soon``."""

    def __init__(self, stream: trio.abc.Stream, reader: FrameReader, leftover: bytes,
                 random_bytes: Callable[[int], bytes]):
        self.stream = stream
        self._reader = reader
        self._leftover = leftover
        self._random = random_bytes
        self._queued: list[bytes] = []
        self._last_kind: str | None = None
        self._wanted = trio.Event()
        self._send_lock = trio.Lock()
        self.close_sent = False
        """A close frame is queued or written: nothing more is sent."""
        self.closed: WebSocketClosed | None = None
        """Why the connection ended, once it has."""
        self._ended = trio.Event()

    # -- sending -------------------------------------------------------------------------------

    def send_soon(self, message: bytes, *, kind: str | None = None) -> None:
        """Queue ``message`` (a binary message) for the writer; dropped once a close frame is queued.
        A message of the same ``kind`` queued just before it and not written yet is replaced: for
        messages that say all an earlier one said (an ``ack`` of a later ``t``)."""
        if self.close_sent:
            return
        data = frame(OP_BINARY, message, self._random(4))
        if kind is not None and kind == self._last_kind:
            self._queued[-1] = data
            return
        self._queue(data)
        self._last_kind = kind

    def close_soon(self, code: int, reason: str) -> None:
        """Queue the close frame (``code``, ``reason``): the last frame this side sends."""
        if not self.close_sent:
            self._queue(close_frame(code, reason, self._random(4)))
            self.close_sent = True

    def _queue(self, data: bytes) -> None:
        self._queued.append(data)
        self._last_kind = None
        self._wanted.set()

    async def write_queued(self) -> None:
        """Write what is queued, in one ``send_all`` per wake-up, until the close frame has gone out;
        ``WebSocketClosed`` if the stream breaks."""
        while True:
            await self._wanted.wait()
            self._wanted = trio.Event()
            data = b"".join(self._queued) if len(self._queued) > 1 else self._queued[0]
            self._queued, self._last_kind = [], None
            closing = self.close_sent
            await self._send(data)
            if closing and not self._queued:
                return

    async def _send(self, data: bytes) -> None:
        try:
            async with self._send_lock:
                await self.stream.send_all(data)
        except _STREAM_ERRORS as e:
            raise self._end(WebSocketClosed(CLOSE_ABNORMAL, "")) from e

    async def wait_ended(self) -> None:
        """Until the connection ended (the server answered the close, or it was lost)."""
        await self._ended.wait()

    # -- receiving -----------------------------------------------------------------------------

    async def receive(self) -> list[bytes | str]:
        """The messages completed by the next read of the socket (possibly none: a control frame or part
        of a message); ``WebSocketClosed`` once the connection is closed (after what preceded the close)."""
        if self.closed is not None:
            raise self.closed
        if self._leftover:
            data, self._leftover = self._leftover, b""
        else:
            try:
                data = await self.stream.receive_some(RECEIVE_SIZE)
            except _STREAM_ERRORS as e:
                raise self._end(WebSocketClosed(CLOSE_ABNORMAL, "")) from e
            if not data:
                raise self._end(WebSocketClosed(CLOSE_ABNORMAL, ""))
        messages: list[bytes | str] = []
        for event in self._reader.feed(data):
            t = type(event)
            if t is bytes or t is str or t is bytearray:
                messages.append(event)  # type: ignore[arg-type]
            elif t is Ping:
                if not self.close_sent:
                    self._queue(frame(OP_PONG, event.payload, self._random(4)))  # type: ignore[union-attr]
            elif t is CloseReceived or t is Violation:
                await self._closing(event)  # type: ignore[arg-type]
        if self.closed is not None and not messages:
            raise self.closed
        return messages

    async def _closing(self, event: CloseReceived | Violation) -> None:
        """The server closed (answer with its code) or broke the rules (close saying why)."""
        closed = WebSocketClosed(event.code, event.reason)
        if not self.close_sent:
            self.close_sent = True
            answer = 1000 if type(event) is CloseReceived and event.code == 1005 else event.code
            with trio.move_on_after(CLOSE_ANSWER_WAIT):
                try:
                    async with self._send_lock:
                        await self.stream.send_all(close_frame(answer, event.reason if type(event) is Violation
                                                               else "", self._random(4)))
                except _STREAM_ERRORS:
                    pass
        self._end(closed)

    def _end(self, closed: WebSocketClosed) -> WebSocketClosed:
        if self.closed is None:
            self.closed = closed
        self._ended.set()
        return self.closed

    async def aclose(self) -> None:
        """Close the stream now (after the close handshake, or instead of it)."""
        self._end(WebSocketClosed(CLOSE_ABNORMAL, ""))
        await trio.aclose_forcefully(self.stream)


def _target(url: str) -> tuple[str, int, str, str]:
    """``(host, port, host header, request target)`` of a ``ws://`` or ``wss://`` URL."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("ws", "wss"):
        raise ValueError(f"not a WebSocket URL (ws:// or wss://): {url}")
    host = parts.hostname
    if not host:
        raise ValueError(f"a WebSocket URL needs a host: {url}")
    port = parts.port or (443 if parts.scheme == "wss" else 80)
    shown = f"[{host}]" if ":" in host else host
    header = shown if port in (80, 443) else f"{shown}:{port}"
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return host, port, header, target


async def open_websocket(url: str, *, max_message_size: int, ssl_context: ssl.SSLContext | None = None,
                         random_bytes: Callable[[int], bytes] = os.urandom) -> ClientWebSocket:
    """Connect to ``url`` and do the opening handshake (no subprotocol, no extension); the caller
    bounds the time. ``WebSocketRejected`` with the status and body when the server answers otherwise,
    ``WebSocketHandshakeError`` when the answer is not HTTP or not a WebSocket acceptance.
    ``random_bytes(n)``: the source of the handshake nonce and the masking keys."""
    host, port, header, target = _target(url)
    stream: trio.abc.Stream
    if url.startswith("wss:"):
        context = ssl_context or ssl.create_default_context()
        stream = await trio.open_ssl_over_tcp_stream(host, port, ssl_context=context, https_compatible=True)
    else:
        stream = await trio.open_tcp_stream(host, port)
    try:
        key = handshake_key(random_bytes(16))
        leftover = await _handshake(stream, header, target, key)
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise
    return ClientWebSocket(stream, FrameReader(max_message_size), leftover, random_bytes)


async def _handshake(stream: trio.abc.Stream, host: str, target: str, key: str) -> bytes:
    """Send the upgrade request and read the answer: the bytes that followed an acceptance (frames)."""
    http = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_RESPONSE_HEAD)
    request = h11.Request(method="GET", target=target, headers=[
        ("Host", host), ("Upgrade", "websocket"), ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", key), ("Sec-WebSocket-Version", "13")])
    await stream.send_all(http.send(request) + http.send(h11.EndOfMessage()))
    try:
        while True:
            event = http.next_event()
            if event is h11.NEED_DATA:
                http.receive_data(await stream.receive_some(RECEIVE_SIZE))
            elif type(event) is h11.InformationalResponse and event.status_code == 101:
                headers = {name.lower(): value for name, value in event.headers}
                if headers.get(b"sec-websocket-accept", b"").decode("latin-1") != handshake_accept(key):
                    raise WebSocketHandshakeError("the server's Sec-WebSocket-Accept does not match the key sent")
                return bytes(http.trailing_data[0])
            elif type(event) is h11.Response:
                raise WebSocketRejected(event.status_code, list(event.headers), await _body(stream, http))
            elif type(event) is h11.ConnectionClosed:
                raise WebSocketHandshakeError("the server closed the connection during the WebSocket handshake")
    except h11.RemoteProtocolError as e:
        raise WebSocketHandshakeError(f"not an HTTP answer to the WebSocket handshake: {e}") from None


async def _body(stream: trio.abc.Stream, http: h11.Connection) -> bytes:
    """The body of a refusal (its first ``MAX_REJECTION_BODY`` bytes), as far as it arrives."""
    body = b""
    with trio.move_on_after(CLOSE_ANSWER_WAIT):
        while len(body) < MAX_REJECTION_BODY:
            event = http.next_event()
            if event is h11.NEED_DATA:
                try:
                    http.receive_data(await stream.receive_some(RECEIVE_SIZE))
                except _STREAM_ERRORS:
                    break
            elif type(event) is h11.Data:
                body += bytes(event.data)
            else:
                break
    return body[:MAX_REJECTION_BODY]
