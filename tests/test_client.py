"""Python replicas against a real `datsync serve` process on 127.0.0.1: the trio API, the blocking
facade, reconnect-and-resume after a server restart, credentials."""

from __future__ import annotations

import random
import socket

import pytest
import trio

from datsync.core import TxError, datoms, pull, q
from datsync.shell import (
    ReplicaClosed,
    ReplicaConnection,
    ReplicaConnectionError,
    Unauthorized,
    connect,
    open_replica,
)
from datsync.shell.server import authorize, is_loopback
from tests.sync_server import FAST_RECONNECT, ROOT, Servers, run_server_blocks, write_concurrently


@pytest.fixture
def servers(tmp_path):
    s = Servers(tmp_path)
    yield s
    s.close()


def test_two_replicas_see_each_others_writes(servers):
    server = servers.start()

    async def main() -> None:
        async with open_replica(server.url) as a, open_replica(server.url) as b:
            assert a.t == b.t == 1 and a.db_id == b.db_id  # the schema transaction
            changes = []
            unsubscribe = b.listen(changes.append)
            r = await a.transact([{"db/id": "ann", "person/name": "Ann", "person/n": 1}])
            assert r.tx == r.tempids["db/current-tx"] and r.t == 2
            assert pull(a.db, "[:person/name]", r.tempids["ann"]) == {"person/name": "Ann"}  # read your write
            await b.wait_for_t(r.t)
            assert pull(b.db, "[*]", r.tempids["ann"]) == {"db/id": r.tempids["ann"], "person/name": "Ann",
                                                          "person/n": 1}
            assert [(c.kind, c.t) for c in changes] == [("delta", 2)]
            assert {(d.a, d.v) for d in changes[0].tx_data if d.e == r.tempids["ann"]} == {
                ("person/name", "Ann"), ("person/n", 1)}
            assert changes[0].db_before is not changes[0].db_after and changes[0].db_after is b.db
            unsubscribe()

            r2 = await b.transact([["db/add", ("person/name", "Ann"), "person/n", 2],
                                   {"db/id": "bob", "person/name": "Bob", "person/n": 7}])
            await a.wait_for_t(r2.t)
            assert q("[:find ?n ?x :where [?e :person/name ?n] [?e :person/n ?x]]", a.db) == {("Ann", 2), ("Bob", 7)}
            assert datoms(a.db, "eavt") == datoms(b.db, "eavt")
            assert len(changes) == 1  # unsubscribed

            # rejections carry the server's code; nothing changes
            with pytest.raises(TxError) as e:
                await a.transact([{"person/name": "Bob", "person/n": "seven"}])
            assert e.value.code == "db.error/wrong-type-for-attribute"
            with pytest.raises(TxError) as e:
                await a.transact([{"nope/attr": 1}])
            assert e.value.code == "db.error/not-an-entity"
            with pytest.raises(TxError) as e:
                await a.transact([["db/cas", ("person/name", "Bob"), "person/n", 6, 8]])
            assert e.value.code == "db.error/cas-failed"
            with pytest.raises(TxError) as e:
                await a.transact([["db.fn/call", "anything"]])
            assert e.value.code == "sync/forbidden-op"

            # concurrent writers from both replicas all land, in one order for everyone
            await write_concurrently({"a": a, "b": b}, 4, 10)
            await a.wait_for_t(b.t)
            await b.wait_for_t(a.t)
            assert a.t == b.t == r2.t + 80
            assert datoms(a.db, "eavt") == datoms(b.db, "eavt")
            assert a.stats.bootstraps == b.stats.bootstraps == 1 and a.stats.resyncs == 0

    trio.run(main)


def test_blocking_facade(servers):
    server = servers.start()
    progress = []
    with connect(server.url, on_progress=lambda n, total: progress.append((n, total))) as rep:
        assert rep.t == 1 and rep.connected and progress and progress[-1][0] == progress[-1][1]
        seen = []
        unsubscribe = rep.listen(lambda change: seen.append((change.kind, change.t)))
        r = rep.transact([{"db/id": -1, "person/name": "Ann"}])
        assert pull(rep.db, "[:person/name]", r.tempids[-1]) == {"person/name": "Ann"}
        rep.wait_for_t(r.t, timeout=5)
        assert seen == [("local", r.t - 1), ("confirmed", r.t)]  # submitted here, then its delta arrived
        unsubscribe()
        with pytest.raises(TxError) as e:
            rep.transact([{"person/name": 3}])
        assert e.value.code == "db.error/wrong-type-for-attribute"
        with pytest.raises(TimeoutError):
            rep.wait_for_t(r.t + 100, timeout=0.2)
        with connect(server.url) as other:
            r2 = other.transact([{"person/name": "Bea"}])
        rep.wait_for_t(r2.t, timeout=5)
        assert len(seen) == 2 and datoms(rep.db, "avet", "person/name", "Bea")
    with pytest.raises(ReplicaClosed):
        rep.transact([{"person/name": "late"}])
    rep.close()  # idempotent


def test_connect_fails_cleanly(tmp_path):
    # nothing listens there: a bounded wait, then an error naming the URL
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"ws://127.0.0.1:{port}/"
    with pytest.raises(ReplicaConnectionError) as e:
        connect(url, timeout=0.5, **FAST_RECONNECT)
    assert url in str(e.value)

    async def main() -> None:
        with pytest.raises(ReplicaClosed):
            async with open_replica(url, reconnect=False):
                pass

    trio.run(main)


def test_replica_resumes_after_server_restart_without_bootstrap(servers):
    server = servers.start()

    async def main() -> None:
        async with open_replica(server.url, rng=random.Random(7), **FAST_RECONNECT) as rep:
            r = await rep.transact([{"person/name": "before"}])
            assert rep.stats.connects == 1 and rep.stats.last_mode == "bootstrap"
            assert await trio.to_thread.run_sync(server.stop) == 0  # graceful: SIGTERM
            restarted = await trio.to_thread.run_sync(
                lambda: servers.start(server.store.name, port=server.port))
            # another client writes while our replica reconnects (it retries with backoff meanwhile)
            async with open_replica(restarted.url) as other:
                r2 = await other.transact([{"person/name": "while away"}])
            await rep.wait_for_t(r2.t)
            assert datoms(rep.db, "avet", "person/name", "while away")
            assert rep.stats.last_mode == "resume" and rep.stats.resumes == 1  # caught up from the log
            assert rep.stats.bootstraps == 1 and rep.stats.connects >= 2
            r3 = await rep.transact([{"person/name": "after"}])
            assert r3.t == r2.t + 1 > r.t
            health = restarted.health()
            assert health["counters"]["resumes"] == 1 and health["t"] == r3.t

    trio.run(main)


def test_token_is_required_when_configured(servers, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("s3cret\n")
    server = servers.start("tok.sqlite", "--token-file", str(token_file))

    async def main() -> None:
        with trio.fail_after(10):
            with pytest.raises(Unauthorized) as e:
                async with open_replica(server.url, token="wrong", **FAST_RECONNECT):
                    pass
            assert e.value.code == "protocol/unauthorized" and "wrong token" in str(e.value)
            with pytest.raises(Unauthorized):
                async with open_replica(server.url, **FAST_RECONNECT):  # no token at all
                    pass
            async with open_replica(server.url, token="s3cret") as rep:
                r = await rep.transact([{"person/name": "Ann"}])
                assert r.t == 2

    trio.run(main)
    assert server.health()["counters"]["refused"] == 2
    assert server.get("/status")[0] == 401
    assert server.get("/status", token="s3cret")[0] == 200


def test_without_a_token_only_loopback_clients_are_accepted():
    # the rule itself (the tests' own sockets are all on 127.0.0.1, which is accepted everywhere above)
    for host in ("127.0.0.1", "127.9.8.7", "::1", "::ffff:127.0.0.1"):
        assert is_loopback(host) and authorize(None, host, None)[0]
    for host in ("10.0.0.5", "192.168.1.2", "2001:db8::1", "::ffff:10.0.0.5", "not-an-address"):
        principal, why = authorize({"token": "anything"}, host, None)
        assert principal is None and "loopback" in why
    assert authorize({"token": "t"}, "10.0.0.5", "t")[0] == {"auth": "token", "peer": "10.0.0.5"}
    assert authorize("t", "10.0.0.5", "t")[0]
    assert authorize({"token": "x"}, "127.0.0.1", "t") == (None, "wrong token")
    assert authorize(None, "127.0.0.1", "t") == (None, "missing token")


def test_quickstart_replica_examples_run_against_a_server(servers, monkeypatch):
    # docs/quickstart.md's ```python-server blocks need a running server: run them against one
    server = servers.start("people.sqlite", "--schema", str(ROOT / "docs" / "examples" / "people.edn"),
                           schema=False)
    monkeypatch.chdir(servers.tmp_path)
    assert run_server_blocks("quickstart.md", server.url) >= 2
    counters = server.health()["counters"]
    assert counters["tx_committed"] == 3 and counters["tx_rejected"] == 1


def test_listeners_see_the_bootstrap_and_capped_replicas_speak_their_own_ids(servers):
    server = servers.start()

    async def main() -> None:
        async with open_replica(server.url) as plain:
            r0 = await plain.transact([{"db/id": "a", "person/name": "Ann"}])
            rep = ReplicaConnection(server.url, id_cap=200)  # entity ids from 100 up are translated
            changes = []
            rep.listen(changes.append)
            async with trio.open_nursery() as nursery:
                await nursery.start(rep.run)
                assert [(c.kind, c.t, c.db_before) for c in changes] == [("bootstrap", r0.t, None)]
                ann_here = datoms(rep.db, "avet", "person/name", "Ann")[0].e
                assert ann_here != r0.tempids["a"] and ann_here < 200
                r = await rep.transact([{"db/id": "b", "person/name": "Bob", "person/n": 1},
                                        ["db/add", ann_here, "person/n", 2]])
                assert pull(rep.db, "[:person/name :person/n]", r.tempids["b"]) == {"person/name": "Bob",
                                                                                 "person/n": 1}
                await plain.wait_for_t(r.t)
                bob_there = datoms(plain.db, "avet", "person/name", "Bob")[0].e
                assert bob_there != r.tempids["b"]
                assert pull(plain.db, "[:person/n]", r0.tempids["a"]) == {"person/n": 2}  # the same entity
                assert changes[-1].kind == "confirmed" and {d.e for d in changes[-1].tx_data} >= {r.tempids["b"]}
                await rep.aclose()

    trio.run(main)


def test_a_replica_that_was_away_catches_up_with_several_deltas_per_message(servers):
    # The hello asks for batches: the deltas it missed come from the log in `deltas` messages, each
    # applied in order (a change per delta for listeners), and the replica ends equal to the server.
    server = servers.start()
    n = 30

    async def main() -> None:
        async with open_replica(server.url) as writer:
            async with open_replica(server.url) as away:
                kept = away.replica
            for i in range(n):
                await writer.transact([{"person/name": f"b{i}", "person/n": i}])
            seen: list[int] = []
            async with open_replica(server.url, replica=kept) as back:
                back.listen(lambda change: seen.append(change.t) if change.kind == "delta" else None)
                await back.wait_for_t(writer.t)
                assert back.stats.last_mode == "resume" and back.stats.bootstraps == 0
                assert back.stats.batches >= 1 and back.stats.deltas == n
                assert seen == list(range(kept.t + 1, writer.t + 1))
                assert datoms(back.db, "eavt") == datoms(writer.db, "eavt")

    trio.run(main)
