"""Per-delta maintenance: after a transaction, what enters and leaves every session's visible set,
and the datoms each replica receives — without re-running every rule for every session.

``route(policy, db_before, db_after, tx, views)`` returns every session's new ``View`` and the datoms
``(e, a, v, added)`` to send it under the transaction's ``t``: the transaction's datoms it may see,
assertions of every visible datom of an entity that became visible, retractions of what it held of an
entity that stopped being visible (and the same for attributes with their own rule).

How the work stays proportional to the change:

1. Attributes: a transaction none of whose datoms touches an attribute the maintained rules (read,
   attribute and scope rules, and what they call) mention, nor a followed ref, changes no view: each
   session gets the datoms of the entities it sees, with one set lookup per datom.
2. Semi-naive deltas: otherwise ``rule_deltas`` derives, rule by rule, the argument tuples whose
   truth the transaction may have changed. For each branch and each clause that can match a changed
   datom (a pattern whose attribute and constants fit it, or a ``not``/``or`` holding one), the
   datom binds that clause's variables and the *rest* of the branch runs as a query on the database
   before and after; a rule whose candidates grew propagates them to the clauses that call it, to a
   fixpoint (recursive rules included). This over-approximates the rules' delta, never misses a
   change (a derivation that appears or disappears uses a changed datom, or a changed fact of a
   called rule), and costs work in proportion to what the change reaches.
3. Re-derivation: the candidates of the read, attribute and scope rules carry the principal's
   arguments, so only the sessions of those principals re-check them (one query per session over the
   candidate entities), and a session's scope closure is extended from what entered or, when
   something left it, walked again from its roots (cost: the session's visible set, not the database).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from ..db import DB, datoms
from ..errors import QueryError
from ..query import parse_query, q
from ..query.parser import BLANK, And, Not, Or, Pattern, RuleCall, Var
from ..values import Keyword, Symbol
from .spec import ANY_ATTR, Policy, parse_policy
from .visibility import (
    ALWAYS,
    RECHECK_MAX,
    View,
    check_scopes,
    closure,
    datom_visible,
    derive,
    follow_attrs,
    holds,
    neighbours,
    scope_roots,
    visible_of,
)

TxDatom = tuple[int, str, Any, bool]
"""``(e, a, v, added)``, as in a ``Delta``."""


class Unbounded(Exception):
    """A branch's rest cannot run from a changed datom alone: every session is re-derived."""


# ------------------------------------------------------------------------------------------------
# Rule deltas


def _const_fits(c: Any, x: Any) -> bool:
    if type(c) is type(x):
        return c == x
    # an ident or a lookup ref naming an entity: cannot tell here, so assume it may be that entity
    return type(c) in (Keyword, tuple, list, str) and type(x) is int


def _match(p: Pattern, d: TxDatom) -> dict | None:
    if p.src is not None and p.src.name != "$":
        return None
    b: dict = {}
    for i, t in enumerate(p.terms[:3]):
        x = d[i]
        if type(t) is Var:
            if t in b and b[t] != x:
                return None
            b[t] = x
        elif t is BLANK:
            continue
        elif i == 1:
            if t != x:
                return None
        elif not _const_fits(t, x):
            return None
    return b


def _bindings(c: Any, changed: list[TxDatom], deltas: Mapping[str, set],
              certain: Mapping[str, set] | None = None) -> list[tuple[dict, bool]]:
    """Bindings of ``c``'s variables under which ``c`` may have changed truth, each with whether ``c``
    certainly holds under it after the transaction (an asserted datom matched, or a callee's tuple
    known to hold after; ``certain`` None: inside ``not``/``or``, where nothing is certain)."""
    t = type(c)
    if t is Pattern:
        return [(b, certain is not None and d[3]) for d in changed if (b := _match(c, d)) is not None]
    if t is RuleCall:
        rows = deltas.get(c.name)
        sure = certain.get(c.name, ()) if certain is not None else ()
        out = []
        for row in rows or ():
            b: dict = {}
            for arg, x in zip(c.args, row):
                if type(arg) is Var:
                    if b.get(arg, x) != x:
                        break
                    b[arg] = x
                elif arg is not BLANK and not _const_fits(arg, x):
                    break
            else:
                out.append((b, row in sure))
        return out
    if t is Not or t is And or t is Or:
        inner = c.clauses if t is not Or else [x for br in c.branches for x in br]
        keep = set(c.join_vars()) if t is Or else c.vars
        return [({v: x for v, x in b.items() if v in keep}, False)
                for ic in inner for b, _ in _bindings(ic, changed, deltas)]
    return []


def _touches(c: Any, attrs: frozenset[str], rules: frozenset[str]) -> bool:
    t = type(c)
    if t is Pattern:
        a = c.terms[1] if len(c.terms) > 1 else None
        return type(a) is not str or a in attrs
    if t is RuleCall:
        return c.name in rules
    if t is Not or t is And:
        return any(_touches(x, attrs, rules) for x in c.clauses)
    if t is Or:
        return any(_touches(x, attrs, rules) for br in c.branches for x in br)
    return False


def _rest_query(policy: Policy, rule: str, bi: int, ci: int, bound: tuple[Var, ...]) -> Any:
    key = ("rest", rule, bi, ci, bound)
    hit = policy.memo.get(key)
    if hit is None:
        branch = policy.rules[rule][bi]
        rest = [c.form for i, c in enumerate(branch.clauses) if i != ci]
        find = list(dict.fromkeys((*branch.params, *bound)))
        form = {"find": [Symbol(v.name) for v in find],
                "in": [Symbol("$"), Symbol("%"), [[Symbol(v.name) for v in bound]]],
                "where": rest}
        try:
            hit = (parse_query(form) if rest else None, tuple(find))
        except QueryError as err:
            raise Unbounded(str(err)) from err
        policy.memo[key] = hit
    return hit


def _branch_delta(policy: Policy, rule: str, bi: int, ci: int, binds: list[tuple[dict, bool]],
                  dbs: tuple[DB, ...]) -> tuple[set, set]:
    """The head tuples the changed clause ``ci`` may flip under ``binds``, and those of them that
    certainly hold after (the rest of the branch solved on ``dbs[-1]`` from a certain binding)."""
    branch = policy.rules[rule][bi]
    groups: dict[tuple, set] = defaultdict(set)
    sure: dict[tuple, set] = defaultdict(set)
    for b, is_sure in binds:
        vs = tuple(sorted(b, key=lambda v: v.name))
        row = tuple(b[v] for v in vs)
        groups[vs].add(row)
        if is_sure:
            sure[vs].add(row)
    out: set = set()
    certain: set = set()
    for vs, rows in groups.items():
        query, find = _rest_query(policy, rule, bi, ci, vs)
        index = {v: i for i, v in enumerate(find)}
        head = [index[p] for p in branch.params]
        bound = [index[v] for v in vs]
        if query is None:  # the clause was the whole body
            if not set(branch.params) <= set(vs):
                raise Unbounded(f"rule {rule} branch {bi + 1}")
            pos = [vs.index(p) for p in branch.params]
            out |= {tuple(r[i] for i in pos) for r in rows}
            certain |= {tuple(r[i] for i in pos) for r in sure[vs]}
            continue
        for db in dbs:
            try:
                got = q(query, db, policy.rules, list(rows))
            except QueryError as err:
                raise Unbounded(str(err)) from err
            out |= {tuple(r[i] for i in head) for r in got}
            if db is dbs[-1] and sure[vs]:
                certain |= {tuple(r[i] for i in head) for r in got if tuple(r[i] for i in bound) in sure[vs]}
    return out, certain


def _rule_delta(policy: Policy, rule: str, changed: list[TxDatom], deltas: Mapping[str, set],
                dbs: tuple[DB, ...], attrs: frozenset[str], certain: Mapping[str, set]) -> tuple[set, set]:
    rules = frozenset(deltas)
    out: set = set()
    sure: set = set()
    for bi, branch in enumerate(policy.rules[rule]):
        for ci, c in enumerate(branch.clauses):
            if not _touches(c, attrs, rules):
                continue
            binds = _bindings(c, changed, deltas, certain)
            if binds:
                o, s_ = _branch_delta(policy, rule, bi, ci, binds, dbs)
                out |= o
                sure |= s_
    return out, sure


def rule_deltas(policy: Any, db_before: DB, db_after: DB, changed: Iterable[TxDatom]) -> dict[str, set]:
    """For every rule the sessions' views depend on, the argument tuples whose truth ``changed``
    may have flipped between ``db_before`` and ``db_after`` (a superset of those that did). Raises
    ``Unbounded`` when a rule's shape prevents a bounded answer (the caller re-derives everything)."""
    return _deltas(parse_policy(policy), db_before, db_after, list(changed))[0]


def _deltas(policy: Policy, db_before: DB, db_after: DB, changed: list[TxDatom]) -> tuple[dict[str, set],
                                                                                          dict[str, set]]:
    """``rule_deltas`` and, per rule, the candidate tuples known to hold in ``db_after`` (derived from
    asserted datoms through positive clauses): those need no re-check."""
    attrs = frozenset(d[1] for d in changed)
    dbs = (db_before, db_after)
    wanted = policy.reachable(policy.maintained)
    total: dict[str, set] = defaultdict(set)
    certain: dict[str, set] = defaultdict(set)
    frontier: dict[str, set] = {}
    for r in sorted(wanted):
        m = policy.mentions.get(r, frozenset())
        if ANY_ATTR in m or m & attrs:
            new, sure = _rule_delta(policy, r, changed, {}, dbs, attrs, certain)
            certain[r] |= sure
            if new:
                total[r] |= new
                frontier[r] = new
    while frontier:
        grown: dict[str, set] = {}
        for r in sorted(wanted):
            if policy.calls.get(r, frozenset()) & frontier.keys():
                new, sure = _rule_delta(policy, r, [], frontier, dbs, frozenset(), certain)
                certain[r] |= sure
                new -= total[r]
                if new:
                    total[r] |= new
                    grown[r] = new
        frontier = grown
    return dict(total), dict(certain)


# ------------------------------------------------------------------------------------------------
# Views after a transaction


def _candidates(rows: set, np: int, extra: int = 0) -> dict[tuple, set]:
    """Candidate tuples ``(p.., x.., e)`` grouped by ``(p.., x..)``."""
    out: dict[tuple, set] = defaultdict(set)
    for r in rows:
        out[r[:np + extra]].add(r[-1])
    return out


def _inverse(follow: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(a.replace("/_", "/") if "/_" in a else a.replace("/", "/_", 1) for a in follow)


def _needs(policy: Policy, view: View, groups: dict[str, dict[tuple, set]]) -> list[tuple[str, tuple, tuple, set]]:
    """The re-checks a session's view needs: ``(rule, args, extra, candidates)``."""
    args = view.args
    out = []
    if policy.read and (c := groups.get(policy.read, {}).get(args)):
        out.append((policy.read, args, (), c))
    for r in policy.attributes.values():
        if c := groups.get(r, {}).get(args):
            out.append((r, args, (), c))
    if view.scopes:
        roots: set = set()
        for name, sargs in view.scopes:
            roots |= groups.get(policy.scopes[name].rule, {}).get((*args, *sargs), set())
        if roots:  # a root that stopped being one for a scope may still be one for another
            out += [(policy.scopes[name].rule, args, sargs, roots) for name, sargs in view.scopes]
    return out


def _held(policy: Policy, db: DB, needs: Iterable[tuple[str, tuple, tuple, set]],
          certain: Mapping[str, set]) -> dict[str, set]:
    """For each rule, which of the needed candidate tuples ``(args.. extra.. e)`` hold in ``db``: those
    known to hold, and one query per rule for the others of every session at once (large candidate
    sets are left to ``_recheck``, which derives them per principal)."""
    rows: dict[str, set] = defaultdict(set)
    for r, args, extra, cands in needs:
        if len(cands) <= RECHECK_MAX:
            rows[r] |= {(*args, *extra, e) for e in cands}
    out = {}
    for r, rs in rows.items():
        sure = rs & certain.get(r, set())
        out[r] = sure | holds(policy, db, r, rs - sure)
    return out


def _recheck(policy: Policy, db: DB, rule: str, args: tuple, extra: tuple, cands: set, held: dict[str, set]) -> set:
    """The candidates ``cands`` for which ``(rule args.. extra.. e)`` holds in ``db``."""
    if len(cands) > RECHECK_MAX:
        return derive(policy, db, rule, args, extra) & cands
    key = (*args, *extra)
    h = held.get(rule, set())
    return {e for e in cands if (*key, e) in h}


def _update(policy: Policy, db_after: DB, view: View, deltas: dict[str, set] | None,
            groups: dict[str, dict[tuple, set]], changed: list[TxDatom], held: dict[str, set]) -> View:
    args = view.args
    readable, attrs, roots = view.readable, dict(view.attrs), view.roots
    if policy.read:
        if deltas is None:
            readable = derive(policy, db_after, policy.read, args)
        else:
            cands = groups.get(policy.read, {}).get(args)
            if cands:
                readable = (readable - cands) | _recheck(policy, db_after, policy.read, args, (), cands, held)
    for a, r in policy.attributes.items():
        if deltas is None:
            attrs[a] = derive(policy, db_after, r, args)
        else:
            cands = groups.get(r, {}).get(args)
            if cands:
                attrs[a] = (attrs[a] - cands) | _recheck(policy, db_after, r, args, (), cands, held)
    if view.scopes:
        if deltas is None:
            roots = scope_roots(policy, db_after, args, view.scopes)
        else:
            cands = set()
            for name, sargs in view.scopes:
                cands |= groups.get(policy.scopes[name].rule, {}).get((*args, *sargs), set())
            if cands:
                keep = set(roots - cands)
                for name, sargs in view.scopes:
                    keep |= _recheck(policy, db_after, policy.scopes[name].rule, args, sargs, cands, held)
                roots = frozenset(keep)
    new = View(args, view.scopes, readable, attrs, roots, view.visible)
    if view.scopes is None:
        return View(args, None, readable, attrs, roots, readable)
    visible = view.visible
    assert visible is not None
    follow = follow_attrs(policy, view.scopes)
    base = {a.replace("/_", "/") for a in follow}
    lost = bool(roots is not view.roots and view.roots - roots)
    if not lost and readable is not view.readable and readable is not None and view.readable is not None:
        lost = not visible <= readable
    seeds: set[int] = set()
    if not lost:
        for e, a, v, added in changed:
            if a not in base:
                continue
            for f in follow:
                if f == a:
                    src, dst = e, v
                elif f.replace("/_", "/") == a and "/_" in f:
                    src, dst = v, e
                else:
                    continue
                if src in visible:
                    if not added:
                        lost = True
                    else:
                        seeds.add(dst)
    if lost:
        return View(args, view.scopes, readable, attrs, roots, visible_of(db_after, policy, new))
    seeds |= roots - view.roots
    if readable is not view.readable and readable is not None:
        gained = readable - view.readable if view.readable is not None else readable
        inv = _inverse(follow)
        for x in gained:
            if x in roots or any(n in visible for n in neighbours(db_after, x, inv)):
                seeds.add(x)
    seeds -= visible
    if seeds:
        visible = closure(db_after, seeds, follow, readable, visible)
    return View(args, view.scopes, readable, attrs, roots, visible)


def diff(policy: Policy, db_before: DB, db_after: DB, old: View, new: View, tx: Iterable[TxDatom]) -> list[TxDatom]:
    """The datoms a session of ``old`` receives for a transaction ``tx`` that leaves it at ``new``."""
    out: list[TxDatom] = []
    for d in tx:
        e, a = d[0], d[1]
        if a in ALWAYS or (datom_visible(policy, old, e, a) and datom_visible(policy, new, e, a)):
            out.append(d)
    ov, nv = old.visible, new.visible
    if ov is nv and old.attrs == new.attrs:
        return out
    for e in sorted(ov - nv) if ov is not None and nv is not None else ():
        out.extend((e, d.a, d.v, False) for d in datoms(db_before, "eavt", e)
                   if d.a not in ALWAYS and datom_visible(policy, old, e, d.a))
    for e in sorted(nv - ov) if ov is not None and nv is not None else ():
        out.extend((e, d.a, d.v, True) for d in datoms(db_after, "eavt", e)
                   if d.a not in ALWAYS and datom_visible(policy, new, e, d.a))
    for a in policy.attributes:
        if a in policy.hidden:
            continue
        for e in sorted(old.attrs[a] ^ new.attrs[a]):
            if not (old.sees(e) and new.sees(e)):
                continue
            if e in new.attrs[a]:
                out.extend((e, a, d.v, True) for d in datoms(db_after, "eavt", e, a))
            else:
                out.extend((e, a, d.v, False) for d in datoms(db_before, "eavt", e, a))
    return out


def route(policy: Any, db_before: DB, db_after: DB, tx: Iterable[TxDatom],
          views: Mapping[Any, View]) -> tuple[dict[Any, View], dict[Any, list[TxDatom]]]:
    """Every session's view after the transaction ``tx`` (``db_before`` -> ``db_after``) and the
    datoms to send it (see the module docstring)."""
    policy = parse_policy(policy)
    tx = list(tx)
    watched = policy.watched()
    changed = tx if ANY_ATTR in watched else [d for d in tx if d[1] in watched]
    if not changed:
        return dict(views), {sid: _unchanged(policy, v, tx) for sid, v in views.items()}
    deltas: dict[str, set] | None
    certain: dict[str, set] = {}
    try:
        deltas, certain = _deltas(policy, db_before, db_after, changed)
    except Unbounded:
        deltas = None
    groups: dict[str, dict[tuple, set]] = {}
    if deltas is not None:
        np = len(policy.principal)
        for r, rows in deltas.items():
            extra = max((len(s.params) for s in policy.scopes.values() if s.rule == r), default=0)
            groups[r] = _candidates(rows, np, extra)
    touched = {args for g in groups.values() for args in g} if deltas is not None else None
    follows = _followed_sources(changed)
    affected = {sid for sid, v in views.items() if touched is None or _may_change(policy, v, touched, follows)}
    held = {} if deltas is None else _held(policy, db_after, (n for sid in affected for n in _needs(
        policy, views[sid], groups)), certain)
    new_views, out = {}, {}
    for sid, v in views.items():
        if sid not in affected:
            new_views[sid] = v
            out[sid] = _unchanged(policy, v, tx)
            continue
        nv = _update(policy, db_after, v, deltas, groups, changed, held)
        new_views[sid] = nv
        out[sid] = diff(policy, db_before, db_after, v, nv, tx)
    return new_views, out


def _unchanged(policy: Policy, view: View, tx: list[TxDatom]) -> list[TxDatom]:
    """The datoms of ``tx`` a session whose view did not change receives."""
    visible, attrs, hidden = view.visible, policy.attributes, policy.hidden
    return [d for d in tx if d[1] in ALWAYS or ((visible is None or d[0] in visible) and d[1] not in hidden
                                                and (d[1] not in attrs or d[0] in view.attrs[d[1]]))]


def _keys(view: View) -> list[tuple]:
    """The keys a session's candidates are grouped by: its principal's arguments, and those followed
    by each subscribed scope's arguments."""
    return [view.args, *((*view.args, *sargs) for _, sargs in view.scopes or ())]


def _followed_sources(changed: list[TxDatom]) -> dict[str, set]:
    """For each way of following a ref (``a`` or ``a/_``-reversed), the entities a changed datom
    leads away from."""
    out: dict[str, set] = defaultdict(set)
    for e, a, v, _ in changed:
        out[a].add(e)
        if type(v) is int:
            out[a.replace("/", "/_", 1)].add(v)
    return out


def _may_change(policy: Policy, view: View, touched: set, follows: dict[str, set]) -> bool:
    """True unless the rules' delta names none of ``view``'s principal (or principal and scope
    arguments) and no changed followed ref leaves an entity it sees."""
    if view.args in touched:
        return True
    if view.scopes and any(k in touched for k in _keys(view)):
        return True
    if view.scopes:
        visible = view.visible
        for f in follow_attrs(policy, view.scopes):
            srcs = follows.get(f)
            if srcs and any(x in visible for x in srcs):  # type: ignore[operator]
                return True
    return False


def change_scopes(policy: Any, db: DB, view: View, scopes: Iterable[Any] | None) -> tuple[View, list[TxDatom]]:
    """A session's view after it subscribes to ``scopes`` instead (adding or dropping some), and the
    datoms that makes it gain (asserted) or lose (retracted); no re-bootstrap."""
    policy = parse_policy(policy)
    sc = check_scopes(policy, scopes)
    roots = scope_roots(policy, db, view.args, sc)
    new = replace(view, scopes=sc, roots=roots, visible=None)
    new = replace(new, visible=visible_of(db, policy, new))
    old, to = view, new
    if view.visible is None or new.visible is None:  # "every entity", spelled out for the difference
        everything = frozenset(d.e for d in datoms(db, "eavt"))
        old = replace(view, visible=everything if view.visible is None else view.visible)
        to = replace(new, visible=everything if new.visible is None else new.visible)
    return new, diff(policy, db, db, old, to, ())


__all__ = ["TxDatom", "Unbounded", "change_scopes", "diff", "route", "rule_deltas"]
