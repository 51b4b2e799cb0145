"""Explain: which rule, with which bindings, made an entity visible to a principal — or why not.

``explain(policy, db, principal, e)`` evaluates the read rule for ``(principal, e)`` branch by
branch. For the first branch that holds it reports the branch and one solution's bindings, and
explains each rule the branch called with the arguments it was called with. When no branch holds it
reports, for every branch, the first clause that found nothing and the bindings up to it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..db import DB
from ..edn import write_edn
from ..errors import QueryError
from ..query import parse_query, q
from ..query.parser import FnExpr, Or, Pattern, Rule, RuleCall, Var
from ..values import Symbol
from .spec import Policy, parse_policy, principal_args

MAX_DEPTH = 8


@dataclass(frozen=True, slots=True)
class Failure:
    """Branch ``branch`` of a rule failed at ``clause`` (as written), after ``bindings``."""

    branch: int
    clause: Any
    bindings: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Explanation:
    """Why ``(rule args..)`` holds (``holds``: the ``branch`` and its ``bindings``, ``calls``: the
    explanations of the rules that branch called) or does not (``failures``, one per branch)."""

    rule: str | None
    args: tuple
    holds: bool
    branch: int | None = None
    bindings: Mapping[str, Any] | None = None
    calls: tuple[Explanation, ...] = ()
    failures: tuple[Failure, ...] = ()
    hidden: tuple[str, ...] = ()

    def text(self, indent: str = "") -> str:
        """The explanation as indented lines for people."""
        call = f"({self.rule} {' '.join(write_edn(a) for a in self.args)})"
        if self.rule is None:
            return f"{indent}visible: the policy has no read rule"
        if self.holds:
            b = " ".join(f"{k} {write_edn(v)}" for k, v in (self.bindings or {}).items())
            lines = [f"{indent}{call} holds by branch {self.branch + 1} with {{{b}}}"]  # type: ignore[operator]
            lines += [c.text(indent + "  ") for c in self.calls]
        else:
            lines = [f"{indent}{call} does not hold:"]
            for f in self.failures:
                b = " ".join(f"{k} {write_edn(v)}" for k, v in f.bindings.items())
                lines.append(f"{indent}  branch {f.branch + 1}: nothing matches {write_edn(f.clause)} "
                             f"with {{{b}}}")
        if self.hidden:
            lines.append(f"{indent}never sent: {' '.join(write_edn(Symbol(':' + a)) for a in self.hidden)}")
        return "\n".join(lines)


def _branch_vars(rule: Rule) -> list[Var]:
    vs: dict[Var, None] = dict.fromkeys(rule.params)
    for c in rule.clauses:
        t = type(c)
        if t is Pattern or t is RuleCall or t is Or:
            vs.update(dict.fromkeys(sorted(c.vars, key=lambda v: v.name)))
        elif t is FnExpr:
            vs.update(dict.fromkeys(c.out))
    return list(vs)


def _solve(policy: Policy, db: DB, rule: Rule, args: tuple, upto: int) -> list[dict[str, Any]] | None:
    """Solutions (as bindings) of the first ``upto`` clauses of ``rule`` with its parameters bound to
    ``args``; None when those clauses cannot run on their own (a predicate before its binder)."""
    clauses = rule.clauses[:upto]
    bound: set[Var] = set(rule.params)
    for c in clauses:
        t = type(c)
        if t is Pattern or t is RuleCall or t is Or:
            bound |= c.vars
        elif t is FnExpr:
            bound |= set(c.out)
    find = [v for v in _branch_vars(rule) if v in bound]
    params = list(dict.fromkeys(rule.params))
    row = tuple(dict(zip(rule.params, args))[p] for p in params)
    form = {"find": [Symbol(v.name) for v in find],
            "in": [Symbol("$"), Symbol("%"), [[Symbol(p.name) for p in params]]],
            "where": [c.form for c in clauses] or [[(Symbol("ground"), 0), Symbol("?__ground")]]}
    try:
        rows = q(parse_query(form), db, policy.rules, [row])
    except QueryError:
        return None
    return [dict(zip((v.name for v in find), r)) for r in sorted(rows, key=repr)]


def explain_rule(policy: Any, db: DB, rule: str, args: tuple, depth: int = 0) -> Explanation:
    """Why ``(rule args..)`` holds in ``db``, or why it does not (see the module docstring)."""
    policy = parse_policy(policy)
    failures = []
    for i, branch in enumerate(policy.rules[rule]):
        sols = _solve(policy, db, branch, args, len(branch.clauses))
        if sols:
            b = sols[0]
            calls = []
            if depth < MAX_DEPTH:
                for c in branch.clauses:
                    if type(c) is RuleCall:
                        cargs = tuple(b[a.name] if type(a) is Var else a for a in c.args)
                        calls.append(explain_rule(policy, db, c.name, cargs, depth + 1))
            return Explanation(rule, args, True, i, b, tuple(calls))
        last: dict[str, Any] = {p.name: a for p, a in zip(branch.params, args)}
        for k in range(1, len(branch.clauses) + 1):
            got = _solve(policy, db, branch, args, k)
            if got is None:
                continue
            if not got:
                failures.append(Failure(i, branch.clauses[k - 1].form, last))
                break
            last = got[0]
        else:
            failures.append(Failure(i, branch.clauses[-1].form if branch.clauses else None, last))
    return Explanation(rule, args, False, failures=tuple(failures))


def explain(policy: Any, db: DB, principal: Mapping[str, Any], e: int) -> Explanation:
    """Why entity ``e`` is (or is not) visible to ``principal`` under ``policy``'s read rule; the
    explanation also lists the attributes never sent."""
    policy = parse_policy(policy)
    hidden = tuple(sorted(policy.hidden))
    if policy.read is None:
        return Explanation(None, (e,), True, hidden=hidden)
    ex = explain_rule(policy, db, policy.read, (*principal_args(policy, principal), e))
    return Explanation(ex.rule, ex.args, ex.holds, ex.branch, ex.bindings, ex.calls, ex.failures, hidden)


__all__ = ["Explanation", "Failure", "explain", "explain_rule"]
