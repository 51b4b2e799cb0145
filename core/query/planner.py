"""Clause ordering: which clause to evaluate next, given what is bound and how big things are.

The planner is greedy and runs as evaluation goes, so it sees real relation sizes: predicates,
function expressions and negations run as soon as their inputs are bound (they only shrink or
extend rows); among data patterns the cheapest goes first, estimated from index counts (a
pattern whose entity is bound costs one index lookup per row; one with a constant attribute and
value costs an AVET range or a scan of the attribute; an unbound attribute costs the whole
database); ``or`` and rule calls wait until patterns have bound their variables, when they can.

Evaluation order never changes results: ``not``/``not-join`` always join on every variable the
rest of the query binds (they wait for them), predicates wait for their arguments, and a clause
whose inputs nothing binds raises ``db.error/insufficient-binding``.
"""

from __future__ import annotations

from typing import Any

from ..errors import QueryError
from .parser import BLANK, FnExpr, Not, Or, Pattern, Pred, RuleCall, Var, clause_binds, show
from .relation import Rel

__all__ = ["choose", "insufficient"]

INSUFFICIENT = "db.error/insufficient-binding"


def insufficient(clause: Any, missing: Any) -> QueryError:
    """The error for a clause whose variables ``missing`` are bound by nothing before it."""
    names = " ".join(sorted(v.name for v in missing))
    return QueryError(
        INSUFFICIENT,
        f"Insufficient bindings: #{{{names}}} not bound in {show(clause.form)}",
        {"form": clause.form, "vars": sorted(v.name for v in missing)},
    )


def _size(rels: list[Rel], var: Var) -> int:
    for r in rels:
        if var in r.idx:
            return len(r.rows)
    return 0


def _pattern_cost(env: Any, c: Pattern, rels: list[Rel], bound: set, src: Any) -> float:
    info = env.pattern_info(c, src)
    if info is None:
        return -10.0  # a constant that resolves to nothing: the result is empty, do it first
    source, (ec, ac, vc, _tx, _added) = info
    terms = c.terms
    e = terms[0]
    if ec is not None:
        return 1.0
    if type(e) is Var and e in bound:
        return 1.0 + _size(rels, e)
    if ac is not None:
        cnt = source.count_attr(ac)
        v = terms[2] if len(terms) > 2 else BLANK
        if vc is not None:
            return 2.0 + source.count_av(ac, vc)
        if type(v) is Var and v in bound:
            if source.lookup_kind(ac, "v"):
                return 2.0 + min(cnt, _size(rels, v))
            return 2.0 + cnt * 0.8
        return 2.0 + cnt
    return 2.0 + source.size()


def choose(env: Any, rels: list[Rel], pending: list, bound: set, src: Any) -> int:
    """Index into ``pending`` of the clause to evaluate next; raises insufficient binding when
    no remaining clause can run."""
    best = -1
    best_cost = 0.0
    others: set | None = None
    for i, c in enumerate(pending):
        t = type(c)
        if t is Pattern:
            cost = _pattern_cost(env, c, rels, bound, src)
        elif t is Pred:
            if not c.vars <= bound:
                continue
            cost = -3.0
        elif t is FnExpr:
            if not c.vars <= bound:
                continue
            cost = -2.0
        elif t is Not:
            if c.join is not None:
                if not c.vars <= bound:
                    continue
            else:
                if others is None:
                    others = _binders(pending)
                if not (c.vars & others) <= bound:
                    continue
                if not (c.vars & bound):
                    continue
            cost = -1.0
        elif t is Or:
            if not set(c.req) <= bound:
                continue
            cost = _deferred_cost(c.vars, rels, bound, 5e6)
        elif t is RuleCall:
            cost = _deferred_cost(c.vars, rels, bound, 1e7) + env.rule_req_penalty(c, bound)
        else:  # table atoms inside rule evaluation
            cost = c.cost(rels, bound)
        if best < 0 or cost < best_cost:
            best, best_cost = i, cost
    if best < 0 or best_cost >= 1e15:
        raise _stuck(pending, bound)
    return best


def _deferred_cost(vars: frozenset, rels: list[Rel], bound: set, unbound_cost: float) -> float:
    b = vars & bound
    if not b:
        return unbound_cost
    return 1e4 + max(_size(rels, v) for v in b) + (len(vars) - len(b))


def _binders(pending: list) -> set:
    out: set = set()
    for c in pending:
        out |= clause_binds(c)
    return out


def _stuck(pending: list, bound: set) -> QueryError:
    for c in pending:
        if isinstance(c, Pred | FnExpr) and not c.vars <= bound:
            return insufficient(c, c.vars - bound)
        if isinstance(c, Not):
            if c.join is not None and not c.vars <= bound:
                return insufficient(c, c.vars - bound)
            if not (c.vars & bound):
                names = " ".join(sorted(v.name for v in c.vars))
                return QueryError(INSUFFICIENT, f"Insufficient bindings: none of #{{{names}}} is bound in "
                                                f"{show(c.form)}", {"form": c.form})
        if isinstance(c, Or) and not set(c.req) <= bound:
            return insufficient(c, set(c.req) - bound)
    c = pending[0]
    return insufficient(c, c.vars - bound)
