"""Relations: a tuple of variables and a list of rows (tuples of values), and the joins between them.

Rows are plain tuples so that building, hashing and comparing them stays in C. A relation is a bag:
duplicates are harmless and removed where a result is collected. ``raw`` names the columns whose
values came from outside (inputs, function results) and may need entity-id resolution before they
meet an index (a lookup ref where an entity id is expected).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from operator import itemgetter
from typing import Any

__all__ = ["Rel", "buckets", "columns", "getter", "hash_join", "merge", "probe", "product", "project", "tuple_getter",
           "unit"]


class Rel:
    """A relation: ``vars`` (column names), ``rows``, and ``raw`` (columns that came from outside)."""

    __slots__ = ("idx", "raw", "rows", "vars")

    def __init__(self, vars: tuple, rows: list, raw: frozenset = frozenset()):
        self.vars = vars
        self.rows = rows
        self.idx = {v: i for i, v in enumerate(vars)}
        self.raw = raw

    def __repr__(self) -> str:
        return f"<Rel {self.vars} {len(self.rows)} rows>"


def unit() -> Rel:
    """The relation with no columns and one row: the identity of joins."""
    return Rel((), [()])


def getter(idxs: list[int] | tuple[int, ...]) -> Callable[[tuple], Any]:
    """Key function: one column's value for one index, a tuple of values for several."""
    if len(idxs) == 1:
        return itemgetter(idxs[0])
    if not idxs:
        return lambda r: ()
    return itemgetter(*idxs)


def tuple_getter(idxs: list[int] | tuple[int, ...]) -> Callable[[tuple], tuple]:
    """The columns at ``idxs`` as a tuple (always a tuple, even for one column)."""
    if len(idxs) == 1:
        i = idxs[0]
        return lambda r: (r[i],)
    if not idxs:
        return lambda r: ()
    return itemgetter(*idxs)


def columns(rows: Iterable[tuple], idxs: list[int] | tuple[int, ...]) -> list[tuple]:
    """The columns at ``idxs`` of every row, as tuples: ``map(tuple_getter(idxs), rows)`` without a
    Python call per row."""
    if len(idxs) == 1:
        i = idxs[0]
        return [(r[i],) for r in rows]
    if not idxs:
        return [() for _ in rows]
    return list(map(itemgetter(*idxs), rows))


def buckets(keys: Iterable, values: Iterable, table: dict | None = None) -> dict:
    """key -> the values with that key (``keys`` and ``values`` paired in order), added to ``table``
    when given: the hash side of a join. A key's first value is held in a 1-tuple (which the garbage
    collector stops tracking) and a list only from its second, so unique keys allocate no lists."""
    if table is None:
        table = {}
    get = table.get
    for k, x in zip(keys, values):
        b = get(k)
        if b is None:
            table[k] = (x,)
        elif type(b) is tuple:
            table[k] = [*b, x]
        else:
            b.append(x)
    return table


def probe(rows: list, keys: Iterable, table: dict) -> list:
    """Each row extended by each of the values ``table`` holds for its key (``keys`` in row order)."""
    get = table.get
    return [r + x for r, k in zip(rows, keys) for x in get(k, ())]


def mixed_bools(*columns: Iterable) -> bool:
    """Whether the values of ``columns`` mix booleans with numbers (``True == 1`` in Python, but not
    in the database: keys must then carry the type)."""
    types: set = set()
    for col in columns:
        types.update(map(type, col))
    return bool in types and (int in types or float in types)


def typed_getter(idxs: list[int]) -> Callable[[tuple], tuple]:
    """Key function for the columns at ``idxs`` that keeps booleans apart from numbers."""
    if len(idxs) == 1:
        i = idxs[0]
        return lambda r: (r[i], type(r[i]) is bool)
    return lambda r: tuple((r[i], type(r[i]) is bool) for i in idxs)


def product(a: Rel, b: Rel) -> Rel:
    """The cartesian product of two relations without common variables."""
    if not a.vars:
        return b if a.rows else Rel(b.vars, [], b.raw)
    if not b.vars:
        return a if b.rows else Rel(a.vars, [], a.raw)
    rows = [x + y for x in a.rows for y in b.rows]
    return Rel(a.vars + b.vars, rows, a.raw | b.raw)


def hash_join(a: Rel, b: Rel) -> Rel:
    """Natural join of ``a`` and ``b`` on their common variables (``a``'s columns come first)."""
    common = [v for v in b.vars if v in a.idx]
    if not common:
        return product(a, b)
    new_b = [i for i, v in enumerate(b.vars) if v not in a.idx]
    out_vars = a.vars + tuple(b.vars[i] for i in new_b)
    raw = a.raw | (b.raw - set(common))
    ai, bi = [a.idx[v] for v in common], [b.idx[v] for v in common]
    ka, kb = getter(ai), getter(bi)
    arows, brows = a.rows, b.rows
    if any(mixed_bools(map(itemgetter(x), arows), map(itemgetter(y), brows)) for x, y in zip(ai, bi)):
        ka, kb = typed_getter(ai), typed_getter(bi)
    if not new_b:
        keys = set(map(kb, brows))
        return Rel(out_vars, [r for r in arows if ka(r) in keys], raw)
    if len(arows) <= len(brows):
        table = buckets(map(ka, arows), arows)
        get = table.get
        out = [r + x for p, x in zip(brows, columns(brows, new_b)) for r in get(kb(p), ())]
    else:
        out = probe(arows, map(ka, arows), buckets(map(kb, brows), columns(brows, new_b)))
    return Rel(out_vars, out, raw)


def merge(rels: list[Rel], vars: Iterable) -> tuple[Rel | None, list[Rel]]:
    """The product of the relations holding any of ``vars`` (None if none does), and the others."""
    want = set(vars)
    hit: Rel | None = None
    rest = []
    for r in rels:
        if want.intersection(r.vars):
            hit = r if hit is None else product(hit, r)
        else:
            rest.append(r)
    return hit, rest


def add_rel(rels: list[Rel], new: Rel) -> list[Rel]:
    """``rels`` with ``new`` joined into every relation it shares a variable with."""
    out = []
    for r in rels:
        if new.idx.keys() & r.idx.keys():
            new = hash_join(r, new)
        else:
            out.append(r)
    out.append(new)
    return out


def project(rels: list[Rel], vars: tuple) -> set[tuple] | None:
    """Distinct rows of ``vars`` over ``rels`` (the product of the relations holding them); None if a
    variable is unbound. Empty when any relation is empty."""
    if any(not r.rows for r in rels):
        return set() if all(any(v in r.idx for r in rels) for v in vars) else None
    hit, _ = merge(rels, vars)
    if hit is None:
        return {()} if not vars else None
    idx = hit.idx
    if any(v not in idx for v in vars):
        return None
    if hit.vars == vars:
        return set(hit.rows)
    return set(columns(hit.rows, [idx[v] for v in vars]))
