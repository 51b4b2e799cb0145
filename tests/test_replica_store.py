"""A replica kept on disk (``connect(url, store=...)``): opened at once from the file, offline reads
and writes, the queue resubmitted after restarts and committed exactly once, a new bootstrap keeps
the queue, damaged or foreign files refused with a clear error while their queue stays exportable."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import trio

from datsync.core import TxError, datoms
from datsync.core.sync.client import Queued
from datsync.shell import open_replica, open_store
from datsync.shell.replica_store import ReplicaStore, ReplicaStoreError, export_pending
from tests.sync_server import FAST_RECONNECT, ROOT

CLIENT = r"""
import json, sys, time
from datsync.core import TxError, datoms
from datsync.shell import connect

mode, url, store = sys.argv[1:4]
rep = connect(url, store=store, timeout=10, backoff=(0.02, 0.2))
names = lambda: sorted(d.v for d in datoms(rep.db, "aevt", "person/name"))
if mode == "first":
    rep.transact([{"person/name": "first"}], timeout=10)
    print(json.dumps({"t": rep.t}), flush=True)
elif mode == "offline-writes":
    ps = [rep.submit([{"db/id": "p", "person/name": f"off{i}"}]) for i in range(3)]
    print(json.dumps({"names": names(), "pending": [p.seq for p in rep.pending]}), flush=True)
    time.sleep(60)  # killed here
elif mode == "restart":
    print(json.dumps({"names": names(), "pending": [p.seq for p in rep.pending],
                      "connected": rep.connected}), flush=True)
    results = [p.result(timeout=30) for p in rep.pending]
    print(json.dumps({"ts": [r.t for r in results], "names": names(), "pending": len(rep.pending)}), flush=True)
rep.close()
"""


async def write_once(url: str, store, tx: list):
    """Open the persisted replica ``store``, transact ``tx``, close it: the ``TxResult``."""
    async with open_replica(url, store=store) as rep:
        return await rep.transact(tx)


def client(mode: str, url: str, store) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", CLIENT, mode, url, str(store)], stdout=subprocess.PIPE,
                            text=True, cwd=ROOT)


def line(proc: subprocess.Popen) -> dict:
    out = proc.stdout.readline()
    assert out, f"the client exited ({proc.wait()}) without answering"
    return json.loads(out)


def test_writes_offline_survive_a_kill_and_land_exactly_once(servers, tmp_path):
    store = tmp_path / "app.replica"
    server = servers.start()
    first = client("first", server.url, store)
    t1 = line(first)["t"]
    assert first.wait(20) == 0
    assert server.stop() == 0
    # the server is down: a client opens its replica from disk, writes, and is killed
    writer = client("offline-writes", server.url, store)
    got = line(writer)
    assert got == {"names": ["first", "off0", "off1", "off2"], "pending": [2, 3, 4]}
    writer.kill()
    writer.wait()
    # started again: its data and its pending writes are there, still offline
    again = client("restart", server.url, store)
    got = line(again)
    assert got == {"names": ["first", "off0", "off1", "off2"], "pending": [2, 3, 4], "connected": False}
    restarted = servers.start(server.store.name, port=server.port)
    done = line(again)
    assert again.wait(20) == 0
    assert done == {"ts": [t1 + 1, t1 + 2, t1 + 3], "names": ["first", "off0", "off1", "off2"], "pending": 0}
    assert restarted.health()["t"] == t1 + 3

    async def check() -> None:  # every write landed once
        async with open_replica(restarted.url) as fresh:
            for name in ("off0", "off1", "off2"):
                assert len(datoms(fresh.db, "avet", "person/name", name)) == 1

    trio.run(check)


def test_a_replica_of_another_database_bootstraps_and_keeps_its_queue(servers, tmp_path):
    store = tmp_path / "app.replica"
    server = servers.start("one.sqlite")

    async def main() -> None:
        async with open_replica(server.url, store=store) as rep:
            await rep.transact([{"person/name": "one"}])
        assert await trio.to_thread.run_sync(server.stop) == 0
        async with open_replica(server.url, store=store, **FAST_RECONNECT) as rep:
            assert not rep.connected and datoms(rep.db, "avet", "person/name", "one")
            p = await rep.submit([{"person/name": "queued"}])
            # another database answers at that address now: the replica bootstraps, the queue stays
            other = await trio.to_thread.run_sync(lambda: servers.start("two.sqlite", port=server.port))
            r = await p.result()
            assert not datoms(rep.db, "avet", "person/name", "one")
            (d,) = datoms(rep.db, "avet", "person/name", "queued")
            assert d.tx == r.tx
            assert rep.db_id == other.health()["db_id"] and rep.pending == ()

    trio.run(main)


def test_damaged_and_foreign_files_are_refused_and_the_queue_is_exportable(servers, tmp_path):
    store = tmp_path / "app.replica"
    rs = ReplicaStore(store)
    rs.enqueue(Queued(1, 1, [{"person/name": "keep me"}]))
    rs._db.execute("INSERT INTO base (id, t, head, datoms) VALUES (1, 3, x'00', x'00')")
    rs.close()
    with pytest.raises(ReplicaStoreError) as e:
        ReplicaStore(store).load()
    assert e.value.code == "replica/unreadable" and str(store) in e.value.message
    assert export_pending(store) == [{"seq": 1, "req": 1, "tx_data": [{"person/name": "keep me"}]}]
    server_store = tmp_path / "server.sqlite"
    open_store(server_store).close()
    with pytest.raises(ReplicaStoreError) as e:
        ReplicaStore(server_store)
    assert e.value.code == "replica/foreign"
    junk = tmp_path / "junk.replica"
    junk.write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(ReplicaStoreError) as e:
        ReplicaStore(junk)
    assert e.value.code == "replica/unreadable"


def test_a_write_the_server_rejects_rolls_back_and_listen_says_why(servers, tmp_path):
    store = tmp_path / "app.replica"
    server = servers.start()

    async def main() -> None:
        ann = (await write_once(server.url, store, [{"db/id": "a", "person/name": "Ann"}])).tempids["a"]
        async with open_replica(server.url) as other:
            zed = await other.transact([{"person/name": "Zed"}])  # the name is taken meanwhile
        assert await trio.to_thread.run_sync(server.stop) == 0
        async with open_replica(server.url, store=store, **FAST_RECONNECT) as rep:
            changes = []
            rep.listen(changes.append)
            p = await rep.submit([["db/add", ann, "person/name", "Zed"]])
            assert datoms(rep.db, "eavt", ann, "person/name")[0].v == "Zed" and p.conflict is None  # optimistic
            await trio.to_thread.run_sync(lambda: servers.start(server.store.name, port=server.port))
            with pytest.raises(TxError) as e:
                await p.result()
            assert e.value.code == "db.error/unique-conflict"
            assert datoms(rep.db, "eavt", ann, "person/name")[0].v == "Ann"   # rolled back
            (rejected,) = [c for c in changes if c.kind == "rejected"]
            assert rejected.error.code == "db.error/unique-conflict" and rejected.pending is p
            await rep.wait_for_t(zed.t)
            assert datoms(rep.db, "avet", "person/name", "Zed")[0].e != ann and rep.pending == ()

    trio.run(main)


def test_deltas_past_a_gap_are_left_for_the_server_to_resend(servers, tmp_path):
    # a bootstrap replaced the deltas, and the process died before the new base was written: the
    # store holds the old base and deltas that do not follow it; opening keeps what is contiguous
    store = tmp_path / "app.replica"
    server = servers.start()

    async def main() -> None:
        base_t = (await write_once(server.url, store, [{"person/name": "kept"}])).t
        rs = ReplicaStore(store)
        restored = rs.load()
        assert restored.replica.t == base_t
        far = restored.replica.t + 5
        rs._db.execute("INSERT INTO delta (t, payload) SELECT ?, payload FROM delta ORDER BY t DESC LIMIT 1", (far,))
        rs.close()
        again = ReplicaStore(store)
        assert again.load().replica.t == base_t
        again.close()
        async with open_replica(server.url, store=store) as rep:
            r = await rep.transact([{"person/name": "after"}])
            assert rep.t == r.t and datoms(rep.db, "avet", "person/name", "kept")

    trio.run(main)


def test_time_travel_over_what_a_persisted_replica_saw_survives_a_restart(servers, tmp_path):
    store = tmp_path / "app.replica"
    server = servers.start()

    async def main() -> None:
        async with open_replica(server.url, store=store) as rep:
            ann = (await rep.transact([{"db/id": "a", "person/name": "Ann", "person/n": 1}])).tempids["a"]
            t1 = rep.t
            await rep.transact([["db/add", ann, "person/n", 2]])
            await rep.transact([["db/add", ann, "person/n", 3]])
        assert await trio.to_thread.run_sync(server.stop) == 0
        async with open_replica(server.url, store=store, **FAST_RECONNECT) as rep:   # offline, from disk
            assert datoms(rep.as_of(t1), "eavt", ann, "person/n")[0].v == 1
            assert datoms(rep.as_of(t1 + 1), "eavt", ann, "person/n")[0].v == 2
            assert [d.v for d in datoms(rep.since(t1 + 1), "eavt", ann, "person/n")] == [3]
            assert sorted((d.v, d.added) for d in datoms(rep.history(), "eavt", ann, "person/n")) == [
                (1, False), (1, True), (2, False), (2, True), (3, True)]

    trio.run(main)


def test_the_local_first_benchmarks_measure_what_they_say():
    from datsync.shell.bench import sync as b

    s, fx = b.submit_10_pending()
    assert len(s.queue) == 11 and len(s.replica.pending) == 11 and any(type(f).__name__ == "Send" for f in fx)
    s, _ = b.delta_10_pending()
    assert s.replica.t == b.server_db().max_tx - 0x20000000 + 1 and len(s.replica.pending) == 10
    restored = b.open_replica_store()
    assert restored.replica.t == s.replica.t - 1 and len(restored.replica.db.eavt) == len(b.server_db().eavt)


def test_closing_with_writes_queued_keeps_them_for_the_next_open(servers, tmp_path):
    from datsync.shell import ReplicaClosed

    store = tmp_path / "app.replica"
    server = servers.start()

    async def main() -> None:
        await write_once(server.url, store, [{"person/name": "first"}])
        assert await trio.to_thread.run_sync(server.stop) == 0
        async with open_replica(server.url, store=store, **FAST_RECONNECT) as rep:
            p = await rep.submit([{"person/name": "later"}])
        with pytest.raises(ReplicaClosed) as e:
            await p.result()
        assert str(store) in e.value.message and [q["tx_data"] for q in export_pending(store)] == [
            [{"person/name": "later"}]]

    trio.run(main)


def test_the_client_id_is_kept_for_the_life_of_the_store(tmp_path):
    from datsync.shell import ReplicaConnection

    ids = []
    for _ in range(2):
        rep = ReplicaConnection("ws://127.0.0.1:9/", store=tmp_path / "a.replica")
        ids.append(rep.client_id)
        assert rep.session.config.client_id == rep.client_id
        rep.store.close()
    other = ReplicaStore(tmp_path / "b.replica")
    assert ids[0] == ids[1] and other.client_id != ids[0]
    other.close()
    fresh = [ReplicaConnection("ws://127.0.0.1:9/").client_id for _ in range(2)]
    assert fresh[0] != fresh[1] and ReplicaConnection("ws://127.0.0.1:9/", exactly_once=False).client_id is None
