"""Random schemas and transaction streams for differential tests against DataScript.

Small pools of attributes, values and entity ids make collisions likely: upserts, unique conflicts,
cardinality-one replacement, retractions of what exists, lookup refs that hit and miss.
Everything is drawn from a ``random.Random`` so a seed replays a case exactly.
"""

from __future__ import annotations

import random
from typing import Any

from datsync.core import kw

NAMES = ["ann", "bob", "cid", "dee"]
WORDS = ["x", "y", "z"]


def random_schema(rng: random.Random) -> dict[str, dict[str, Any]]:
    """A schema over a fixed attribute pool with randomly chosen properties."""
    schema: dict[str, dict[str, Any]] = {}
    name: dict[str, Any] = {}
    if rng.random() < 0.8:
        name["db/unique"] = kw("db.unique/identity")
    schema["name"] = name
    if rng.random() < 0.6:
        schema["email"] = {"db/unique": kw(rng.choice(["db.unique/value", "db.unique/identity"]))}
    if rng.random() < 0.7:
        schema["tags"] = {"db/cardinality": kw("db.cardinality/many")}
    if rng.random() < 0.3:
        schema["age"] = {"db/index": True}
    schema["friend"] = {"db/valueType": kw("db.type/ref")}
    schema["friends"] = {"db/valueType": kw("db.type/ref"), "db/cardinality": kw("db.cardinality/many")}
    if rng.random() < 0.6:
        schema["child"] = {
            "db/valueType": kw("db.type/ref"),
            "db/cardinality": kw(rng.choice(["db.cardinality/one", "db.cardinality/many"])),
            "db/isComponent": True,
        }
    if rng.random() < 0.3:
        schema["age+score"] = {"db/tupleAttrs": ["age", "score"]}
    return {a: p for a, p in schema.items() if p or rng.random() < 0.5}


def _ref_attrs(schema: dict) -> list[str]:
    return [a for a, p in schema.items() if p.get("db/valueType") == kw("db.type/ref")]


def _unique_attrs(schema: dict) -> list[str]:
    return [a for a, p in schema.items() if "db/unique" in p]


def random_eid(rng: random.Random, schema: dict, *, tempids: bool = True) -> Any:
    """An entity position: an existing-ish eid, a tempid, or a lookup ref."""
    r = rng.random()
    if r < 0.35:
        return rng.randint(1, 6)
    if r < 0.4 and tempids:
        return "datomic.tx"
    if r < 0.65 and tempids:
        return rng.choice([-1, -2, -3, "a", "b"])
    uniques = _unique_attrs(schema)
    if uniques and r < 0.9:
        a = rng.choice(uniques)
        return (a, rng.choice(NAMES) if a == "name" else rng.choice(WORDS))
    return rng.randint(1, 6)


def random_value(rng: random.Random, schema: dict, attr: str, *, depth: int = 0) -> Any:
    """A value for ``attr``: refs get eids, tempids, lookup refs or nested maps."""
    if attr in _ref_attrs(schema):
        if depth < 2 and rng.random() < 0.2:
            return random_map(rng, schema, depth=depth + 1, with_id=rng.random() < 0.3)
        return random_eid(rng, schema)
    if attr == "name":
        return rng.choice(NAMES)
    if attr in ("age", "score"):
        return rng.randint(0, 3)
    if attr == "tags":
        return rng.choice(["x", "y", 1, True, False, 0])
    return rng.choice(WORDS)


VALUE_ATTRS = ["name", "email", "tags", "age", "score"]


def random_map(rng: random.Random, schema: dict, *, depth: int = 0, with_id: bool = True) -> dict:
    """A map form with one to three attributes (maybe reverse refs, collections, nested maps)."""
    m: dict[str, Any] = {}
    if with_id:
        m["db/id"] = random_eid(rng, schema)
    attrs = VALUE_ATTRS + _ref_attrs(schema)
    for _ in range(rng.randint(1, 3)):
        a = rng.choice(attrs)
        many = schema.get(a, {}).get("db/cardinality") == kw("db.cardinality/many")
        if a in _ref_attrs(schema) and rng.random() < 0.15:
            m["_" + a] = random_eid(rng, schema)
        elif many and rng.random() < 0.5:
            m[a] = [random_value(rng, schema, a, depth=depth) for _ in range(rng.randint(1, 2))]
        else:
            m[a] = random_value(rng, schema, a, depth=depth)
    return m


def random_form(rng: random.Random, schema: dict) -> Any:
    """One tx form of any kind the engine accepts (no functions: they do not cross to Node)."""
    r = rng.random()
    attrs = VALUE_ATTRS + _ref_attrs(schema)
    a = rng.choice(attrs)
    if r < 0.35:
        return random_map(rng, schema, with_id=rng.random() < 0.8)
    if r < 0.6:
        return ["db/add", random_eid(rng, schema), a, random_value(rng, schema, a, depth=9)]
    if r < 0.7:
        return ["db/retract", random_eid(rng, schema, tempids=False), a, random_value(rng, schema, a, depth=9)]
    if r < 0.75:
        return ["db/retract", random_eid(rng, schema, tempids=False), a]
    if r < 0.85:
        return ["db/retractEntity", random_eid(rng, schema, tempids=False)]
    if r < 0.95:
        old = random_value(rng, schema, a, depth=9) if rng.random() < 0.8 else None
        if old is not None and isinstance(old, str) and a in _ref_attrs(schema):
            old = None
        return ["db/cas", random_eid(rng, schema, tempids=False), a, old, random_value(rng, schema, a, depth=9)]
    return ["db.fn/retractAttribute", random_eid(rng, schema, tempids=False), a]


def random_stream(rng: random.Random, schema: dict, n_txs: int = 6) -> list[list[Any]]:
    """``n_txs`` transactions of one to four forms each."""
    return [[random_form(rng, schema) for _ in range(rng.randint(1, 4))] for _ in range(n_txs)]
