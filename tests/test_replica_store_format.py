"""The replica store's base format: datoms in columns (read back exactly, every value type), and a
base written by format 1 (one snapshot chunk) still opens."""

from __future__ import annotations

import sqlite3

from hypothesis import given, settings
from hypothesis import strategies as st

from datsync.core import datoms, empty_db, kw, transact
from datsync.core.sync import encode, replica_of, server_datoms
from datsync.core.sync.codec import decode_datom_columns, encode_datom_columns
from datsync.core.sync.snapshot import SnapshotChunk
from datsync.core.sync.strategies import datom_values
from datsync.shell.replica_store import VERSION, ReplicaStore, base_messages

SCHEMA = {"p/name": {"db/valueType": kw("db.type/string"), "db/cardinality": kw("db.cardinality/one"),
                     "db/unique": kw("db.unique/identity")},
          "p/n": {"db/valueType": kw("db.type/long"), "db/cardinality": kw("db.cardinality/one")}}


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 2**40), st.sampled_from(["a/x", "b/y", "~c"]), datom_values(),
                          st.integers(1, 2**40)), max_size=12))
def test_datom_columns_round_trip(ds):
    back = decode_datom_columns(encode_datom_columns(ds))
    key = lambda d: (d[0], d[1], d[3], repr(d[2]))
    assert sorted(back, key=key) == sorted(ds, key=key)
    assert all(type(b[2]) is type(d[2]) for b, d in zip(sorted(back, key=key), sorted(ds, key=key), strict=True))


def replica():
    tx = [{"p/name": "~tilde", "p/n": 1}, {"p/name": "b", "p/n": 2}]
    db = transact(empty_db(SCHEMA, flavor="datomic"), tx).db_after
    return replica_of(db, db_id="test")


def test_a_base_is_kept_in_columns_and_opens_equal(tmp_path):
    r = replica()
    store = ReplicaStore(tmp_path / "a.replica")
    store.set_base(r)
    store.close()
    store = ReplicaStore(tmp_path / "a.replica")
    try:
        back = store.load().replica
        assert sorted(server_datoms(back)) == sorted(server_datoms(r)) and back.t == r.t
        assert datoms(back.db, "avet", "p/name", "~tilde")
        assert store._meta("version") == VERSION
    finally:
        store.close()


def test_a_format_1_base_still_opens(tmp_path):
    r = replica()
    path = tmp_path / "old.replica"
    ReplicaStore(path).close()
    head, _ = base_messages(r)
    db = sqlite3.connect(path)
    with db:
        db.execute("UPDATE meta SET value = '1' WHERE key = 'version'")
        db.execute("INSERT INTO base (id, t, head, datoms) VALUES (1, ?, ?, ?)",
                   (r.t, head, encode(SnapshotChunk(r.t, 0, tuple(server_datoms(r))))))
    db.close()
    store = ReplicaStore(path)
    try:
        assert sorted(server_datoms(store.load().replica)) == sorted(server_datoms(r))
    finally:
        store.close()
