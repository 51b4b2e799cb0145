"""``datsync copy``: a store moves between SQLite and PostgreSQL whole (identity, log, submissions,
checkpoint), verified."""

from __future__ import annotations

import pytest
import trio

from datsync.core import datoms, kw
from datsync.shell.connection import Connection
from datsync.shell.store import LogEntry, StoreError, copy_store, open_store, verify_copy
from tests.test_cli_commands import fails, ok

SCHEMA_TX = [{"db/ident": kw("person/name"), "db/valueType": kw("db.type/string"),
              "db/cardinality": kw("db.cardinality/one"), "db/unique": kw("db.unique/identity")}]


def _fill(location: str) -> None:
    async def main() -> None:
        conn = Connection.recover(open_store(location))
        async with trio.open_nursery() as nursery:
            await nursery.start(conn.run_writer)
            await conn.transact(SCHEMA_TX)
            for i in range(30):
                await conn.transact([{"person/name": f"p{i}"}])
            await conn.checkpoint()
            for i in range(5):
                await conn.submit([{"db/id": "new", "person/name": f"s{i}"}], ("client-a", i + 1))
            nursery.cancel_scope.cancel()
        conn.store.close()

    trio.run(main)


def _state(location: str) -> tuple:
    store = open_store(location)
    conn = Connection.recover(store)
    rows, floors = store.read_submissions()
    out = (store.db_id, store.read_log(0), sorted(rows), floors, list(datoms(conn.db, "eavt")))
    store.close()
    return out


def test_copy_sqlite_to_postgresql_and_back(tmp_path, pg_url):
    src, back = str(tmp_path / "src.sqlite"), str(tmp_path / "back.sqlite")
    _fill(src)
    there = ok("copy", src, pg_url)
    assert there[kw("t")] == 36 and there[kw("verified")] is True
    assert ok("copy", pg_url, back)[kw("db-id")] == there[kw("db-id")]
    original = _state(src)
    assert original[2] and original[0] == there[kw("db-id")]  # submissions were copied too
    assert _state(pg_url) == original == _state(back)
    assert open_store(pg_url).latest_checkpoint() == open_store(src).latest_checkpoint()


def test_copy_refuses_a_destination_that_holds_a_database(tmp_path):
    src, dst = str(tmp_path / "a.sqlite"), str(tmp_path / "b.sqlite")
    _fill(src)
    _fill(dst)
    fails(2, "store/not-empty", "copy", src, dst)
    fails(2, "store/not-found", "copy", str(tmp_path / "missing.sqlite"), str(tmp_path / "c.sqlite"))


def test_verification_finds_a_log_that_differs(tmp_path, store_location):
    src = str(tmp_path / "a.sqlite")
    _fill(src)
    copy_store(open_store(src), open_store(store_location), batch=7)
    other = str(tmp_path / "other.sqlite")
    tampered = open_store(other)
    tampered.adopt(open_store(src).db_id)
    entries = open_store(src).read_log(0)
    tampered.append([*entries[:10], LogEntry(11, entries[10].tx, b"not the same"), *entries[11:]])
    with pytest.raises(StoreError) as e:
        verify_copy(open_store(src), tampered, 36)
    assert e.value.code == "store/copy-differs" and "t=11" in e.value.message


def test_commands_read_and_write_a_postgresql_store(pg_url):
    from tests.test_cli_commands import PEOPLE

    imported = ok("import", pg_url, PEOPLE)
    assert imported[kw("t")] >= 1
    names = ok("q", pg_url, "[:find [?n ...] :where [_ :person/name ?n]]")
    assert len(names) >= 2
    status = ok("status", pg_url)
    assert status[kw("t")] == imported[kw("t")] and status[kw("in-use")] is False
