"""Deltas from server transaction reports; schema derivation and every mid-stream schema change."""

from __future__ import annotations

import datetime as dt
import decimal
import uuid

import pytest

from datsync.core import TX0, datoms, empty_db, kw, sym, transact
from datsync.core.datomic import EPOCH
from datsync.core.errors import DatsyncError
from datsync.core.sync import (
    Delta,
    SchemaDelta,
    apply_delta,
    apply_schema_delta,
    delta_from_report,
    history_events,
    replica_of,
    replica_schema,
    schema_delta,
    server_datoms,
    server_schema_from_datoms,
)

ONE, MANY = kw("db.cardinality/one"), kw("db.cardinality/many")
T0 = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


def attr(vt: str, card=ONE, **extra):
    return {"db/valueType": kw(f"db.type/{vt}"), "db/cardinality": card, **extra}


SCHEMA = {
    "person/name": attr("string", **{"db/unique": kw("db.unique/identity")}),
    "person/age": attr("long"),
    "person/email": attr("string"),
    "person/friend": attr("ref"),
    "person/tags": attr("string", MANY),
    "person/price": attr("bigdec"),
    "person/born": attr("instant"),
}


def server(schema=SCHEMA):
    return empty_db(schema, flavor="datomic")


def tx(db, data, seconds=0):
    return transact(db, data, instant=T0 + dt.timedelta(seconds=seconds))


def current(db):
    return sorted((k[0], k[1], k[3], k[4]) for k in db.eavt)


def test_delta_from_report_has_t_tx_instant_and_datoms():
    db = server()
    r = tx(db, [{"db/id": "a", "person/name": "Ann", "person/age": 30}])
    d = delta_from_report(r)
    assert d.t == db.max_tx - TX0 + 1 and d.tx == TX0 + d.t
    assert d.instant == T0
    assert d.datoms[0] == (d.tx, "db/txInstant", T0, True)
    a = r.tempids["a"]
    assert set(d.datoms[1:]) == {(a, "person/name", "Ann", True), (a, "person/age", 30, True)}
    assert not d.schema


def test_delta_is_minimal_only_what_changed():
    db = tx(server(), [{"db/id": "a", "person/name": "Ann", "person/age": 30}]).db_after
    r = tx(db, [{"person/name": "Ann", "person/age": 31, "person/tags": ["x"]}])
    d = delta_from_report(r)
    e = datoms(db, "avet", "person/name", "Ann")[0].e
    assert sorted(d.datoms[1:], key=repr) == sorted(
        [(e, "person/age", 30, False), (e, "person/age", 31, True), (e, "person/tags", "x", True)], key=repr
    )
    redundant = delta_from_report(tx(r.db_after, [{"person/name": "Ann", "person/age": 31}]))
    assert redundant.datoms == ((redundant.tx, "db/txInstant", T0, True),)


def test_delta_needs_the_datomic_flavor():
    with pytest.raises(DatsyncError) as e:
        delta_from_report(transact(empty_db(), [[ "db/add", 1, "a", 1]]))
    assert e.value.code == "sync/flavor"


def test_schema_delta_empty_without_schema_datoms_and_set_when_touched():
    db = server()
    r = tx(db, [{"person/name": "x"}])
    assert schema_delta(r.db_before, r.db_after) == SchemaDelta({}, ())
    r = tx(db, [{"db/ident": kw("person/nick"), "db/valueType": kw("db.type/string"), "db/cardinality": ONE}])
    sd = delta_from_report(r).schema
    assert dict(sd.changes) == {"person/nick": attr("string")} and sd.renames == ()


def test_server_schema_from_datoms_equals_the_servers_schema():
    db = tx(server(), [{"db/ident": kw("c/pair"), "db/valueType": kw("db.type/tuple"),
                        "db/tupleAttrs": [kw("person/name"), kw("person/friend")], "db/cardinality": ONE}]).db_after
    derived = server_schema_from_datoms((k[0], k[1], k[3], k[4]) for k in db.eavt)
    assert derived == db.schema
    assert "db/ident" in derived and derived["c/pair"]["db/tupleAttrs"] == ("person/name", "person/friend")


def test_replica_schema_drops_datascript_incompatible_value_types():
    rs = replica_schema({**SCHEMA, "c/pair": attr("tuple", **{"db/tupleAttrs": ("person/name", "person/age")}),
                         "c/tt": attr("tuple", **{"db/tupleType": kw("db.type/long")})})
    assert rs["person/name"] == {"db/cardinality": ONE, "db/unique": kw("db.unique/identity")}
    assert rs["person/friend"] == {"db/cardinality": ONE, "db/valueType": kw("db.type/ref")}
    assert rs["person/tags"] == {"db/cardinality": MANY}
    assert rs["c/pair"]["db/valueType"] == kw("db.type/tuple") and rs["c/pair"]["db/tupleAttrs"] == ("person/name",
                                                                                                      "person/age")
    assert "db/valueType" not in rs["c/tt"]


def test_schema_entities_and_bootstrap_idents_are_datoms_in_the_replica():
    r = replica_of(server())
    assert datoms(r.db, "avet", "db/ident", kw("person/name"))
    assert datoms(r.db, "avet", "db/ident", kw("db.type/string"))
    e = datoms(r.db, "avet", "db/ident", kw("person/friend"))[0].e
    vt = datoms(r.db, "eavt", e, "db/valueType")[0].v
    assert datoms(r.db, "eavt", vt, "db/ident")[0].v == kw("db.type/ref")


def test_values_keep_their_server_types():
    db = server({**SCHEMA, "x/big": attr("bigint"), "x/d": attr("double"), "x/u": attr("uuid"),
                 "x/b": attr("bytes"), "x/s": attr("symbol"), "x/k": attr("keyword"), "x/uri": attr("uri")})
    u = uuid.uuid4()
    r = tx(db, [{"person/name": "v", "person/price": decimal.Decimal("1.50"), "person/born": T0, "x/big": 2**80,
                 "x/d": 2.0, "x/u": u, "x/b": b"\x00\x01", "x/s": sym("?s"), "x/k": kw("a/b"), "x/uri": "http://x/"}])
    rep, _ = apply_delta(replica_of(db), delta_from_report(r))
    e = datoms(rep.db, "avet", "person/name", "v")[0].e
    got = {d.a: d.v for d in datoms(rep.db, "eavt", e)}
    assert type(got["x/d"]) is float and got["x/d"] == 2.0
    assert got["x/big"] == 2**80 and got["person/price"] == decimal.Decimal("1.50")
    assert str(got["person/price"]) == "1.50"
    assert got["x/u"] == u and got["x/b"] == b"\x00\x01" and got["x/s"] is sym("?s") and got["x/k"] is kw("a/b")


# -- each mid-stream schema change keeps every datom and the indexes right


def _base():
    db = server()
    db = tx(db, [{"db/id": "a", "person/name": "Ann", "person/age": 30, "person/email": "a@x", "person/friend": "b"},
                 {"db/id": "b", "person/name": "Bob", "person/age": 40, "person/email": "b@x"}]).db_after
    return db


def _step(replica, db, data, seconds=1):
    r = tx(db, data, seconds)
    rep, out = apply_delta(replica, delta_from_report(r))
    assert out.applied
    assert current(r.db_after) == sorted(server_datoms(rep))
    assert rep.server_schema == r.db_after.schema
    assert rep.db.schema == replica_schema(r.db_after.schema)
    fresh = replica_of(r.db_after)
    assert list(rep.db.eavt) == list(fresh.db.eavt)
    assert list(rep.db.aevt) == list(fresh.db.aevt)
    assert list(rep.db.avet) == list(fresh.db.avet)
    assert list(rep.db.vaet) == list(fresh.db.vaet)
    return rep, r.db_after


def test_new_attribute_mid_stream():
    db = _base()
    rep = replica_of(db)
    rep, db = _step(rep, db, [{"db/ident": kw("person/nick"), "db/valueType": kw("db.type/string"),
                               "db/cardinality": ONE, "db/unique": kw("db.unique/value")}])
    assert rep.db.schema["person/nick"]["db/unique"] == kw("db.unique/value")
    rep, db = _step(rep, db, [{"person/name": "Ann", "person/nick": "annie"}], 2)
    assert datoms(rep.db, "avet", "person/nick", "annie")


def test_cardinality_one_to_many_mid_stream():
    db = _base()
    rep = replica_of(db)
    rep, db = _step(rep, db, [{"db/id": kw("person/email"), "db/cardinality": MANY}])
    assert rep.db.props.many >= {"person/email"}
    rep, db = _step(rep, db, [{"person/name": "Ann", "person/email": ["a2@x"]}], 2)
    e = datoms(rep.db, "avet", "person/name", "Ann")[0].e
    assert {d.v for d in datoms(rep.db, "eavt", e, "person/email")} == {"a@x", "a2@x"}


def test_index_then_uniqueness_added_mid_stream():
    db = _base()
    rep = replica_of(db)
    assert "person/age" not in rep.db.props.indexed
    rep, db = _step(rep, db, [{"db/id": kw("person/age"), "db/index": True}])
    assert [d.v for d in datoms(rep.db, "avet", "person/age")] == [30, 40]
    rep, db = _step(rep, db, [{"db/id": kw("person/age"), "db/unique": kw("db.unique/identity")}], 2)
    assert "person/age" in rep.db.props.identity
    assert datoms(rep.db, "eavt", ("person/age", 40))


def test_uniqueness_on_an_unused_attribute_adds_it_to_avet():
    db = _base()
    rep = replica_of(db)
    rep, db = _step(rep, db, [{"db/ident": kw("person/ssn"), "db/valueType": kw("db.type/string"),
                               "db/cardinality": ONE}])
    rep, db = _step(rep, db, [{"db/id": kw("person/ssn"), "db/unique": kw("db.unique/value")}], 2)
    rep, db = _step(rep, db, [{"person/name": "Bob", "person/ssn": "123"}], 3)
    assert datoms(rep.db, "avet", "person/ssn", "123")


def test_ident_rename_mid_stream_moves_the_datoms():
    db = _base()
    rep = replica_of(db)
    rep, db = _step(rep, db, [{"db/id": kw("person/email"), "db/ident": kw("person/mail")}])
    assert "person/email" not in rep.db.schema and "person/mail" in rep.server_schema
    assert not datoms(rep.db, "aevt", "person/email")
    assert {d.v for d in datoms(rep.db, "aevt", "person/mail")} == {"a@x", "b@x"}
    # renaming a unique ref-free attribute of an indexed kind keeps AVET right; then keep using it
    rep, db = _step(rep, db, [{"db/id": kw("person/name"), "db/ident": kw("person/full-name")}], 2)
    assert datoms(rep.db, "avet", "person/full-name", "Ann")
    rep, db = _step(rep, db, [{"person/full-name": "Ann", "person/mail": "new@x"}], 3)


def test_rename_of_a_ref_attribute_keeps_vaet():
    db = _base()
    rep = replica_of(db)
    rep, db = _step(rep, db, [{"db/id": kw("person/friend"), "db/ident": kw("person/buddy")}])
    bob = datoms(rep.db, "avet", "person/name", "Bob")[0].e
    assert [(d.a) for d in datoms(rep.db, "vaet", bob)] == ["person/buddy"]


def test_doc_change_reaches_the_replica_schema():
    db = _base()
    rep = replica_of(db)
    rep, db = _step(rep, db, [{"db/id": kw("person/age"), "db/doc": "years"}])
    assert rep.server_schema["person/age"]["db/doc"] == "years"
    assert rep.db.schema["person/age"]["db/doc"] == "years"


def test_apply_schema_delta_renames_composite_members():
    s = {"a": attr("long"), "b": attr("long"), "ab": attr("tuple", **{"db/tupleAttrs": ("a", "b")})}
    out = apply_schema_delta(s, SchemaDelta({}, (("a", "z"),)))
    assert out["ab"]["db/tupleAttrs"] == ("z", "b") and "z" in out and "a" not in out
    assert s["ab"]["db/tupleAttrs"] == ("a", "b")  # the input is not changed
    assert "b" not in apply_schema_delta(s, SchemaDelta({"b": None}, ()))


def test_delta_values_are_plain():
    d = Delta(1, TX0 + 1, EPOCH, ((5, "a", (1, None), True),))
    assert d.t == 1 and "1 datoms" in repr(d)


def test_history_events_replay_a_log_of_deltas_into_the_same_server_db():
    from datsync.core import from_history, history

    db = server()
    events = [tuple(d) for d in datoms(history(db), "eavt")]
    for i, data in enumerate([
        [{"db/id": "a", "person/name": "Ann", "person/email": "a@x", "person/tags": ["t"]}],
        [{"db/id": kw("person/email"), "db/ident": kw("person/mail")}],
        [{"person/name": "Ann", "person/mail": "b@x"}],
        [{"db/id": kw("person/tags"), "db/ident": kw("person/labels")}, {"person/name": "Bob"}],
    ]):
        r = tx(db, data, i)
        db = r.db_after
        events = history_events(events, delta_from_report(r))
    restored = from_history(events)
    assert current(restored) == current(db) and restored.schema == db.schema
    assert sorted(datoms(history(restored), "eavt")) == sorted(datoms(history(db), "eavt"))


def test_server_db_with_follows_another_server_transaction_by_transaction():
    from datsync.core import history
    from datsync.core.sync import server_db_with

    db = follower = server()
    steps = [
        [{"db/id": "a", "person/name": "Ann", "person/email": "a@x", "person/tags": ["t", "u"]}],
        [{"db/id": "b", "person/name": "Bob", "person/friend": [kw("person/name"), "Ann"], "person/age": 3}],
        [{"person/name": "Ann", "person/age": 40}, [kw("db/retract"), [kw("person/name"), "Ann"],
                                                    kw("person/tags"), "t"]],
        [{"db/ident": kw("person/nick"), "db/valueType": kw("db.type/string"),
          "db/cardinality": ONE}],
        [{"person/name": "Cy", "person/nick": "c"}],
        [[kw("db/retractEntity"), [kw("person/name"), "Bob"]]],
        [{"db/id": kw("person/email"), "db/ident": kw("person/mail")}],
        [{"person/name": "Ann", "person/mail": "b@x"}],
    ]
    for i, data in enumerate(steps):
        r = tx(db, data, i)
        db = r.db_after
        follower = server_db_with(follower, delta_from_report(r))
        assert current(follower) == current(db) and follower.schema == db.schema
        assert (follower.max_eid, follower.max_tx) == (db.max_eid, db.max_tx)
        assert sorted(datoms(history(follower), "eavt")) == sorted(datoms(history(db), "eavt"))
    nxt = [{"db/id": "d", "person/name": "Dee", "person/friend": [kw("person/name"), "Cy"]}]
    assert tx(follower, nxt, 99).tx_data == tx(db, nxt, 99).tx_data
