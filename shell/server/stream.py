"""A connection's byte stream as the server uses it: the bytes already read put back in front (the HTTP
head that was parsed, a TLS record's first byte), and how long a write has waited for the peer to read."""

from __future__ import annotations

import trio

SEND_SLICE = 64 << 10
"""Bytes handed to the socket at a time: each slice taken is progress (the client is reading)."""


class _Prefixed(trio.abc.Stream):
    """A stream whose first bytes were already read (the HTTP head parsed, a TLS record's first byte)."""

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
        tasks are gone (``http.linger``: closing with unread input would reset the connection, and a reset
        loses the answer, the ``error`` and the close frame, that the peer has not read yet)."""
        await trio.lowlevel.checkpoint()

