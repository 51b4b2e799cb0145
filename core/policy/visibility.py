"""What a principal sees: the visible entity set of a session, its datoms, a filtered database.

A session's ``View`` holds what the policy derived for its principal and scopes:

- ``readable``: the entities the read rule derives for the principal (None without a read rule:
  every entity);
- ``attrs``: for each attribute with its own rule, the entities whose value of it may be sent;
- ``roots``: the root entities of the subscribed scopes;
- ``visible``: the entities whose datoms travel — every readable entity reached from a root by the
  scopes' followed refs (walking readable entities only), or every readable entity when the session
  subscribed to no scopes (``scopes`` None). None means every entity.

A datom ``[e a v]`` is visible when ``a`` is a schema attribute or ``db/txInstant`` (always sent),
or ``e`` is visible, ``a`` is not hidden and, if ``a`` has an attribute rule, ``e`` passes it. Refs
from a visible entity to an invisible one stay plain ids: the target's datoms do not travel.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..datomic import SCHEMA_ATTRS
from ..db import DB, datoms, filter_db
from ..query import parse_query, q
from ..values import Datom, Symbol
from .spec import INVALID, Policy, PolicyError, arg_vars, parse_policy, principal_args

ALWAYS = SCHEMA_ATTRS | {"db/txInstant"}
"""Attributes whose datoms every session receives: the schema, and when each transaction happened."""

UNKNOWN_SCOPE = "policy/unknown-scope"
RECHECK_MAX = 32
"""Above this many candidate entities, re-derive a principal's whole set rather than each candidate."""

ScopeRef = tuple[str, tuple]
"""A subscription: a scope's name and its arguments."""


@dataclass(frozen=True, slots=True)
class View:
    """What one session sees (see the module docstring); a value, replaced on every change."""

    args: tuple
    scopes: frozenset[ScopeRef] | None
    readable: frozenset[int] | None
    attrs: Mapping[str, frozenset[int]]
    roots: frozenset[int]
    visible: frozenset[int] | None

    def sees(self, e: int) -> bool:
        """True when entity ``e``'s datoms (those not hidden) travel to this session."""
        return self.visible is None or e in self.visible

    def may_read(self, e: int) -> bool:
        """True when the read rule lets this session's principal see entity ``e``."""
        return self.readable is None or e in self.readable


def datom_visible(policy: Policy, view: View, e: int, a: str) -> bool:
    """True when the datom ``[e a _]`` travels to the session of ``view``."""
    if a in ALWAYS:
        return True
    if a in policy.hidden or not view.sees(e):
        return False
    return a not in policy.attributes or e in view.attrs[a]


# ------------------------------------------------------------------------------------------------
# Queries the policy implies (parsed once per policy)


def _query(policy: Policy, key: tuple, form: Any) -> Any:
    hit = policy.memo.get(key)
    if hit is None:
        hit = policy.memo[key] = parse_query(form)
    return hit


def _derive_query(policy: Policy, rule: str, nextra: int, batch: bool) -> Any:
    """``[:find [?e ...] :in $ % ?p.. ?x.. ([?e ...]) :where (rule ?p.. ?x.. ?e)]``."""
    ps = arg_vars(len(policy.principal))
    xs = tuple(Symbol(f"?__x{i}") for i in range(nextra))
    e = Symbol("?__e")
    ins = [Symbol("$"), Symbol("%"), *ps, *xs] + ([[e, Symbol("...")]] if batch else [])
    form = {"find": [[e, Symbol("...")]], "in": ins, "where": [(Symbol(rule), *ps, *xs, e)]}
    return _query(policy, ("derive", rule, nextra, batch), form)


def derive(policy: Policy, db: DB, rule: str, args: tuple, extra: tuple = (),
           among: Iterable[int] | None = None) -> frozenset[int]:
    """The entities ``?e`` for which ``(rule args.. extra.. ?e)`` holds in ``db`` (only among
    ``among`` when given: a re-check of candidates costs in proportion to them)."""
    if among is not None:
        among = list(among)
        if not among:
            return frozenset()
        if len(among) > RECHECK_MAX:  # many candidates: one derivation from the principal is cheaper
            return derive(policy, db, rule, args, extra) & frozenset(among)
        return frozenset(q(_derive_query(policy, rule, len(extra), True), db, policy.rules, *args, *extra, among))
    return frozenset(q(_derive_query(policy, rule, len(extra), False), db, policy.rules, *args, *extra))


def _holds_query(policy: Policy, rule: str, arity: int) -> Any:
    xs = [Symbol(f"?__x{i}") for i in range(arity)]
    form = {"find": xs, "in": [Symbol("$"), Symbol("%"), [xs]], "where": [(Symbol(rule), *xs)]}
    return _query(policy, ("holds", rule), form)


def holds(policy: Policy, db: DB, rule: str, rows: Iterable[tuple]) -> set[tuple]:
    """Which of the argument tuples ``rows`` satisfy ``rule`` in ``db`` (one evaluation for all)."""
    rows = list(rows)
    if not rows:
        return set()
    return q(_holds_query(policy, rule, len(rows[0])), db, policy.rules, rows)


def check_scopes(policy: Policy, scopes: Iterable[Any] | None) -> frozenset[ScopeRef] | None:
    """Subscriptions as ``(name, args)`` pairs, checked against the policy's scopes (``PolicyError``
    ``policy/unknown-scope`` for a name it does not define, ``policy/invalid`` for wrong arguments)."""
    if scopes is None:
        return None
    out = set()
    for s in scopes:
        if isinstance(s, str):
            name, args = s, ()
        else:
            name, args = s[0], tuple(s[1]) if len(s) > 1 else ()
        spec = policy.scopes.get(name)
        if spec is None:
            raise PolicyError(UNKNOWN_SCOPE, f"No scope named {name!r}", {"scope": name})
        if len(args) != len(spec.params):
            raise PolicyError(INVALID, f"Scope {name!r} takes {len(spec.params)} arguments, got {len(args)}",
                              {"scope": name})
        out.add((name, args))
    return frozenset(out)


def scope_roots(policy: Policy, db: DB, args: tuple, scopes: frozenset[ScopeRef] | None) -> frozenset[int]:
    """The root entities of ``scopes`` for a principal with ``args``."""
    if not scopes:
        return frozenset()
    roots: set[int] = set()
    for name, sargs in scopes:
        roots |= derive(policy, db, policy.scopes[name].rule, args, sargs)
    return frozenset(roots)


def follow_attrs(policy: Policy, scopes: frozenset[ScopeRef] | None) -> tuple[str, ...]:
    """The refs the subscribed scopes follow (``a/_b``: reverse), without repeats."""
    if not scopes:
        return ()
    key = ("follow", scopes)
    hit = policy.memo.get(key)
    if hit is None:
        hit = policy.memo[key] = tuple(dict.fromkeys(a for name, _ in sorted(scopes)
                                                      for a in policy.scopes[name].follow))
    return hit


def neighbours(db: DB, e: int, follow: tuple[str, ...]) -> Iterable[int]:
    """The entities one followed ref away from ``e`` (read straight off the index keys of a current
    database: ``eavt`` ``(e, a, rank, v, tx)``, ``vaet`` ``(v, a, e, tx)``)."""
    fast = not db.is_view
    for a in follow:
        if "/_" in a:
            a = a.replace("/_", "/")
            if fast:
                for k in db.vaet.prefix_list((e, a)):
                    yield k[2]
            else:
                for d in datoms(db, "vaet", e, a):
                    yield d.e
        elif fast:
            for k in db.eavt.prefix_list((e, a)):
                if type(k[3]) is int:
                    yield k[3]
        else:
            for d in datoms(db, "eavt", e, a):
                if type(d.v) is int:
                    yield d.v


def closure(db: DB, roots: Iterable[int], follow: tuple[str, ...], readable: frozenset[int] | None,
            start: frozenset[int] = frozenset()) -> frozenset[int]:
    """``start`` plus every readable entity reached from ``roots`` by followed refs, walking readable
    entities only (an unreadable entity is not a bridge)."""
    seen = set(start)
    todo = [r for r in roots if r not in seen and (readable is None or r in readable)]
    seen.update(todo)
    while todo:
        e = todo.pop()
        for n in neighbours(db, e, follow):
            if n not in seen and (readable is None or n in readable):
                seen.add(n)
                todo.append(n)
    return frozenset(seen)


def visible_of(db: DB, policy: Policy, view: View) -> frozenset[int] | None:
    """The visible entities of ``view`` recomputed from its readable set, roots and scopes."""
    if view.scopes is None:
        return view.readable
    return closure(db, view.roots, follow_attrs(policy, view.scopes), view.readable)


def open_view(policy: Any, db: DB, principal: Mapping[str, Any], scopes: Iterable[Any] | None = None) -> View:
    """The view of a session of ``principal`` subscribed to ``scopes`` (None: no scope restriction)."""
    policy = parse_policy(policy)
    args = principal_args(policy, principal)
    sc = check_scopes(policy, scopes)
    readable = derive(policy, db, policy.read, args) if policy.read else None
    attrs = {a: derive(policy, db, r, args) for a, r in policy.attributes.items()}
    roots = scope_roots(policy, db, args, sc)
    v = View(args, sc, readable, attrs, roots, None)
    return View(args, sc, readable, attrs, roots, visible_of(db, policy, v))


def view_datoms(policy: Policy, db: DB, view: View) -> list[Datom]:
    """Every datom of ``db`` that the session of ``view`` holds, in EAVT order."""
    return [d for d in datoms(db, "eavt") if datom_visible(policy, view, d.e, d.a)]


def visible_datoms(policy: Any, db: DB, principal: Mapping[str, Any],
                   scopes: Iterable[Any] | None = None) -> list[Datom]:
    """The datoms of ``db`` a replica of ``principal`` subscribed to ``scopes`` holds, in EAVT order."""
    policy = parse_policy(policy)
    return view_datoms(policy, db, open_view(policy, db, principal, scopes))


def filter_for(policy: Any, db: DB, principal: Mapping[str, Any], scopes: Iterable[Any] | None = None) -> DB:
    """``db`` as the principal sees it: a filtered view (``core.db.filter_db``) to query and pull."""
    policy = parse_policy(policy)
    view = open_view(policy, db, principal, scopes)
    return filter_db(db, lambda _db, d: datom_visible(policy, view, d.e, d.a))


__all__ = [
    "ALWAYS", "UNKNOWN_SCOPE", "ScopeRef", "View", "check_scopes", "closure", "datom_visible", "derive",
    "filter_for", "follow_attrs", "holds", "neighbours", "open_view", "scope_roots", "view_datoms", "visible_datoms",
    "visible_of",
]
