"""Eid translation: identity and capped id spaces, single ids, datoms, tx forms, both directions."""

from __future__ import annotations

import datetime as dt

import pytest

from datsync.core import TX0, datoms, empty_db, kw, transact
from datsync.core.sync import (
    EidMap,
    SyncError,
    apply_delta,
    datoms_to_local,
    datoms_to_remote,
    delta_from_report,
    ref_info,
    replica_of,
    server_datoms,
    tx_to_local,
    tx_to_remote,
)

ONE, MANY = kw("db.cardinality/one"), kw("db.cardinality/many")
SCHEMA = {
    "p/name": {"db/valueType": kw("db.type/string"), "db/cardinality": ONE, "db/unique": kw("db.unique/identity")},
    "p/friend": {"db/valueType": kw("db.type/ref"), "db/cardinality": ONE},
    "p/friends": {"db/valueType": kw("db.type/ref"), "db/cardinality": MANY},
    "p/age": {"db/valueType": kw("db.type/long"), "db/cardinality": ONE},
    "p/pair": {"db/valueType": kw("db.type/tuple"), "db/cardinality": ONE,
               "db/tupleTypes": (kw("db.type/long"), kw("db.type/ref"))},
    "p/refs": {"db/valueType": kw("db.type/tuple"), "db/cardinality": ONE, "db/tupleType": kw("db.type/ref")},
    "p/age+friend": {"db/valueType": kw("db.type/tuple"), "db/cardinality": ONE,
                     "db/tupleAttrs": ("p/age", "p/friend")},
}
REFS = ref_info(SCHEMA)
BIG = 1 << 40


def capped():
    return EidMap.capped(10_000, low=1000, start=5000)


def test_identity_is_free_and_total():
    m = EidMap.identity()
    assert m.is_identity and len(m) == 0 and m.to_local(123) == 123 and m.to_remote(TX0 + 5) == TX0 + 5
    ds = [(1, "p/friend", 2, TX0)]
    assert datoms_to_local(m, REFS, ds) == (m, ds)
    assert datoms_to_remote(m, REFS, ds) is ds
    assert tx_to_remote(m, REFS, SCHEMA, [[1]]) == [[1]]


def test_capped_assigns_local_ids_in_a_band():
    m = capped()
    assert m.to_local(999) == 999  # below low: held as itself
    with pytest.raises(SyncError) as e:
        m.to_local(BIG)
    assert e.value.code == "sync/unknown-eid"
    m2 = m.assign([BIG, 1000, BIG, 7])
    assert len(m) == 0  # persistent: the old map is unchanged
    assert m2.to_local(BIG) == 5000 and m2.to_local(1000) == 5001 and m2.to_local(7) == 7
    assert m2.to_remote(5000) == BIG and m2.to_remote(5001) == 1000 and m2.to_remote(7) == 7
    assert m2.assign([BIG]) is m2
    assert m2.to_local(TX0 + 3) == TX0 + 3 and m2.to_remote(TX0 + 3) == TX0 + 3  # tx ids are shared
    assert m2.to_local(-1) == -1 and m2.to_local("tmp") == "tmp"  # tempids pass
    with pytest.raises(SyncError):
        m2.to_remote(5002)
    with pytest.raises(SyncError) as e:
        m2.to_remote(1500)  # in the band but never given out
    assert e.value.code == "sync/unknown-eid"
    assert m2 == capped().assign([BIG, 1000]) and hash(m2) == hash(capped().assign([BIG, 1000]))
    assert sorted(m2.items()) == [(1000, 5001), (BIG, 5000)]


def test_capped_id_space_exhausted():
    m = EidMap.capped(12, low=10, start=10)
    m = m.assign([100, 101])
    with pytest.raises(SyncError) as e:
        m.assign([102])
    assert e.value.code == "sync/id-space-exhausted"
    with pytest.raises(SyncError):
        EidMap.capped().to_local((1 << 31) + TX0)  # beyond 32 bits: translated, and not assigned


def test_bad_capped_parameters():
    with pytest.raises(ValueError):
        EidMap.capped(100, low=50, start=10)
    assert EidMap.capped().cap == TX0 and EidMap.capped().low == TX0 // 2


def test_datoms_translate_entities_refs_and_ref_tuples_both_ways():
    ds = [
        (BIG, "p/name", "ann", TX0 + 1),
        (BIG, "p/friend", BIG + 1, TX0 + 1),
        (BIG, "p/age", BIG + 2, TX0 + 1),  # not a ref: the value is left alone
        (BIG, "p/pair", (BIG + 3, BIG + 1), TX0 + 1),
        (BIG, "p/refs", (BIG + 1, None, 5), TX0 + 1),
        (BIG, "p/age+friend", (3, BIG + 1), TX0 + 1),
        (TX0 + 1, "db/txInstant", dt.datetime(2020, 1, 1), TX0 + 1),
    ]
    m, local = datoms_to_local(capped(), REFS, ds)
    a, b = m.to_local(BIG), m.to_local(BIG + 1)
    assert local[0] == (a, "p/name", "ann", TX0 + 1)
    assert local[1] == (a, "p/friend", b, TX0 + 1)
    assert local[2] == (a, "p/age", BIG + 2, TX0 + 1)
    assert local[3] == (a, "p/pair", (BIG + 3, b), TX0 + 1)
    assert local[4] == (a, "p/refs", (b, None, 5), TX0 + 1)
    assert local[5] == (a, "p/age+friend", (3, b), TX0 + 1)
    assert local[6] == ds[6]
    assert datoms_to_remote(m, REFS, local) == ds


def test_tx_forms_translate_to_remote_and_back():
    m = capped().assign([BIG, BIG + 1, BIG + 2])
    a, b, c = (m.to_local(x) for x in (BIG, BIG + 1, BIG + 2))
    local_tx = [
        ["db/add", a, "p/friend", b],
        ["db/add", a, kw("p/friends"), c],
        ("db/retract", a, "p/age", 5),
        ["db/add", ("p/name", "ann"), "p/friend", ("p/name", "bob")],
        ["db/retractEntity", b],
        ["db.fn/retractAttribute", a, "p/friends"],
        ["db/cas", a, "p/friend", b, c],
        ["db/add", "tmp", "p/friend", -1],
        ["db/add", a, "p/pair", (7, b)],
        {"db/id": a, "p/friend": {"p/name": "nested", "p/friends": [b, "tmp"]}, "p/friends": [b, c],
         "p/_friend": c, "p/name": "x", "p/age": 1},
        {"db/id": "tmp", "p/friends": {b, c}},
        {kw("db/id"): kw("p/name"), "db/doc": "idents pass"},
        ["db/add", a, "p/friend", ("p/friend", b)],  # a lookup ref whose value is itself a ref
        ["db/add", "datomic.tx", "p/age", 1],
    ]
    remote = tx_to_remote(m, REFS, SCHEMA, local_tx)
    assert remote[0] == ["db/add", BIG, "p/friend", BIG + 1]
    assert remote[1] == ["db/add", BIG, kw("p/friends"), BIG + 2]
    assert remote[2] == ("db/retract", BIG, "p/age", 5)
    assert remote[3] == local_tx[3]
    assert remote[4] == ["db/retractEntity", BIG + 1]
    assert remote[5] == ["db.fn/retractAttribute", BIG, "p/friends"]
    assert remote[6] == ["db/cas", BIG, "p/friend", BIG + 1, BIG + 2]
    assert remote[7] == local_tx[7]
    assert remote[8] == ["db/add", BIG, "p/pair", (7, BIG + 1)]
    assert remote[9] == {"db/id": BIG, "p/friend": {"p/name": "nested", "p/friends": [BIG + 1, "tmp"]},
                         "p/friends": [BIG + 1, BIG + 2], "p/_friend": BIG + 2, "p/name": "x", "p/age": 1}
    assert remote[10] == {"db/id": "tmp", "p/friends": {BIG + 1, BIG + 2}}
    assert remote[11] == local_tx[11]
    assert remote[12] == ["db/add", BIG, "p/friend", ("p/friend", BIG + 1)]
    assert remote[13] == local_tx[13]
    m2, back = tx_to_local(m, REFS, SCHEMA, remote)
    assert m2 == m and back == local_tx


def test_tx_to_local_assigns_new_ids():
    m, local = tx_to_local(capped(), REFS, SCHEMA, [["db/add", BIG, "p/friend", BIG + 9]])
    assert local == [["db/add", 5000, "p/friend", 5001]] and m.to_remote(5001) == BIG + 9


def test_unknown_local_id_in_a_write_is_an_error():
    with pytest.raises(SyncError):
        tx_to_remote(capped(), REFS, SCHEMA, [["db/add", 6000, "p/age", 1]])


def test_capped_replica_of_a_real_server_stream():
    """A replica whose every user entity id is translated equals the server through the map."""
    db = empty_db(SCHEMA, flavor="datomic")
    eids = EidMap.capped(TX0, low=101, start=200_000)
    rep = replica_of(db, eids)
    for i in range(5):
        r = transact(db, [{"db/id": "x", "p/name": f"n{i}", "p/friend": ("p/name", "n0") if i else "x",
                           "p/pair": (i, 101)}], instant=dt.datetime(2020, 1, 1 + i))
        db = r.db_after
        rep, out = apply_delta(rep, delta_from_report(r))
        assert out.applied
    assert sorted(server_datoms(rep)) == sorted((k[0], k[1], k[3], k[4]) for k in db.eavt)
    ann = datoms(rep.db, "avet", "p/name", "n1")[0].e
    assert ann >= 200_000
    assert rep.eids.to_remote(ann) == datoms(db, "avet", "p/name", "n1")[0].e
    # the same ids after a rebuild from a snapshot with the grown map
    again = replica_of(db, rep.eids)
    assert list(again.db.eavt) == list(rep.db.eavt)
