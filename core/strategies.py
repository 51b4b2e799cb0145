"""Hypothesis strategies for schemas and transaction streams (install ``datsync[testing]``).

They draw from small pools of attributes, values and entity ids so that interesting collisions are
common: upserts through unique identities, unique conflicts, cardinality-one replacement,
retractions that hit, lookup refs that miss, nested maps, reverse refs, composite tuples.
Use them to property-test your own code over databases:

    from hypothesis import given
    from datsync.core.strategies import schemas, tx_streams

    @given(schemas().flatmap(lambda s: tx_streams(s).map(lambda txs: (s, txs))))
    def test_my_invariant(case):
        schema, txs = case
        ...
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from .values import kw

NAMES = ("ann", "bob", "cid", "dee")
WORDS = ("x", "y", "z")
VALUE_ATTRS = ("name", "email", "tags", "age", "score")

REF = kw("db.type/ref")
MANY = kw("db.cardinality/many")


@st.composite
def schemas(draw: st.DrawFn) -> dict[str, dict[str, Any]]:
    """A DataScript-flavor schema over a fixed attribute pool with drawn properties."""
    schema: dict[str, dict[str, Any]] = {}
    if draw(st.booleans()) or draw(st.booleans()):
        schema["name"] = {"db/unique": kw("db.unique/identity")}
    if draw(st.booleans()):
        schema["email"] = {"db/unique": kw(draw(st.sampled_from(["db.unique/value", "db.unique/identity"])))}
    if draw(st.booleans()):
        schema["tags"] = {"db/cardinality": MANY}
    if draw(st.booleans()):
        schema["age"] = {"db/index": True}
    schema["friend"] = {"db/valueType": REF}
    schema["friends"] = {"db/valueType": REF, "db/cardinality": MANY}
    if draw(st.booleans()):
        card = draw(st.sampled_from(["db.cardinality/one", "db.cardinality/many"]))
        schema["child"] = {"db/valueType": REF, "db/cardinality": kw(card), "db/isComponent": True}
    if draw(st.integers(0, 3)) == 0:
        schema["age+score"] = {"db/tupleAttrs": ["age", "score"]}
    return schema


def _refs(schema: dict) -> list[str]:
    return sorted(a for a, p in schema.items() if p.get("db/valueType") == REF)


def _uniques(schema: dict) -> list[str]:
    return sorted(a for a, p in schema.items() if "db/unique" in p)


def entity_ids(schema: dict, *, tempids: bool = True) -> st.SearchStrategy[Any]:
    """An entity position: a small eid, a tempid, or a lookup ref on a unique attribute."""
    options: list[st.SearchStrategy[Any]] = [st.integers(1, 6)]
    if tempids:
        options.append(st.sampled_from([-1, -2, -3, "a", "b"]))
    for a in _uniques(schema):
        pool = NAMES if a == "name" else WORDS
        options.append(st.tuples(st.just(a), st.sampled_from(pool)))
    return st.one_of(options)


def values(schema: dict, attr: str, *, depth: int = 0) -> st.SearchStrategy[Any]:
    """A value for ``attr``: refs get entity ids or (up to depth 2) nested maps."""
    if attr in _refs(schema):
        if depth < 2:
            return st.one_of(entity_ids(schema), entity_maps(schema, depth=depth + 1))
        return entity_ids(schema)
    if attr == "name":
        return st.sampled_from(NAMES)
    if attr in ("age", "score"):
        return st.integers(0, 3)
    return st.sampled_from(WORDS)


@st.composite
def entity_maps(draw: st.DrawFn, schema: dict, *, depth: int = 0) -> dict[str, Any]:
    """A map form with one to three attributes, maybe a ``db/id``, reverse refs and collections."""
    m: dict[str, Any] = {}
    if draw(st.booleans()):
        m["db/id"] = draw(entity_ids(schema))
    attrs = list(VALUE_ATTRS) + _refs(schema)
    for a in draw(st.lists(st.sampled_from(attrs), min_size=1, max_size=3, unique=True)):
        many = schema.get(a, {}).get("db/cardinality") == MANY
        if a in _refs(schema) and draw(st.integers(0, 6)) == 0:
            m["_" + a] = draw(entity_ids(schema))
        elif many and draw(st.booleans()):
            m[a] = draw(st.lists(values(schema, a, depth=depth), min_size=1, max_size=2))
        else:
            m[a] = draw(values(schema, a, depth=depth))
    return m


@st.composite
def tx_forms(draw: st.DrawFn, schema: dict) -> Any:
    """One transaction form: a map, add, retract (with or without value), retractEntity, cas,
    retractAttribute. Never a function (functions do not cross a wire)."""
    attrs = list(VALUE_ATTRS) + _refs(schema)
    a = draw(st.sampled_from(attrs))
    kind = draw(st.sampled_from(["map", "map", "add", "add", "retract", "retract-attr", "retract-entity", "cas"]))
    if kind == "map":
        return draw(entity_maps(schema))
    if kind == "add":
        return ["db/add", draw(entity_ids(schema)), a, draw(values(schema, a, depth=9))]
    e = draw(entity_ids(schema, tempids=False))
    if kind == "retract":
        return ["db/retract", e, a, draw(values(schema, a, depth=9))]
    if kind == "retract-attr":
        return [draw(st.sampled_from(["db/retract", "db.fn/retractAttribute"])), e, a]
    if kind == "retract-entity":
        return ["db/retractEntity", e]
    old = draw(st.one_of(st.none(), values(schema, a, depth=9)))
    if isinstance(old, str) and a in _refs(schema):
        old = None
    return ["db/cas", e, a, old, draw(values(schema, a, depth=9))]


def tx_streams(schema: dict, *, max_txs: int = 6) -> st.SearchStrategy[list[list[Any]]]:
    """Up to ``max_txs`` transactions of one to four forms each."""
    return st.lists(st.lists(tx_forms(schema), min_size=1, max_size=4), min_size=1, max_size=max_txs)


def schema_and_streams(max_txs: int = 6) -> st.SearchStrategy[tuple[dict, list[list[Any]]]]:
    """``(schema, tx stream)`` pairs."""
    return schemas().flatmap(lambda s: tx_streams(s, max_txs=max_txs).map(lambda txs: (s, txs)))
