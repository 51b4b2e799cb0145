"""The store (on each engine) and the connection over it: durability, group commit, recovery, listeners."""

from __future__ import annotations

import datetime as dt
import sqlite3

import pytest
import trio

from datsync.core import TxError, datoms, kw, pull
from datsync.shell.connection import Connection, decode_events, encode_events, history_datoms
from datsync.shell.store import LogEntry, StoreConflict, StoreError, open_store

SCHEMA_TX = [{"db/ident": kw("person/name"), "db/valueType": kw("db.type/string"),
              "db/cardinality": kw("db.cardinality/one"), "db/unique": kw("db.unique/identity")}]


def test_a_checkpoint_holds_every_event_of_the_history_and_reads_back_as_it():
    import uuid

    from datsync.core import as_of, empty_db, transact

    types = {"name": "string", "kind": "keyword", "at": "instant", "id": "uuid", "tags": "string", "friend": "ref",
             "score": "double"}
    schema = {a: {"db/valueType": kw(f"db.type/{t}"),
                  "db/cardinality": kw("db.cardinality/many" if a == "tags" else "db.cardinality/one")}
              for a, t in types.items()}
    db = empty_db(schema, flavor="datomic")
    ann_data = {"db/id": "a", "name": "Ann", "kind": kw("k/x"), "at": dt.datetime(2026, 1, 2, tzinfo=dt.UTC),
                "id": uuid.UUID(int=7), "tags": ["x", "~y"], "score": 1.5}
    report = transact(db, [ann_data, {"name": "Bo", "friend": "a"}])
    db, ann = report.db_after, report.tempids["a"]
    db = transact(db, [["db/retract", ann, "tags", "x"], ["db/add", ann, "name", "Anne"]]).db_after
    events = decode_events(encode_events(db))
    assert events == [tuple(d) for d in history_datoms(db)]
    assert sum(1 for e in events if not e[4]) == 2 and ("~y" in {e[2] for e in events})
    with pytest.raises(ValueError):
        encode_events(as_of(db, db.max_tx - 1))


def test_store_log_and_checkpoints(store_location):
    store = open_store(store_location)
    assert store.last_t() == 0 and store.latest_checkpoint() is None
    store.append([LogEntry(1, 536870913, b"a"), LogEntry(2, 536870914, b"b")])
    store.append([LogEntry(3, 536870915, b"c")])
    assert [e.t for e in store.read_log(1)] == [2, 3]
    assert store.read_log(0, limit=1) == [LogEntry(1, 536870913, b"a")]
    store.write_checkpoint(2, b"cp2")
    store.write_checkpoint(3, b"cp3")
    assert store.latest_checkpoint() == (3, b"cp3")
    assert store.stats()["log_entries"] == 3
    db_id = store.db_id
    store.close()
    again = open_store(store_location)
    assert again.db_id == db_id and again.last_t() == 3
    with pytest.raises((sqlite3.IntegrityError, StoreError)):
        again.append([LogEntry(3, 536870915, b"dup")])
    assert again.read_log(2) == [LogEntry(3, 536870915, b"c")]
    with pytest.raises(StoreConflict) as conflict:  # the log is past t=2: the append is refused
        again.append([LogEntry(3, 536870915, b"other")], after_t=2)
    assert conflict.value.entries == [LogEntry(3, 536870915, b"c")]
    again.append([LogEntry(4, 536870916, b"d")], after_t=3)
    assert again.last_t() == 4


def test_store_rejects_files_that_are_not_stores(tmp_path):
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError) as e:
        open_store(bad)
    assert e.value.code == "store/unreadable"


def test_store_backup_is_a_working_store(tmp_path):
    store = open_store(tmp_path / "s.sqlite")
    store.append([LogEntry(1, 536870913, b"a")])
    store.backup(tmp_path / "copy.sqlite")
    assert open_store(tmp_path / "copy.sqlite").read_log(0) == [LogEntry(1, 536870913, b"a")]


def clock_from(start: dt.datetime):
    ticks = iter(range(10**9))
    return lambda: start + dt.timedelta(milliseconds=next(ticks))


async def _writes(conn: Connection, n: int) -> None:
    async def one(i: int) -> None:
        await conn.transact([{"person/name": f"p{i}"}])

    async with trio.open_nursery() as nursery:
        for i in range(n):
            nursery.start_soon(one, i)


def test_connection_commits_groups_recovers(store_location):
    path = store_location
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)

    async def main() -> tuple[list, int]:
        store = open_store(path)
        conn = Connection.recover(store, clock=clock_from(start))
        async with trio.open_nursery() as nursery:
            await nursery.start(conn.run_writer)
            events = conn.listen()
            report = await conn.transact(SCHEMA_TX)
            assert report.db_after is conn.db
            await _writes(conn, 100)
            with pytest.raises(TxError) as e:
                await conn.transact([["db/add", -1, "person/name", 5]])
            assert e.value.code == "db.error/wrong-type-for-attribute"
            assert conn.t == 101 and store.last_t() == 101     # the rejected one left no trace
            seen = [events.receive_nowait().delta.t for _ in range(101)]
            assert seen == list(range(1, 102))
            assert await conn.checkpoint() == 101
            assert conn.events == conn.checkpoint_events == len(history_datoms(conn.db))
            await conn.transact([{"person/name": "after"}])
            assert conn.events == conn.checkpoint_events + 2 == len(history_datoms(conn.db))
            nursery.cancel_scope.cancel()
        store.close()
        return list(datoms(conn.db, "eavt")), conn.t

    before, t = trio.run(main)
    conn = Connection.recover(open_store(path))
    assert conn.t == t == 102
    assert conn.events == conn.checkpoint_events + 2 == len(history_datoms(conn.db))  # the checkpoint + the log
    assert list(datoms(conn.db, "eavt")) == before
    assert pull(conn.db, "[:person/name]", ("person/name", "after")) == {"person/name": "after"}


def test_recovery_from_the_log_alone(store_location):
    path = store_location

    async def main() -> list:
        conn = Connection.recover(open_store(path))
        async with trio.open_nursery() as nursery:
            await nursery.start(conn.run_writer)
            await conn.transact(SCHEMA_TX)
            await conn.transact([{"person/name": "a"}, {"person/name": "b"}])
            await conn.transact([["db/retractEntity", ("person/name", "a")]])
            nursery.cancel_scope.cancel()
        return list(datoms(conn.db, "eavt"))

    before = trio.run(main)
    assert list(datoms(Connection.recover(open_store(path)).db, "eavt")) == before


def test_instants_never_go_backwards(store_location):
    times = iter([dt.datetime(2026, 1, 2, tzinfo=dt.UTC), dt.datetime(2026, 1, 1, tzinfo=dt.UTC)])

    async def main() -> list:
        conn = Connection.recover(open_store(store_location), clock=lambda: next(times))
        async with trio.open_nursery() as nursery:
            await nursery.start(conn.run_writer)
            r1 = await conn.transact(SCHEMA_TX)
            r2 = await conn.transact([{"person/name": "x"}])
            nursery.cancel_scope.cancel()
        return [r1.tx_data[0].v, r2.tx_data[0].v]

    first, second = trio.run(main)
    assert second >= first


def test_a_slow_listener_is_dropped_not_waited_for(store_location):
    async def main() -> None:
        conn = Connection.recover(open_store(store_location))
        async with trio.open_nursery() as nursery:
            await nursery.start(conn.run_writer)
            slow = conn.listen(buffer=2)
            await conn.transact(SCHEMA_TX)
            await _writes(conn, 5)
            assert conn.t == 6
            got = []
            async for c in slow:
                got.append(c.delta.t)
            assert got == [1, 2]    # then closed: it must resync
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_checkpoints_interleaved_with_commits(store_location):
    # the store's one sqlite3 connection is shared by the writer and checkpoint(): they must take turns
    async def main() -> None:
        conn = Connection.recover(open_store(store_location))
        async with trio.open_nursery() as nursery:
            await nursery.start(conn.run_writer)
            await conn.transact(SCHEMA_TX)

            async def checkpoints() -> None:
                for _ in range(100):
                    await conn.checkpoint()

            async def writes() -> None:
                for i in range(100):
                    await conn.transact([{"person/name": f"p{i}"}])

            async with trio.open_nursery() as inner:
                inner.start_soon(checkpoints)
                inner.start_soon(writes)
            assert conn.t == 101 and conn.store.last_t() == 101
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_recovery_replays_ident_renames_over_history(store_location):
    path = store_location

    async def main() -> list:
        conn = Connection.recover(open_store(path))
        async with trio.open_nursery() as nursery:
            await nursery.start(conn.run_writer)
            await conn.transact(SCHEMA_TX)
            await conn.transact([{"person/name": "a"}])
            await conn.transact([{"db/id": kw("person/name"), "db/ident": kw("person/full-name")}])
            await conn.transact([{"person/full-name": "b"}])
            nursery.cancel_scope.cancel()
        return list(datoms(conn.db, "eavt"))

    before = trio.run(main)
    after = list(datoms(Connection.recover(open_store(path)).db, "eavt"))
    assert after == before
    assert {d.v for d in after if d.a == "person/full-name"} == {"a", "b"}


def test_processes_sharing_a_store_commit_in_turn_and_follow_each_other(pg_url):
    """Two connections on one PostgreSQL store (as two server processes): writes on both, one
    serial gap-free log, and each value follows the other's commits."""

    async def main() -> None:
        a = Connection.recover(open_store(pg_url))
        b = Connection.recover(open_store(pg_url))
        seen = {"a": [], "b": []}
        async with trio.open_nursery() as nursery:
            for name, conn in (("a", a), ("b", b)):
                await nursery.start(conn.run_writer)
                await nursery.start(conn.follow)
                events = conn.listen()

                async def record(events=events, name=name) -> None:
                    async for c in events:
                        seen[name].append(c.delta.t)

                nursery.start_soon(record)
            await a.transact(SCHEMA_TX)
            async with trio.open_nursery() as writers:
                writers.start_soon(_writes, a, 40)
                writers.start_soon(_writes, b, 40)
            assert a.store.last_t() == 81
            with trio.fail_after(10):
                while a.t < 81 or b.t < 81 or len(seen["a"]) < 81 or len(seen["b"]) < 81:
                    await trio.sleep(0.01)
            assert a.caught_up > 0 and b.caught_up > 0
            assert list(datoms(a.db, "eavt")) == list(datoms(b.db, "eavt"))
            assert seen["a"] == seen["b"] == list(range(1, 82))
            names = {d.v for d in datoms(a.db, "aevt", "person/name")}
            assert names == {f"p{i}" for i in range(40)}  # both writers' p{i} upsert to one entity each
            nursery.cancel_scope.cancel()
        recovered = Connection.recover(open_store(pg_url))
        assert list(datoms(recovered.db, "eavt")) == list(datoms(a.db, "eavt"))

    trio.run(main)


def test_postgresql_errors_become_codes_a_writer_can_act_on(pg_url):
    import psycopg

    store = open_store(pg_url)

    def broken_after(commit: bool):
        def fn(conn, phase):
            if commit:
                phase.append("commit")
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        return fn

    with pytest.raises(StoreError) as unknown:
        store._run(broken_after(True), writing=True)
    assert unknown.value.code == "db.error/commit-unknown"
    with pytest.raises(StoreError) as unavailable:
        store._run(broken_after(False), writing=True)
    assert unavailable.value.code == "db.error/unavailable" and "PostgreSQL" in unavailable.value.message
    store.append([LogEntry(1, 536870913, b"a")])
    with pytest.raises(StoreError) as storage:  # the connection was reopened; a duplicate t is refused
        store.append([LogEntry(1, 536870913, b"a")])
    assert storage.value.code == "db.error/storage"
    assert store.read_log(0) == [LogEntry(1, 536870913, b"a")]
    store.close()


def test_a_clock_behind_the_log_does_not_make_instants_go_back(store_location):
    ahead = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)

    async def write(clock) -> dt.datetime:
        conn = Connection.recover(open_store(store_location), clock=clock)
        async with trio.open_nursery() as nursery:
            await nursery.start(conn.run_writer)
            if conn.t == 0:
                await conn.transact(SCHEMA_TX)
            report = await conn.transact([{"person/name": f"at {conn.t}"}])
            nursery.cancel_scope.cancel()
        conn.store.close()
        return report.tx_data[0].v

    first = trio.run(write, lambda: ahead)  # a process on a machine whose clock is ahead
    second = trio.run(write, lambda: ahead - dt.timedelta(hours=1))  # then one whose clock is behind
    assert first == ahead and second == ahead


def test_a_postgresql_url_is_shown_without_its_password():
    from datsync.shell.store_postgres import redact

    assert redact("postgresql://ann:s3cret@db:5432/app") == "postgresql://ann:***@db:5432/app"
    assert redact("postgresql://db/app?sslmode=require&password=s3cret&x=1") == \
        "postgresql://db/app?sslmode=require&password=***&x=1"
    assert redact("postgresql://ann@db/app") == "postgresql://ann@db/app"


def test_the_servers_log_reads_run_side_by_side(store_location):
    import threading

    from datsync.shell.server import Readers

    store = open_store(store_location)
    readers = Readers(store, 2)
    both = threading.Barrier(2, timeout=10)  # broken unless two reads are in their threads at once
    seen = []

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            for _ in range(2):
                nursery.start_soon(readers.run, lambda r: seen.append((both.wait(), r.last_t())))

    trio.run(main)
    assert len(seen) == 2
    readers.close()
    store.close()
