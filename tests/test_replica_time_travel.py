"""Time travel on Python replicas connected to a real `datsync serve` on 127.0.0.1: ``rep.as_of``,
``rep.since`` and ``rep.history`` (trio API and blocking facade) equal the server's own views over
what the replica saw; before its bootstrap, ``sync/before-history``."""

from __future__ import annotations

import pytest
import trio

from datsync.core import as_of, datoms, history, since
from datsync.core.sync import SyncError, datoms_to_remote
from datsync.shell import connect, open_replica
from datsync.shell.connection import Connection
from datsync.shell.store import open_store
from tests.sync_server import Servers, run_server_blocks


@pytest.fixture
def servers(tmp_path):
    s = Servers(tmp_path)
    yield s
    s.close()


def rows(view, replica=None) -> set:
    """A view's datoms ``(e, a, type, v, tx, added)`` in the server's ids (through ``replica``'s id map)."""
    ds = [(d.e, d.a, d.v, d.tx, d.added) for d in datoms(view, "eavt")]
    if replica is not None:
        ds = datoms_to_remote(replica.eids, replica.refs, ds)
    return {(e, a, type(v).__name__, v, tx, added) for e, a, v, tx, added in ds}


def test_time_travel_on_connected_replicas_equals_the_servers(servers):
    server = servers.start()
    seen: dict[str, tuple] = {}

    async def main() -> None:
        async with open_replica(server.url) as early:
            ann = (await early.transact([{"db/id": "a", "person/name": "Ann", "person/n": 1}])).tempids["a"]
            await early.transact([["db/add", ann, "person/n", 2]])
            # a capped replica bootstraps now: its history starts here, in ids of its own
            async with open_replica(server.url, id_cap=200) as late:
                base = late.replica.base_t
                assert base == early.t
                with pytest.raises(SyncError) as e:
                    late.as_of(base - 1)
                assert e.value.code == "sync/before-history"
                await early.transact([["db/add", ann, "person/n", 3], {"person/name": "Bob", "person/n": 7}])
                await early.transact([["db/retract", ann, "person/n", 3]])
                await late.wait_for_t(early.t)
                lann = late.replica.eids.to_local(ann)
                assert lann != ann
                assert datoms(late.as_of(base), "eavt", lann, "person/n")[0].v == 2
                assert not datoms(late.as_of(base + 2), "eavt", lann, "person/n")
                assert [d.v for d in datoms(late.since(base), "aevt", "person/n")] == [7]
                assert sorted((d.v, d.added) for d in datoms(since(late.history(), base), "eavt", lann,
                                                                "person/n")) == [(2, False), (3, False), (3, True)]
                end = late.t
                seen["late"] = (late.replica, base, end, {t: rows(late.as_of(t), late.replica)
                                                          for t in range(base, end + 1)},
                                rows(late.since(base), late.replica),
                                rows(since(late.history(), base), late.replica))
                # the identity replica saw everything since the schema
                seen["early"] = (early.replica, 1, end, {t: rows(early.as_of(t)) for t in range(1, end + 1)},
                                 rows(early.since(1)), rows(since(early.history(), 1)))

    trio.run(main)
    assert server.stop() == 0
    store = open_store(server.store)
    try:
        db = Connection.recover(store).db
    finally:
        store.close()
    for name, (_replica, base, end, as_ofs, since_base, history_since_base) in seen.items():
        for t in range(base, end + 1):
            assert as_ofs[t] == rows(as_of(db, t)), (name, t)
        assert since_base == rows(since(db, base)), name
        assert history_since_base == rows(since(history(db), base)), name


def test_time_travel_through_the_blocking_facade(servers):
    server = servers.start()
    with connect(server.url) as rep:
        ann = rep.transact([{"db/id": "a", "person/name": "Ann", "person/n": 1}]).tempids["a"]
        t1 = rep.t
        rep.transact([["db/add", ann, "person/n", 2]])
        assert datoms(rep.as_of(t1), "eavt", ann, "person/n")[0].v == 1
        assert [d.v for d in datoms(rep.since(t1), "eavt", ann, "person/n")] == [2]
        assert sorted((d.v, d.added) for d in datoms(rep.history(), "eavt", ann, "person/n")) == [
            (1, False), (1, True), (2, True)]
        with connect(server.url) as late:
            with pytest.raises(SyncError) as e:
                late.as_of(t1)
            assert e.value.code == "sync/before-history"
            assert datoms(late.as_of(late.t), "eavt", ann, "person/n")[0].v == 2


def test_the_docs_time_travel_example_runs_against_a_server(servers):
    # docs/sync.md's ```python-server blocks need a running server (schema: person/name, person/n)
    server = servers.start()
    assert run_server_blocks("sync.md", server.url) >= 1
    assert server.health()["counters"]["tx_committed"] >= 2
