"""The Datomic flavor: schema as data, typed values, whole-transaction resolution, tx entities."""

from __future__ import annotations

import datetime as dt
import decimal
import time
import uuid
from urllib.parse import urlsplit

import pytest

from datsync.core import TX0, Datom, TxError, datoms, empty_db, entid, init_db, kw, sym, transact
from datsync.core.datomic import BOOTSTRAP_MAX_EID, EPOCH, from_history, ident
from datsync.core.history import as_of, history
from datsync.core.transact import CURRENT_TX_KEY

UTC = dt.UTC
ONE, MANY = kw("db.cardinality/one"), kw("db.cardinality/many")
IDENTITY, VALUE = kw("db.unique/identity"), kw("db.unique/value")


def attr(name, vtype, card="one", **extra):
    return {"db/ident": kw(name), "db/valueType": kw(f"db.type/{vtype}"),
            "db/cardinality": kw(f"db.cardinality/{card}"), **extra}


SCHEMA = [
    attr("person/name", "string", **{"db/unique": IDENTITY}),
    attr("person/email", "string", **{"db/unique": VALUE}),
    attr("person/age", "long", **{"db/index": True}),
    attr("person/aliases", "string", "many"),
    attr("person/friends", "ref", "many"),
    attr("person/best", "ref"),
    attr("person/color", "ref"),
    attr("person/address", "ref", **{"db/isComponent": True}),
    attr("person/pets", "ref", "many", **{"db/isComponent": True}),
    attr("address/city", "string"),
    attr("pet/name", "string"),
    attr("tx/note", "string"),
    attr("tx/by", "ref"),
    {"db/ident": kw("color/red")},
    {"db/ident": kw("color/blue")},
]


def people_db():
    return transact(empty_db(flavor="datomic"), SCHEMA).db_after


def tx(db, data, **kw_):
    return transact(db, data, **kw_)


def err(db, data, code, **kw_):
    with pytest.raises(TxError) as ei:
        transact(db, data, **kw_)
    assert ei.value.code == code, (ei.value.code, ei.value.message)
    return ei.value


def eav(db, *comps):
    return [(d.e, d.a, d.v) for d in datoms(db, "eavt", *comps)]


def user_data(report):
    """tx_data without the transaction's db/txInstant datom."""
    return [(d.e, d.a, d.v, d.added) for d in report.tx_data if d.a != "db/txInstant"]


# ------------------------------------------------------------------------------------------------
# Bootstrap and schema installation


def test_empty_db_bootstrap():
    db = empty_db(flavor="datomic")
    assert db.flavor == "datomic"
    assert db.max_tx == TX0 and db.max_eid == BOOTSTRAP_MAX_EID
    assert entid(db, kw("db/ident")) == db.idents[kw("db/ident")]
    assert ident(db, db.idents[kw("db.type/string")]) == kw("db.type/string")
    assert db.schema["db/ident"] == {"db/valueType": kw("db.type/keyword"), "db/cardinality": ONE,
                                     "db/unique": IDENTITY}
    assert db.schema["db/valueType"]["db/valueType"] == kw("db.type/ref")
    assert "db/ident" in db.props.identity and "db/valueType" in db.props.ref
    assert eav(db, TX0) == [(TX0, "db/txInstant", EPOCH)]
    for t in ("string", "keyword", "long", "bigint", "double", "float", "boolean", "instant", "uuid", "uri",
              "bytes", "bigdec", "ref", "symbol", "tuple"):
        assert entid(db, kw(f"db.type/{t}")) is not None
    for k in ("db.part/db", "db.part/user", "db.part/tx", "db.cardinality/many", "db.unique/value"):
        assert 0 < entid(db, kw(k)) <= BOOTSTRAP_MAX_EID
    # the history indexes hold the bootstrap
    assert len(db.heavt) == len(db.eavt) == len(db.haevt)


def test_install_attributes_derives_schema_and_idents():
    r = tx(empty_db(flavor="datomic"), SCHEMA)
    db = r.db_after
    assert db.max_tx == TX0 + 1
    assert db.schema["person/name"] == {"db/valueType": kw("db.type/string"), "db/cardinality": ONE,
                                        "db/unique": IDENTITY}
    assert db.schema["person/address"]["db/isComponent"] is True
    assert db.schema["person/age"]["db/index"] is True
    assert "person/friends" in db.props.many and "person/friends" in db.props.ref
    assert "person/address" in db.props.component
    assert "person/email" in db.props.unique and "person/email" not in db.props.identity
    e = db.idents[kw("person/name")]
    assert e == BOOTSTRAP_MAX_EID + 1
    assert db.idents[e] == kw("person/name")
    red = db.idents[kw("color/red")]
    assert "color/red" not in db.schema and db.idents[red] == kw("color/red")
    # db/valueType is a ref to the type's ident entity
    assert (e, "db/valueType", db.idents[kw("db.type/string")]) in eav(db, e)


def test_schema_values_as_plain_strings_and_schema_map():
    data = [{"db/ident": "a/b", "db/valueType": "db.type/long", "db/cardinality": "db.cardinality/many",
             "db/unique": "db.unique/value"}]
    db = tx(empty_db(flavor="datomic"), data).db_after
    assert db.schema["a/b"] == {"db/valueType": kw("db.type/long"), "db/cardinality": MANY, "db/unique": VALUE}
    db2 = empty_db({"a/b": {"db/valueType": "db.type/long", "db/cardinality": "db.cardinality/many",
                            "db/unique": "db.unique/value"}}, flavor="datomic")
    assert db2.schema["a/b"] == db.schema["a/b"] and db2.max_tx == TX0 + 1


def test_legacy_install_attribute_form():
    db = tx(empty_db(flavor="datomic"), [{"db/id": "a", **attr("x/y", "string"),
                                          "db.install/_attribute": kw("db.part/db")}]).db_after
    assert db.schema["x/y"]["db/valueType"] == kw("db.type/string")
    part = entid(db, kw("db.part/db"))
    assert datoms(db, "eavt", part, "db.install/attribute")[0].v == db.idents[kw("x/y")]


def test_reinstalling_the_same_schema_is_a_noop():
    db = people_db()
    r = tx(db, SCHEMA)
    assert user_data(r) == []
    assert r.db_after.schema == db.schema


def test_new_attribute_cannot_be_used_in_the_installing_tx():
    db = empty_db(flavor="datomic")
    e = err(db, [attr("a/b", "string"), {"a/b": "x"}], "db.error/not-an-entity")
    assert ":a/b" in e.message


def test_unknown_attribute_and_non_attribute():
    db = people_db()
    err(db, [{"person/nmae": "x"}], "db.error/not-an-entity")
    err(db, [["db/add", "t", "nope/never", 1]], "db.error/not-an-entity")
    err(db, [["db/add", "t", "color/red", 1]], "db.error/not-an-attribute")


def test_incomplete_and_invalid_installs():
    db = empty_db(flavor="datomic")
    err(db, [{"db/ident": kw("a/b"), "db/valueType": kw("db.type/string")}], "db.error/incomplete-install-attribute")
    err(db, [{"db/valueType": kw("db.type/string"), "db/cardinality": ONE}], "db.error/incomplete-install-attribute")
    err(db, [attr("a/b", "string", **{"db/isComponent": True})], "db.error/invalid-install-attribute")
    err(db, [attr("a/b", "long", **{"db/fulltext": True})], "db.error/invalid-install-attribute")
    err(db, [attr("a/t", "tuple")], "db.error/invalid-install-attribute")
    err(db, [attr("a/t", "long", **{"db/tupleType": kw("db.type/long")})], "db.error/invalid-install-attribute")
    err(db, [attr("a/t", "tuple", **{"db/tupleType": kw("db.type/tuple")})], "db.error/invalid-install-attribute")
    err(db, [{"db/ident": kw("a/b"), "db/valueType": kw("db.cardinality/one"), "db/cardinality": ONE}],
        "db.error/invalid-install-attribute")
    err(db, [{"db/ident": "a/b", "db/valueType": "db.type/nope", "db/cardinality": ONE}], "db.error/not-an-entity")
    db = people_db()
    err(db, [attr("p/t", "tuple", **{"db/tupleAttrs": [kw("person/name"), kw("person/aliases")]})],
        "db.error/invalid-tuple-attrs")
    err(db, [attr("p/t", "tuple", "many", **{"db/tupleAttrs": [kw("person/name"), kw("person/age")]})],
        "db.error/invalid-tuple-attrs")
    err(db, [attr("p/t", "tuple", **{"db/tupleAttrs": [kw("person/name"), kw("no/such")]})],
        "db.error/invalid-tuple-attrs")


def test_idents_must_be_unique():
    db = people_db()
    # a map with an existing ident upserts into that entity (db/ident is a unique identity)
    r = tx(db, [{"db/id": "x", "db/ident": kw("color/red"), "db/doc": "red"}])
    assert r.tempids["x"] == db.idents[kw("color/red")]
    err(db, [["db/add", db.idents[kw("color/blue")], "db/ident", kw("color/red")]], "db.error/unique-conflict")


def test_enum_idiom():
    db = people_db()
    r = tx(db, [{"db/id": "p", "person/name": "Ivan", "person/color": kw("color/red")}])
    p = r.tempids["p"]
    assert eav(r.db_after, p, "person/color") == [(p, "person/color", db.idents[kw("color/red")])]
    err(db, [{"person/name": "Ivan", "person/color": kw("color/green")}], "db.error/not-an-entity")
    # an enum installed in the same transaction is not visible to it
    err(db, [{"db/ident": kw("color/green")}, {"person/name": "Ivan", "person/color": kw("color/green")}],
        "db.error/not-an-entity")


# ------------------------------------------------------------------------------------------------
# Value types


TYPED = [
    attr("t/string", "string"), attr("t/keyword", "keyword"), attr("t/long", "long"), attr("t/bigint", "bigint"),
    attr("t/double", "double"), attr("t/float", "float"), attr("t/boolean", "boolean"),
    attr("t/instant", "instant"), attr("t/uuid", "uuid"), attr("t/uri", "uri"), attr("t/bytes", "bytes"),
    attr("t/bigdec", "bigdec"), attr("t/symbol", "symbol"), attr("t/ref", "ref"),
    attr("t/tuple", "tuple", **{"db/tupleType": kw("db.type/long")}),
    attr("t/het", "tuple", **{"db/tupleTypes": [kw("db.type/string"), kw("db.type/long")]}),
    attr("t/reftuple", "tuple", **{"db/tupleTypes": [kw("db.type/ref"), kw("db.type/keyword")]}),
]
U = uuid.UUID("6ba7b810-9dad-11d1-80b4-00c04fd430c8")
WHEN = dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)


@pytest.fixture(scope="module")
def typed_db():
    return tx(empty_db(flavor="datomic"), TYPED).db_after


@pytest.mark.parametrize(("a", "value", "stored"), [
    ("t/string", "hi", "hi"),
    ("t/keyword", kw("a/b"), kw("a/b")),
    ("t/long", -(2 ** 63), -(2 ** 63)),
    ("t/long", 2 ** 63 - 1, 2 ** 63 - 1),
    ("t/bigint", 2 ** 100, 2 ** 100),
    ("t/double", 1.5, 1.5),
    ("t/double", 2, 2.0),
    ("t/float", 0.25, 0.25),
    ("t/boolean", False, False),
    ("t/instant", WHEN, WHEN),
    ("t/instant", dt.datetime(2024, 5, 6, 7, 8, 9), WHEN),
    ("t/instant", WHEN.astimezone(dt.timezone(dt.timedelta(hours=2))), WHEN),
    ("t/uuid", U, U),
    ("t/uri", "https://example.com/a?b=c", "https://example.com/a?b=c"),
    ("t/uri", urlsplit("https://example.com/x"), "https://example.com/x"),
    ("t/bytes", b"\x00\x01", b"\x00\x01"),
    ("t/bytes", bytearray(b"ab"), b"ab"),
    ("t/bigdec", decimal.Decimal("1.25"), decimal.Decimal("1.25")),
    ("t/bigdec", 3, decimal.Decimal(3)),
    ("t/symbol", sym("foo"), sym("foo")),
    ("t/tuple", [1, 2, 3], (1, 2, 3)),
    ("t/tuple", (1, None), (1, None)),
    ("t/het", ("a", 1), ("a", 1)),
    ("t/het", (None, 1), (None, 1)),
])
def test_valid_values(typed_db, a, value, stored):
    r = tx(typed_db, [["db/add", "e", a, value]])
    [d] = datoms(r.db_after, "eavt", r.tempids["e"], a)
    assert d.v == stored and isinstance(d.v, type(stored))
    if isinstance(stored, dt.datetime):
        assert d.v.tzinfo is not None


@pytest.mark.parametrize(("a", "value"), [
    ("t/string", 1),
    ("t/string", kw("a")),
    ("t/keyword", "a/b"),
    ("t/long", 2 ** 63),
    ("t/long", True),
    ("t/long", 1.0),
    ("t/long", "1"),
    ("t/bigint", 1.5),
    ("t/double", "1.0"),
    ("t/double", float("nan")),
    ("t/double", True),
    ("t/boolean", 1),
    ("t/instant", dt.date(2024, 1, 1)),
    ("t/instant", "2024-01-01"),
    ("t/uuid", str(U)),
    ("t/uri", "has space"),
    ("t/uri", 5),
    ("t/bytes", "ab"),
    ("t/bigdec", 1.5),
    ("t/bigdec", decimal.Decimal("NaN")),
    ("t/symbol", "foo"),
    ("t/tuple", 5),
    ("t/tuple", ("a", "b")),
    ("t/het", (1, "a")),
    ("t/ref", True),
    ("t/ref", 1.5),
])
def test_wrong_type(typed_db, a, value):
    e = err(typed_db, [["db/add", "e", a, value]], "db.error/wrong-type-for-attribute")
    assert a in e.message


@pytest.mark.parametrize(("a", "value"), [
    ("t/tuple", [1]),
    ("t/tuple", list(range(9))),
    ("t/het", ("a",)),
    ("t/het", ("a", 1, 2)),
])
def test_invalid_tuple_value(typed_db, a, value):
    err(typed_db, [["db/add", "e", a, value]], "db.error/invalid-tuple-value")


def test_ref_elements_in_tuples(typed_db):
    red = tx(typed_db, [{"db/id": "r", "t/string": "red"}])
    e = red.tempids["r"]
    r = tx(red.db_after, [["db/add", "e", "t/reftuple", (e, kw("k"))]])
    assert datoms(r.db_after, "eavt", r.tempids["e"], "t/reftuple")[0].v == (e, kw("k"))
    # refs inside tuples are not refs: no VAET entry
    assert datoms(r.db_after, "vaet", e) == []
    err(red.db_after, [["db/add", "e", "t/reftuple", ("x", kw("k"))]], "db.error/wrong-type-for-attribute")


def test_nil_values():
    db = people_db()
    err(db, [{"person/name": None}], "db.error/nil-value")
    err(db, [["db/add", "e", "person/name", None]], "db.error/nil-value")
    err(db, [["db/cas", "e", "person/name", None, None]], "db.error/nil-value")


# ------------------------------------------------------------------------------------------------
# Tempids, lookup refs, upserts


def test_tempids_allocate_in_processing_order():
    db = people_db()
    r = tx(db, [["db/add", "b", "person/name", "B"], ["db/add", -1, "person/name", "A"],
                {"db/id": "c", "person/name": "C", "person/friends": ["b", -1]}])
    base = db.max_eid
    assert r.tempids == {"b": base + 1, -1: base + 2, "c": base + 3, CURRENT_TX_KEY: TX0 + 2}
    assert r.db_after.max_eid == base + 3
    assert eav(r.db_after, base + 3, "person/friends") == [(base + 3, "person/friends", base + 1),
                                                           (base + 3, "person/friends", base + 2)]


def test_attribute_spellings_and_datom_forms():
    db = people_db()
    name_eid = db.idents[kw("person/name")]
    r = tx(db, [["db/add", "a", kw("person/name"), "A"], [kw("db/add"), "b", ":person/name", "B"],
                ["db/add", "c", name_eid, "C"], {kw("person/name"): "D", kw("person/age"): 4},
                Datom(-5, "person/name", "E", 0, True)])
    assert {d.v for d in r.tx_data if d.a == "person/name"} == {"A", "B", "C", "D", "E"}
    e = r.tempids["a"]
    r2 = tx(r.db_after, [Datom(e, "person/name", "A", 0, False)])
    assert user_data(r2) == [(e, "person/name", "A", False)]


def test_lookup_refs():
    db = tx(people_db(), [{"person/name": "Ivan", "person/email": "i@x"}]).db_after
    ivan = entid(db, ("person/name", "Ivan"))
    r = tx(db, [["db/add", ("person/email", "i@x"), "person/age", 30],
                {"db/id": "p", "person/name": "Petr", "person/best": ("person/name", "Ivan"),
                 "person/friends": [("person/email", "i@x")]}])
    assert eav(r.db_after, ivan, "person/age") == [(ivan, "person/age", 30)]
    p = r.tempids["p"]
    assert eav(r.db_after, p, "person/best") == [(p, "person/best", ivan)]
    assert eav(r.db_after, p, "person/friends") == [(p, "person/friends", ivan)]
    err(db, [["db/add", ("person/name", "Nobody"), "person/age", 1]], "db.error/not-an-entity")
    err(db, [["db/add", ("person/age", 30), "person/age", 1]], "db.error/lookup-ref-attr-not-unique")
    err(db, [{"person/name": "X", "person/best": ("person/name", "Nobody")}], "db.error/not-an-entity")


def test_lookup_refs_see_only_db_before():
    db = people_db()
    err(db, [{"person/name": "New"}, ["db/add", ("person/name", "New"), "person/age", 1]], "db.error/not-an-entity")


def test_invalid_entity_ids():
    db = people_db()
    err(db, [["db/add", db.max_eid + 1, "person/name", "x"]], "db.error/invalid-entity-id")
    err(db, [["db/add", 0, "person/name", "x"]], "db.error/invalid-entity-id")
    err(db, [{"person/name": "x", "person/best": 10 ** 9}], "db.error/invalid-entity-id")
    err(db, [["db/add", 1.5, "person/name", "x"]], "db.error/not-an-entity")


def test_upsert_resolves_tempid_against_db_before():
    db = tx(people_db(), [{"person/name": "Ivan", "person/age": 30}]).db_after
    ivan = entid(db, ("person/name", "Ivan"))
    r = tx(db, [{"db/id": "x", "person/name": "Ivan", "person/age": 31}])
    assert r.tempids["x"] == ivan
    assert user_data(r) == [(ivan, "person/age", 30, False), (ivan, "person/age", 31, True)]
    r = tx(db, [{"person/name": "Ivan", "person/aliases": ["Vanya"]}, ["db/add", "y", "person/name", "Ivan"],
                ["db/add", "y", "person/age", 32]])
    assert r.tempids["y"] == ivan and r.db_after.max_eid == db.max_eid
    assert eav(r.db_after, ivan, "person/age") == [(ivan, "person/age", 32)]


def test_tempids_with_the_same_new_identity_unify():
    db = people_db()
    r = tx(db, [{"db/id": "a", "person/name": "New", "person/age": 1}, {"db/id": "b", "person/name": "New"},
                ["db/add", "b", "person/aliases", "N"]])
    assert r.tempids["a"] == r.tempids["b"] == db.max_eid + 1
    e = r.tempids["a"]
    assert sorted(eav(r.db_after, e)) == [(e, "person/age", 1), (e, "person/aliases", "N"), (e, "person/name", "New")]
    # tempids are compared by value (strings decoded from the wire are distinct objects)
    t1, t2, t3 = "".join(["t", "1"]), "".join(["t", "1"]), "".join(["t", "2"])
    r = tx(db, [{"db/id": t1, "person/name": "X"}, {"db/id": t3, "person/name": "X"}, ["db/add", t2, "person/age", 5]])
    assert r.tempids["t1"] == r.tempids["t2"] and len(eav(r.db_after, r.tempids["t1"])) == 2


def test_upsert_through_a_tempid_valued_ref_identity():
    db = tx(empty_db(flavor="datomic"), [attr("k/id", "string", **{"db/unique": IDENTITY}),
                                         attr("k/owner", "ref", **{"db/unique": IDENTITY})]).db_after
    r = tx(db, [{"db/id": "o", "k/id": "O"}, {"db/id": "a", "k/owner": "o"}, {"db/id": "b", "k/owner": "o"}])
    assert r.tempids["a"] == r.tempids["b"] != r.tempids["o"]
    db2 = r.db_after
    r2 = tx(db2, [{"db/id": "o2", "k/id": "O"}, {"db/id": "c", "k/owner": "o2"}])
    assert r2.tempids["c"] == r.tempids["a"] and user_data(r2) == []


def test_conflicting_upserts():
    db = tx(people_db(), [{"person/name": "Ivan", "person/email": "i@x"},
                          {"person/name": "Petr", "person/email": "p@x"}]).db_after
    tx(db, [{"db/id": "x", "person/name": "Ivan", "person/email": "i@x"}])
    # person/email is unique/value: no upsert, and the value is held by another entity
    err(db, [{"db/id": "x", "person/name": "Ivan", "person/email": "p@x"}], "db.error/unique-conflict")
    err(db, [{"db/id": "x", "person/email": "i@x"}], "db.error/unique-conflict")
    db2 = tx(empty_db(flavor="datomic"), [attr("a/x", "string", **{"db/unique": IDENTITY}),
                                          attr("a/y", "string", **{"db/unique": IDENTITY})]).db_after
    db2 = tx(db2, [{"a/x": "1"}, {"a/y": "2"}]).db_after
    e = err(db2, [{"db/id": "t", "a/x": "1", "a/y": "2"}], "db.error/unique-conflict")
    assert "Unique conflict" in e.message


def test_unique_conflicts():
    db = tx(people_db(), [{"person/name": "Ivan", "person/email": "i@x"}, {"person/name": "Petr"}]).db_after
    petr = entid(db, ("person/name", "Petr"))
    ivan = entid(db, ("person/name", "Ivan"))
    e = err(db, [["db/add", petr, "person/email", "i@x"]], "db.error/unique-conflict")
    assert f"already held by: {ivan} asserted for: {petr}" in e.message
    err(db, [["db/add", petr, "person/name", "Ivan"]], "db.error/unique-conflict")
    err(db, [{"person/name": "A", "person/email": "same"}, {"person/name": "B", "person/email": "same"}],
        "db.error/unique-conflict")
    # moving a unique value between entities in one transaction is fine
    r = tx(db, [["db/retract", ivan, "person/email", "i@x"], ["db/add", petr, "person/email", "i@x"]])
    assert entid(r.db_after, ("person/email", "i@x")) == petr


def test_tempid_used_only_as_value():
    db = people_db()
    e = err(db, [{"person/name": "A", "person/best": "ghost"}], "db.error/tempid-not-an-entity")
    assert "ghost" in e.message
    err(db, [["db/retract", "ghost", "person/name", "x"]], "db.error/tempid-not-an-entity")
    # a map with only db/id asserts nothing
    err(db, [{"db/id": "ghost"}, {"person/name": "A", "person/best": "ghost"}], "db.error/tempid-not-an-entity")


# ------------------------------------------------------------------------------------------------
# Conflicts, redundancy, retraction


def test_two_values_for_cardinality_one_conflict():
    db = people_db()
    e = err(db, [["db/add", "a", "person/age", 1], ["db/add", "a", "person/age", 2]], "db.error/datoms-conflict")
    assert "person/age" in e.message and isinstance(e.data["d1"], Datom)
    r = tx(db, [["db/add", "a", "person/age", 1], {"db/id": "a", "person/age": 1}])
    assert user_data(r) == [(r.tempids["a"], "person/age", 1, True)]


def test_add_and_retract_same_datom_conflict():
    db = tx(people_db(), [{"person/name": "Ivan", "person/aliases": ["V"]}]).db_after
    ivan = entid(db, ("person/name", "Ivan"))
    err(db, [["db/add", ivan, "person/aliases", "V"], ["db/retract", ivan, "person/aliases", "V"]],
        "db.error/datoms-conflict")
    err(db, [["db/retract", ivan, "person/aliases", "W"], ["db/add", ivan, "person/aliases", "W"]],
        "db.error/datoms-conflict")
    err(db, [["db/retractEntity", ivan], {"person/name": "Ivan"}], "db.error/datoms-conflict")
    # asserting a new value on a retracted entity is not a conflict
    r = tx(db, [["db/retractEntity", ivan], ["db/add", ivan, "person/age", 3]])
    assert eav(r.db_after, ivan) == [(ivan, "person/age", 3)]


def test_cardinality_one_assertion_retracts_old_value():
    db = tx(people_db(), [{"person/name": "Ivan", "person/age": 1}]).db_after
    ivan = entid(db, ("person/name", "Ivan"))
    r = tx(db, [["db/add", ivan, "person/age", 2]])
    assert user_data(r) == [(ivan, "person/age", 1, False), (ivan, "person/age", 2, True)]
    assert r.tx_data[0].a == "db/txInstant" and r.tx_data[0].e == r.tempids[CURRENT_TX_KEY]
    assert all(d.tx == TX0 + 3 for d in r.tx_data)


def test_redundant_assertions_are_elided():
    db = tx(people_db(), [{"person/name": "Ivan", "person/age": 1, "person/aliases": ["V"]}]).db_after
    ivan = entid(db, ("person/name", "Ivan"))
    r = tx(db, [["db/add", ivan, "person/age", 1], {"person/name": "Ivan", "person/aliases": "V"}])
    assert [d.a for d in r.tx_data] == ["db/txInstant"]
    assert r.db_after.max_tx == db.max_tx + 1


def test_retractions():
    db = tx(people_db(), [{"person/name": "Ivan", "person/age": 1, "person/aliases": ["A", "B", "C"]}]).db_after
    ivan = entid(db, ("person/name", "Ivan"))
    r = tx(db, [["db/retract", ivan, "person/aliases", "A"], ["db/retract", ivan, "person/aliases", "nope"]])
    assert user_data(r) == [(ivan, "person/aliases", "A", False)]
    r = tx(db, [["db.fn/retractAttribute", ivan, "person/aliases"]])
    assert sorted(user_data(r)) == [(ivan, "person/aliases", x, False) for x in "ABC"]
    r = tx(db, [["db/retract", ivan, "person/aliases"]])
    assert len(user_data(r)) == 3
    r = tx(db, [["db/retract", ("person/name", "Ivan"), "person/age", 1]])
    assert eav(r.db_after, ivan, "person/age") == []


def test_retract_entity_with_references_and_components():
    db = people_db()
    r = tx(db, [{"db/id": "ivan", "person/name": "Ivan", "person/address": {"address/city": "Moscow"},
                 "person/pets": [{"pet/name": "Rex"}, {"pet/name": "Tom"}]},
                {"db/id": "petr", "person/name": "Petr", "person/best": "ivan", "person/friends": ["ivan"]},
                {"db/id": "olga", "person/name": "Olga"},
                ["db/add", "ivan", "person/friends", "olga"]])
    db = r.db_after
    ivan, petr, olga = r.tempids["ivan"], r.tempids["petr"], r.tempids["olga"]
    children = [d.v for d in datoms(db, "eavt", ivan) if d.a in ("person/address", "person/pets")]
    assert len(children) == 3
    r2 = tx(db, [["db/retractEntity", ("person/name", "Ivan")]])
    after = r2.db_after
    assert eav(after, ivan) == [] and all(eav(after, c) == [] for c in children)
    assert eav(after, petr) == [(petr, "person/name", "Petr")]
    assert eav(after, olga) == [(olga, "person/name", "Olga")]
    assert all(not d.added for d in r2.tx_data[1:])
    assert list(tx(db, [["db.fn/retractEntity", ivan]]).db_after) == list(after)


def test_cas():
    db = tx(people_db(), [{"person/name": "Ivan", "person/age": 1, "person/aliases": ["V"]}]).db_after
    ivan = entid(db, ("person/name", "Ivan"))
    r = tx(db, [["db/cas", ivan, "person/age", 1, 2]])
    assert user_data(r) == [(ivan, "person/age", 1, False), (ivan, "person/age", 2, True)]
    e = err(db, [["db/cas", ivan, "person/age", 5, 2]], "db.error/cas-failed")
    assert e.message == "Compare failed: 5 1"
    err(db, [["db.fn/cas", ivan, "person/email", "x", "y"]], "db.error/cas-failed")
    r = tx(db, [["db/cas", ivan, "person/email", None, "i@x"]])
    assert eav(r.db_after, ivan, "person/email") == [(ivan, "person/email", "i@x")]
    err(r.db_after, [["db/cas", ivan, "person/email", None, "j@x"]], "db.error/cas-failed")
    # two cas on one attribute both see db-before
    r = tx(db, [["db/cas", ivan, "person/age", 1, 2], ["db/cas", ivan, "person/age", 1, 2]])
    assert eav(r.db_after, ivan, "person/age") == [(ivan, "person/age", 2)]
    err(db, [["db/cas", ivan, "person/age", 1, 2], ["db/cas", ivan, "person/age", 1, 3]], "db.error/datoms-conflict")
    err(db, [["db/cas", ivan, "person/aliases", "V", "W"]], "db.error/invalid-cas")
    # enum idents are resolved for ref attributes; a tempid that upserts is compared too
    db2 = tx(db, [["db/add", ivan, "person/color", kw("color/red")]]).db_after
    r = tx(db2, [["db/cas", ivan, "person/color", kw("color/red"), kw("color/blue")]])
    assert eav(r.db_after, ivan, "person/color")[0][2] == db.idents[kw("color/blue")]
    r = tx(db2, [{"db/id": "t", "person/name": "Ivan"}, ["db/cas", "t", "person/age", 1, 7]])
    assert r.tempids["t"] == ivan and eav(r.db_after, ivan, "person/age") == [(ivan, "person/age", 7)]
    r = tx(db2, [{"db/id": "n", "person/name": "New"}, ["db/cas", "n", "person/age", None, 7]])
    assert eav(r.db_after, r.tempids["n"], "person/age")[0][2] == 7


def test_maps_nested_reverse_and_collections():
    db = people_db()
    r = tx(db, [{"db/id": "ivan", "person/name": "Ivan", "person/aliases": {"V", "Vanya"},
                 "person/friends": [{"person/name": "Petr"}, "olga"],
                 "person/_best": [{"person/name": "Fan"}],
                 "person/address": {"address/city": "Moscow"}},
                {"db/id": "olga", "person/name": "Olga", "person/_friends": "ivan"}])
    db2 = r.db_after
    ivan = r.tempids["ivan"]
    assert {d.v for d in datoms(db2, "eavt", ivan, "person/aliases")} == {"V", "Vanya"}
    friends = {d.v for d in datoms(db2, "eavt", ivan, "person/friends")}
    petr = entid(db2, ("person/name", "Petr"))
    assert friends == {petr, r.tempids["olga"]}
    fan = entid(db2, ("person/name", "Fan"))
    assert eav(db2, fan, "person/best") == [(fan, "person/best", ivan)]
    # the parent's own datoms come before its nested entities'
    names = [d.v for d in r.tx_data if d.a == "person/name"]
    assert names.index("Ivan") < names.index("Petr")
    err(db, [{"person/name": "x", "person/age": {"address/city": "y"}}], "db.error/wrong-type-for-attribute")
    err(db, [{"person/name": "x", "person/_age": 1}], "transact/syntax")


def test_tx_functions_see_db_before():
    db = tx(people_db(), [{"person/name": "Ivan", "person/age": 1}]).db_after
    seen = []

    def inc(d, lookup, by):
        e = entid(d, lookup)
        seen.append(d)
        age = datoms(d, "eavt", e, "person/age")[0].v
        return [["db/add", e, "person/age", age + by]]

    r = tx(db, [["db.fn/call", inc, ("person/name", "Ivan"), 5], {"person/name": "Petr"}])
    assert seen == [db]
    assert eav(r.db_after, entid(db, ("person/name", "Ivan")), "person/age")[0][2] == 6
    err(db, [["db.fn/call", inc, ("person/name", "Ivan"), 1], ["db.fn/call", inc, ("person/name", "Ivan"), 2]],
        "db.error/datoms-conflict")
    e = err(db, [["my/fn", 1]], "db.error/not-a-data-function")
    assert ":my/fn" in e.message
    err(db, [["db.fn/call", 42]], "transact/syntax")


def test_syntax_errors():
    db = people_db()
    err(db, {"person/name": "x"}, "transact/syntax")
    err(db, [42], "transact/syntax")
    err(db, [[]], "transact/syntax")
    err(db, [["db/add", "e", "person/name"]], "transact/syntax")
    err(db, [["db/retractEntity"]], "transact/syntax")
    err(db, [["db/cas", 1, "person/age", 1]], "transact/syntax")
    err(db, [{1.5: "x"}], "transact/syntax")


# ------------------------------------------------------------------------------------------------
# Transaction entities and instants


def test_transaction_entity():
    db = people_db()
    r = tx(db, [{"db/id": "datomic.tx", "tx/note": "import"},
                {"db/id": "p", "person/name": "P", "person/best": "datomic.tx"},
                ["db/add", "datomic.tx", "tx/by", "p"]], instant=WHEN)
    t = r.tempids[CURRENT_TX_KEY]
    assert t == TX0 + 2 and r.tempids["datomic.tx"] == t
    assert sorted(eav(r.db_after, t)) == [(t, "db/txInstant", WHEN), (t, "tx/by", r.tempids["p"]),
                                          (t, "tx/note", "import")]
    assert eav(r.db_after, r.tempids["p"], "person/best") == [(r.tempids["p"], "person/best", t)]
    # old transaction entities are entities too
    r2 = tx(r.db_after, [["db/add", t, "tx/note", "fixed"]])
    assert eav(r2.db_after, t, "tx/note") == [(t, "tx/note", "fixed")]


def test_tx_instants():
    db = people_db()
    t1 = dt.datetime(2024, 1, 1, tzinfo=UTC)
    db1 = tx(db, [{"person/name": "A"}], instant=t1).db_after
    r = tx(db1, [{"person/name": "B"}])
    assert r.tx_data[0].v == t1  # no instant: the previous transaction's
    r = tx(db1, [{"person/name": "B"}], instant=dt.datetime(2024, 1, 1, 1))  # naive is UTC
    assert r.tx_data[0].v == dt.datetime(2024, 1, 1, 1, tzinfo=UTC)
    e = err(db1, [{"person/name": "B"}], "db.error/past-tx-instant", instant=t1 - dt.timedelta(seconds=1))
    assert "older than" in e.message
    later = t1 + dt.timedelta(days=1)
    r = tx(db1, [{"db/id": "datomic.tx", "db/txInstant": later}, {"person/name": "C"}], instant=t1)
    assert r.tx_data[0] == Datom(r.tempids["datomic.tx"], "db/txInstant", later, r.tempids["datomic.tx"], True)
    assert sum(d.a == "db/txInstant" for d in r.tx_data) == 1
    err(db1, [{"db/id": "datomic.tx", "db/txInstant": t1 - dt.timedelta(days=1)}], "db.error/past-tx-instant")
    err(db1, [["db/add", TX0 + 1, "db/txInstant", later]], "db.error/invalid-tx-instant")
    err(db1, [["db/add", "x", "db/txInstant", later]], "db.error/invalid-tx-instant")
    err(db1, [["db/add", "datomic.tx", "db/txInstant", "2024"]], "db.error/wrong-type-for-attribute")
    # an empty transaction still records a transaction entity
    r = tx(db1, [])
    assert [d.a for d in r.tx_data] == ["db/txInstant"] and r.db_after.max_tx == db1.max_tx + 1


def test_failed_transaction_changes_nothing():
    db = tx(people_db(), [{"person/name": "Ivan", "person/age": 1}]).db_after
    snapshot = (list(db.eavt), list(db.aevt), list(db.avet), list(db.vaet), list(db.heavt), list(db.haevt))
    ivan = ("person/name", "Ivan")
    for bad in ([["db/add", ivan, "person/age", 2], ["db/add", ivan, "person/age", 3]],
                [{"person/name": "Petr"}, {"person/name": "Olga", "person/age": "old"}],
                [attr("x/y", "string"), {"db/id": ("person/name", "Ivan"), "db/ident": kw("x/z")}, ["bad/op"]]):
        with pytest.raises(TxError):
            transact(db, bad)
    assert (list(db.eavt), list(db.aevt), list(db.avet), list(db.vaet), list(db.heavt), list(db.haevt)) == snapshot


def test_transact_on_a_view_is_refused():
    db = people_db()
    with pytest.raises(TxError):
        transact(as_of(db, 0), [{"person/name": "x"}])


def test_history_indexes_hold_every_assertion_and_retraction():
    db = people_db()
    r1 = tx(db, [{"person/name": "Ivan", "person/age": 1}])
    ivan = entid(r1.db_after, ("person/name", "Ivan"))
    r2 = tx(r1.db_after, [["db/add", ivan, "person/age", 2]])
    h = [k for k in r2.db_after.heavt.prefix((ivan, "person/age"))]
    assert [(k[3], k[4] - TX0, k[5]) for k in h] == [(1, 2, True), (1, 3, False), (2, 3, True)]
    assert len(r2.db_after.heavt) == len(r2.db_after.haevt)


# ------------------------------------------------------------------------------------------------
# Composite tuples

COMPOSITE = [
    attr("reg/course", "string"), attr("reg/student", "ref"), attr("reg/semester", "string"),
    attr("reg/course+student", "tuple", **{"db/tupleAttrs": [kw("reg/course"), kw("reg/student")],
                                           "db/unique": IDENTITY}),
    attr("s/name", "string", **{"db/unique": IDENTITY}),
]


def test_composite_tuples_are_maintained():
    db = tx(empty_db(flavor="datomic"), COMPOSITE).db_after
    assert db.schema["reg/course+student"]["db/tupleAttrs"] == ("reg/course", "reg/student")
    r = tx(db, [{"db/id": "s", "s/name": "Ann"}, {"db/id": "r", "reg/course": "BIO", "reg/student": "s"}])
    s, reg = r.tempids["s"], r.tempids["r"]
    db = r.db_after
    assert eav(db, reg, "reg/course+student") == [(reg, "reg/course+student", ("BIO", s))]
    assert entid(db, ("reg/course+student", ("BIO", s))) == reg
    r = tx(db, [["db/add", reg, "reg/course", "CHEM"]])
    assert ((reg, "reg/course+student", ("BIO", s), False) in user_data(r)
            and (reg, "reg/course+student", ("CHEM", s), True) in user_data(r))
    r = tx(r.db_after, [["db/retract", reg, "reg/course", "CHEM"]])
    assert eav(r.db_after, reg, "reg/course+student") == [(reg, "reg/course+student", (None, s))]
    r = tx(r.db_after, [["db/retract", reg, "reg/student", s]])
    assert eav(r.db_after, reg) == []
    # a composite asserted directly is discarded and recomputed
    r = tx(db, [["db/add", reg, "reg/course+student", ("HACK", 1)], ["db/add", reg, "reg/semester", "S1"]])
    assert eav(r.db_after, reg, "reg/course+student") == [(reg, "reg/course+student", ("BIO", s))]


def test_composite_unique_conflict_and_upsert():
    db = tx(empty_db(flavor="datomic"), COMPOSITE).db_after
    r = tx(db, [{"db/id": "s", "s/name": "Ann"}, {"db/id": "r", "reg/course": "BIO", "reg/student": "s"}])
    db, s, reg = r.db_after, r.tempids["s"], r.tempids["r"]
    err(db, [{"reg/course": "BIO", "reg/student": s}], "db.error/unique-conflict")
    r = tx(db, [{"db/id": "x", "reg/course+student": ("BIO", ("s/name", "Ann")), "reg/semester": "S2"}])
    assert r.tempids["x"] == reg
    assert eav(r.db_after, reg, "reg/semester") == [(reg, "reg/semester", "S2")]


def test_composite_is_computed_retroactively_on_member_assertion():
    db = tx(empty_db(flavor="datomic"), COMPOSITE[:3]).db_after
    r = tx(db, [{"db/id": "r", "reg/course": "BIO"}])
    reg = r.tempids["r"]
    db = tx(r.db_after, [attr("reg/course+semester", "tuple",
                              **{"db/tupleAttrs": [kw("reg/course"), kw("reg/semester")]})]).db_after
    assert eav(db, reg, "reg/course+semester") == []
    r = tx(db, [["db/add", reg, "reg/course", "BIO"]])
    assert user_data(r) == [(reg, "reg/course+semester", ("BIO", None), True)]


# ------------------------------------------------------------------------------------------------
# Schema alteration


def test_rename_ident():
    db = tx(people_db(), [{"person/name": "Ivan", "person/age": 1}]).db_after
    ivan = entid(db, ("person/name", "Ivan"))
    aid = db.idents[kw("person/name")]
    r = tx(db, [{"db/id": kw("person/name"), "db/ident": kw("person/full-name")}])
    db2 = r.db_after
    assert "person/name" not in db2.schema and db2.schema["person/full-name"]["db/unique"] == IDENTITY
    assert db2.idents[aid] == kw("person/full-name")
    assert db2.idents[kw("person/full-name")] == aid == db2.idents[kw("person/name")]
    assert eav(db2, ivan, "person/full-name") == [(ivan, "person/full-name", "Ivan")]
    assert datoms(db2, "eavt", ivan, "person/name") == []
    assert [k[1] for k in db2.heavt.prefix((ivan,))] == ["person/age", "person/full-name"]
    assert entid(db2, ("person/full-name", "Ivan")) == ivan
    # the old name keeps working in transactions
    r2 = tx(db2, [{"person/name": "Ivan", "person/age": 2}])
    assert eav(r2.db_after, ivan, "person/age") == [(ivan, "person/age", 2)]
    assert user_data(r2) == [(ivan, "person/age", 1, False), (ivan, "person/age", 2, True)]
    # and the old name can be re-purposed for a new attribute
    db3 = tx(db2, [attr("person/name", "long")]).db_after
    assert db3.schema["person/name"]["db/valueType"] == kw("db.type/long")
    assert db3.idents[kw("person/name")] != aid


def test_alter_cardinality():
    db = tx(people_db(), [{"person/name": "Ivan", "person/age": 1, "person/aliases": ["A"]},
                          {"person/name": "Petr", "person/aliases": ["B", "C"]}]).db_after
    db2 = tx(db, [{"db/id": kw("person/age"), "db/cardinality": MANY}]).db_after
    assert "person/age" in db2.props.many
    ivan = entid(db2, ("person/name", "Ivan"))
    db2 = tx(db2, [["db/add", ivan, "person/age", 2]]).db_after
    assert len(datoms(db2, "eavt", ivan, "person/age")) == 2
    e = err(db, [{"db/id": kw("person/aliases"), "db/cardinality": ONE}], "db.error/invalid-alter-attribute")
    assert e.data["db/error"] == "db.error/cardinality-violation" and len(e.data["datoms"]) == 2
    petr = entid(db, ("person/name", "Petr"))
    db3 = tx(db, [["db/retract", petr, "person/aliases", "C"]]).db_after
    db3 = tx(db3, [{"db/id": kw("person/aliases"), "db/cardinality": ONE}]).db_after
    assert "person/aliases" not in db3.props.many


def test_alter_unique_and_index():
    db = tx(people_db(), [attr("p/code", "string"), attr("p/idx", "string", **{"db/index": True})]).db_after
    db = tx(db, [{"db/id": "a", "p/code": "x", "p/idx": "x"}, {"db/id": "b", "p/code": "x", "p/idx": "x"}]).db_after
    e = err(db, [{"db/id": kw("p/code"), "db/unique": VALUE}], "db.error/invalid-alter-attribute")
    assert e.data["db/error"] == "db.error/unique-without-index"
    e = err(db, [{"db/id": kw("p/idx"), "db/unique": VALUE}], "db.error/invalid-alter-attribute")
    assert e.data["db/error"] == "db.error/unique-violation"
    # index first, fix the data, then unique
    db = tx(db, [{"db/id": kw("p/code"), "db/index": True}]).db_after
    assert [d.v for d in datoms(db, "avet", "p/code")] == ["x", "x"]
    b = datoms(db, "avet", "p/code")[1].e
    db = tx(db, [["db/retract", b, "p/code", "x"]]).db_after
    db = tx(db, [{"db/id": kw("p/code"), "db/unique": IDENTITY}]).db_after
    assert "p/code" in db.props.identity
    assert tx(db, [{"db/id": "t", "p/code": "x"}]).tempids["t"] == datoms(db, "avet", "p/code")[0].e
    # drop unique and index: AVET no longer holds the attribute
    db = tx(db, [["db/retract", kw("p/code"), "db/unique", IDENTITY],
                 ["db/retract", kw("p/code"), "db/index", True]]).db_after
    assert "p/code" not in db.props.unique and datoms(db, "avet", "p/code") == []
    # unique on an attribute without data needs no index
    db = tx(db, [attr("p/new", "string")]).db_after
    db = tx(db, [{"db/id": kw("p/new"), "db/unique": VALUE}]).db_after
    assert "p/new" in db.props.unique


def test_alter_component_nohistory_doc():
    db = tx(people_db(), [{"db/id": "p", "person/name": "P", "person/best": {"person/name": "B"}}]).db_after
    db = tx(db, [{"db/id": kw("person/best"), "db/isComponent": True, "db/noHistory": True, "db/doc": "best"}]).db_after
    assert db.schema["person/best"] == {"db/valueType": kw("db.type/ref"), "db/cardinality": ONE,
                                        "db/isComponent": True, "db/noHistory": True, "db/doc": "best"}
    r = tx(db, [["db/retractEntity", ("person/name", "P")]])
    assert entid(r.db_after, ("person/name", "B")) is None
    err(db, [{"db/id": kw("person/name"), "db/isComponent": True}], "db.error/invalid-install-attribute")


@pytest.mark.parametrize(("change", "attribute"), [
    ({"db/valueType": kw("db.type/long")}, "db/valueType"),
    ({"db/fulltext": True}, "db/fulltext"),
])
def test_forbidden_alterations(change, attribute):
    db = people_db()
    e = err(db, [{"db/id": kw("person/name"), **change}], "db.error/invalid-alter-attribute")
    assert e.data["db/error"] == "db.error/unsupported-alter-schema" and e.data["attribute"] == attribute


def test_forbidden_retractions_and_builtins():
    db = tx(empty_db(flavor="datomic"), COMPOSITE).db_after
    string = kw("db.type/string")
    err(db, [["db/retract", kw("reg/course"), "db/valueType", string]], "db.error/invalid-alter-attribute")
    err(db, [["db/retract", kw("reg/course"), "db/cardinality", ONE]], "db.error/invalid-alter-attribute")
    err(db, [["db/retract", kw("reg/course"), "db/ident", kw("reg/course")]], "db.error/invalid-alter-attribute")
    err(db, [{"db/id": kw("reg/course+student"), "db/tupleAttrs": [kw("reg/course"), kw("reg/semester")]}],
        "db.error/invalid-alter-attribute")
    err(db, [{"db/id": kw("db/ident"), "db/ident": kw("db/name")}], "db.error/invalid-alter-attribute")
    err(db, [{"db/id": kw("db/doc"), "db/index": True}], "db.error/invalid-alter-attribute")
    db2 = tx(db, [{"db/id": kw("db/doc"), "db/doc": "Documentation string"}]).db_after
    assert db2.schema["db/doc"]["db/doc"] == "Documentation string"


def test_enum_ident_retraction_and_rename():
    db = people_db()
    red = db.idents[kw("color/red")]
    db2 = tx(db, [{"db/id": kw("color/red"), "db/ident": kw("color/crimson")}]).db_after
    assert db2.idents[red] == kw("color/crimson") and entid(db2, kw("color/red")) == red
    db3 = tx(db2, [["db/retract", red, "db/ident", kw("color/crimson")]]).db_after
    assert red not in db3.idents and entid(db3, kw("color/crimson")) is None


# ------------------------------------------------------------------------------------------------
# Bulk construction


def test_init_db_datomic():
    schema = {"person/name": {"db/valueType": "db.type/string", "db/cardinality": "db.cardinality/one",
                              "db/unique": "db.unique/identity"},
              "person/friend": {"db/valueType": "db.type/ref", "db/cardinality": "db.cardinality/many"}}
    db = init_db([(200, "person/name", "A"), (201, "person/name", "B"), (200, "person/friend", 201)], schema,
                 flavor="datomic")
    assert db.flavor == "datomic" and db.max_eid == 201 and db.max_tx == TX0 + 2
    assert entid(db, ("person/name", "B")) == 201
    assert datoms(db, "vaet", 201)[0].e == 200
    assert datoms(db, "eavt", TX0 + 2, "db/txInstant")[0].v == EPOCH
    assert len(db.heavt) == len(db.eavt)
    r = tx(db, [{"person/name": "C"}])
    assert r.tempids and entid(r.db_after, ("person/name", "C")) == 202
    with pytest.raises(TxError) as ei:
        init_db([(200, "person/name", "A"), (200, "person/name", "B")], schema, flavor="datomic")
    assert ei.value.code == "db.error/datoms-conflict"
    with pytest.raises(TxError) as ei:
        init_db([(200, "person/name", "A"), (201, "person/name", "A")], schema, flavor="datomic")
    assert ei.value.code == "db.error/unique-conflict"
    with pytest.raises(TxError) as ei:
        init_db([(200, "person/nam", "A")], schema, flavor="datomic")
    assert ei.value.code == "db.error/not-an-entity"
    with pytest.raises(TxError) as ei:
        init_db([(200, "person/name", 1)], schema, flavor="datomic")
    assert ei.value.code == "db.error/wrong-type-for-attribute"


def test_init_db_round_trips_a_database_with_schema_datoms():
    db = people_db()
    db = tx(db, [{"person/name": "Ivan", "person/color": kw("color/red"), "person/aliases": ["V"]}],
            instant=WHEN).db_after
    db2 = init_db(list(db), flavor="datomic")
    assert list(db2) == list(db)
    assert db2.schema == db.schema and db2.max_eid == db.max_eid and db2.max_tx == db.max_tx
    assert db2.idents == db.idents
    # schema datoms with keyword ref values load too
    db3 = init_db([(150, "db/ident", kw("a/b")), (150, "db/valueType", kw("db.type/long")),
                   (150, "db/cardinality", kw("db.cardinality/one")), (151, "a/b", 3)], flavor="datomic")
    assert db3.schema["a/b"]["db/valueType"] == kw("db.type/long")
    assert datoms(db3, "eavt", 151) == [Datom(151, "a/b", 3, TX0 + 1)]


# ------------------------------------------------------------------------------------------------
# Performance


def test_small_transactions_stay_fast_on_a_large_db():
    schema = {"p/name": {"db/valueType": "db.type/string", "db/cardinality": "db.cardinality/one",
                         "db/unique": "db.unique/identity"},
              "p/age": {"db/valueType": "db.type/long", "db/cardinality": "db.cardinality/one", "db/index": True},
              "p/friend": {"db/valueType": "db.type/ref", "db/cardinality": "db.cardinality/many"}}
    n = 20000
    rows = []
    for i in range(n):
        rows += [(1000 + i, "p/name", f"p{i}"), (1000 + i, "p/age", i % 90), (1000 + i, "p/friend", 1000 + (i * 7) % n)]
    db = init_db(rows, schema, flavor="datomic")
    times = []
    for j in range(60):
        data = [{"p/name": f"n{j}-{k}", "p/age": k, "p/friend": 1000 + k} for k in range(3)]
        data.append(["db/add", 1000 + j, "p/age", 99])
        t0 = time.perf_counter()
        db = transact(db, data).db_after
        times.append(time.perf_counter() - t0)
    times.sort()
    assert times[len(times) // 2] < 0.003


def test_from_history_restores_a_database():
    db = tx(empty_db(flavor="datomic"), COMPOSITE + SCHEMA).db_after
    r = tx(db, [{"db/id": "s", "s/name": "Ann", "person/aliases": ["a", "b"]},
                {"reg/course": "BIO", "reg/student": "s"}], instant=WHEN)
    db = tx(r.db_after, [["db/retract", r.tempids["s"], "person/aliases", "a"],
                         {"db/id": kw("reg/course"), "db/ident": kw("reg/subject")},
                         {"db/id": kw("color/red"), "db/ident": kw("color/crimson")}]).db_after
    db = tx(db, [["db/retract", kw("color/blue"), "db/ident", kw("color/blue")]]).db_after
    restored = from_history(datoms(history(db), "eavt"))
    assert list(restored) == list(db)
    assert list(datoms(history(restored), "eavt")) == list(datoms(history(db), "eavt"))
    assert restored.schema == db.schema and restored.idents == db.idents
    assert (restored.max_eid, restored.max_tx) == (db.max_eid, db.max_tx)
    assert [list(getattr(restored, i)) for i in ("avet", "vaet")] == [list(db.avet), list(db.vaet)]
    # and it keeps transacting the same way
    data = [{"db/id": "x", "s/name": "Bob", "reg/subject": "CHEM"}, {"reg/subject": "ART", "reg/student": "x"}]
    assert tx(restored, data).tx_data == tx(db, data).tx_data


def test_rename_a_composite_member():
    db = tx(empty_db(flavor="datomic"), COMPOSITE).db_after
    r = tx(db, [{"db/id": "s", "s/name": "Ann"}, {"db/id": "r", "reg/course": "BIO", "reg/student": "s"}])
    db = tx(r.db_after, [{"db/id": kw("reg/course"), "db/ident": kw("reg/subject")}]).db_after
    assert db.schema["reg/course+student"]["db/tupleAttrs"] == ("reg/subject", "reg/student")
    reg, s = r.tempids["r"], r.tempids["s"]
    r2 = tx(db, [["db/add", reg, "reg/subject", "ART"]])
    assert eav(r2.db_after, reg, "reg/course+student") == [(reg, "reg/course+student", ("ART", s))]


def test_retract_and_replace_in_one_transaction():
    db = tx(people_db(), [{"person/name": "Ivan", "person/age": 1}]).db_after
    ivan = entid(db, ("person/name", "Ivan"))
    r = tx(db, [["db/retract", ivan, "person/age", 1], ["db/add", ivan, "person/age", 2]])
    assert user_data(r) == [(ivan, "person/age", 1, False), (ivan, "person/age", 2, True)]


def test_a_composite_tuple_member_cannot_become_cardinality_many():
    db = empty_db(flavor="datomic")
    one, string = kw("db.cardinality/one"), kw("db.type/string")
    db = transact(db, [
        {"db/ident": kw("reg/course"), "db/valueType": string, "db/cardinality": one},
        {"db/ident": kw("reg/student"), "db/valueType": string, "db/cardinality": one},
    ]).db_after
    db = transact(db, [{"db/ident": kw("reg/course+student"), "db/valueType": kw("db.type/tuple"),
                        "db/tupleAttrs": [kw("reg/course"), kw("reg/student")],
                        "db/cardinality": kw("db.cardinality/one")}]).db_after
    with pytest.raises(TxError) as e:
        transact(db, [{"db/id": kw("reg/course"), "db/cardinality": kw("db.cardinality/many")}])
    assert e.value.code == "db.error/invalid-alter-attribute"
    assert "composite" in e.value.message
