"""Several `datsync serve` processes over one PostgreSQL store: any process accepts writes, ``t``
stays serial and gap-free, every process streams every commit to its own replicas."""

from __future__ import annotations

import pytest
import trio

from datsync.core import datoms
from datsync.shell import open_replica
from tests.sync_server import Servers, write_concurrently


@pytest.fixture
def servers(tmp_path):
    s = Servers(tmp_path)
    yield s
    s.close()


def test_writes_on_two_processes_reach_the_replicas_of_both(servers, pg_url):
    one, two = servers.start(pg_url), servers.start(pg_url)
    assert one.health()["db_id"] == two.health()["db_id"]

    async def main() -> None:
        async with open_replica(one.url) as a, open_replica(two.url) as b:
            assert a.t == b.t == 1  # the schema, installed once: the second process found it there
            await write_concurrently({"a": a, "b": b}, 3, 10)
            with trio.fail_after(10):
                await a.wait_for_t(61)
                await b.wait_for_t(61)
            assert a.t == b.t == 61  # 60 transactions from two processes: no gap, no duplicate t
            assert datoms(a.db, "eavt") == datoms(b.db, "eavt")
            assert len(datoms(a.db, "avet", "person/name")) == 60

    trio.run(main)
    assert one.health()["t"] == two.health()["t"] == 61
    assert one.stop() == 0 and two.stop() == 0
