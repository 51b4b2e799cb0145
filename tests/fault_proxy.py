"""A fault-injecting TCP proxy for tests: delay, drop, half-open partitions between a client and a
server on 127.0.0.1."""

from __future__ import annotations

import trio


class FaultProxy:
    """A TCP proxy on 127.0.0.1 in front of ``port`` that can delay, drop (close every connection)
    and black-hole (keep connections open, forward nothing: half-open peers; refuse new ones)."""

    def __init__(self, port: int):
        self.port = port
        self.delay = 0.0
        self.blackhole = False
        self.listen_port = 0
        self._scopes: set[trio.CancelScope] = set()

    async def run(self, *, task_status: trio.TaskStatus = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.listen_port = listeners[0].socket.getsockname()[1]
        task_status.started()
        await trio.serve_listeners(self._handle, listeners)

    def drop(self) -> None:
        """Cut every open connection now."""
        for scope in list(self._scopes):
            scope.cancel()

    async def _handle(self, client: trio.SocketStream) -> None:
        with trio.CancelScope() as scope:
            self._scopes.add(scope)
            try:
                while self.blackhole:  # accepted, never answered (until dropped)
                    await trio.sleep(0.05)
                server = await trio.open_tcp_stream("127.0.0.1", self.port)
                async with server, client, trio.open_nursery() as nursery:
                    nursery.start_soon(self._pipe, client, server, nursery.cancel_scope)
                    nursery.start_soon(self._pipe, server, client, nursery.cancel_scope)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass
            finally:
                self._scopes.discard(scope)

    async def _pipe(self, src: trio.SocketStream, dst: trio.SocketStream, scope: trio.CancelScope) -> None:
        try:
            while data := await src.receive_some(65536):
                while self.blackhole:
                    await trio.sleep(0.05)
                if self.delay:
                    await trio.sleep(self.delay)
                await dst.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        scope.cancel()
