"""The server's side of a WebSocket (RFC 6455) on a connection's stream: the opening handshake answered
from the request head h11 read, the client's frames read where they are read (``FrameReader``, masked:
no reader task, no channel), frames written as they are made (``shell/websocket.py``), straight to
the socket when nothing else is being written, and the close handshake."""

from __future__ import annotations

import base64
import binascii
import socket

import h11
import trio

from ..websocket import (
    CLOSE_ABNORMAL,
    CLOSE_NO_STATUS,
    CLOSE_NORMAL,
    CloseReceived,
    FrameEvent,
    FrameReader,
    Violation,
    WebSocketClosed,
    close_frame,
    handshake_accept,
)
from .http import HttpRequest
from .stream import _Prefixed

WEBSOCKET_VERSION = "13"
RECEIVE_SIZE = 64 << 10
"""Bytes read from a client's socket at a time: every message they complete is handled in one go."""

_STREAM_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)


def handshake_refusal(request: HttpRequest) -> tuple[int, str, list[tuple[str, str]]] | None:
    """Why ``request`` cannot be upgraded to a WebSocket (the status to answer, why, extra headers: 426
    names the version spoken), or None when it can."""
    headers = request.headers
    version = headers.get("sec-websocket-version")
    if request.method != "GET":
        return 400, "a WebSocket upgrade is a GET request", []
    if "upgrade" not in (token.strip().lower() for token in headers.get("connection", "").split(",")):
        return 400, "missing header 'Connection: Upgrade'", []
    if headers.get("upgrade", "").strip().lower() != "websocket":
        return 400, "missing header 'Upgrade: websocket'", []
    if version != WEBSOCKET_VERSION:
        return (426 if version else 400), f"WebSocket version {WEBSOCKET_VERSION} only", [
            ("Sec-WebSocket-Version", WEBSOCKET_VERSION)]
    try:
        nonce = base64.b64decode(headers.get("sec-websocket-key", ""), validate=True)
    except (binascii.Error, ValueError):
        nonce = b""
    if len(nonce) != 16:
        return 400, "'Sec-WebSocket-Key' must be 16 bytes in base64", []
    if "host" not in headers:
        return 400, "missing header 'Host'", []
    return None


def upgrade_leftover(http: h11.Connection) -> bytes | None:
    """The bytes that followed the upgrade request's head (the client's first frames, if it did not wait
    for the answer), or None when the request has a body: an upgrade has none."""
    try:
        event = http.next_event()
    except h11.RemoteProtocolError:
        return None
    return bytes(http.trailing_data[0]) if type(event) is h11.EndOfMessage else None


def _plain_socket(stream: trio.abc.Stream) -> socket.socket | None:
    """The socket under ``stream`` when it is plain TCP (no TLS): frames may be written to it directly."""
    inner = getattr(stream, "stream", None)
    if type(inner) is not trio.SocketStream:
        return None
    sock = getattr(inner.socket, "_sock", None)
    return sock if isinstance(sock, socket.socket) else None


class ServerWebSocket:
    """An accepted WebSocket. One task calls ``receive``; frames are written by one task at a time
    (``write``) or, when nobody writes, straight to the socket (``write_now``). On a plain socket the
    bytes written are known to the byte, so a write cut off (the session closing) is finished before
    the close frame: a frame is never left half written."""

    def __init__(self, stream: _Prefixed, max_message_size: int):
        self.stream = stream
        self._reader = FrameReader(max_message_size, masked=True)
        self._socket = _plain_socket(stream)
        self._writing = False
        self._rest: memoryview | None = None
        """What a write did not get to the socket yet (the rest of a frame), written before anything else."""
        self.broken = False
        """A write failed or was cut off: a frame may be half written, nothing more may follow."""
        self.ended = False
        """The peer closed its side (or the stream failed): nothing more will be read."""
        self.close_sent = False
        self.peer_close: CloseReceived | Violation | None = None
        """The peer's close frame, or how its frames broke the rules: the close frame answers it."""

    async def accept(self, key: str) -> None:
        """Answer the opening handshake whose ``Sec-WebSocket-Key`` is ``key`` (no subprotocol, no extension)."""
        await self.stream.send_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                                   b"Sec-WebSocket-Accept: " + handshake_accept(key).encode("ascii") + b"\r\n\r\n")

    # -- reading ---------------------------------------------------------------------------------

    async def receive(self) -> list[FrameEvent]:
        """The messages and control frames completed by the next read of the socket (possibly none);
        ``WebSocketClosed`` (1006) when the stream ends or fails."""
        try:
            data = await self.stream.receive_some(RECEIVE_SIZE)
        except _STREAM_ERRORS as e:
            self.ended = True
            raise WebSocketClosed(CLOSE_ABNORMAL) from e
        if not data:
            self.ended = True
            raise WebSocketClosed(CLOSE_ABNORMAL)
        events = self._reader.feed(data)
        if self._reader.done and events and type(events[-1]) in (CloseReceived, Violation):
            self.peer_close = events[-1]  # type: ignore[assignment]
        return events

    # -- writing ---------------------------------------------------------------------------------

    def may_write_now(self) -> bool:
        """Whether a frame may go straight to the socket: a plain one, open, nobody writing to it and
        nothing of an earlier frame left to write."""
        return (self._socket is not None and not self._writing and self._rest is None and not self.close_sent
                and not self.broken)

    def write_now(self, data: bytes) -> int | None:
        """Write ``data`` (whole frames) to the socket in one system call, without waiting: the bytes it
        took (the next ``write`` writes the rest first), or None when the connection is lost."""
        try:
            sent = self._socket.send(data)  # type: ignore[union-attr]
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self.broken = True
            return None
        if sent < len(data):
            self._rest = memoryview(data)[sent:]
        return sent

    async def write(self, data: bytes | memoryview) -> None:
        """Write ``data`` (frames) after what an earlier write left; ``WebSocketClosed`` once closing or lost."""
        if self.close_sent or self.broken:
            raise WebSocketClosed(CLOSE_ABNORMAL, "the connection is closing")
        await self._send(data)

    async def _send(self, data: bytes | memoryview) -> None:
        if self._socket is None:  # TLS: a write cut off leaves the stream unusable
            self._writing = True
            try:
                await self.stream.send_all(data)
            except _STREAM_ERRORS as e:
                self.broken = True
                raise WebSocketClosed(CLOSE_ABNORMAL) from e
            except BaseException:
                self.broken = True
                raise
            self._writing = False
            return
        self._writing = True
        stream, sock = self.stream, self._socket
        try:
            await trio.lowlevel.checkpoint()
            view = memoryview(data) if self._rest is None else memoryview(bytes(self._rest) + bytes(data))
            self._rest = view  # cut off (cancelled), what is left is written first by the close
            while view:
                try:
                    sent = sock.send(view)
                except (BlockingIOError, InterruptedError):
                    sent = 0
                except OSError as e:
                    self.broken = True
                    raise WebSocketClosed(CLOSE_ABNORMAL) from e
                view = view[sent:]
                self._rest = view
                if view:  # the peer has not read: how long it leaves us waiting is watched
                    if sent or stream.sending_since is None:
                        stream.sending_since = trio.current_time()
                    await trio.lowlevel.wait_writable(sock)
        finally:
            self._writing = False
            stream.sending_since = None
        self._rest = None

    # -- closing ---------------------------------------------------------------------------------

    async def send_close(self, code: int, reason: str) -> None:
        """Send the close frame, once, after what a write cut off left: ``code`` and ``reason``, or the
        answer to the peer's close (its code) or to its broken frames (the code saying what broke)."""
        if self.close_sent or self.broken:
            return
        got = self.peer_close
        if type(got) is CloseReceived:
            code, reason = (CLOSE_NORMAL if got.code == CLOSE_NO_STATUS else got.code), ""
        elif type(got) is Violation:
            code, reason = got.code, got.reason
        self.close_sent = True
        try:
            await self._send(close_frame(code, reason))
        except WebSocketClosed:
            pass
        except BaseException:
            self.broken = True
            raise

    async def close(self, code: int, reason: str, timeout: float) -> None:
        """The close handshake, each half within ``timeout``: the close frame (``send_close``), then the
        peer's (what it sends meanwhile is dropped). The caller closes the stream."""
        with trio.move_on_after(timeout):
            await self.send_close(code, reason)
        with trio.move_on_after(timeout):
            while self.peer_close is None and not self.ended and not self.broken:
                try:
                    await self.receive()
                except WebSocketClosed:
                    break
