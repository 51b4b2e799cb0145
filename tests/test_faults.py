"""Faults: a full disk under the store (SQLite's page limit) and a network that delays, drops and
black-holes connections between a replica and the server (a fault-injecting TCP proxy). Acknowledged
means durable, reads go on, and replicas converge once the fault is gone."""

from __future__ import annotations

import pytest
import trio

from datsync.core import TxError, datoms, kw, q
from datsync.shell import ReplicaClosed, open_replica
from datsync.shell.connection import Connection
from datsync.shell.store import open_store
from tests.fault_proxy import FaultProxy
from tests.sync_server import Servers

SCHEMA_TX = [{"db/ident": kw("doc/name"), "db/valueType": kw("db.type/string"),
              "db/cardinality": kw("db.cardinality/one"), "db/unique": kw("db.unique/identity")},
             {"db/ident": kw("doc/body"), "db/valueType": kw("db.type/string"),
              "db/cardinality": kw("db.cardinality/one")}]


def test_a_full_disk_refuses_writes_keeps_reads_and_recovers_by_itself(tmp_path):
    path = tmp_path / "full.sqlite"

    async def main() -> tuple[int, list]:
        store = open_store(path)
        conn = Connection.recover(store)
        async with trio.open_nursery() as nursery:
            await nursery.start(conn.run_writer)
            await conn.transact(SCHEMA_TX)
            (pages,) = store._db.execute("PRAGMA page_count").fetchone()
            store._db.execute(f"PRAGMA max_page_count = {pages + 8}")  # the disk is nearly full
            acknowledged, refused = [], []
            for i in range(40):
                try:
                    await conn.transact([{"doc/name": f"d{i}", "doc/body": "x" * 4000}])
                    acknowledged.append(f"d{i}")
                except TxError as e:
                    assert e.code == "db.error/storage" and "full" in e.message
                    refused.append(f"d{i}")
            assert acknowledged and refused  # some fit, then writes are refused with a clear error
            assert conn.t == store.last_t() == 1 + len(acknowledged)  # nothing refused was acknowledged
            names = q("[:find [?n ...] :where [_ :doc/name ?n]]", conn.db)
            assert sorted(names) == sorted(acknowledged)  # reads go on
            store._db.execute("PRAGMA max_page_count = 1073741823")  # space returns
            await conn.transact([{"doc/name": "after", "doc/body": "y"}])
            acknowledged.append("after")
            nursery.cancel_scope.cancel()
        store.close()
        return conn.t, sorted(acknowledged)

    t, acknowledged = trio.run(main)
    again = Connection.recover(open_store(path))  # what was acknowledged is what is durable
    assert again.t == t
    assert sorted(q("[:find [?n ...] :where [_ :doc/name ?n]]", again.db)) == acknowledged


def test_io_errors_on_write_refuse_those_writes_and_nothing_else(tmp_path):
    path = tmp_path / "io.sqlite"

    async def main() -> None:
        store = open_store(path)
        conn = Connection.recover(store)
        real_append = store.append
        failures = {"left": 0}

        def flaky_append(*args, **kwargs):
            if failures["left"] > 0:
                failures["left"] -= 1
                raise OSError(5, "Input/output error")
            return real_append(*args, **kwargs)

        store.append = flaky_append  # type: ignore[method-assign]
        async with trio.open_nursery() as nursery:
            await nursery.start(conn.run_writer)
            await conn.transact(SCHEMA_TX)
            failures["left"] = 3
            for i in range(3):
                with pytest.raises(TxError) as e:
                    await conn.transact([{"doc/name": f"lost{i}"}])
                assert e.value.code == "db.error/storage" and "Input/output error" in e.value.message
            assert conn.t == store.last_t() == 1 and q("[:find ?e . :where [?e :doc/name]]", conn.db) is None
            await conn.transact([{"doc/name": "kept"}])  # the device works again: so do writes
            assert conn.t == store.last_t() == 2
            nursery.cancel_scope.cancel()
        store.close()

    trio.run(main)
    again = Connection.recover(open_store(path))
    assert q("[:find [?n ...] :where [_ :doc/name ?n]]", again.db) == ["kept"]


@pytest.fixture
def servers(tmp_path):
    s = Servers(tmp_path)
    yield s
    s.close()


def test_replicas_converge_through_delays_drops_and_half_open_partitions(servers):
    server = servers.start("net.sqlite", "--heartbeat-interval", "0.2", "--heartbeat-timeout", "1.0")
    fast = {"backoff": (0.05, 0.3), "heartbeat_interval": 0.2, "heartbeat_timeout": 1.0, "connect_timeout": 2.0}

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            proxy = FaultProxy(server.port)
            await nursery.start(proxy.run)
            url = f"ws://127.0.0.1:{proxy.listen_port}/"
            with trio.fail_after(60):
                async with open_replica(server.url) as writer, open_replica(url, **fast) as far:
                    written = []

                    async def write(n: int) -> None:
                        for _ in range(n):
                            r = await writer.transact([{"person/name": f"w{len(written)}"}])
                            written.append(r.t)

                    proxy.delay = 0.05  # a slow network
                    await write(5)
                    await far.wait_for_t(written[-1])
                    proxy.delay = 0.0
                    proxy.drop()  # connections cut while writes go on
                    await write(5)
                    await far.wait_for_t(written[-1])
                    proxy.blackhole = True  # half-open: the replica hears nothing, the socket stays up
                    await write(5)
                    outcome = await far.submit([{"person/name": "from the far side"}])  # waits in its queue
                    await trio.sleep(1.5)  # beyond the heartbeat timeout: the replica notices
                    assert far.t < written[-1]
                    proxy.blackhole = False  # the partition heals
                    proxy.drop()
                    r = await outcome.result()
                    await far.wait_for_t(max(written[-1], r.t))
                    await writer.wait_for_t(far.t)
                    assert far.stats.connects >= 3
                    # converged: the same datoms as the server, every write exactly once
                    assert set(datoms(far.db, "eavt")) == set(datoms(writer.db, "eavt"))
                    names = q("[:find ?n ?e :where [?e :person/name ?n]]", writer.db)
                    assert len([n for n, _ in names if n == "from the far side"]) == 1
                    assert {f"w{i}" for i in range(15)} <= {n for n, _ in names}
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_a_server_that_accepts_and_never_answers_is_given_up_on_within_the_connect_timeout():
    async def main() -> None:
        async def never_answer(stream: trio.SocketStream) -> None:
            await trio.sleep_forever()

        async with trio.open_nursery() as nursery:
            listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
            nursery.start_soon(trio.serve_listeners, never_answer, listeners)
            url = f"ws://127.0.0.1:{listeners[0].socket.getsockname()[1]}/"
            start = trio.current_time()
            with trio.fail_after(10), pytest.raises(ReplicaClosed) as e:
                async with open_replica(url, connect_timeout=1.0, reconnect=False):
                    pass
            assert "no WebSocket handshake" in str(e.value) and trio.current_time() - start < 3
            nursery.cancel_scope.cancel()

    trio.run(main)
