"""Random databases, pull patterns and entity ids for the differential pull test against DataScript.

Two kinds of database: ``gen_tx``'s random schema and transaction stream (upserts, retractions,
tuple attributes, mixed-type values), and a ``random_graph`` of a few entities densely linked by
refs (cardinality one and many, components, cycles, refs to entities without datoms).

Patterns are EDN *text* with attributes written as strings (``"name"``): DataScript's JS API reads
string attributes from EDN, and ``pull`` accepts the same text, so both sides get the very same
pattern. They cover attribute names, ``*``, ``:db/id``, reverse refs, nested map specs, recursion
(``...`` and depths), the map-option form ``["a" :as .. :limit .. :default ..]`` and the legacy
``(limit "a" n)`` / ``(default "a" v)`` forms; a few specs are malformed on purpose.

Everything is drawn from a ``random.Random`` so a seed replays a case exactly.
"""

from __future__ import annotations

import random
from typing import Any

from datsync.core import kw
from tests import gen_tx

MANY = kw("db.cardinality/many")
REF = kw("db.type/ref")
TX1 = 536870913  # DataScript's first transaction id: an entity without datoms

GRAPH_NAMES = ["ann", "bob", "cid", "dee", "eve", "fay", "gus", "hal", "ivy", "jon", "kim", "lou"]


# ---------------------------------------------------------------------------------------------
# databases


def random_graph_schema(rng: random.Random) -> dict[str, dict[str, Any]]:
    """Refs of every shape (one/many x plain/component) plus unique and multi-valued scalars."""
    schema: dict[str, dict[str, Any]] = {
        "name": {"db/unique": kw("db.unique/identity")},
        "friend": {"db/valueType": REF},
        "friends": {"db/valueType": REF, "db/cardinality": MANY},
        "part": {"db/valueType": REF, "db/isComponent": True},
        "parts": {"db/valueType": REF, "db/cardinality": MANY, "db/isComponent": True},
        "tags": {"db/cardinality": MANY},
    }
    if rng.random() < 0.5:
        schema["email"] = {"db/unique": kw("db.unique/value")}
    if rng.random() < 0.3:
        schema["age"] = {"db/index": True}
    return schema


def random_graph(rng: random.Random, schema: dict) -> list[list[Any]]:
    """Transactions (``db/add`` forms) building ``2..10`` entities linked at random, then maybe a
    transaction retracting an entity (which cascades to its components)."""
    n = rng.randint(2, 10)
    names = rng.sample(GRAPH_NAMES, n)
    forms: list[list[Any]] = []

    def target(e: int, *, component: bool) -> int:
        # Components mostly point forward (trees and shared subtrees); now and then anywhere, which
        # makes component cycles. Plain refs go anywhere, sometimes to an id without datoms.
        if component and rng.random() < 0.95:
            return rng.randint(e + 1, n + 2)
        return rng.randint(1, n + 2)

    for e in range(1, n + 1):
        if rng.random() < 0.8:
            forms.append(["db/add", e, "name", names[e - 1]])
        if "email" in schema and rng.random() < 0.4:
            forms.append(["db/add", e, "email", f"{names[e - 1]}@x"])
        if rng.random() < 0.5:
            forms.append(["db/add", e, "age", rng.randint(0, 3)])
        for _ in range(rng.choice([0, 0, 1, 2, 3])):
            forms.append(["db/add", e, "tags", rng.choice(["x", "y", "z", 1, 2, True, False])])
        if rng.random() < 0.45:
            forms.append(["db/add", e, "friend", target(e, component=False)])
        for _ in range(rng.choice([0, 1, 2, 3])):
            forms.append(["db/add", e, "friends", target(e, component=False)])
        if rng.random() < 0.3:
            forms.append(["db/add", e, "part", target(e, component=True)])
        for _ in range(rng.choice([0, 0, 1, 2])):
            forms.append(["db/add", e, "parts", target(e, component=True)])
    rng.shuffle(forms)
    cuts = sorted(rng.sample(range(1, len(forms)), min(rng.randint(0, 2), len(forms) - 1)))
    txs = [forms[i:j] for i, j in zip([0, *cuts], [*cuts, len(forms)])]
    if rng.random() < 0.2:
        txs.append([["db/retractEntity", rng.randint(1, n)]])
    return txs


def random_db(rng: random.Random) -> tuple[str, dict, list[list[Any]]]:
    """``(kind, schema, txs)``: a ``gen_tx`` stream (a third of the time) or a ``random_graph``."""
    if rng.random() < 1 / 3:
        schema = gen_tx.random_schema(rng)
        return "tx-stream", schema, gen_tx.random_stream(rng, schema, n_txs=10)
    schema = random_graph_schema(rng)
    return "graph", schema, random_graph(rng, schema)


# ---------------------------------------------------------------------------------------------
# vocabulary: what a pattern may name, derived from the schema


class Vocab:
    """The attributes of one schema, by the role they can play in a pattern."""

    def __init__(self, schema: dict, txs: list[list[Any]]):
        self.refs = [a for a, p in schema.items() if p.get("db/valueType") == REF]
        self.many = {a for a, p in schema.items() if p.get("db/cardinality") == MANY}
        self.uniques = [a for a, p in schema.items() if "db/unique" in p]
        self.non_unique = [a for a in ("age", "tags") if a not in self.uniques]
        # "nope" has neither schema nor datoms; "score" and "age+score" only come with gen_tx streams
        self.scalars = ["name", "email", "age", "tags", "score", "nope"]
        if "age+score" in schema:
            self.scalars.append("age+score")
        self.reverse = ["_" + a for a in self.refs]
        # Ids up to max_e: most have datoms, some not. Lookup values: those transacted, and a miss.
        ids, self.unique_values = [1], {a: ["zz"] for a in self.uniques}
        for tx in txs:
            for form in tx:
                if isinstance(form, dict):
                    ids.append(form.get("db/id"))
                    pairs = list(form.items())
                else:
                    ids.append(form[1] if len(form) > 1 else None)
                    pairs = [(form[2], form[3])] if len(form) > 3 else []
                for a, val in pairs:
                    if a in self.unique_values and isinstance(val, str) and val not in self.unique_values[a]:
                        self.unique_values[a].append(val)
        self.max_e = max(e for e in ids if isinstance(e, int) and not isinstance(e, bool)) + 2

    def multi(self, attr: str) -> bool:
        """True when ``:limit`` applies to ``attr``: a cardinality-many attribute or its reverse."""
        return attr.removeprefix("_") in self.many


# ---------------------------------------------------------------------------------------------
# patterns

# Result keys and default values of every EDN type DataScript's JS API can hand back (no sets: a JS
# array cannot say it was one). Never 1 next to true or 0 next to false: Python has ``1 == True``,
# so a dict (a pull result, a pattern map) cannot hold both as keys (docs/api.md).
AS_KEYS = ['"x"', '"y"', '"name"', '"friends"', ":k", ":ns/k", "7", "true"]
DEFAULTS = ["0", "-1", "2.5", '"d"', ":none", "nil", "true", "[1 2]", '{"a" 1}']
LIMITS = ["1", "1", "2", "3", "nil", "1.5", "1000"]
DEPTHS = ["...", "...", "1", "2", "3", "1.5", '"..."']
BAD_SPECS = [
    '["nope" :limit 1]',  # limit on a cardinality-one attribute
    '["friends" :limit 0]',
    '["friends" :limit -1]',
    '["friends" :limit "x"]',
    '("limit" "friends")',
    '["age" :foo 1]',
    '["age" :as]',
    "[]",
    "1",
    "nil",
    '"_name"',  # reverse of a non-ref
    '"_nope"',
    '{"name" ["age"]}',  # map spec on a non-ref
    '{"friends" 0}',
    '{"friends" -1}',
    '{"friends" "x"}',
    '{"friends" nil}',
    "{* [:db/id]}",
    '(foo "friends" 1)',
    '("default" "age")',
]


class _PatternGen:
    """Draws the specs of one pattern. Recursive map specs are remembered so that later ones may
    repeat the attribute and depth with other options: DataScript counts recursion depth per spec, and
    which specs count as the same one is worth testing."""

    def __init__(self, rng: random.Random, v: Vocab, bad: float):
        self.rng = rng
        self.v = v
        self.bad = bad
        self.recursions: list[tuple[str, str]] = []

    def attr(self) -> str:
        rng, v = self.rng, self.v
        r = rng.random()
        if r < 0.4:
            return rng.choice(v.scalars)
        if r < 0.75:
            return rng.choice(v.refs)
        return rng.choice(v.reverse)

    def ref_attr(self) -> str:
        rng, v = self.rng, self.v
        return rng.choice(v.refs) if rng.random() < 0.65 else rng.choice(v.reverse)

    def default(self) -> str:
        return self.rng.choice(DEFAULTS)

    def attr_expr(self, a: str) -> str:
        """``a`` with options: the map-option form, or the legacy ``(limit ..)`` / ``(default ..)``."""
        rng, q = self.rng, f'"{a}"'
        multi = self.v.multi(a)
        if rng.random() < 0.7:
            opts = []
            for opt in rng.sample(["as", "limit", "default"], rng.randint(1, 3)):
                if opt == "as":
                    opts.append(":as " + rng.choice(AS_KEYS))
                elif opt == "default":
                    opts.append(":default " + self.default())
                elif multi or rng.random() < 0.03:
                    opts.append(":limit " + rng.choice(LIMITS))
            if not opts:
                opts.append(":as " + rng.choice(AS_KEYS))
            return f"[{q} {' '.join(opts)}]"
        head = rng.choice(["", '"'])  # symbol or string head
        if multi and rng.random() < 0.6:
            inner = q
            if rng.random() < 0.25:
                inner = f"({head}default{head} {q} {self.default()})"
            return f"({head}limit{head} {inner} {rng.choice(LIMITS)})"
        return f"({head}default{head} {q} {self.default()})"

    def spec(self, depth: int) -> str:
        rng = self.rng
        r = rng.random()
        if r < self.bad:
            return rng.choice(BAD_SPECS)
        if r < 0.08:
            return "*" if rng.random() < 0.9 else '"*"'
        if r < 0.16:
            return ":db/id" if rng.random() < 0.85 else "[:db/id :as " + rng.choice(AS_KEYS) + "]"
        if r < 0.45 or depth >= 3:
            return f'"{self.attr()}"'
        if r < 0.65:
            return self.attr_expr(self.attr())
        return self.map_spec(depth)

    def map_spec(self, depth: int) -> str:
        rng = self.rng
        entries = []
        names: list[str] = []
        for _ in range(rng.choice([1, 1, 1, 2])):
            a = self.ref_attr()
            if a not in names or rng.random() < 0.05:  # a duplicate key is an error on both sides
                names.append(a)
        for a in names:
            if self.recursions and rng.random() < 0.2:
                a, val = rng.choice(self.recursions)  # the same recursion again, maybe with other options
            else:
                r = rng.random()
                if r < 0.6:
                    val = self.pattern(depth + 1)
                elif r < 0.85:
                    val = rng.choice(DEPTHS)
                    self.recursions.append((a, val))
                else:
                    val = "[*]" if rng.random() < 0.5 else "[:db/id]"
            key = f'"{a}"' if rng.random() < 0.75 else self.attr_expr(a)
            entries.append(f"{key} {val}")
        return "{" + " ".join(entries) + "}"

    def pattern(self, depth: int) -> str:
        n = self.rng.randint(1, 4) if self.rng.random() < 0.98 else 0
        return "[" + " ".join(self.spec(depth) for _ in range(n)) + "]"


def random_pattern(rng: random.Random, v: Vocab, *, bad: float = 0.01) -> str:
    """A pull pattern as EDN text (``bad``: the chance that a spec is malformed)."""
    return _PatternGen(rng, v, bad).pattern(0)


# ---------------------------------------------------------------------------------------------
# entity ids


def random_eid(rng: random.Random, v: Vocab, *, bad: float = 0.02) -> Any:
    """An id (with or without datoms), the tx entity, a lookup ref (hit or miss), or rarely a malformed
    id: 0, -1, a string, a lookup ref on a non-unique attribute or of the wrong length."""
    r = rng.random()
    if r < bad:
        return rng.choice([0, -1, "foo", (rng.choice(v.non_unique or ["nope"]), 1), ("name", "ann", 1), ("nope", "x")])
    if r < 0.7:
        return rng.randint(1, v.max_e)
    if r < 0.74:
        return TX1
    if v.uniques:
        a = rng.choice(v.uniques)
        return (a, rng.choice(v.unique_values[a]))
    return rng.randint(1, v.max_e)
