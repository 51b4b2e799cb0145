"""The sync benchmarks that need a server (shell/bench/sync.py) do what they say, at a tiny size:
figures are not checked (benchmarks measure speed, tests do not)."""

from __future__ import annotations

from datsync.core import datoms
from datsync.core.sync import server_datoms
from datsync.shell.bench import sync as b


def test_bootstrap_socket_bootstraps_the_people_database_from_a_server_it_stops():
    try:
        replica = b.bootstrap_socket(100)
        again = b.bootstrap_socket(100)  # the same server, started once
        assert b._servers and len(b._servers) == 1
        server = b._servers[0]
        want = {(d.e, d.a, d.v) for d in datoms(b.server_db(100), "eavt")}
        assert {(d[0], d[1], d[2]) for d in server_datoms(replica)} == want
        assert replica.t == again.t == b.server_db(100).max_tx - 0x20000000
    finally:
        b.stop_socket_server()
    assert server.poll() is not None and not b._servers


def test_apply_round_robin_brings_every_replica_to_the_server_after_the_200_deltas():
    start, deltas = b._round_robin_case()
    assert len(deltas) == b.ROUND_ROBIN_DELTAS and all(len(d.datoms) == 3 for d in deltas)
    replicas = b.apply_round_robin()
    assert len(replicas) == b.ROUND_ROBIN_REPLICAS
    last_age = {e: v for d in deltas for e, a, v, added in d.datoms if a == "age" and added}
    ages = {e: v for e, a, v, _ in server_datoms(replicas[0]) if a == "age"}
    assert {e: ages[e] for e in last_age} == last_age
    assert all(r.t == start.t + len(deltas) for r in replicas)
    assert len({frozenset(server_datoms(r)) for r in replicas}) == 1
