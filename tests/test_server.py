"""`datsync serve` as a real process on 127.0.0.1: HTTP health, bad input, slow and dead peers, the
store lock, schema install, graceful shutdown, and no acknowledged transaction lost to `kill -9`."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import sys
import time

import pytest
import trio
import trio_websocket

from datsync.core import TX0, datoms
from datsync.core.sync import PROTOCOL_VERSION
from datsync.shell import ReplicaClosed, TxOutcomeUnknown, open_replica, open_store, store_in_use
from datsync.shell.connection import Connection, decode_events
from datsync.shell.server import schema_tx_from_edn, serve, ws_frame
from tests.sync_server import (
    FAST_RECONNECT,
    HELLO,
    SCHEMA_EDN,
    Servers,
    bootstrap_raw,
    expect,
    msg,
    raw_http,
    wait_until,
)


@pytest.fixture
def servers(tmp_path):
    s = Servers(tmp_path)
    yield s
    s.close()


def test_health_status_and_plain_http(servers):
    server = servers.start()
    assert server.banner.startswith(f"datsync serving ws://127.0.0.1:{server.port}/ store=")
    assert server.field("t") == "1"
    h = server.health()
    assert h["status"] == "ok" and h["t"] == 1 and h["sessions"] == 0 and h["protocol"] == PROTOCOL_VERSION
    assert h["store"]["last_t"] == 1 and h["store"]["log_entries"] == 1 and h["uptime_s"] >= 0
    assert len(h["db_id"]) == 36 and h["auth"] == "loopback-only"

    async def main() -> None:
        async with open_replica(server.url) as rep:
            assert rep.db_id == h["db_id"]
            status, body = await trio.to_thread.run_sync(server.get, "/status")
            assert status == 200 and body["sessions"] == 1
            (s,) = body["session_detail"]
            assert s["phase"] == "live" and s["t"] == 1 and s["peer"].startswith("127.0.0.1:")

    trio.run(main)
    assert server.get("/nope")[0] == 404
    assert raw_http(server.port, b"POST /health HTTP/1.1\r\nHost: x\r\n\r\n").startswith(b"HTTP/1.1 405")
    assert raw_http(server.port, b"\x16\x03\x01 not http at all\r\n\r\n").startswith(b"HTTP/1.1 400")
    too_long = raw_http(server.port, b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 5000 + b"\r\n")
    assert too_long.startswith(b"HTTP/1.1 431") and b"a request head above 16384 bytes" in too_long
    no_host = raw_http(server.port, b"GET /health HTTP/1.1\r\n\r\n")  # HTTP/1.1 requires Host
    assert no_host.startswith(b"HTTP/1.1 400 Bad Request\r\n") and b"Missing mandatory Host" in no_host
    assert raw_http(server.port, b"GET /health HTTP/1.1\r\nHost: x\r\nno colon\r\n\r\n").startswith(b"HTTP/1.1 400")
    head, _, body = raw_http(server.port, b"HEAD /health HTTP/1.1\r\nHost: x\r\n\r\n").partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"Content-Type: application/json" in head and body == b""
    for request in (b"HEAD /nope HTTP/1.1\r\nHost: x\r\n\r\n", b"HEAD /status HTTP/1.1\r\nHost: x\r\n\r\n"):
        head, _, body = raw_http(server.port, request).partition(b"\r\n\r\n")  # any answer to HEAD: headers alone
        assert head.startswith((b"HTTP/1.1 404", b"HTTP/1.1 200")) and b"Content-Length: " in head and body == b""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:  # a head in pieces
        for piece in (b"GET /hea", b"lth HTTP/1.0\r\n", b"Host: x\r", b"\n\r\n"):
            s.sendall(piece)
        answer = b"".join(iter(lambda: s.recv(65536), b""))
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and json.loads(answer.partition(b"\r\n\r\n")[2])["t"] == 1
    assert server.health()["status"] == "ok"


def test_bad_input_gets_an_error_and_everyone_else_keeps_working(servers):
    server = servers.start("db.sqlite", "--max-message-size", "65536")  # the WebSocket closes above 128 KiB

    async def main() -> None:
        async with open_replica(server.url) as good:
            r0 = await good.transact([{"person/name": "before"}])
            async with trio_websocket.open_websocket_url(server.url) as ws:
                await bootstrap_raw(ws)
                # after the handshake, bad messages get an error each and the connection stays
                await ws.send_message(b"\xff\xfe not utf-8")
                assert (await expect(ws, "error"))["code"] == "protocol/malformed"
                await ws.send_message("[1, 2")
                assert (await expect(ws, "error"))["code"] == "protocol/malformed"
                await ws.send_message(msg("ack", t="seven"))
                e = await expect(ws, "error")
                assert e["code"] == "protocol/malformed" and "t" in e["message"]
                await ws.send_message(msg("welcome", db_id="x", t=1, mode="resume", ack_every=1))
                assert (await expect(ws, "error"))["code"] == "protocol/unexpected"
                await ws.send_message(HELLO)
                assert (await expect(ws, "error"))["code"] == "protocol/unexpected"
                await ws.send_message(msg("frobnicate"))
                assert (await expect(ws, "error"))["code"] == "protocol/malformed"
                await ws.send_message("x" * 100_000)
                assert (await expect(ws, "error"))["code"] == "protocol/too-large"
                # bad transactions are refused with the reason, before or by the transactor
                await ws.send_message(msg("submit", req=1, tx=[{"nope/attr": 1}]))
                assert (await expect(ws, "tx-rejected", req=1))["code"] == "db.error/not-an-entity"
                await ws.send_message(msg("submit", req=2, tx=[["db.fn/call", "~$evil"]]))
                assert (await expect(ws, "tx-rejected", req=2))["code"] == "sync/forbidden-op"
                await ws.send_message(msg("submit", req=3, tx="not a list"))
                assert (await expect(ws, "error"))["code"] == "protocol/malformed"
                await ws.send_message(msg("submit", req=4, tx=[{"person/name": 42}]))
                assert (await expect(ws, "tx-rejected", req=4))["code"] == "db.error/wrong-type-for-attribute"
                # and a good one still works on the same connection
                await ws.send_message(msg("submit", req=5, tx=[{"db/id": "x", "person/name": "raw"}]))
                seen: dict = {}
                with trio.fail_after(10):
                    while "tx-ok" not in seen or "delta" not in seen:  # either may come first
                        m = json.loads(await ws.get_message())
                        seen.setdefault(m["type"], m)
                ok = seen["tx-ok"]
                assert ok["req"] == 5 and seen["delta"]["t"] == ok["t"]
                # far too big: the WebSocket itself closes the connection (1009)
                with trio.fail_after(10), pytest.raises(trio_websocket.ConnectionClosed) as closed:
                    await ws.send_message("y" * 300_000)  # may already fail: the server closes mid-message
                    while True:
                        await ws.get_message()
                assert closed.value.reason.code == 1009

            # before the handshake: another version, or garbage, closes with an error
            async with trio_websocket.open_websocket_url(server.url) as ws:
                await ws.send_message(json.dumps({"v": 1, "type": "hello"}))  # a peer of the older protocol
                e = await expect(ws, "error")
                assert e["v"] == 1 and e["code"] == "protocol/version" and "version 2" in e["message"]
                with trio.fail_after(10), pytest.raises(trio_websocket.ConnectionClosed):
                    await ws.get_message()
            async with trio_websocket.open_websocket_url(server.url) as ws:
                await ws.send_message(msg("submit", req=1, tx=[]))
                assert (await expect(ws, "error"))["code"] == "protocol/unexpected"
            async with trio_websocket.open_websocket_url(server.url) as ws:  # junk with a long non-ASCII name
                await ws.send_message(msg("ü" * 300))
                assert (await expect(ws, "error"))["code"] == "protocol/malformed"
                with trio.fail_after(10), pytest.raises(trio_websocket.ConnectionClosed) as closed:
                    await ws.get_message()
                assert closed.value.reason.code == 1002
            # broken WebSocket framing after a proper upgrade: the WebSocket layer closes that connection
            with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s0:
                s0.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
                assert s0.recv(12) == b"HTTP/1.1 101"
                s0.sendall(b"\xff\x7f" + b"\x00" * 64)  # reserved opcode, unmasked, absurd length
                while s0.recv(65536):  # the server drops the connection: EOF (a hang would time out)
                    pass
            # a TCP peer that never finishes its request, and one that leaves mid-handshake
            with socket.create_connection(("127.0.0.1", server.port)) as s1:
                s1.sendall(b"GET / HTTP/1.1\r\nUpgrade: websocket\r\n")
                with socket.create_connection(("127.0.0.1", server.port)) as s2:
                    s2.sendall(b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
                r1 = await good.transact([{"person/name": "after"}])
            assert r1.t == ok["t"] + 1 and ok["t"] == r0.t + 1
            assert good.stats.connects == 1 and good.connected
            assert datoms(good.db, "avet", "person/name", "raw")

    trio.run(main)
    h = server.health()
    assert h["sessions"] == 0 and h["counters"]["protocol_errors"] >= 9 and server.alive()


def test_a_client_that_stops_reading_is_cut_off_and_others_keep_their_speed(servers):
    server = servers.start("db.sqlite", "--max-buffered", "100", "--window", "16")
    n = 400

    async def main() -> tuple[list[float], list[dict]]:
        samples: list[dict] = []
        async with trio_websocket.open_websocket_url(server.url) as slow:
            await slow.send_message(HELLO)  # ...and never reads again
            async with open_replica(server.url) as fast, trio.open_nursery() as nursery:
                async def watch() -> None:
                    while True:
                        _, body = await trio.to_thread.run_sync(server.get, "/status")
                        samples.extend(s for s in body["session_detail"] if s["id"] == 1)
                        await trio.sleep(0.05)

                nursery.start_soon(watch)
                latencies = []
                for i in range(n):
                    t0 = time.perf_counter()
                    await fast.transact([{"person/name": f"p{i}", "person/n": i}])
                    latencies.append(time.perf_counter() - t0)
                assert fast.t == n + 1 and fast.stats.resyncs == 0
                nursery.cancel_scope.cancel()
        return latencies, samples

    latencies, samples = trio.run(main)
    h = server.health()
    assert h["counters"]["closed_slow"] == 1 and h["counters"]["resyncs"] == 3
    assert "the client is not reading" in server.log_text()
    wait_until(lambda: server.health()["sessions"] == 0)
    # the slow session's buffers stayed within their bounds while it lasted
    assert samples and all(s["queued"] + s["inflight"] <= 100 and s["inflight"] <= 16 for s in samples)
    assert all(s["outbound"] <= s["outbound_capacity"] for s in samples)
    # the fast replica never waited on the slow one
    latencies.sort()
    assert latencies[-1] < 1.0 and latencies[len(latencies) // 2] < 0.05, (latencies[len(latencies) // 2],
                                                                          latencies[-1])


BIG = "x" * 200_000
"""A value that makes each delta 200 KB: forty of them are more than the sockets between the server
and a client with a small receive buffer can hold, so the server's writes wait on the client."""


@contextlib.asynccontextmanager
async def narrow_socket(url: str):
    """A raw WebSocket to ``url`` whose TCP receive buffer is small: what the client does not read
    soon stays in the server's queue, not in the kernel."""
    stream = await trio.open_tcp_stream("127.0.0.1", int(url.rsplit(":", 1)[1].strip("/")))
    stream.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 10)
    async with trio.open_nursery() as nursery:
        ws = await trio_websocket.wrap_client_stream(nursery, stream, "127.0.0.1", "/")
        try:
            yield ws
        finally:
            await ws.aclose()
            nursery.cancel_scope.cancel()


def test_a_client_that_keeps_reading_slowly_is_never_cut_off(servers):
    # It pipelines far more submissions than its outbound queue's high-water mark, behind 8 MB of
    # deltas it reads slowly: the server stops reading from it instead of cutting it off.
    server = servers.start("db.sqlite", "--send-timeout", "2")
    n_big, n_small = 40, 400
    answers: dict[int, str] = {}

    async def main() -> None:
        async with narrow_socket(server.url) as ws:
            await bootstrap_raw(ws)

            async def submit() -> None:
                for i in range(n_big):
                    await ws.send_message(msg("submit", req=i, tx=[{"person/name": f"{i}{BIG}", "person/n": i}]))
                for i in range(n_big, n_big + n_small):
                    await ws.send_message(msg("submit", req=i, tx=[{"person/name": f"s{i}", "person/n": i}]))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(submit)
                with trio.fail_after(120):
                    while len(answers) < n_big + n_small:
                        m = json.loads(await ws.get_message())
                        if m["type"] in ("tx-ok", "tx-rejected"):
                            answers[m["req"]] = m["type"] if m["type"] == "tx-ok" else m["code"]
                        await trio.sleep(0.002)  # a busy client: it reads, but not fast
            assert ws.closed is None
            await ws.send_message(msg("ping", n=1))
            assert (await expect(ws, "pong"))["n"] == 1

    trio.run(main)
    assert [answers[i] for i in range(n_big)] == ["tx-ok"] * n_big
    assert set(answers.values()) <= {"tx-ok", "sync/overloaded"}
    h = server.health()
    assert h["counters"].get("closed_slow", 0) == 0 and "not reading" not in server.log_text()


def test_deltas_written_straight_to_sockets_arrive_whole_and_in_order(servers):
    # The fan-out writes a delta's frame to an idle session's socket itself; what a full socket does
    # not take goes out through the session's writer before anything else: a client reading slowly
    # behind a small receive buffer still gets every delta, each frame intact, in commit order.
    server = servers.start("db.sqlite", "--send-timeout", "5")
    n = 30
    got: list[tuple[int, str]] = []

    async def main() -> None:
        async with narrow_socket(server.url) as slow, open_replica(server.url) as fast:
            welcome = await bootstrap_raw(slow)
            async with trio.open_nursery() as nursery:
                async def write() -> None:
                    for i in range(n):
                        await fast.submit([{"person/name": f"{i}:{BIG}", "person/n": i}])

                nursery.start_soon(write)
                with trio.fail_after(120):
                    while len(got) < n:
                        m = json.loads(await slow.get_message())
                        if m["type"] == "delta":
                            names = [d[2] for d in m["datoms"] if d[1] == "person/name"]
                            got.append((m["t"], names[0].split(":")[0]))
                            await slow.send_message(msg("ack", t=m["t"]))
                        await trio.sleep(0.01)
            assert [t for t, _ in got] == list(range(welcome["t"] + 1, welcome["t"] + 1 + n))
            assert [name for _, name in got] == [str(i) for i in range(n)]

    trio.run(main)
    counters = server.health()["counters"]
    assert counters["writes_direct"] >= 1 and counters["writes_partial"] >= 1, counters


def test_a_client_whose_socket_takes_nothing_is_cut_off(servers):
    server = servers.start("db.sqlite", "--send-timeout", "1")

    async def main() -> None:
        async with narrow_socket(server.url) as stalled:
            await bootstrap_raw(stalled)  # ...and never reads again
            async with open_replica(server.url) as writer:
                for i in range(40):
                    await writer.transact([{"person/name": f"{i}{BIG}", "person/n": i}])
                await trio.to_thread.run_sync(wait_until, lambda: server.health()["counters"].get("closed_slow") == 1)
                assert writer.connected and writer.stats.resyncs == 0

    trio.run(main)
    h = server.health()
    assert h["counters"].get("resyncs", 0) == 0 and h["counters"]["closed_slow"] == 1
    assert "its socket took nothing for" in server.log_text()


def test_the_server_frames_messages_itself_and_every_peer_reads_them():
    # Server frames are unmasked: the server answers the handshake and writes a delta's frame, made
    # once, to every socket, several frames in one write; a standard WebSocket client reads each
    # message as sent, and the server reads the client's masked frames.
    from datsync.shell.server.http import http_connection, read_request
    from datsync.shell.server.stream import _Prefixed
    from datsync.shell.server.ws import ServerWebSocket, handshake_refusal, upgrade_leftover

    messages = [b"x", b"y" * 200, b"z" * 70_000]
    got: list = []
    answers: list = []

    async def handler(stream: trio.SocketStream) -> None:
        http = http_connection()
        _, request = await read_request(stream, http)
        assert request.path == "/some/path" and handshake_refusal(request) is None
        ws = ServerWebSocket(_Prefixed(stream, upgrade_leftover(http)), 1 << 20)
        await ws.accept(request.headers["sec-websocket-key"])
        await ws.write(b"".join(ws_frame(m) for m in messages))
        while not answers:
            answers.extend(await ws.receive())
        await ws.close(1000, "", 10)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(trio.serve_tcp, handler, 0)
            port = listeners[0].socket.getsockname()[1]
            async with trio_websocket.open_websocket("127.0.0.1", port, "/some/path", use_ssl=False) as ws:
                for _ in messages:
                    got.append(await ws.get_message())
                await ws.send_message("done")
            nursery.cancel_scope.cancel()

    trio.run(main)
    assert got == messages and answers == ["done"]


def test_a_silent_peer_is_timed_out(servers):
    server = servers.start("db.sqlite", "--heartbeat-interval", "0.1", "--heartbeat-timeout", "0.3")

    async def main() -> None:
        async with trio_websocket.open_websocket_url(server.url) as ws:
            welcome = await bootstrap_raw(ws)
            assert welcome["mode"] == "bootstrap"
            ping = await expect(ws, "ping")
            assert ping["t"] == 1
            e = await expect(ws, "error")  # we never answer: the server gives up on us
            assert e["code"] == "protocol/timeout"
            with trio.fail_after(10), pytest.raises(trio_websocket.ConnectionClosed) as closed:
                await ws.get_message()
            assert closed.value.reason.code == 1001
        # a replica that answers its pings stays connected across many heartbeats
        async with open_replica(server.url, heartbeat_interval=0.1) as rep:
            await trio.sleep(1.0)  # 10 heartbeat intervals: nothing to await, the point is that nothing happens
            assert rep.connected and rep.stats.connects == 1
        # a TCP peer that never finishes its HTTP request is told so (408) and dropped after the handshake timeout
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
            s.sendall(b"GET / HTTP/1.1\r\n")
            assert s.recv(100).startswith(b"HTTP/1.1 408")

    trio.run(main)
    assert server.health()["sessions"] == 0


def test_one_server_per_store(servers):
    server = servers.start()
    assert store_in_use(server.store)
    out = subprocess.run([sys.executable, "-m", "datsync.shell", "serve", "--port", "0", "--store",
                          str(server.store)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "store/in-use" in out.stderr and out.stdout == ""
    assert server.stop() == 0
    assert not store_in_use(server.store)


def test_schema_installed_once(servers, tmp_path):
    server = servers.start()
    assert server.field("t") == "1"
    assert server.stop() == 0
    again = servers.start()  # same schema file: nothing to do
    assert again.field("t") == "1" and "schema already installed" in again.log_text()
    assert again.stop() == 0
    (tmp_path / "more.edn").write_text("[{:db/ident :person/email :db/valueType :db.type/string "
                                       ":db/cardinality :db.cardinality/one :db/doc \"mail\"}]")
    more = servers.start("db.sqlite", "--schema", str(tmp_path / "more.edn"), schema=False)
    assert more.field("t") == "2"
    bad = tmp_path / "bad.edn"
    bad.write_text("{:person/age {:db/valueType :db.type/nope}}")
    assert more.stop() == 0
    out = subprocess.run([sys.executable, "-m", "datsync.shell", "serve", "--port", "0", "--store",
                          str(more.store), "--schema", str(bad)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "bad.edn" in out.stderr
    assert not store_in_use(more.store)
    assert [m["db/ident"].name for m in schema_tx_from_edn((tmp_path / "more.edn").read_text())] == ["person/email"]


def test_sigterm_shuts_down_gracefully(servers):
    server = servers.start("db.sqlite", "--checkpoint-every", "100000")
    acked: list[tuple[str, int]] = []

    async def main() -> tuple[str, object]:
        async with open_replica(server.url, reconnect=False) as rep:
            enough = trio.Event()

            async def writer() -> str:
                i = 0
                while True:
                    try:
                        r = await rep.transact([{"db/id": "p", "person/name": f"p{i}", "person/n": i}])
                    except TxOutcomeUnknown:
                        return "unknown"
                    except ReplicaClosed:
                        return "closed"
                    except Exception as e:  # a definite rejection while shutting down
                        return getattr(e, "code", repr(e))
                    acked.append((f"p{i}", r.tempids["p"]))
                    i += 1
                    if i == 50:
                        enough.set()

            ended = []
            async with trio.open_nursery() as nursery:
                async def run_writer() -> None:
                    ended.append(await writer())

                nursery.start_soon(run_writer)
                await enough.wait()
                server.proc.send_signal(signal.SIGTERM)
            return ended[0], rep.stats

    ended, stats = trio.run(main)
    assert server.proc.wait(20) == 0  # one signal: a graceful stop (a second one would skip the checkpoint)
    assert ended in ("closed", "unknown", "server/shutdown")
    assert stats.last_error[0] == "server/shutdown" and stats.last_close.startswith("1001")
    log = server.log_text()
    assert "signal received: shutting down" in log and "checkpoint written" in log and "stopped" in log
    assert not store_in_use(server.store)
    store = open_store(server.store)
    try:
        assert store.latest_checkpoint()[0] == store.last_t() >= len(acked) + 1
        db = Connection.recover(store).db
        for name, eid in acked:
            assert datoms(db, "avet", "person/name", name)[0].e == eid
    finally:
        store.close()


def test_kill_9_under_write_load_loses_no_acknowledged_transaction(servers):
    server = servers.start()
    writers, per_writer_after = 4, 15

    async def main() -> None:
        acked: dict[str, tuple[int, int, int]] = {}   # name -> (eid, n, t)
        unknown: list[str] = []
        killed = trio.Event()
        restarted = trio.Event()
        enough = trio.Event()
        async with open_replica(server.url, **FAST_RECONNECT) as r1, \
                open_replica(server.url, **FAST_RECONNECT) as r2:
            reps = [r1, r2]

            async def writer(k: int) -> None:
                rep, i, after = reps[k % 2], 0, 0
                while after < per_writer_after:
                    name = f"w{k}-{i}"
                    try:
                        r = await rep.transact([{"db/id": "p", "person/name": name, "person/n": i}])
                        acked[name] = (r.tempids["p"], i, r.t)
                        after += restarted.is_set()
                    except TxOutcomeUnknown:
                        unknown.append(name)
                    i += 1
                    if len(acked) >= 150:
                        enough.set()

            async with trio.open_nursery() as nursery:
                for k in range(writers):
                    nursery.start_soon(writer, k)
                await enough.wait()
                server.kill()  # SIGKILL, mid-stream
                killed.set()
                await trio.to_thread.run_sync(lambda: servers.start(server.store.name, port=server.port))
                restarted.set()

            # a fresh replica bootstraps the recovered database: every acknowledged write is there
            async with open_replica(server.url) as fresh:
                for name, (eid, n, _t) in acked.items():
                    (d,) = datoms(fresh.db, "avet", "person/name", name)
                    assert d.e == eid and datoms(fresh.db, "eavt", eid, "person/n")[0].v == n
                for name in unknown:  # committed or not: either way, whole
                    found = datoms(fresh.db, "avet", "person/name", name)
                    assert len(found) <= 1
                # the replicas that lived through the crash converge on it, resuming (no new snapshot)
                for rep in reps:
                    await rep.wait_for_t(fresh.t)
                    assert rep.t == fresh.t and datoms(rep.db, "eavt") == datoms(fresh.db, "eavt")
                    assert rep.stats.bootstraps == 1 and rep.stats.resumes >= 1
                assert max(t for _, _, t in acked.values()) <= fresh.t
                assert fresh.db.max_tx == TX0 + fresh.t

    trio.run(main)


def test_a_replica_resumes_from_the_store_log_after_a_restart(servers):
    # a replica kept from an earlier connection resumes: the restarted server reads what it missed
    # from the store's log (nothing is in memory after a restart), no snapshot
    server = servers.start()

    async def main() -> None:
        async with open_replica(server.url) as rep:
            kept = rep.replica
        async with open_replica(server.url) as writer:
            for i in range(30):
                await writer.transact([{"person/name": f"x{i}"}])
        assert await trio.to_thread.run_sync(server.stop) == 0
        again = await trio.to_thread.run_sync(lambda: servers.start(port=server.port))
        async with open_replica(again.url, replica=kept) as resumed:
            await resumed.wait_for_t(kept.t + 30)
            assert resumed.stats.last_mode == "resume" and resumed.stats.bootstraps == 0
            assert datoms(resumed.db, "avet", "person/name", "x29")
        assert again.health()["counters"]["log_reads"] == 1

    trio.run(main)


def test_fanout_overflow_is_repaired_from_the_log(tmp_path):
    # in-process server whose commit listener holds one commit: group commits overflow it at once;
    # the fan-out catches up from the store's log and every replica still gets every delta in order
    async def main() -> None:
        async with trio.open_nursery() as nursery:
            server = await nursery.start(lambda task_status: serve(
                port=0, store_path=tmp_path / "db.sqlite", schema_file=_schema_file(tmp_path), handle_signals=False,
                listen_buffer=1, task_status=task_status))
            async with open_replica(server.url) as writer, open_replica(server.url) as reader:
                async with trio.open_nursery() as writers:
                    for k in range(8):
                        async def write(k=k) -> None:
                            for i in range(10):
                                await writer.transact([{"person/name": f"w{k}-{i}", "person/n": i}])
                        writers.start_soon(write)
                await reader.wait_for_t(writer.t)
                assert reader.t == 81 and datoms(reader.db, "eavt") == datoms(writer.db, "eavt")
                assert reader.stats.resyncs == 0 and reader.stats.deltas == 80
            health = await server.health()
            assert health["counters"]["fanout_overflows"] >= 1 and health["t"] == 81
            await server.shutdown()
        assert server.stopped.is_set() and not store_in_use(tmp_path / "db.sqlite")

    trio.run(main)


def test_checkpoints_wait_until_the_log_holds_a_share_of_the_last_one(tmp_path):
    # every transaction here adds two events (a name and its db/txInstant); with --checkpoint-every 1
    # the next checkpoint after one of E events waits for E / 2 events in the log (growth 0.5)
    store_path = tmp_path / "db.sqlite"

    def latest() -> tuple[int, int]:
        store = open_store(store_path)  # a second connection: WAL readers do not block the server
        try:
            t, payload = store.latest_checkpoint()
        finally:
            store.close()
        return t, len(decode_events(payload))

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            server = await nursery.start(lambda task_status: serve(
                port=0, store_path=store_path, schema_file=_schema_file(tmp_path), handle_signals=False,
                checkpoint_every=1, checkpoint_growth=0.5, task_status=task_status))
            with trio.fail_after(10):
                while server.counters["checkpoints"] < 1:  # at start: the schema's transaction
                    await trio.sleep(0.01)
            first_t, first_events = latest()
            assert first_t == 1 and server.conn.checkpoint_events == first_events
            below = (first_events + 3) // 4 - 1  # transactions whose 2 events each stay below E / 2
            async with open_replica(server.url) as rep:
                for i in range(below):
                    await rep.transact([{"person/name": f"p{i}"}])
                with trio.fail_after(10):
                    while server.fed_t < rep.t:
                        await trio.sleep(0.01)
                await trio.sleep(0.2)
                assert server.counters["checkpoints"] == 1 and latest() == (first_t, first_events)
                await rep.transact([{"person/name": "enough"}])
                with trio.fail_after(10):
                    while server.counters["checkpoints"] < 2:
                        await trio.sleep(0.01)
                assert latest() == (first_t + below + 1, first_events + 2 * (below + 1))
            health = await server.health()
            assert health["history_events"] == first_events + 2 * (below + 1)
            await server.shutdown()

    trio.run(main)


def test_a_server_owning_its_process_tunes_the_collector_and_freezes_what_it_recovered(tmp_path):
    import gc

    from datsync.shell.server.run import YOUNG_COLLECTION_THRESHOLD, tune_collector

    threshold = gc.get_threshold()
    try:
        tune_collector()
        assert gc.get_threshold() == (YOUNG_COLLECTION_THRESHOLD, *threshold[1:])
    finally:
        gc.set_threshold(*threshold)

    async def main(own_process: bool) -> int:
        async with trio.open_nursery() as nursery:
            server = await nursery.start(lambda task_status: serve(
                port=0, store_path=tmp_path / "db.sqlite", schema_file=_schema_file(tmp_path), handle_signals=False,
                own_process=own_process, task_status=task_status))
            frozen = gc.get_freeze_count()
            await server.shutdown()
        return frozen

    gc.unfreeze()
    try:
        assert trio.run(main, False) == 0 and gc.get_threshold() == threshold
        assert trio.run(main, True) > 0 and gc.get_threshold()[0] == YOUNG_COLLECTION_THRESHOLD
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


def test_backup_while_serving_and_json_logs(servers, tmp_path):
    server = servers.start("db.sqlite", "--log-format", "json")

    async def main() -> int:
        async with open_replica(server.url) as rep:
            for i in range(20):
                await rep.transact([{"person/name": f"b{i}"}])
            return rep.t

    t = trio.run(main)
    live = open_store(server.store)  # a second connection to the served file: WAL readers do not block the server
    try:
        live.backup(tmp_path / "copy.sqlite")
    finally:
        live.close()
    copy = open_store(tmp_path / "copy.sqlite")
    try:
        assert copy.last_t() == t == 21 and Connection.recover(copy).t == t
    finally:
        copy.close()
    assert server.stop() == 0
    lines = [json.loads(line) for line in server.log_text().splitlines()]
    assert {"ts", "level", "logger", "msg"} <= set(lines[0])
    assert any(r["msg"] == "session welcome" and r["mode"] == "bootstrap" for r in lines)
    assert lines[-1]["msg"] == "stopped" and lines[-1]["t"] == t


def _schema_file(tmp_path):
    path = tmp_path / "schema.edn"
    path.write_text(SCHEMA_EDN)
    return path
