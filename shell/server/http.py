"""HTTP on the WebSocket port, parsed by h11: read a request head (at most ``MAX_HTTP_HEAD`` bytes), hand
a WebSocket upgrade back (``ws.py`` answers its handshake), answer the rest: health,
status for an authorized caller, the browser client and an application's static files; a request h11
cannot parse gets 400 (431 for a head too long) saying why."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

import h11
import trio

from ..static import CLIENT_PREFIX, static_file
from .auth import _bearer, authorize

if TYPE_CHECKING:
    from .sync_server import SyncServer

MAX_HTTP_HEAD = 16 << 10
"""The largest request head read (h11's ``max_incomplete_event_size``): a longer one gets 431."""


@dataclass(frozen=True)
class HttpRequest:
    """A request head: its method, target and headers (names in lower case; the last of a repeated one)."""

    method: str
    target: str
    headers: dict[str, str]

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    @property
    def is_upgrade(self) -> bool:
        return "websocket" in self.headers.get("upgrade", "").lower()


@dataclass(frozen=True)
class BadRequest:
    """Bytes that are not an HTTP request head: the status to answer (400, or 431 when too long) and why."""

    status: int
    why: str


def http_connection() -> h11.Connection:
    """The server side of one HTTP connection, reading request heads up to ``MAX_HTTP_HEAD`` bytes."""
    return h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HTTP_HEAD)


async def read_request(stream: trio.abc.ReceiveStream,
                       http: h11.Connection) -> tuple[bytes, HttpRequest | BadRequest | None]:
    """Read until ``http`` has a whole request head: ``(the bytes read, the request or why it is not one)``;
    None instead of the request when the peer closed before sending anything."""
    buf = bytearray()
    while True:
        try:
            event = http.next_event()
        except h11.RemoteProtocolError as e:
            too_long = e.error_status_hint == 431
            why = f"a request head above {MAX_HTTP_HEAD} bytes" if too_long else str(e)[:200]
            return bytes(buf), BadRequest(431 if too_long else 400, why)
        if event is h11.NEED_DATA:
            data = await stream.receive_some(4096)
            buf += data
            http.receive_data(data)  # b"": the peer closed
        elif type(event) is h11.Request:
            headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in event.headers}
            return bytes(buf), HttpRequest(event.method.decode("latin-1"), event.target.decode("latin-1"), headers)
        else:  # h11.ConnectionClosed: the peer closed without a byte
            return bytes(buf), None


def response(http: h11.Connection, status: int, body: Any, *, head_only: bool = False,
             content_type: str = "application/octet-stream", headers: Sequence[tuple[str, str]] = ()) -> bytes:
    """The bytes answering ``status`` with ``body`` (bytes as they are, a string as text, anything else as
    JSON) on ``http``, the connection the request came on; ``Connection: close``. ``head_only``: the
    headers alone (the answer to a HEAD request); ``headers``: more of them."""
    if isinstance(body, bytes):
        data, ctype = body, content_type
    elif isinstance(body, str):
        data, ctype = body.encode(), "text/plain; charset=utf-8"
    else:
        data, ctype = json.dumps(body, indent=1, default=str).encode() + b"\n", "application/json"
    head = [("Content-Type", ctype), ("Content-Length", str(len(data))), ("Cache-Control", "no-store"),
            ("Connection", "close"), *headers]
    out = http.send(h11.Response(status_code=status, reason=HTTPStatus(status).phrase, headers=head)) or b""
    if not head_only:
        out += http.send(h11.Data(data=data)) or b""
    return out + (http.send(h11.EndOfMessage()) or b"")


async def respond(stream: trio.abc.Stream, status: int, body: Any, *, http: h11.Connection | None = None,
                  head_only: bool = False, content_type: str = "application/octet-stream",
                  headers: Sequence[tuple[str, str]] = ()) -> None:
    """Send ``response(...)``, then close the connection (``linger``). Without ``http`` (no request was
    read) a fresh connection answers."""
    await stream.send_all(response(http or http_connection(), status, body, head_only=head_only,
                                   content_type=content_type, headers=headers))
    await linger(stream)


async def linger(stream: Any) -> None:
    """Half-close and drain what the peer still sends (briefly), so closing with unread input does
    not reset the connection before the peer has read our answer."""
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        if isinstance(stream, trio.abc.HalfCloseableStream):  # TLS has no half-close: drain only
            await stream.send_eof()
        with trio.move_on_after(1.0):
            for _ in range(256):
                if not await stream.receive_some(65536):
                    break


async def answer(server: SyncServer, stream: trio.abc.Stream, http: h11.Connection, request: HttpRequest,
                 peer_host: str) -> None:
    """Answer a request that is not a WebSocket upgrade: ``/health`` (public), ``/status`` (for a caller
    replicas would accept), the browser client and the static files, else 404 (405 for a method other
    than GET and HEAD); a HEAD request gets the headers alone, whatever the answer."""

    async def reply(status: int, body: Any, content_type: str = "application/octet-stream") -> None:
        await respond(stream, status, body, http=http, head_only=request.method == "HEAD", content_type=content_type)

    if request.method not in ("GET", "HEAD"):
        await reply(405, "datsync: only GET /health and GET /status\n")
    elif request.path == "/health":
        await reply(200, await server.health())
    elif request.path == "/status":
        principal, why = authorize(_bearer(request.headers.get("authorization", "")), peer_host, server.token,
                                   server.jwt)
        if principal is None:
            await reply(401, f"datsync: not authorized: {why}\n")
        else:
            await reply(200, await server.health(detail=True))
    elif (found := static_file(request.path, server.static_dir)) is not None:
        data = await trio.to_thread.run_sync(found[0].read_bytes)
        await reply(200, data, found[1])
    else:
        await reply(404, f"datsync sync server: connect a replica with a WebSocket to {server.url}; GET /health "
                         f"for health, /status for sessions, {CLIENT_PREFIX}client.js for the browser client\n")
