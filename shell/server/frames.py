"""WebSocket frames as the server writes them: a shared delta framed once and written to every socket
directly, snapshots in batches, and the close codes of the protocol's reasons to close."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import trio
import trio_websocket
from trio_websocket import ConnectionClosed
from wsproto.connection import ConnectionState

from ..limits import IDLE, RATE
from ..websocket import OP_BINARY, frame

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


def ws_frame(payload: bytes) -> bytes:
    """``payload`` as one unmasked binary WebSocket frame (RFC 6455 5.2), what a server sends: the same
    bytes for every connection, so a shared delta is framed once and written to every socket."""
    return frame(OP_BINARY, payload)


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


def _direct_socket(ws: trio_websocket.WebSocketConnection, stream: Any) -> socket.socket | None:
    """The connection's socket, when frames may be written to it directly from the fan-out (a plain
    TCP stream, no extension): a write then costs one system call, not a task switch."""
    inner = getattr(stream, "stream", None)
    if not _frames_directly(ws) or type(inner) is not trio.SocketStream:
        return None
    sock = getattr(inner.socket, "_sock", None)
    return sock if isinstance(sock, socket.socket) else None


def _may_write_now(ws: trio_websocket.WebSocketConnection) -> bool:
    """Whether nobody is writing to ``ws``'s stream (its own pongs and close take the same lock) and
    it is open: a frame written now cannot land inside another."""
    return not ws._stream_lock.locked() and ws.closed is None and ws._wsproto.state is ConnectionState.OPEN


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

