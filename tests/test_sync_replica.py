"""Replicas: applying deltas (idempotence, gaps), apply_datoms, bootstrap snapshots in chunks."""

from __future__ import annotations

import datetime as dt

import pytest

from datsync.core import TX0, Datom, datoms, empty_db, kw, transact
from datsync.core.datomic import SCHEMA_ATTRS
from datsync.core.db import apply_datoms
from datsync.core.sync import (
    ALREADY_APPLIED,
    APPLIED,
    GAP,
    EidMap,
    ProtocolError,
    SnapshotBegin,
    SnapshotChunk,
    add_chunk,
    apply_delta,
    begin_snapshot,
    build_replica,
    delta_from_report,
    replica_of,
    server_datoms,
    snapshot,
    snapshot_datoms,
    tx_for_server,
)

ONE, MANY = kw("db.cardinality/one"), kw("db.cardinality/many")
SCHEMA = {
    "p/name": {"db/valueType": kw("db.type/string"), "db/cardinality": ONE, "db/unique": kw("db.unique/identity")},
    "p/friend": {"db/valueType": kw("db.type/ref"), "db/cardinality": MANY},
    "p/age": {"db/valueType": kw("db.type/long"), "db/cardinality": ONE},
}


def stream(n: int = 6):
    """A server db and the reports of ``n`` transactions."""
    db = empty_db(SCHEMA, flavor="datomic")
    base = db
    reports = []
    for i in range(n):
        r = transact(db, [{"p/name": f"n{i}", "p/age": i, "p/friend": [("p/name", "n0")] if i else []},
                          *([["db/retractEntity", ("p/name", f"n{i - 2}")]] if i >= 3 else [])],
                     instant=dt.datetime(2020, 1, 1 + i, tzinfo=dt.UTC))
        reports.append(r)
        db = r.db_after
    return base, reports


def current(db):
    return sorted((k[0], k[1], k[3], k[4]) for k in db.eavt)


def test_apply_in_order_equals_the_server_and_tracks_max_tx():
    base, reports = stream()
    rep = replica_of(base)
    assert rep.t == 1 and rep.db.flavor == "datascript"
    for r in reports:
        rep, out = apply_delta(rep, delta_from_report(r))
        assert out.kind == APPLIED and out.delta_t == rep.t
        assert sorted(server_datoms(rep)) == current(r.db_after)
        assert rep.db.max_tx == r.db_after.max_tx
    assert rep.pending == ()


def test_applying_twice_changes_nothing():
    base, reports = stream(3)
    rep = replica_of(base)
    deltas = [delta_from_report(r) for r in reports]
    for d in deltas:
        rep, _ = apply_delta(rep, d)
    for d in deltas:
        again, out = apply_delta(rep, d)
        assert again is rep and out.kind == ALREADY_APPLIED and out.replica_t == rep.t


def test_a_gap_is_reported_and_never_skipped():
    base, reports = stream(4)
    rep = replica_of(base)
    deltas = [delta_from_report(r) for r in reports]
    rep, _ = apply_delta(rep, deltas[0])
    same, out = apply_delta(rep, deltas[2])
    assert same is rep and out.kind == GAP and out.is_gap and (out.replica_t, out.delta_t) == (rep.t, deltas[2].t)
    rep, out = apply_delta(rep, deltas[1])
    assert out.applied
    rep, out = apply_delta(rep, deltas[2])
    assert out.applied


def test_cost_grows_with_the_delta_not_the_database():
    """Applying a delta shares every untouched index leaf with the replica before it."""
    db = empty_db(SCHEMA, flavor="datomic")
    db = transact(db, [{"p/name": f"n{i}", "p/age": i} for i in range(5000)]).db_after
    rep = replica_of(db)
    r = transact(db, [["db/add", ("p/name", "n42"), "p/age", 1000]])
    rep2, out = apply_delta(rep, delta_from_report(r))
    assert out.applied
    for name in ("eavt", "aevt", "avet"):
        old, new = getattr(rep.db, name).leaves(), getattr(rep2.db, name).leaves()
        shared = len({id(x) for x in old} & {id(x) for x in new})
        assert shared >= len(old) - 3, name


def test_apply_datoms_writes_and_retracts_exactly():
    db = empty_db({"r": {"db/valueType": kw("db.type/ref")}, "u": {"db/unique": kw("db.unique/identity")}})
    db2 = apply_datoms(db, [Datom(1, "u", "a", TX0 + 1, True), (1, "r", 2, TX0 + 1, True), (2, "x", 5, TX0 + 1, True)])
    assert db2.max_tx == TX0 + 1 and db2.max_eid == 2
    assert [d.e for d in datoms(db2, "avet", "u", "a")] == [1]
    assert [d.e for d in datoms(db2, "vaet", 2)] == [1]
    db3 = apply_datoms(db2, [(1, "r", 2, TX0 + 2, False), (1, "u", "a", TX0 + 2, True), (9, "x", 1, TX0 + 2, False)])
    assert not datoms(db3, "vaet", 2) and len(db3.eavt) == 2 and db3.max_tx == TX0 + 2
    assert datoms(db3, "eavt", 1, "u")[0].tx == TX0 + 1  # an assertion of a current datom is a no-op
    assert len(db2.eavt) == 3  # values are immutable


def test_apply_datoms_fixes_index_membership_when_props_change():
    db = apply_datoms(empty_db({}), [(1, "a", 1, TX0 + 1, True), (2, "a", 2, TX0 + 1, True)])
    assert len(db.avet) == 0
    db2 = apply_datoms(db, [], schema={"a": {"db/index": True}})
    assert [d.v for d in datoms(db2, "avet", "a")] == [1, 2] and db2.schema == {"a": {"db/index": True}}
    db3 = apply_datoms(db2, [], schema={})
    assert len(db3.avet) == 0


def test_apply_datoms_on_a_datomic_db_records_history():
    db = empty_db(SCHEMA, flavor="datomic")
    n = len(db.heavt)
    db2 = apply_datoms(db, [(101, "p/age", 3, db.max_tx + 1, True)])
    assert len(db2.heavt) == n + 1 and len(db2.haevt) == n + 1


def test_snapshot_streams_schema_first_in_bounded_chunks():
    _base, reports = stream()
    db = reports[-1].db_after
    head, chunks = snapshot(db, 7, db_id="srv")
    chunks = list(chunks)
    assert head == SnapshotBegin(db.max_tx - TX0, db.max_tx, db.max_eid, len(db.eavt), len(chunks), "srv")
    assert all(len(c.datoms) <= 7 for c in chunks) and [c.seq for c in chunks] == list(range(len(chunks)))
    flat = [d for c in chunks for d in c.datoms]
    assert sorted(flat) == current(db)
    n_schema = sum(1 for d in flat if d[1] in SCHEMA_ATTRS)
    assert all(d[1] in SCHEMA_ATTRS for d in flat[:n_schema])
    assert list(snapshot_datoms(db)) == flat


def test_replica_built_from_chunks_equals_the_server():
    _base, reports = stream()
    db = reports[-1].db_after
    for eids in (EidMap.identity(), EidMap.capped(TX0, low=101, start=9000)):
        head, chunks = snapshot(db, 5)
        b = begin_snapshot(head)
        for c in chunks:
            assert not b.complete
            b = add_chunk(b, c)
        rep = build_replica(b, eids)
        assert rep.t == head.t and rep.db.max_tx == db.max_tx
        assert sorted(server_datoms(rep)) == current(db)
        assert rep.server_schema == db.schema


def test_chunks_in_any_order_with_duplicates_build_the_same_replica():
    _base, reports = stream()
    db = reports[-1].db_after
    head, chunks = snapshot(db, 10)
    chunks = list(chunks)
    b = begin_snapshot(head)
    for c in [*reversed(chunks), chunks[0], chunks[-1]]:
        b = add_chunk(b, c)
    assert b.complete and b.received == len(chunks)
    assert list(build_replica(b).db.eavt) == list(replica_of(db).db.eavt)


def test_chunks_of_another_snapshot_or_missing_are_refused():
    _base, reports = stream()
    head, chunks = snapshot(reports[-1].db_after, 10)
    chunks = list(chunks)
    b = begin_snapshot(head)
    with pytest.raises(ProtocolError):
        add_chunk(b, SnapshotChunk(head.t + 1, 0, chunks[0].datoms))
    with pytest.raises(ProtocolError):
        add_chunk(b, SnapshotChunk(head.t, head.chunks, ()))
    with pytest.raises(ProtocolError):
        add_chunk(b, SnapshotChunk(head.t, 0, chunks[0].datoms * 20))  # more datoms than announced
    with pytest.raises(ProtocolError) as e:
        build_replica(add_chunk(b, chunks[1]))
    assert "incomplete" in e.value.message


def test_snapshot_of_a_view_is_refused():
    from datsync.core import as_of

    _base, reports = stream(2)
    with pytest.raises(ValueError):
        list(snapshot_datoms(as_of(reports[-1].db_after, 1)))


# ------------------------------------------------------------------------------------------------
# Renamed attributes: old names keep resolving, as on the server

RENAME_SCHEMA = {
    "p/name": {"db/valueType": kw("db.type/string"), "db/cardinality": ONE, "db/unique": kw("db.unique/identity")},
    "p/boss": {"db/valueType": kw("db.type/ref"), "db/cardinality": ONE},
    "p/rank": {"db/valueType": kw("db.type/long"), "db/cardinality": ONE},
    "p/boss+rank": {"db/valueType": kw("db.type/tuple"), "db/cardinality": ONE,
                    "db/tupleAttrs": [kw("p/boss"), kw("p/rank")]},
}


def renamed_world():
    """A server db with A, B (boss A, rank 1), C, after renaming ``p/boss`` to ``p/manager``; the
    db before the rename and the ids of A, B, C."""
    r = transact(empty_db(RENAME_SCHEMA, flavor="datomic"), [
        {"db/id": "a", "p/name": "A"}, {"db/id": "b", "p/name": "B", "p/boss": "a", "p/rank": 1},
        {"db/id": "c", "p/name": "C"},
    ])
    before = r.db_after
    after = transact(before, [{"db/id": kw("p/boss"), "db/ident": kw("p/manager")}]).db_after
    return before, after, [r.tempids[x] for x in "abc"]


@pytest.mark.parametrize("via_delta", [False, True])
def test_a_renamed_attributes_old_name_translates_like_the_new_one(via_delta):
    before, after, (_a, b, c) = renamed_world()
    eids = EidMap.capped(low=101, start=1000)
    if via_delta:
        rep, _ = apply_delta(replica_of(before, eids), delta_from_report(transact(
            before, [{"db/id": kw("p/boss"), "db/ident": kw("p/manager")}])))
    else:
        rep = replica_of(after, eids)
    assert dict(rep.aliases) == {"p/boss": "p/manager"}
    lb, lc = rep.eids.to_local(b), rep.eids.to_local(c)
    assert lb != b
    for name in ("p/manager", "p/boss", ":p/boss", kw("p/boss")):
        assert tx_for_server(rep, [["db/add", lc, name, lb]]) == [["db/add", c, name, b]]
        assert tx_for_server(rep, [{"db/id": lc, name: lb}]) == [{"db/id": c, name: b}]
    assert tx_for_server(rep, [{"db/id": lb, "p/_boss": [lc]}]) == [{"db/id": b, "p/_boss": [c]}]
    # what the server makes of it: C's manager is B
    db = transact(after, tx_for_server(rep, [["db/add", lc, "p/boss", lb]])).db_after
    assert datoms(db, "eavt", c, "p/manager")[0].v == b


def test_an_attribute_given_by_its_entity_id_translates_its_values():
    _before, after, (_a, b, c) = renamed_world()
    rep = replica_of(after, EidMap.capped(low=101, start=1000))
    attr = after.idents[kw("p/manager")]
    lattr, lb, lc = (rep.eids.to_local(x) for x in (attr, b, c))
    assert tx_for_server(rep, [["db/add", lc, lattr, lb]]) == [["db/add", c, attr, b]]


@pytest.mark.parametrize("eids", [EidMap.identity(), EidMap.capped(low=101, start=1000)])
def test_bootstrap_after_renaming_a_composite_member_has_the_servers_schema(eids):
    _before, after, (a, _b, _c) = renamed_world()
    rep = replica_of(after, eids)
    assert rep.server_schema["p/boss+rank"]["db/tupleAttrs"] == ("p/manager", "p/rank")
    assert rep.server_schema == after.schema
    assert sorted(server_datoms(rep)) == current(after)
    [(_e, _a, v, _tx)] = [d for d in server_datoms(rep) if d[1] == "p/boss+rank"]
    assert v == (a, 1)


def test_aliases_follow_later_renames_and_travel_in_the_snapshot_header():
    from datsync.core.sync import decode, encode

    _before, after, _ = renamed_world()
    r = transact(after, [{"db/id": kw("p/manager"), "db/ident": kw("p/chief")}])
    head, _chunks = snapshot(r.db_after, 100)
    assert head.aliases == (("p/boss", "p/chief"), ("p/manager", "p/chief"))
    assert decode(encode(head)) == head
    rep, _ = apply_delta(replica_of(after), delta_from_report(r))
    assert dict(rep.aliases) == dict(head.aliases) == dict(replica_of(r.db_after).aliases)


# ------------------------------------------------------------------------------------------------
# Time travel over what the replica saw


def test_time_travel_over_what_the_replica_saw():
    from datsync.core import as_of, since
    from datsync.core.sync import SyncError, datoms_to_remote
    from datsync.core.sync.replica import replica_as_of, replica_history, replica_since

    _base, reports = stream(6)
    boot = reports[1].db_after  # the replica bootstraps at t=3
    rep = replica_of(boot, EidMap.capped(TX0, low=101, start=9000))
    for r in reports[2:]:
        rep, _ = apply_delta(rep, delta_from_report(r))
    server = reports[-1].db_after

    def server_ids(view):
        local = [(d.e, d.a, d.v, d.tx) for d in datoms(view, "eavt")]
        return sorted(datoms_to_remote(rep.eids, rep.refs, local))

    def at(view):
        return sorted((d.e, d.a, d.v, d.tx) for d in datoms(view, "eavt"))

    assert rep.base_t == 3
    for t in (3, 5, 7):
        assert server_ids(replica_as_of(rep, t)) == at(as_of(server, t))
    when = reports[3].db_after.eavt.first((reports[3].db_after.max_tx, "db/txInstant"))[3]
    assert server_ids(replica_as_of(rep, when)) == at(as_of(server, when))
    assert server_ids(replica_since(rep, 1)) == at(since(server, 1))
    retracted = [d for d in datoms(replica_history(rep), "eavt") if not d.added]
    assert retracted and all(d.tx > TX0 + 3 for d in retracted)
    with pytest.raises(SyncError) as e:
        replica_as_of(rep, 2)
    assert e.value.code == "sync/before-history" and e.value.data == {"t": 2, "base_t": 3}
    assert replica_of(boot, history=False).base_t is None


def test_a_snapshot_received_over_the_wire_shares_equal_ids_and_values():
    # Decoding makes one object per occurrence; the builder keeps one per distinct id and value, so
    # a bootstrapped replica holds what the server's database holds, not a copy per datom.
    from datsync.core.sync import add_chunk, begin_snapshot, build_replica, decode, encode, replica_of, snapshot

    schema = {"p/name": {"db/valueType": kw("db.type/string"), "db/cardinality": kw("db.cardinality/one")},
              "p/tag": {"db/valueType": kw("db.type/string"), "db/cardinality": kw("db.cardinality/many")}}
    db = empty_db(schema, flavor="datomic")
    for i in range(30):
        db = transact(db, [{"p/name": f"n{i % 3}", "p/tag": ["x" * 40, f"t{i}"]}]).db_after
    head, chunks = snapshot(db, 7)
    builder = begin_snapshot(decode(encode(head)))
    for c in chunks:
        builder = add_chunk(builder, decode(encode(c)))
    rep = build_replica(builder)
    assert datoms(rep.db, "eavt") == datoms(replica_of(db).db, "eavt")
    keys = list(rep.db.eavt)
    for attr_value in ("x" * 40, "n1"):
        assert len({id(k[3]) for k in keys if k[3] == attr_value}) == 1
    by_entity: dict[int, set[int]] = {}
    for k in keys:
        by_entity.setdefault(k[0], set()).add(id(k[0]))
    assert all(len(ids) == 1 for ids in by_entity.values())


def test_a_snapshot_sends_the_schema_then_each_attribute_in_turn():
    _, reports = stream(6)
    db = reports[-1].db_after
    sent = list(snapshot_datoms(db))
    schema = [d for d in sent if d[1] in SCHEMA_ATTRS]
    rest = sent[len(schema):]
    assert sent[:len(schema)] == schema and not any(d[1] in SCHEMA_ATTRS for d in rest)
    assert [(d[1], d[0]) for d in rest] == sorted((d[1], d[0]) for d in rest)  # AEVT order
    assert sorted((d[0], d[1], d[2], d[3]) for d in sent) == current(db)
    kept = list(snapshot_datoms(db, lambda e, a: a != "p/age"))
    assert kept == [d for d in sent if d[1] != "p/age" or d[1] in SCHEMA_ATTRS]
