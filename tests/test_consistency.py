"""Consistency under faults: a list-append and register workload (Elle's model) through real replicas
of a real server, two of them behind proxies that keep cutting and black-holing their connections on
their own schedules (partitioned from the server at different times); the whole history is checked
against the server's database (tests/consistency.py). The CI run is short; set DATSYNC_LONG_CHECK=N
for N operations per client."""

from __future__ import annotations

import os

import pytest
import trio

from datsync.core import TX0
from datsync.shell import open_replica
from datsync.shell.connection import Connection
from datsync.shell.store import open_store
from tests.consistency import SCHEMA_EDN, Op, check, list_at, run_workload, summary
from tests.fault_proxy import FaultProxy
from tests.sync_server import Servers

OPS = int(os.environ.get("DATSYNC_LONG_CHECK", "0")) or 150


@pytest.fixture
def servers(tmp_path):
    s = Servers(tmp_path)
    yield s
    s.close()


def test_the_checker_finds_each_kind_of_anomaly():
    from datsync.core import empty_db, kw, transact

    schema = {"list/key": {"db/valueType": kw("db.type/string"), "db/unique": kw("db.unique/identity"),
                           "db/cardinality": kw("db.cardinality/one")},
              "list/item": {"db/valueType": kw("db.type/string"), "db/cardinality": kw("db.cardinality/many")},
              "reg/value": {"db/valueType": kw("db.type/string"), "db/cardinality": kw("db.cardinality/one")}}
    db = empty_db(schema, flavor="datomic")
    for v in ("a", "b"):
        db = transact(db, [{"list/key": "k", "list/item": v}]).db_after  # the schema is t=1; a: t=2, b: t=3
    assert db.max_tx - TX0 == 3
    good = [Op(0, "append", "k", "a", "ok", 2), Op(0, "read", "k", t=2, values=frozenset({"a"})),
            Op(1, "read", "k", t=3, values=frozenset({"a", "b"}))]
    assert check(good, db).anomalies == []
    bad = [Op(0, "append", "k", "c", "ok", 4),  # lost
           Op(0, "append", "k", "b", "ok", 2),  # at another t
           Op(1, "read", "k", t=3, values=frozenset({"a"})),  # stale
           Op(1, "read", "k", t=2, values=frozenset({"a"})),  # back in time
           Op(2, "append", "k", "a", "ok", 2), Op(2, "read", "k", t=2, values=frozenset())]  # own write unseen
    kinds = {k for k, _ in check(bad, db).anomalies}
    assert kinds == {"lost", "duplicated", "stale-read", "non-monotonic", "read-your-writes"}
    for v in ("x", "y"):
        db = transact(db, [{"list/key": "r", "reg/value": v}]).db_after  # x: t=4, y: t=5
    registers = [Op(0, "write", "r", "x", "ok", 4), Op(0, "read-register", "r", t=5, values=frozenset({"y"})),
                 Op(1, "read-register", "r", t=5, values=frozenset({"x"})),  # stale
                 Op(2, "write", "r", "y", "ok", 5), Op(2, "read-register", "r", t=5, values=frozenset({"x"}))]
    found = [(k, m) for k, m in check(registers, db).anomalies]
    assert sorted({k for k, _ in found}) == ["read-your-writes", "stale-read"]
    assert all("client 0" not in m for _, m in found)  # a later write by someone else is fine


def test_list_append_history_under_faults_has_no_anomalies(servers, tmp_path):
    schema = tmp_path / "lists.edn"
    schema.write_text(SCHEMA_EDN)
    server = servers.start("lists.sqlite", "--schema", str(schema), "--heartbeat-interval", "0.2",
                           "--heartbeat-timeout", "1.0", schema=False)
    fast = {"backoff": (0.02, 0.2), "heartbeat_interval": 0.2, "heartbeat_timeout": 1.0, "connect_timeout": 2.0}

    async def main() -> list[Op]:
        async with trio.open_nursery() as nursery:
            proxies = [FaultProxy(server.port), FaultProxy(server.port)]  # b and c partitioned separately
            for proxy in proxies:
                await nursery.start(proxy.run)
            far = [f"ws://127.0.0.1:{proxy.listen_port}/" for proxy in proxies]

            async def faults(proxy: FaultProxy, pace: float) -> None:
                while True:
                    await trio.sleep(pace)
                    proxy.drop()
                    await trio.sleep(pace)
                    proxy.blackhole = True  # half-open for a while
                    await trio.sleep(0.75 * pace)
                    proxy.blackhole = False
                    proxy.drop()

            with trio.fail_after(120 + OPS):
                async with open_replica(server.url, **fast) as a, open_replica(far[0], **fast) as b, \
                        open_replica(far[1], **fast) as c:
                    async with trio.open_nursery() as faulty:
                        faulty.start_soon(faults, proxies[0], 0.4)
                        faulty.start_soon(faults, proxies[1], 0.55)
                        ops = await run_workload([a, b, c], ops_per_client=OPS, seed=7)
                        faulty.cancel_scope.cancel()  # no more faults: everyone catches up, then reads once more
                    for proxy in proxies:
                        proxy.blackhole = False
                    for rep in (a, b, c):
                        await rep.wait_for_t(max(x.t for x in (a, b, c)))
                    final = [Op(i, "read", f"k{k}", t=rep.t, values=list_at(rep.confirmed_db, f"k{k}"))
                             for i, rep in enumerate((a, b, c)) for k in range(4)]
                    final += [Op(i, "read-register", f"r{k}", t=rep.t,
                                 values=list_at(rep.confirmed_db, f"r{k}", "reg/value"))
                              for i, rep in enumerate((a, b, c)) for k in range(4)]
                    assert b.stats.connects + c.stats.connects >= 4  # the faults did cut them off
            nursery.cancel_scope.cancel()
        return ops + final

    ops = trio.run(main)
    report = check(ops, Connection.recover(open_store(server.store)).db)
    print(summary(report))
    assert report.anomalies == [], summary(report) + "\n" + "\n".join(m for _, m in report.anomalies[:20])
    assert report.appends_ok > 0 and report.reads > 0
