"""Examples for ``entity``. The behaviours asserted here were confirmed against DataScript 1.8.1
(``d/entity``, ``.get``, ``.has``, ``.keys``, ``d/touch``, ``equiv``) on the same schema and data."""

from __future__ import annotations

import pytest

from datsync.core import ResolveError, db_with, empty_db, filter_db, kw
from datsync.core.entity import Entity, entity, entity_db, touch

SCHEMA = {
    "name": {"db/unique": "db.unique/identity"},
    "friends": {"db/valueType": "db.type/ref", "db/cardinality": "db.cardinality/many"},
    "best": {"db/valueType": "db.type/ref"},
    "aka": {"db/cardinality": "db.cardinality/many"},
    "flags": {"db/cardinality": "db.cardinality/many"},
    "address": {"db/valueType": "db.type/ref", "db/isComponent": True},
    "pets": {"db/valueType": "db.type/ref", "db/cardinality": "db.cardinality/many", "db/isComponent": True},
    "tag": {"db/valueType": "db.type/ref", "db/isComponent": True},
    "owner": {"db/valueType": "db.type/ref"},
}

TX = [
    {
        "db/id": 1,
        "name": "Ivan",
        "age": 30,
        "aka": ["Vanya", "Ivanushka", "Jo"],
        "friends": [2, 3],
        "best": 2,
        "address": {"db/id": 10, "street": "Main", "city": "X"},
        "pets": [{"db/id": 20, "pname": "Rex", "tag": {"db/id": 30, "no": 5}}, {"db/id": 21, "pname": "Tom"}],
    },
    {"db/id": 2, "name": "Petr", "age": 40, "friends": [1, 3], "best": 3},
    {"db/id": 3, "name": "Oleg", "friends": [4]},
    {"db/id": 4, "name": "Kate", "best": 1},
    {"db/id": 5, "name": "Lone", "flag": False, "flags": [False, True], "owner": 100},
]

DB = db_with(empty_db(SCHEMA), TX)


def ids(es):
    return sorted(e.id for e in es)


def test_entity_resolves_ids_lookup_refs_and_idents():
    assert entity(DB, 1).id == 1
    assert entity(DB, ("name", "Kate")).id == 4
    assert entity(DB, ["name", "Kate"]).id == 4
    assert entity(DB, ("name", "Nope")) is None
    db = db_with(DB, [{"db/id": 4, "db/ident": kw("kate")}])
    assert entity(db, kw("kate")).id == 4
    assert entity(db, kw("nobody")) is None


def test_entity_is_none_without_datoms():
    assert entity(DB, 99) is None
    assert entity(DB, 100) is None  # only referenced, no datoms of its own
    assert entity(DB, 536870913) is None  # the transaction has no datoms in DataScript
    assert entity(DB, "Ivan") is None  # not a number, not a lookup ref
    assert entity(DB, 1.5) is None


def test_malformed_ids_raise():
    for eid in (0, -1):
        with pytest.raises(ResolveError, match="Expected"):
            entity(DB, eid)
    with pytest.raises(ResolveError, match="should be marked as :db/unique"):
        entity(DB, ("age", 30))


def test_attribute_values():
    e = entity(DB, 1)
    assert e["name"] == "Ivan"
    assert e[kw("name")] == "Ivan"
    assert e.get("age") == 30
    assert e["zzz"] is None
    assert e.get("zzz", "none") == "none"
    assert e["db/id"] == e[kw("db/id")] == e.id == 1
    assert e["aka"] == frozenset({"Ivanushka", "Jo", "Vanya"})


def test_false_values_are_values():
    e = entity(DB, 5)
    assert e["flag"] is False
    assert "flag" in e
    assert e["flags"] == frozenset({False, True})
    touch(e)
    assert e["flag"] is False
    assert "flag" in e


def test_refs_navigate_to_entities():
    e = entity(DB, 1)
    best = e["best"]
    assert isinstance(best, Entity)
    assert best.id == 2
    assert best["name"] == "Petr"
    assert ids(e["friends"]) == [2, 3]
    assert isinstance(e["address"], Entity)
    assert e["address"]["street"] == "Main"
    assert ids(e["pets"]) == [20, 21]
    assert e["best"]["best"]["friends"] == frozenset({entity(DB, 4)})


def test_refs_to_entities_without_datoms_are_none():
    assert entity(DB, 5)["owner"] is None
    assert "owner" in entity(DB, 5)


def test_reverse_refs():
    assert ids(entity(DB, 3)["_friends"]) == [1, 2]
    assert entity(DB, 5)["_friends"] is None
    assert entity(DB, 5).get("_friends", ()) == ()
    assert ids(entity(DB, 2)["_best"]) == [1]
    assert ids(entity(DB, 1)["_best"]) == [4]
    # a component has one owner: a single entity
    assert entity(DB, 10)["_address"] == entity(DB, 1)
    assert entity(DB, 20)["_pets"].id == 1
    assert entity(DB, 30)["_tag"].id == 20


def test_reverse_of_a_non_ref_attribute_matches_numbers_equal_to_the_id():
    # DataScript searches [nil attr eid] whatever the attribute's type.
    db = db_with(empty_db(), [{"db/id": 1, "name": "a", "age": 2}, {"db/id": 2, "name": "b", "age": 1}])
    assert ids(entity(db, 2)["_age"]) == [1]
    assert ids(entity(db, 1)["_age"]) == [2]
    assert entity(db, 2)["_name"] is None


def test_contains():
    e = entity(DB, 3)
    assert "name" in e
    assert kw("name") in e
    assert "zzz" not in e
    assert "db/id" in e
    assert "_friends" in e
    assert "_friends" not in entity(DB, 5)
    assert ["not", "hashable"] not in e


def test_keys_items_len_realize_the_entity():
    e = entity(DB, 1)
    assert e.keys() == ["address", "age", "aka", "best", "friends", "name", "pets"]
    assert len(e) == 7
    assert list(e) == e.keys()
    items = dict(entity(DB, 2).items())
    assert items.keys() == {"age", "best", "friends", "name"}
    assert items["age"] == 40
    assert items["best"].id == 3
    assert ids(items["friends"]) == [1, 3]
    assert dict(entity(DB, 10)) == {"city": "X", "street": "Main"}
    assert entity(DB, 10).values() == ["X", "Main"]


def test_touch_realizes_components_recursively():
    e = touch(entity(DB, 1))
    assert e is not None
    assert repr(e["address"]) == "Entity({'db/id': 10, 'city': 'X', 'street': 'Main'})"
    rex = next(p for p in e["pets"] if p.id == 20)
    assert rex._touched and rex["tag"]._touched
    assert repr(rex["tag"]) == "Entity({'db/id': 30, 'no': 5})"
    assert not e["best"]._touched  # not a component
    assert "best" in repr(e)


def test_touch_survives_component_cycles():
    db = db_with(empty_db(SCHEMA), [{"db/id": 1, "n": "A", "address": 2}, {"db/id": 2, "n": "B", "address": 1}])
    e = touch(entity(db, 1))
    assert e["address"]["n"] == "B"
    assert e["address"]["address"]["n"] == "A"


def test_equality_is_same_eid_in_the_same_database_value():
    assert entity(DB, 1) == entity(DB, 1)
    assert hash(entity(DB, 1)) == hash(entity(DB, 1))
    assert entity(DB, 1) != entity(DB, 2)
    same_datoms = db_with(DB, [])
    assert entity(DB, 1) != entity(same_datoms, 1)
    assert entity(DB, 1) != {"db/id": 1}
    assert len({entity(DB, 1), entity(DB, 1), entity(DB, 2)}) == 2


def test_entity_db():
    e = entity(DB, 1)
    assert entity_db(e) is DB
    assert e.db is DB


def test_filtered_views():
    schema = {"f": {"db/valueType": "db.type/ref", "db/cardinality": "db.cardinality/many"}}
    db = db_with(
        empty_db(schema),
        [
            {"db/id": 1, "name": "a", "age": 3, "f": [2, 3]},
            {"db/id": 2, "name": "b"},
            {"db/id": 3, "name": "c"},
        ],
    )
    fdb = filter_db(db, lambda _db, d: d.a != "age" and d.e != 3)
    e = entity(fdb, 1)
    assert e["name"] == "a"
    assert e["age"] is None
    # DataScript: #{<entity 2> nil}, the filtered-out entity becomes nil
    assert e["f"] == frozenset({entity(fdb, 2), None})
    assert entity(fdb, 3) is None
    assert entity(fdb, 2)["_f"] == frozenset({e})
    assert touch(entity(fdb, 1)).keys() == ["f", "name"]
