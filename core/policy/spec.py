"""A policy as data: who may read which entities and attributes, who may write what, and the named
scopes a replica may subscribe to.

A policy is EDN text or the same structure as Python data (keys as keywords or plain strings)::

    {:principal [:user/id]                     ; principal attributes, bound in this order as the
                                               ; first arguments of every policy rule
     :rules  [[(member ?me ?t) [?u :user/id ?me] [?u :user/teams ?t]] ...]   ; Datalog rules
     :read   {:rule can-read                   ; (can-read ?me ?e): the entities ?me may see
              :hidden #{:user/password-hash}   ; attributes never sent
              :attributes {:user/email self}}  ; (self ?me ?e): ?e's :user/email is sent only then
     :write  {:rule can-write}                 ; (can-write ?me ?e ?a ?v ?added), $ = the database
                                               ; after the transaction, $before = before it
     :scopes {:team {:params [?name]           ; (team-lists ?me ?name ?root): the roots
                     :rule team-lists
                     :follow [:todo/_list]}}}  ; refs followed from the roots (reverse with _)

Rules are checked when the policy is parsed: ``PolicyError`` with code ``policy/syntax`` (text or
rules that do not parse), ``policy/unknown-rule`` (a named or called rule nobody defines) or
``policy/invalid`` (anything else: unknown keys, wrong arities). ``Policy`` also holds what the
per-delta maintenance needs: each rule's branches, which attributes each rule's patterns read, and
which rules call which.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..edn import EdnError, read_edn
from ..errors import DatsyncError, QueryError
from ..query import parse_rules
from ..query.parser import And, Not, Or, Pattern, Rule, RuleCall, Var
from ..values import Keyword, Symbol

SYNTAX = "policy/syntax"
UNKNOWN_RULE = "policy/unknown-rule"
INVALID = "policy/invalid"

ANY_ATTR = "*"
"""What a rule mentions when one of its patterns has a variable (or no) attribute."""


class PolicyError(DatsyncError):
    """A policy that cannot be used: ``policy/syntax``, ``policy/unknown-rule``, ``policy/invalid``."""


@dataclass(frozen=True, slots=True)
class Scope:
    """A named, parameterised selection of root entities plus the refs to follow from them."""

    name: str
    params: tuple[str, ...]
    rule: str
    follow: tuple[str, ...] = ()


@dataclass(frozen=True, eq=False)
class Policy:
    """A parsed, checked policy (see the module docstring). ``None`` rules mean "no restriction"."""

    principal: tuple[str, ...]
    rules: Mapping[str, tuple[Rule, ...]]
    read: str | None = None
    hidden: frozenset[str] = frozenset()
    attributes: Mapping[str, str] = field(default_factory=dict)
    write: str | None = None
    scopes: Mapping[str, Scope] = field(default_factory=dict)
    mentions: Mapping[str, frozenset[str]] = field(default_factory=dict)
    calls: Mapping[str, frozenset[str]] = field(default_factory=dict)
    memo: dict = field(default_factory=dict, repr=False)

    @property
    def maintained(self) -> frozenset[str]:
        """The rules whose answers each session keeps up to date: read, attribute and scope rules."""
        top = {self.read, *self.attributes.values(), *(s.rule for s in self.scopes.values())}
        return frozenset(r for r in top if r is not None)

    def reachable(self, names: frozenset[str]) -> frozenset[str]:
        """``names`` and every rule they call, directly or not."""
        seen: set[str] = set()
        todo = list(names)
        while todo:
            n = todo.pop()
            if n not in seen:
                seen.add(n)
                todo.extend(self.calls.get(n, ()))
        return frozenset(seen)

    def watched(self) -> frozenset[str]:
        """Every attribute a change of which may change what some session sees (``ANY_ATTR`` if a
        rule reads any attribute): those the maintained rules mention, and the followed refs."""
        w = self.memo.get("watched")
        if w is None:
            attrs: set[str] = set()
            for r in self.reachable(self.maintained):
                attrs |= self.mentions.get(r, frozenset())
            for s in self.scopes.values():
                attrs |= {a.replace("/_", "/") for a in s.follow}
            w = self.memo["watched"] = frozenset(attrs)
        return w


# ------------------------------------------------------------------------------------------------
# Reading the data


def _name(x: Any) -> str | None:
    """A keyword, symbol or string as a plain name (a leading ``:`` dropped); None otherwise."""
    if type(x) is Keyword or type(x) is Symbol:
        return x.name
    if type(x) is str:
        return x[1:] if x.startswith(":") else x
    return None


def _key_map(m: Any, what: str, allowed: frozenset[str]) -> dict[str, Any]:
    if not isinstance(m, Mapping):
        raise PolicyError(INVALID, f"{what} is a map, got {type(m).__name__}", {"value": m})
    out = {}
    for k, v in m.items():
        n = _name(k)
        if n not in allowed:
            raise PolicyError(INVALID, f"Unknown key {k!r} in {what} (known: {', '.join(sorted(allowed))})",
                              {"key": k})
        out[n] = v
    return out


def _names(xs: Any, what: str) -> tuple[str, ...]:
    if xs is None:
        return ()
    if not isinstance(xs, list | tuple | set | frozenset):
        raise PolicyError(INVALID, f"{what} is a collection of names, got {xs!r}", {"value": xs})
    out = []
    for x in xs:
        n = _name(x)
        if n is None:
            raise PolicyError(INVALID, f"{what}: {x!r} is not a name", {"value": x})
        out.append(n)
    return tuple(sorted(out)) if isinstance(xs, set | frozenset) else tuple(out)


def _var(x: Any, what: str) -> str:
    n = _name(x)
    if n is None or not n.startswith("?"):
        raise PolicyError(INVALID, f"{what}: {x!r} is not a variable", {"value": x})
    return n


def _walk_clauses(clauses: Any, attrs: set[str], calls: set[str]) -> None:
    for c in clauses:
        t = type(c)
        if t is Pattern:
            terms = c.terms
            a = terms[1] if len(terms) > 1 else None
            attrs.add(a if type(a) is str else ANY_ATTR)
        elif t is RuleCall:
            calls.add(c.name)
        elif t is Not or t is And:
            _walk_clauses(c.clauses, attrs, calls)
        elif t is Or:
            for b in c.branches:
                _walk_clauses(b, attrs, calls)


def _rule_ref(x: Any, what: str, rules: Mapping[str, tuple[Rule, ...]], arity: int) -> str:
    n = _name(x)
    if n is None:
        raise PolicyError(INVALID, f"{what}: {x!r} is not a rule name", {"value": x})
    if n not in rules:
        raise PolicyError(UNKNOWN_RULE, f"{what} names the rule '{n}, which the policy does not define",
                          {"rule": n})
    got = len(rules[n][0].params)
    if got != arity:
        raise PolicyError(INVALID, f"{what}: rule '{n} takes {got} arguments, the policy calls it with {arity}",
                          {"rule": n, "arity": got, "expected": arity})
    return n


_TOP = frozenset({"principal", "rules", "read", "write", "scopes"})
_READ = frozenset({"rule", "hidden", "attributes"})
_WRITE = frozenset({"rule"})
_SCOPE = frozenset({"params", "rule", "follow"})


def parse_policy(policy: Any) -> Policy:
    """The checked ``Policy`` of ``policy`` (EDN text, Python data, or a ``Policy``, returned as is).

    Raises ``PolicyError`` (``policy/syntax``, ``policy/unknown-rule``, ``policy/invalid``): a policy
    that cannot be trusted is refused before anything is served."""
    if isinstance(policy, Policy):
        return policy
    if isinstance(policy, str):
        try:
            policy = read_edn(policy)
        except EdnError as err:
            raise PolicyError(SYNTAX, f"Cannot read the policy: {err}", {}) from err
    top = _key_map(policy, "the policy", _TOP)
    principal = _names(top.get("principal"), ":principal")
    np = len(principal)
    raw_rules = top.get("rules") or []
    try:
        rules = dict(parse_rules(raw_rules)) if raw_rules else {}
    except QueryError as err:
        raise PolicyError(SYNTAX, f"Cannot parse the policy's rules: {err.message}", {"cause": err.code}) from err
    mentions, calls = {}, {}
    for name, branches in rules.items():
        attrs: set[str] = set()
        called: set[str] = set()
        for b in branches:
            _walk_clauses(b.clauses, attrs, called)
        for c in called:
            if c not in rules:
                raise PolicyError(UNKNOWN_RULE, f"Rule '{name} calls the rule '{c}, which the policy does not define",
                                  {"rule": c, "caller": name})
        mentions[name] = frozenset(attrs)
        calls[name] = frozenset(called)
    read = hidden = attributes = None
    if top.get("read") is not None:
        r = _key_map(top["read"], ":read", _READ)
        read = _rule_ref(r["rule"], ":read :rule", rules, np + 1) if r.get("rule") is not None else None
        hidden = frozenset(_names(r.get("hidden"), ":read :hidden"))
        am = r.get("attributes") or {}
        if not isinstance(am, Mapping):
            raise PolicyError(INVALID, ":read :attributes maps attributes to rules", {"value": am})
        attributes = {}
        for a, rn in am.items():
            an = _name(a)
            if an is None:
                raise PolicyError(INVALID, f":read :attributes: {a!r} is not an attribute", {"value": a})
            attributes[an] = _rule_ref(rn, f":read :attributes {an}", rules, np + 1)
    write = None
    if top.get("write") is not None:
        w = _key_map(top["write"], ":write", _WRITE)
        write = _rule_ref(w.get("rule"), ":write :rule", rules, np + 4)
    scopes = {}
    sm = top.get("scopes") or {}
    if not isinstance(sm, Mapping):
        raise PolicyError(INVALID, ":scopes maps scope names to scopes", {"value": sm})
    for sname, spec in sm.items():
        n = _name(sname)
        if n is None:
            raise PolicyError(INVALID, f":scopes: {sname!r} is not a name", {"value": sname})
        s = _key_map(spec, f"scope {n}", _SCOPE)
        params = tuple(_var(p, f"scope {n} :params") for p in (s.get("params") or ()))
        rule = _rule_ref(s.get("rule"), f"scope {n} :rule", rules, np + len(params) + 1)
        follow = _names(s.get("follow"), f"scope {n} :follow")
        scopes[n] = Scope(n, params, rule, follow)
    return Policy(principal, rules, read, hidden or frozenset(), attributes or {}, write, scopes, mentions, calls)


def principal_args(policy: Policy, principal: Mapping[str, Any]) -> tuple:
    """The principal's attributes the policy binds, in the policy's order (None where absent)."""
    return tuple(principal.get(k) for k in policy.principal)


def arg_vars(n: int) -> tuple[Symbol, ...]:
    """``n`` fresh variables for the principal's arguments in generated queries."""
    return tuple(Symbol(f"?__p{i}") for i in range(n))


def is_var(x: Any) -> bool:
    """True for a query variable of a parsed clause."""
    return type(x) is Var


__all__ = [
    "ANY_ATTR", "INVALID", "SYNTAX", "UNKNOWN_RULE", "Policy", "PolicyError", "Scope", "arg_vars", "is_var",
    "parse_policy", "principal_args",
]
