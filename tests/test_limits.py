"""The server's limits, with real processes on 127.0.0.x: a flood of connections from one address is
capped while other clients keep working; too many messages, too big a message or an idle session
close only that session, each with its code, a log line and a count in /health."""

from __future__ import annotations

import contextlib
import select
import socket
import time

import pytest
import trio
import trio_websocket

from datsync.shell import open_replica
from datsync.shell.limits import ConnectionCounts, Limits, RateBucket
from tests.sync_server import Servers, bootstrap_raw, expect, msg, wait_until


@pytest.fixture
def servers(tmp_path):
    s = Servers(tmp_path)
    yield s
    s.close()


def connect_from(address: str, port: int) -> socket.socket:
    s = socket.socket()
    s.bind((address, 0))
    s.settimeout(10)
    s.connect(("127.0.0.1", port))
    return s


def answered(socks: list[socket.socket], within: float) -> list[socket.socket]:
    """The sockets with something to read within ``within`` seconds."""
    ready: set = set()
    deadline = time.monotonic() + within
    while len(ready) < len(socks) and (left := deadline - time.monotonic()) > 0:
        r, _, _ = select.select([s for s in socks if s not in ready], [], [], left)
        ready.update(r)
    return [s for s in socks if s in ready]


async def closed_with(ws: trio_websocket.WebSocketConnection) -> tuple[list[str], int]:
    """Read until the server closes: the error codes received and the close code."""
    codes = []
    with trio.fail_after(10):
        try:
            while True:
                m = await expect(ws, "error")
                codes.append(m["code"])
        except trio_websocket.ConnectionClosed as e:
            return codes, e.reason.code
    raise AssertionError("unreachable")


def test_a_flood_of_connections_from_one_address_is_capped_while_others_work(servers):
    server = servers.start("db.sqlite", "--max-connections-per-address", "4", "--handshake-timeout", "3")
    assert server.health()["limits"]["max_connections_per_address"] == 4
    flood = [connect_from("127.0.0.3", server.port) for _ in range(20)]
    try:
        refused = answered(flood, within=2.0)  # at once: 503; the four admitted wait for their request
        assert len(refused) == 16
        for s in refused:
            answer = s.recv(500)
            assert answer.startswith(b"HTTP/1.1 503") and b"too many connections from 127.0.0.3" in answer

        async def work() -> None:  # meanwhile another address is served as usual
            with trio.fail_after(10):
                async with open_replica(server.url) as rep:
                    assert (await rep.transact([{"person/name": "Ann"}])).t == 2

        trio.run(work)
        held = [s for s in flood if s not in refused]
        assert all(s.recv(100).startswith(b"HTTP/1.1 408") for s in held)  # after the handshake timeout
    finally:
        for s in flood:
            s.close()
    health = server.health()
    assert health["counters"]["refused_connections"] == 16 and health["counters"]["handshake_timeouts"] == 4
    assert server.stop() == 0
    log = server.log_text()
    assert "connection refused: limit reached" in log and "too many connections from 127.0.0.3" in log
    assert "not_logged_since_last" not in log or log.count("connection refused") < 16  # throttled


def test_connections_in_all_are_capped(servers):
    server = servers.start("db.sqlite", "--max-connections", "3")
    held = [connect_from(f"127.0.0.{i}", server.port) for i in (4, 5, 6)]
    try:
        wait_until(lambda: not answered(held, within=0.2))  # admitted: nothing to read
        late = connect_from("127.0.0.7", server.port)
        answer = late.recv(500)
        late.close()
        assert answer.startswith(b"HTTP/1.1 503") and b"at its limit of 3 connections" in answer
    finally:
        for s in held:
            s.close()
    assert wait_until(lambda: server.get("/health")[0] == 200)  # room again once they are gone
    assert server.health()["counters"]["refused_connections"] >= 1


def test_too_many_or_too_big_messages_close_only_that_session(servers):
    server = servers.start("db.sqlite", "--max-message-rate", "20", "--message-burst", "20",
                           "--max-message-size", "4096")

    async def main() -> None:
        async with open_replica(server.url) as good:
            async with trio_websocket.open_websocket_url(server.url) as flooder:
                await bootstrap_raw(flooder)
                with contextlib.suppress(trio_websocket.ConnectionClosed):
                    for n in range(200):  # still sending while the server closes: it drains, we get the close
                        await flooder.send_message(msg("ping", n=n))
                codes, close = await closed_with(flooder)
                assert "limit/rate" in codes and close == 1008, (codes, close)
            async with trio_websocket.open_websocket_url(server.url) as big:
                await bootstrap_raw(big)
                with contextlib.suppress(trio_websocket.ConnectionClosed):
                    await big.send_message("x" * 20_000)  # above twice the limit: the WebSocket layer closes
                _, close = await closed_with(big)
                assert close == 1009
            # the other session never noticed
            assert (await good.transact([{"person/name": "still here"}])).t == 2
            assert good.connected and good.stats.connects == 1

    trio.run(main)
    health = wait_until(lambda: (h := server.health())["sessions_closed"].get("protocol/too-large") and h)
    assert health["sessions_closed"]["limit/rate"] == 1 and health["counters"]["closed_rate"] == 1
    assert health["counters"]["closed_too_large"] == 1
    assert server.stop() == 0
    log = server.log_text()
    assert "closing a session: limit exceeded" in log and "code=limit/rate" in log and "code=protocol/too-large" in log


def test_an_idle_session_is_closed_when_asked(servers):
    server = servers.start("db.sqlite", "--idle-timeout", "0.5")

    async def main() -> None:
        async with trio_websocket.open_websocket_url(server.url) as ws:
            await bootstrap_raw(ws)
            start = trio.current_time()
            codes, close = await closed_with(ws)
            assert codes == ["limit/idle"] and close == 1001 and trio.current_time() - start >= 0.3

    trio.run(main)
    assert wait_until(lambda: server.health()["sessions_closed"].get("limit/idle")) == 1


def test_the_limit_helpers():
    counts = ConnectionCounts(Limits(max_connections=3, max_connections_per_address=2))
    assert counts.admit("a") is None and counts.admit("a") is None
    assert "from a" in counts.admit("a")
    assert counts.admit("b") is None
    assert "limit of 3" in counts.admit("c")
    counts.release("a")
    assert counts.admit("c") is None and counts.status()["busiest"] == {"a": 1, "b": 1, "c": 1}
    bucket = RateBucket(rate=10, burst=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.take(0.1) and not bucket.take(0.1)  # one more token every 0.1 s
