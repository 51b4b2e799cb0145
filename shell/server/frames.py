"""WebSocket frames as the server writes them: a shared delta framed once and written to every socket
directly, snapshots in batches, and the close codes of the protocol's reasons to close."""

from __future__ import annotations

from collections.abc import Iterator

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
