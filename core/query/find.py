"""Shaping results: find specs, ``:with``, aggregates, ``pull`` in :find, ``:keys``/``:strs``/``:syms``.

Result types (Python spelling of Datomic's):

* relation ``:find ?a ?b``: a ``set`` of tuples; a ``list`` of tuples when :find has aggregates or
  pull expressions, or when :with is given (a bag: one row per distinct binding of find and with
  variables);
* collection ``:find [?a ...]``: a ``list``; scalar ``:find ?a .``: the value or None; tuple
  ``:find [?a ?b]``: a ``tuple`` or None;
* ``:keys``/``:strs``/``:syms``: rows become dicts keyed by ``Keyword``/``str``/``Symbol``; a
  relation gives a ``list`` of dicts, a tuple find one dict.

Aggregates group the distinct bindings of the find and :with variables by the non-aggregate find
elements. ``distinct`` gives a ``set``; ``min``/``max``/``sample``/``rand`` with a count give lists.
"""

from __future__ import annotations

import random as _random
from typing import Any

from ..errors import DatsyncError, QueryError
from ..pull import pull_many
from ..values import Keyword, Symbol
from .builtins import AGGREGATES, RANDOM_AGGREGATES
from .engine import Env, no_random
from .parser import Agg, Pull, Query, Src, Var, show
from .relation import Rel, project
from .sources import DbSource

__all__ = ["collect"]


def _elem_var(x: Any) -> Var:
    return x if type(x) is Var else x.var


def collect(env: Env, q: Query, rels: list[Rel]) -> Any:
    """The query's result from the relations its where clauses left."""
    find = q.find
    vars = tuple(dict.fromkeys([*(_elem_var(x) for x in find), *q.with_]))
    rows = project(rels, vars)
    if rows is None:
        bound: set = set()
        for r in rels:
            bound.update(r.vars)
        unknown = [v.name for v in vars if v not in bound]
        raise QueryError("query/syntax", f"Query for unknown vars: [{' '.join(unknown)}]",
                         {"vars": unknown, "form": q.form})
    has_agg = any(type(x) is Agg for x in find)
    has_pull = any(type(x) is Pull for x in find)
    nfind = len(find)
    if has_agg:
        out: Any = _aggregate(env, q, rels, vars, rows)
    elif q.with_:
        pos = [vars.index(_elem_var(x)) for x in find]
        out = [tuple(r[i] for i in pos) for r in rows]
    elif len(vars) == nfind:
        out = rows
    else:  # a variable repeated in :find
        pos = [vars.index(_elem_var(x)) for x in find]
        out = {tuple(r[i] for i in pos) for r in rows}
    if has_pull:
        out = _pull(env, q, rels, list(out))
    kind = q.find_kind
    if kind == "scalar":
        for r in out:
            return r[0]
        return None
    if kind == "coll":
        return [r[0] for r in out]
    if kind == "tuple":
        for r in out:
            return _keyed(q, r) if q.return_kind else tuple(r)
        return None
    if q.return_kind:
        return [_keyed(q, r) for r in out]
    return out


def _keyed(q: Query, row: tuple) -> dict:
    kind = q.return_kind
    if kind == "keys":
        keys: Any = [Keyword(k) for k in q.return_keys]
    elif kind == "syms":
        keys = [Symbol(k) for k in q.return_keys]
    else:
        keys = list(q.return_keys)
    return dict(zip(keys, row))


def _input_value(rels: list[Rel], var: Var, q: Query) -> Any:
    for r in rels:
        if var in r.idx:
            if r.rows:
                return r.rows[0][r.idx[var]]
            return None
    raise QueryError("query/syntax", f"Unknown variable {var.name} in :find of {show(q.form)}", {"form": q.form})


def _pull(env: Env, q: Query, rels: list[Rel], rows: list) -> list:
    cols = []
    for i, x in enumerate(q.find):
        if type(x) is Pull:
            src = env.source((x.src or Src("$")).name, q.form)
            if not isinstance(src, DbSource):
                raise QueryError("query/where", f"pull needs a database source in {show(q.form)}", {"form": q.form})
            pattern = x.pattern
            if type(pattern) is Var:
                pattern = _input_value(rels, pattern, q)
            elif type(pattern) is str and pattern in env.values:
                pattern = env.values[pattern]
            cols.append((i, src.db, pattern))
    out = [list(r) for r in rows]
    for i, db, pattern in cols:
        eids = [r[i] for r in out]
        try:
            pulled = pull_many(db, pattern, eids)
        except DatsyncError:
            raise
        for r, p in zip(out, pulled):
            r[i] = p
    return [tuple(r) for r in out]


def _aggregate(env: Env, q: Query, rels: list[Rel], vars: tuple, rows: set) -> list:
    find = q.find
    key_pos = [vars.index(x if type(x) is Var else x.var) for x in find if type(x) is not Agg]
    groups: dict = {}
    for r in rows:
        k = tuple(r[i] for i in key_pos)
        g = groups.get(k)
        if g is None:
            groups[k] = [r]
        else:
            g.append(r)
    aggs = []
    for x in find:
        if type(x) is Agg:
            aggs.append((vars.index(x.var), _agg_fn(env, q, rels, x)))
    out = []
    for k, grp in groups.items():
        vals = []
        ki = iter(k)
        ai = iter(aggs)
        for x in find:
            if type(x) is Agg:
                i, f = next(ai)
                try:
                    vals.append(f([r[i] for r in grp]))
                except DatsyncError:
                    raise
                except Exception as err:
                    raise QueryError("query/fn-error", f"Error in aggregate {show(x.fn)} of {x.var.name}: "
                                                       f"{type(err).__name__}: {err}", {"form": q.form}) from err
            else:
                vals.append(next(ki))
        out.append(tuple(vals))
    return out


def _agg_fn(env: Env, q: Query, rels: list[Rel], x: Agg) -> Any:
    args = [(_input_value(rels, a, q) if type(a) is Var else a) for a in x.args]
    fn = x.fn
    if type(fn) is Var:
        fn = _input_value(rels, fn, q)
        if not callable(fn):
            raise QueryError("query/unknown-function", f"{x.fn.name} is not bound to a function in :find",
                             {"form": q.form})
    elif type(fn) is Symbol and fn.name == "aggregate":
        # (aggregate ?f args... ?x): a custom aggregate passed as an input
        if not args or not callable(args[0]):
            raise QueryError("query/unknown-function", f"(aggregate ...) needs a function as its first argument in "
                                                       f":find of {show(q.form)}", {"form": q.form})
        fn, args = args[0], args[1:]
    elif type(fn) is Symbol:
        name = fn.name
        f = AGGREGATES.get(name)
        if f is None:
            f = RANDOM_AGGREGATES.get(name)
            if f is None:
                raise QueryError("query/unknown-function", f"Unknown aggregate function '{name} in :find of "
                                                           f"{show(q.form)}", {"form": q.form, "var": name})
            if env.rng is None:
                raise no_random(name, q.form)
            rng: _random.Random = env.rng
            g = f
            return lambda vals: g(rng, *args, vals)
        fn = f
    h = fn
    return lambda vals: h(*args, vals)
