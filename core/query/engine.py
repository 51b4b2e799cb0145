"""Evaluating where clauses: data patterns, predicates, function expressions, ``not``, ``or``, rules.

The state of an evaluation is a list of relations (``relation.Rel``) with pairwise disjoint
variables; a clause joins into the relations it shares variables with, so unrelated parts of a
query never meet in a cartesian product until :find asks for both. ``solve`` runs a clause list,
asking the planner for the next clause each time, and stops early when a relation goes empty.

Data patterns either scan the index range their constants select and hash-join the rows in, or,
when few rows are bound and an index can answer per row (a bound entity, or a bound value of an
indexed or ref attribute), look each distinct binding up. ``not``/``or``/rule calls evaluate their
bodies starting from the distinct bindings of their join variables only.
"""

from __future__ import annotations

import random as _random
from collections.abc import Callable
from operator import itemgetter
from typing import Any

from ..db import DB, resolve_tuple_refs
from ..errors import DatsyncError, QueryError, ResolveError
from ..values import Keyword, Symbol, compare_values, freeze, index_value, value_rank
from .builtins import BUILTINS, DB_FUNCTIONS, RANDOM_FUNCTIONS, truthy
from .parser import (
    BLANK,
    BindColl,
    BindIgnore,
    BindScalar,
    BindTuple,
    FnExpr,
    Not,
    Or,
    Pattern,
    Pred,
    RuleCall,
    Src,
    Var,
    show,
)
from .planner import INSUFFICIENT, choose, insufficient
from .relation import Rel, add_rel, buckets, columns, hash_join, merge, mixed_bools, probe, project, tuple_getter
from .sources import CollSource, DbSource, make_source

__all__ = ["Env", "bind_values", "solve"]


class Env:
    """Everything one query evaluation shares: sources, rules, randomness and caches."""

    __slots__ = ("caching", "fn_cache", "hash_cache", "lookup_cache", "pinfo", "rng", "rules", "scan_cache",
                 "solving", "sources", "values")

    def __init__(self, sources: dict[str, Any], rules: dict | None, rng: _random.Random | None):
        self.sources = sources
        self.rules = rules or {}
        self.rng = rng
        self.pinfo: dict = {}
        self.caching = False
        self.scan_cache: dict = {}
        self.hash_cache: dict = {}
        self.lookup_cache: dict = {}
        self.fn_cache: dict = {}
        self.solving: set = set()
        self.values: dict = {}

    def source(self, name: str, form: Any = None) -> Any:
        s = self.sources.get(name)
        if s is None:
            raise QueryError("query/where", f"There is no source {name} in :in for {show(form)}",
                             {"form": form, "source": name})
        return s

    def pattern_info(self, pat: Pattern, src: str) -> tuple | None:
        """``(source, (e, a, v, tx, added))`` constants of a pattern, resolved; None when a constant
        entity or ref value resolves to nothing (the pattern matches nothing)."""
        key = (id(pat), src)
        hit = self.pinfo.get(key, 0)
        if hit != 0:
            return hit
        name = pat.src.name if pat.src is not None else src
        source = self.source(name, pat.form)
        terms = pat.terms + (BLANK,) * (5 - len(pat.terms))
        consts: list = []
        for t in terms:
            consts.append(None if t is BLANK or type(t) is Var else t)
        ec, ac, vc, txc, addc = consts
        info: tuple | None = None
        ok = True
        if isinstance(ac, Keyword):
            ac = ac.name
        if ec is not None:
            ec = _resolve_const(source, ec)
        if vc is not None and ac is not None and source.is_ref(ac) and type(vc) is not int:
            vc = _resolve_const(source, vc)
        elif type(vc) is tuple and isinstance(source, DbSource) and source.db.flavor == "datascript":
            vc = resolve_tuple_refs(source.props, ac, vc, lambda x: _resolve_const(source, x))
        if ok and txc is not None and type(txc) is not int:
            txc = source.resolve_e(txc)
            ok = txc is not None
        if ok:
            info = (source, (ec, ac, vc, txc, addc))
        self.pinfo[key] = info
        return info

    def rule_req_penalty(self, call: RuleCall, bound: set) -> float:
        branches = self.rules.get(call.name)
        if not branches:
            return 0.0
        nreq = len(branches[0].req)
        for a in call.args[:nreq]:
            if type(a) is Var and a not in bound:
                return 1e15
        return 0.0


def _resolve_const(source: Any, x: Any) -> Any:
    """A constant in an entity position as an entity id: like ``datoms``, a lookup ref or ident that
    matches nothing is an error (``entity-id/missing``), as in DataScript."""
    if not isinstance(source, DbSource):
        return source.resolve_e(x)
    e = source.resolve_e_strict(x)
    if e is None:
        raise ResolveError("entity-id/missing", f"Nothing found for entity id {show(x)}", {"entity-id": x})
    return e


# ------------------------------------------------------------------------------------------------
# solve


def bound_vars(rels: list[Rel]) -> set:
    out: set = set()
    for r in rels:
        out.update(r.vars)
    return out


def solve(env: Env, rels: list[Rel], clauses: Any, src: str) -> list[Rel]:
    """Evaluate ``clauses`` (a conjunction) on top of ``rels``, with ``src`` the default source."""
    pending = list(clauses)
    while pending:
        if any(not r.rows for r in rels):
            # Empty: so is everything after; keep the variables the rest would bind.
            rest: set = set()
            for c in pending:
                rest |= c.vars if not isinstance(c, FnExpr) else c.vars | set(c.out)
            rest -= bound_vars(rels)
            return [*rels, Rel(tuple(sorted(rest, key=lambda v: v.name)), [])]
        bound = bound_vars(rels)
        if len(pending) == 1:
            c = pending.pop()
            if isinstance(c, Pred | FnExpr) and not c.vars <= bound:
                raise insufficient(c, c.vars - bound)
        else:
            c = pending.pop(choose(env, rels, pending, bound, src))
        if type(c) is Pattern and pending and not env.caching and not (c.vars & bound):
            fused = _scan_comparisons(rels, c, pending)
            if fused:
                done = {id(p) for p, _ in fused}
                pending = [p for p in pending if id(p) not in done]
                rels = eval_pattern(env, rels, c, src, bound, [cmp for _, cmp in fused])
                continue
        rels = apply_clause(env, rels, c, src, bound)
    return rels


def _scan_comparisons(rels: list[Rel], pat: Pattern, pending: list) -> list[tuple[Pred, tuple]]:
    """The predicates of ``pending`` that compare one of ``pat``'s variables with a constant (inputs
    bound to one value count as constants), each with its ``_comparison``: the scan of ``pat`` can
    apply them to index keys, before it builds a row for a key the predicate would drop."""
    out = []
    for p in pending:
        if type(p) is Pred and p.vars:
            cmp = _comparison(_fold_scalars(rels, p))
            if cmp is not None and cmp[0] in pat.vars and pat.terms.index(cmp[0]) < 4:
                out.append((p, cmp))
    return out


def apply_clause(env: Env, rels: list[Rel], c: Any, src: str, bound: set) -> list[Rel]:
    t = type(c)
    if t is Pattern:
        return eval_pattern(env, rels, c, src, bound)
    if t is Pred:
        return eval_pred(env, rels, c, src)
    if t is FnExpr:
        return eval_fn(env, rels, c, src, bound)
    if t is Not:
        return eval_not(env, rels, c, src, bound)
    if t is Or:
        return eval_or(env, rels, c, src, bound)
    if t is RuleCall:
        from .rules import eval_rule_call

        return eval_rule_call(env, rels, c, src, bound)
    return c.apply(env, rels, bound)


# ------------------------------------------------------------------------------------------------
# Data patterns


def _extractor(layout: tuple, positions: list[int]) -> Callable[[tuple], tuple]:
    """Row -> tuple of the values at pattern ``positions`` (0 e, 1 a, 2 v, 3 tx, 4 added)."""
    if all(layout[p] is not None for p in positions):
        return tuple_getter([layout[p] for p in positions])
    getters = [(layout[p],) for p in positions]

    def ext(k: tuple) -> tuple:
        return tuple(True if g[0] is None else k[g[0]] for g in getters)

    return ext


def _filters(rows: list, layout: tuple, terms: tuple, addc: Any) -> list:
    """Apply the constraints a row index can't: ``added`` constants and repeated variables."""
    if addc is not None:
        ap = layout[4]
        if ap is None:
            if addc is not True:
                return []
        else:
            rows = [k for k in rows if k[ap] is addc or k[ap] == addc]
    seen: dict = {}
    for p, t in enumerate(terms):
        if type(t) is Var:
            if t in seen:
                p0 = layout[seen[t]]
                p1 = layout[p]
                if p0 is None or p1 is None:
                    q = p1 if p0 is None else p0
                    rows = [k for k in rows if k[q] is True]
                else:
                    rows = [k for k in rows if k[p0] == k[p1]]
            else:
                seen[t] = p
    return rows


def _entity_position(p: int, ac: Any, source: Any) -> bool:
    return p == 0 or (p == 2 and ac is not None and source.is_ref(ac))


def eval_pattern(env: Env, rels: list[Rel], pat: Pattern, src: str, bound: set,
                 comparisons: list | None = None) -> list[Rel]:
    """Join the data pattern ``pat`` into ``rels``; ``comparisons`` (``_comparison``s on variables of a
    pattern none of whose variables is bound) filter its rows as they are scanned."""
    terms = pat.terms + (BLANK,) * (5 - len(pat.terms))
    info = env.pattern_info(pat, src)
    out_vars = tuple(dict.fromkeys(t for t in terms if type(t) is Var))
    if info is None:
        return [*rels, Rel(tuple(v for v in out_vars if v not in bound), [])]
    source, (ec, ac, _vc, _txc, addc) = info
    n = len(pat.terms)
    bvars = [v for v in out_vars if v in bound]
    if not bvars:
        prel = _scan_rel(env, pat, source, info[1], terms, out_vars, n, comparisons=comparisons)
        return [*rels, prel]
    assert not comparisons
    comp, rest = merge(rels, bvars)
    assert comp is not None
    first_pos = {}
    for p, t in enumerate(terms):
        if type(t) is Var and t not in first_pos:
            first_pos[t] = p
    # outside values (lookup refs, idents) meeting entity positions: look them up one by one
    raw_entity = isinstance(source, DbSource) and any(
        v in comp.raw and _entity_position(first_pos[v], ac, source) for v in bvars)
    if raw_entity:
        return [*rest, _lookup_join(env, comp, pat, source, info[1], terms, out_vars, bvars, first_pos, n, src)]
    lookup = False
    n_rows = len(comp.rows)
    scan_cost = source.count_attr(ac) if ac is not None else source.size()
    e, v = terms[0], terms[2]
    e_bound = type(e) is Var and e in bound
    v_bound = type(v) is Var and v in bound
    if isinstance(source, DbSource):
        if n_rows == 1:  # one binding (a scalar input, say): the pattern with it as a constant
            lookup = True
        elif ec is None and (e_bound or (v_bound and source.lookup_kind(ac, "v"))):
            lookup = n_rows * 10 < scan_cost
    if lookup:
        return [*rest, _lookup_join(env, comp, pat, source, info[1], terms, out_vars, bvars, first_pos, n, src)]
    if env.caching:
        prel = _scan_rel(env, pat, source, info[1], terms, out_vars, n)
        return [*rest, _cached_hash_join(env, comp, prel, pat, src)]
    # scan, keeping only rows whose entity (or value) is among the bound ones, then hash-join
    fvar = e if e_bound else v if v_bound else None
    if fvar is not None and len(bvars) == 1 and addc is None and len(out_vars) == sum(
            1 for t in terms if type(t) is Var):
        return [*rest, _scan_join(comp, source, info[1], terms, out_vars, fvar, n)]
    prel = _scan_rel(env, pat, source, info[1], terms, out_vars, n, comp, fvar)
    return [*rest, hash_join(comp, prel)]


def _may_mix(types: set) -> bool:
    return bool in types or int in types or float in types


def _scan_join(comp: Rel, source: Any, consts: tuple, terms: tuple, out_vars: tuple, fvar: Var, n: int) -> Rel:
    """Scan the pattern's index range and join each row straight into ``comp`` on ``fvar``.

    The rows of ``comp`` are keyed by their ``fvar`` value; when those values are distinct (an entity
    bound once per row, the usual case) the table maps each to its row, with no bucket lists to
    allocate, and the scan keeps only the index rows whose ``fvar`` value is in the table."""
    ec, ac, vc, txc, _addc = consts
    fpos = terms.index(fvar)
    ci = comp.idx[fvar]
    crows = comp.rows
    scanned = None
    if fpos == 2 and not (ac is not None and source.is_ref(ac)) and _may_mix(set(map(type, map(itemgetter(ci),
                                                                                          crows)))):
        scanned = source.match(ec, ac, vc, txc, n)
        if mixed_bools(map(itemgetter(ci), crows), map(itemgetter(scanned[1][2]), scanned[0])):
            prel = _scan_rel(Env({}, None, None), None, source, consts, terms, out_vars, n)  # type: ignore[arg-type]
            return hash_join(comp, prel)
    table: dict = dict(zip(map(itemgetter(ci), crows), crows))
    unique = len(table) == len(crows)
    if not unique:
        table = buckets(map(itemgetter(ci), crows), crows)
    if scanned is None:
        rows, layout = source.match_in(fpos, set(table), ec, ac, vc, txc, n)
        fp = layout[fpos]
    else:
        layout = scanned[1]
        fp = layout[fpos]
        rows = [k for k in scanned[0] if k[fp] in table]
    new_vars = tuple(v for v in out_vars if v is not fvar)
    new_pos = [terms.index(v) for v in new_vars]
    if not new_pos:
        hit = set(map(itemgetter(fp), rows))
        out = [table[k] for k in hit] if unique else [r for r in crows if r[ci] in hit]
        return Rel(comp.vars, out, comp.raw)
    if len(new_pos) == 1 and layout[new_pos[0]] is not None:
        np = layout[new_pos[0]]
        if unique:
            out = [table[k[fp]] + (k[np],) for k in rows]
        else:
            out = [r + x for k in rows for x in ((k[np],),) for r in table[k[fp]]]
    else:
        ext = _extractor(layout, new_pos)
        if unique:
            out = [table[k[fp]] + ext(k) for k in rows]
        else:
            out = [r + x for k in rows for x in (ext(k),) for r in table[k[fp]]]
    return Rel(comp.vars + new_vars, out, comp.raw)


def _scan_rel(env: Env, pat: Pattern, source: Any, consts: tuple, terms: tuple, out_vars: tuple, n: int,
              comp: Rel | None = None, fvar: Var | None = None, comparisons: list | None = None) -> Rel:
    """The pattern's rows as a relation over its variables (only those whose ``fvar`` value occurs in
    ``comp``, when given, and that pass ``comparisons``)."""
    key = None
    if env.caching:
        key = (id(pat), id(source))
        hit = env.scan_cache.get(key)
        if hit is not None:
            return hit
    ec, ac, vc, txc, addc = consts
    if fvar is not None and comp is not None:
        ci = comp.idx[fvar]
        rows, layout = source.match_in(terms.index(fvar), {r[ci] for r in comp.rows}, ec, ac, vc, txc, n)
    else:
        rows, layout = source.match(ec, ac, vc, txc, n)
    rows = _filters(rows, layout, terms, addc)
    for var, k, name, flip in comparisons or ():
        rows = _compare_rows(rows, layout[terms.index(var)], k, name, flip)
    pos = [terms.index(v) for v in out_vars]
    if out_vars:
        lpos = [layout[p] for p in pos]
        out = columns(rows, lpos) if None not in lpos else list(map(_extractor(layout, pos), rows))
        dedup = any(t is BLANK for t in terms[:3]) or (getattr(source, "history", False)
                                                        and type(terms[3]) is not Var)
        if dedup or isinstance(source, CollSource):
            out = list(set(out))
    else:
        out = [()] if rows else []
    rel = Rel(out_vars, out)
    if key is not None:
        env.scan_cache[key] = rel
    return rel


def _cached_hash_join(env: Env, comp: Rel, prel: Rel, pat: Pattern, src: str) -> Rel:
    """Join ``comp`` with a (cached) scanned pattern through a (cached) hash index of the pattern."""
    common = tuple(v for v in prel.vars if v in comp.idx)
    new = [i for i, v in enumerate(prel.vars) if v not in comp.idx]
    key = (id(prel), common)
    table = env.hash_cache.get(key)
    if table is None:
        table = buckets(columns(prel.rows, [prel.idx[v] for v in common]), columns(prel.rows, new))
        env.hash_cache[key] = table
    keys = columns(comp.rows, [comp.idx[v] for v in common])
    if new:
        out = probe(comp.rows, keys, table)
    else:
        out = [r for r, k in zip(comp.rows, keys) if k in table]
    return Rel(comp.vars + tuple(prel.vars[i] for i in new), out, comp.raw)


def _lookup_join(env: Env, comp: Rel, pat: Pattern, source: DbSource, consts: tuple, terms: tuple,
                 out_vars: tuple, bvars: list, first_pos: dict, n: int, src: str) -> Rel:
    """Index lookups per distinct binding of the pattern's bound variables."""
    ec, ac, vc, txc, addc = consts
    bpos = [first_pos[v] for v in bvars]
    new_vars = [v for v in out_vars if v not in comp.idx]
    new_pos = [first_pos[v] for v in new_vars]
    if (source.fast and bpos == [0] and bvars[0] not in comp.raw and ac is not None and txc is None and addc is None
            and len(out_vars) == sum(1 for t in terms if type(t) is Var) and new_pos in ([], [2])):
        return _lookup_e_fast(env, comp, source, bvars[0], ac, vc, bool(new_pos), pat, src)
    key_get = tuple_getter([comp.idx[v] for v in bvars])
    cache_key = key_get
    if any(mixed_bools(map(itemgetter(comp.idx[v]), comp.rows)) for v in bvars):
        cache_key = lambda r: tuple((x, type(x) is bool) for x in key_get(r))
    cache = None
    if env.caching:  # keyed by which positions are bound: the same values bound elsewhere ask another question
        cache = env.lookup_cache.setdefault((id(pat), src, tuple(bpos), tuple(new_pos)), {})
    else:
        cache = {}
    out: list = []
    append = out.append
    match = source.match
    ext = None
    for r in comp.rows:
        ck = cache_key(r)
        ms = cache.get(ck)
        if ms is None:
            key = key_get(r)
            c = [ec, ac, vc, txc]
            ok = True
            for p, x in zip(bpos, key):
                if p == 4:
                    continue
                if p == 1 and isinstance(x, Keyword):
                    x = x.name
                elif type(x) is not int and (p == 0 or p == 3 or (p == 2 and c[1] is not None
                                                                  and source.is_ref(c[1]))):
                    x = source.resolve_e(x)
                    if x is None:
                        ok = False
                        break
                if c[p] is not None and c[p] != x:
                    ok = False
                c[p] = x
            if ok:
                rows, layout = match(c[0], c[1], c[2], c[3], n)
                rows = _filters(rows, layout, terms, addc)
                if 4 in bpos:
                    ap = layout[4]
                    want = key[bpos.index(4)]
                    rows = [k for k in rows if (True if ap is None else k[ap]) == want]
                if ext is None:
                    ext = _extractor(layout, new_pos)
                ms = list(map(ext, rows)) if new_pos else ([()] if rows else [])
            else:
                ms = []
            cache[ck] = ms
        for m in ms:
            append(r + m)
    return Rel(comp.vars + tuple(new_vars), out, comp.raw)


def _lookup_e_fast(env: Env, comp: Rel, source: DbSource, evar: Var, a: str, vc: Any, want_v: bool,
                   pat: Pattern, src: str) -> Rel:
    """``[?e a v?]`` with ``?e`` bound, on a current database: one EAVT slice per row."""
    ei = comp.idx[evar]
    prefix = source.db.eavt.prefix_list
    rows = comp.rows
    if want_v:
        out: list = []
        append = out.append
        if env.caching:
            cache = env.lookup_cache.setdefault((id(pat), src, (0,), (2,)), {})
            for r in rows:
                e = r[ei]
                vs = cache.get(e)
                if vs is None:
                    vs = cache[e] = [(k[3],) for k in prefix((e, a))]
                for x in vs:
                    append(r + x)
        else:
            for r in rows:
                for k in prefix((r[ei], a)):
                    append((*r, k[3]))
        return Rel((*comp.vars, pat.terms[2]), out, comp.raw)
    if vc is None:
        out = [r for r in rows if prefix((r[ei], a))]
    else:
        p = (a, value_rank(vc), index_value(vc))
        out = [r for r in rows if prefix((r[ei], *p))]
    return Rel(comp.vars, out, comp.raw)


# ------------------------------------------------------------------------------------------------
# Functions and predicates


def _fn_error(c: Any, err: Exception) -> QueryError:
    return QueryError("query/fn-error", f"Error in {show(c.form)}: {type(err).__name__}: {err}",
                      {"form": c.form})


def resolve_fn(env: Env, rels: list[Rel], c: Any) -> tuple[Callable, str]:
    """The function a predicate or function expression calls, and how to call it: ``"plain"``,
    ``"db"`` (a source first) or ``"rand"`` (a ``random.Random`` first)."""
    fn = c.fn
    if type(fn) is Var:
        for r in rels:
            if fn in r.idx:
                if not r.rows:
                    return (lambda *a: None), "plain"
                f = r.rows[0][r.idx[fn]]
                if not callable(f):
                    raise QueryError("query/unknown-function", f"{fn.name} is bound to {f!r}, not a function, in "
                                                               f"{show(c.form)}", {"form": c.form})
                return f, "plain"
        raise insufficient(c, {fn})
    if type(fn) is Symbol:
        name = fn.name
        f = BUILTINS.get(name)
        if f is not None:
            return f, "plain"
        f = DB_FUNCTIONS.get(name)
        if f is not None:
            return f, "db"
        f = RANDOM_FUNCTIONS.get(name)
        if f is not None:
            if env.rng is None:
                raise no_random(name, c.form)
            return f, "rand"
        kind = "predicate" if isinstance(c, Pred) else "function"
        raise QueryError("query/unknown-function", f"Unknown {kind} '{name} in {show(c.form)}",
                         {"form": c.form, "var": name})
    return fn, "plain"


def no_random(name: str, form: Any) -> QueryError:
    """The error for a random function without a source of randomness."""
    return QueryError(
        "query/random",
        f"{name} needs randomness and the core has none of its own: pass q(..., random=random.Random(seed)) "
        f"or a random.Random as an input ({show(form)})",
        {"form": form},
    )


def _arg_spec(env: Env, comp: Rel | None, c: Any, kind: str) -> list:
    """Per argument: (True, column) for a variable, (False, value) for a constant or source."""
    spec = []
    for i, a in enumerate(c.args):
        if type(a) is Var:
            spec.append((True, comp.idx[a]))  # type: ignore[union-attr]
        elif type(a) is Src:
            s = env.source(a.name, c.form)
            if kind == "db" and i == 0:
                spec.append((False, s))
            else:
                spec.append((False, s.db if isinstance(s, DbSource) else s.rows))
        elif a is BLANK:
            raise QueryError("query/syntax", f"_ can't be an argument in {show(c.form)}", {"form": c.form})
        else:
            spec.append((False, a))
    if kind == "db" and spec and spec[0][0]:
        col = spec[0][1]
        spec[0] = (None, col)  # a variable holding a database: wrapped per call
    return spec


def _caller(env: Env, f: Callable, kind: str, spec: list) -> Callable[[tuple], Any]:
    if kind == "rand":
        rng = env.rng
        g = f
        f = lambda *a: g(rng, *a)
    if all(not isv for isv, _ in spec):
        vals = [x for _, x in spec]
        return lambda r: f(*vals)
    if len(spec) == 1:
        i = spec[0][1]
        if spec[0][0] is None:
            return lambda r: f(make_source(r[i]) if isinstance(r[i], DB) else r[i])
        return lambda r: f(r[i])
    if len(spec) == 2 and spec[0][0] and spec[1][0]:
        i, j = spec[0][1], spec[1][1]
        return lambda r: f(r[i], r[j])
    if len(spec) == 2 and spec[0][0] and spec[1][0] is False:
        i, y = spec[0][1], spec[1][1]
        return lambda r: f(r[i], y)

    def call(r: tuple) -> Any:
        args = []
        for isv, x in spec:
            if isv is None:
                v = r[x]
                args.append(make_source(v) if isinstance(v, DB) else v)
            else:
                args.append(r[x] if isv else x)
        return f(*args)

    return call


_NUMS = (int, float)
_CMP = {
    "<": lambda c: c < 0,
    ">": lambda c: c > 0,
    "<=": lambda c: c <= 0,
    ">=": lambda c: c >= 0,
}
"""Comparison -> its test on a ``compare_values`` result (for values of different kinds)."""


def _comparison(c: Pred) -> tuple[Var, Any, str, bool] | None:
    """``(variable, constant, operator, flipped)`` of a two-argument comparison (``<``, ``>``, ``<=``,
    ``>=``) between a variable and a numeric or string constant; None for any other predicate."""
    if type(c.fn) is not Symbol or c.fn.name not in _CMP or len(c.args) != 2:
        return None
    a, b = c.args
    if type(a) is Var and type(b) is not Var and type(b) in (int, float, str):
        return a, b, c.fn.name, False
    if type(b) is Var and type(a) is not Var and type(a) in (int, float, str):
        return b, a, c.fn.name, True
    return None


_MIRROR = {"<": ">", ">": "<", "<=": ">=", ">=": "<="}


def _compare_rows(rows: list, i: int, k: Any, name: str, flip: bool) -> list:
    """Rows whose value at ``i`` passes the comparison ``name`` with the constant ``k`` (``k`` on the
    left when ``flip``); values of ``k``'s kind compare inline, others in the total order of values."""
    if flip:
        name = _MIRROR[name]
    test = _CMP[name]
    kinds = _NUMS if type(k) in _NUMS else (str,)
    if name == ">":
        return [r for r in rows if (x > k if type(x := r[i]) in kinds else test(compare_values(x, k)))]
    if name == "<":
        return [r for r in rows if (x < k if type(x := r[i]) in kinds else test(compare_values(x, k)))]
    if name == ">=":
        return [r for r in rows if (x >= k if type(x := r[i]) in kinds else test(compare_values(x, k)))]
    return [r for r in rows if (x <= k if type(x := r[i]) in kinds else test(compare_values(x, k)))]


def _fast_compare(c: Pred, comp: Rel) -> list | None:
    """Rows of ``comp`` passing a comparison with a constant (``_comparison``); None when ``c`` is
    not one."""
    cmp = _comparison(c)
    if cmp is None:
        return None
    var, k, name, flip = cmp
    return _compare_rows(comp.rows, comp.idx[var], k, name, flip)


def _fold_scalars(rels: list[Rel], c: Any) -> Any:
    """``c`` with arguments bound by one-row relations (scalar inputs) replaced by their values,
    so a predicate against an input doesn't need a product with it."""
    argvars = [a for a in c.args if type(a) is Var]
    if len(argvars) < 2:
        return c
    folded = {}
    for r in rels:
        if len(r.rows) == 1 and len(r.vars) == 1 and r.vars[0] in argvars and not callable(r.rows[0][0]):
            folded[r.vars[0]] = r.rows[0][0]
    if not folded or len(folded) == len(set(argvars)):
        return c
    return Pred(c.fn, tuple(folded.get(a, a) if type(a) is Var else a for a in c.args), c.form)


def eval_pred(env: Env, rels: list[Rel], c: Pred, src: str) -> list[Rel]:
    c = _fold_scalars(rels, c)
    argvars = [a for a in c.args if type(a) is Var]
    comp, rest = merge(rels, argvars)
    if comp is None:
        comp = Rel((), [()])
    rows = None
    try:
        rows = _fast_compare(c, comp)
        if rows is None:
            f, kind = resolve_fn(env, rels, c)
            call = _caller(env, f, kind, _arg_spec(env, comp, c, kind))
            rows = [r for r in comp.rows if truthy(call(r))]
    except DatsyncError:
        raise
    except Exception as err:
        raise _fn_error(c, err) from err
    new = Rel(comp.vars, rows, comp.raw)
    return [*rest, new] if comp.vars or not rows else rest


def eval_fn(env: Env, rels: list[Rel], c: FnExpr, src: str, bound: set) -> list[Rel]:
    argvars = [a for a in c.args if type(a) is Var]
    outs_bound = [v for v in c.out if v in bound]
    comp, rest = merge(rels, argvars + outs_bound)
    if comp is None:
        comp = Rel((), [()])
    f, kind = resolve_fn(env, rels, c)
    call = _caller(env, f, kind, _arg_spec(env, comp, c, kind))
    bvars = c.binding.vars()
    check = [(j, comp.idx[v]) for j, v in enumerate(bvars) if v in comp.idx]
    keep = [j for j, v in enumerate(bvars) if v not in comp.idx]
    # first occurrence only, for repeated variables in the binding
    firsts: dict = {}
    dup = []
    for j, v in enumerate(bvars):
        if v in firsts:
            dup.append((firsts[v], j))
        else:
            firsts[v] = j
    keep = [j for j in keep if firsts[bvars[j]] == j]
    kg = tuple_getter(keep)
    binding = c.binding
    out: list = []
    append = out.append
    try:
        for r in comp.rows:
            val = call(r)
            if val is None:
                continue
            for b in bind_values(binding, val, c.form):
                if dup and any(not _same(b[x], b[y]) for x, y in dup):
                    continue
                if check and any(not _same(b[j], r[i]) for j, i in check):
                    continue
                append(r + kg(b))
    except DatsyncError:
        raise
    except Exception as err:
        raise _fn_error(c, err) from err
    new_vars = tuple(bvars[j] for j in keep)
    return [*rest, Rel(comp.vars + new_vars, out, comp.raw | frozenset(new_vars))]


def _same(a: Any, b: Any) -> bool:
    return a == b and (type(a) is bool) == (type(b) is bool)


def bind_values(binding: Any, value: Any, form: Any) -> list[tuple]:
    """Rows (tuples over ``binding.vars()``) that ``value`` binds through ``binding``; bound values are
    frozen (``freeze``), so maps and lists from inputs and functions can be joined and returned."""
    t = type(binding)
    if t is BindScalar:
        return [(freeze(value),)]
    if t is BindIgnore:
        return [()]
    if t is BindColl:
        if value is None or isinstance(value, str | bytes | dict) or not hasattr(value, "__iter__"):
            raise QueryError("query/binding", f"Cannot bind value {value!r} to collection {binding!r}",
                             {"value": value, "form": form})
        inner = binding.inner
        if type(inner) is BindScalar:
            return [(freeze(x),) for x in value]
        out: list = []
        for x in value:
            out.extend(bind_values(inner, x, form))
        return out
    if t is BindTuple:
        if value is None or isinstance(value, str | bytes | dict) or not hasattr(value, "__iter__"):
            raise QueryError("query/binding", f"Cannot bind value {value!r} to tuple {binding!r}",
                             {"value": value, "form": form})
        items = binding.items
        vals = list(value)
        if len(vals) < len(items):
            raise QueryError("query/binding",
                             f"Not enough elements in a collection {value!r} to bind tuple {binding!r}",
                             {"value": value, "form": form})
        rows: list = [()]
        for b, x in zip(items, vals):
            sub = bind_values(b, x, form)
            rows = [r + s for r in rows for s in sub]
        return rows
    raise QueryError("query/binding", f"Unknown binding {binding!r}", {"form": form})


# ------------------------------------------------------------------------------------------------
# not, or


def _seed(comp: Rel | None, vars: tuple) -> Rel:
    if comp is None or not vars:
        return Rel((), [()] if comp is None or comp.rows else [])
    g = tuple_getter([comp.idx[v] for v in vars])
    raw = comp.raw & frozenset(vars)
    return Rel(vars, list(set(map(g, comp.rows))), raw)


def eval_not(env: Env, rels: list[Rel], c: Not, src: str, bound: set) -> list[Rel]:
    if c.join is not None:
        missing = c.vars - bound
        if missing:
            raise insufficient(c, missing)
        join = c.join
    else:
        join = tuple(sorted(c.vars & bound, key=lambda v: v.name))
        if not join:
            names = " ".join(sorted(v.name for v in c.vars))
            raise QueryError(INSUFFICIENT, f"Insufficient bindings: none of #{{{names}}} is bound in {show(c.form)}",
                             {"form": c.form})
    comp, rest = merge(rels, join)
    assert comp is not None
    inner_src = c.src.name if c.src is not None else src
    inner = solve(env, [_seed(comp, join)], c.clauses, inner_src)
    gone = project(inner, join)
    if gone is None:
        gone = set()
    if not gone:
        return [*rest, comp]
    g = tuple_getter([comp.idx[v] for v in join])
    return [*rest, Rel(comp.vars, [r for r in comp.rows if g(r) not in gone], comp.raw)]


def eval_or(env: Env, rels: list[Rel], c: Or, src: str, bound: set) -> list[Rel]:
    join = c.join_vars()
    missing = set(c.req) - bound
    if missing:
        raise insufficient(c, missing)
    b = tuple(v for v in join if v in bound)
    comp, rest = merge(rels, b)
    seed = _seed(comp, b)
    inner_src = c.src.name if c.src is not None else src
    rows: set = set()
    for branch in c.branches:
        inner = solve(env, [seed], branch, inner_src)
        got = project(inner, join)
        if got is None:
            free = [sorted(v.name for v in (set(join) - bound_vars(inner)))]
            raise QueryError("query/where", f"All clauses in 'or' must use same set of free vars, had {free} "
                                            f"unbound in {show(c.form)}", {"form": c.form})
        rows |= got
    res = Rel(join, list(rows), seed.raw)
    if comp is None:
        return [*rest, res]
    return [*rest, hash_join(comp, res)]


def add_input(rels: list[Rel], rel: Rel) -> list[Rel]:
    """``rels`` with an input relation joined in."""
    if not rel.vars:
        if rel.rows:
            return rels
        return [*rels, rel]
    return add_rel(rels, rel)
