"""Several `datsync serve` processes over one PostgreSQL store: any process accepts writes, ``t``
stays serial and gap-free, every process streams every commit to its own replicas."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import urllib.parse

import pytest
import trio

from datsync.core import TxError, datoms, kw
from datsync.shell import TxOutcomeUnknown, open_replica, open_store
from tests.sync_server import ROOT, Servers, TcpProxy, write_concurrently


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


def test_kill_one_process_under_load_replicas_fail_over_and_nothing_is_lost(servers, pg_url):
    """Three processes on one store, replicas spread over them, writers on all three; ``kill -9``
    one: its replicas move to the others and resume (no bootstrap), every acknowledged transaction
    is in the log, ``t`` has no gap, every replica converges with the log."""
    procs = [servers.start(pg_url) for _ in range(3)]
    urls = [p.url for p in procs]
    per_server, writes = 10, 25
    acknowledged: list[str] = []
    unknown: list[str] = []

    async def main() -> None:
        async with contextlib.AsyncExitStack() as stack:
            replicas = []
            for i in range(3 * per_server):
                home = i % 3
                mine = urls[home:] + urls[:home]  # its own process first, then the others
                replicas.append(await stack.enter_async_context(open_replica(mine, backoff=(0.02, 0.2))))

            async def writer(rep, tag: str) -> None:
                for n in range(writes):
                    name = f"{tag}-{n}"
                    try:
                        await rep.transact([{"person/name": name, "person/n": n}])
                    except TxOutcomeUnknown:
                        unknown.append(name)
                    else:
                        acknowledged.append(name)

            async with trio.open_nursery() as nursery:
                for i, rep in enumerate(replicas[:3]):  # one writer on each process
                    nursery.start_soon(writer, rep, f"w{i}")
                with trio.fail_after(20):
                    while len(acknowledged) < writes:
                        await trio.sleep(0.01)
                await trio.to_thread.run_sync(procs[0].kill)
            last_t = await trio.to_thread.run_sync(lambda: open_store(pg_url).last_t())
            with trio.fail_after(20):
                for rep in replicas:
                    await rep.wait_for_t(last_t)
            reference = datoms(replicas[1].db, "eavt")
            for i, rep in enumerate(replicas):
                assert datoms(rep.db, "eavt") == reference, f"replica {i} differs"
                assert rep.stats.bootstraps == 1, f"replica {i} bootstrapped again"
                if i % 3 == 0:  # the killed process's replicas
                    assert rep.stats.failovers >= 1 and rep.stats.resumes >= 1 and rep.url != urls[0]
            names = {d.v for d in datoms(replicas[1].db, "avet", "person/name")}
            assert set(acknowledged) <= names  # no acknowledged transaction lost
            assert len(acknowledged) + len(unknown) == 3 * writes

    trio.run(main)
    log = open_store(pg_url).read_log(0)
    assert [e.t for e in log] == list(range(1, len(log) + 1))  # serial, gap-free
    assert len(log) >= 1 + len(acknowledged)
    for p in procs[1:]:
        assert p.health()["t"] == len(log)
        assert p.stop() == 0


def test_postgresql_away_writes_refused_reads_served_then_recovery(servers, pg_url):
    """The connections to PostgreSQL are cut (and new ones refused): writes fail with a clear error,
    replicas still connect and read, health says so; when PostgreSQL is back, writes go through."""
    parts = urllib.parse.urlsplit(pg_url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432).start()
    via_proxy = parts._replace(netloc=parts.netloc.replace(f"{parts.hostname}:{parts.port}",
                                                           f"127.0.0.1:{proxy.port}")).geturl()
    server = servers.start(via_proxy)

    async def main() -> None:
        async with open_replica(server.url) as a:
            before = await a.transact([{"person/name": "before"}])
            proxy.cut()
            with pytest.raises(TxError) as refused:
                await a.transact([{"person/name": "while away"}])
            assert refused.value.code == "db.error/unavailable" and "PostgreSQL" in refused.value.message
            async with open_replica(server.url) as b:  # reads are served from the process's memory
                assert b.t == before.t and datoms(b.db, "avet", "person/name", "before")
            health = await trio.to_thread.run_sync(server.health)
            assert health["status"] == "store-unavailable" and "db.error/unavailable" in health["store"]["error"]
            proxy.restore()
            with trio.fail_after(15):
                while True:
                    try:
                        after = await a.transact([{"person/name": "after"}])
                        break
                    except TxError as e:
                        assert e.code == "db.error/unavailable"
                        await trio.sleep(0.1)
            assert after.t == before.t + 1  # the refused write left nothing behind
        assert not datoms(a.db, "avet", "person/name", "while away")

    try:
        trio.run(main)
        assert server.health()["status"] == "ok"
        assert server.stop() == 0
    finally:
        proxy.cut()


def test_submissions_fail_over_and_commit_exactly_once(servers, pg_url):
    """Writers that submit (queued, exactly once) keep going through a ``kill -9`` of their process:
    the queue is resent to another process, which answers a submission another process committed
    from the shared record; every submission is answered and commits exactly once."""
    procs = [servers.start(pg_url) for _ in range(3)]
    urls = [p.url for p in procs]
    writes = 15
    answers: list[int] = []

    async def main() -> None:
        async with contextlib.AsyncExitStack() as stack:
            replicas = [await stack.enter_async_context(open_replica(urls[i:] + urls[:i], backoff=(0.02, 0.2)))
                        for i in range(3)]

            async def writer(rep, tag: str) -> None:
                for n in range(writes):
                    pending = await rep.submit([{"person/name": f"{tag}-{n}", "person/n": n}])
                    answers.append((await pending.result()).t)

            async with trio.open_nursery() as nursery:
                for i, rep in enumerate(replicas):
                    nursery.start_soon(writer, rep, f"w{i}")
                with trio.fail_after(20):
                    while len(answers) < writes:
                        await trio.sleep(0.005)
                await trio.to_thread.run_sync(procs[0].kill)
            assert replicas[0].stats.failovers >= 1

    trio.run(main)
    log = open_store(pg_url).read_log(0)
    assert len(log) == 1 + 3 * writes  # the schema, then each submission once: none twice, none lost
    assert sorted(answers) == list(range(2, len(log) + 1))
    for p in procs[1:]:
        assert p.stop() == 0


def test_serve_on_an_unreachable_postgresql_says_so(tmp_path):
    out = subprocess.run([sys.executable, "-m", "datsync.shell", "serve", "--port", "0", "--store",
                          "postgresql://nobody@127.0.0.1:1/none"], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 2 and "db.error/unavailable" in out.stderr and "PostgreSQL" in out.stderr, out.stderr


def test_one_process_writes_each_checkpoint_of_a_shared_store(servers, pg_url):
    one = servers.start(pg_url, "--checkpoint-every", "5", "--checkpoint-growth", "0")
    two = servers.start(pg_url, "--checkpoint-every", "5", "--checkpoint-growth", "0")

    async def main() -> None:
        async with open_replica(one.url) as a, open_replica(two.url) as b:
            for i in range(12):
                await a.transact([{"person/name": f"p{i}"}])
            await b.wait_for_t(13)

    trio.run(main)
    assert one.stop() == 0 and two.stop() == 0
    assert "checkpoint written" in one.log_text()
    assert "checkpoint written" not in two.log_text()  # it follows the other's commits and checkpoints
    assert open_store(pg_url).latest_checkpoint()[0] >= 10


def test_a_graceful_shutdown_moves_replicas_to_another_process(servers, pg_url):
    one, two = servers.start(pg_url), servers.start(pg_url)

    async def main() -> None:
        async with open_replica([one.url, two.url], backoff=(0.02, 0.2)) as rep:
            first = await rep.transact([{"person/name": "on one"}])
            assert await trio.to_thread.run_sync(one.stop) == 0  # SIGTERM: going-away to every replica
            second = await rep.transact([{"person/name": "on two"}])
            assert second.t == first.t + 1 and rep.url == two.url
            assert rep.stats.failovers >= 1 and rep.stats.bootstraps == 1 and rep.stats.last_mode == "resume"

    trio.run(main)
    assert two.stop() == 0


def test_a_command_writing_to_the_shared_store_reaches_the_servers_replicas(servers, pg_url):
    from tests.test_cli_commands import ok

    server = servers.start(pg_url)

    async def main() -> None:
        async with open_replica(server.url) as rep:
            out = await trio.to_thread.run_sync(
                lambda: ok("transact", pg_url, "-", stdin='[{:person/name "from the command line"}]'))
            with trio.fail_after(10):
                await rep.wait_for_t(out[kw("t")])
            assert datoms(rep.db, "avet", "person/name", "from the command line")

    trio.run(main)
    assert server.stop() == 0
