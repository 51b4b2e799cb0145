"""Rules: tabled, demand-driven, semi-naive bottom-up evaluation (magic sets).

A rule call ``(r ?x ?y)`` with some arguments bound (constants, or variables bound by earlier clauses)
is answered by a small Datalog program built for its *adornment* (which arguments are bound):

* a table ``ans[r, a]`` of answers (tuples of all arguments) and a table ``magic[r, a]`` of demanded
  bound arguments, seeded with the caller's distinct bindings;
* for each branch of ``r``: ``ans[r, a](params) :- magic[r, a](bound params), body`` where each rule
  call in the body reads ``ans[callee, b]``, and ``magic[callee, b](bound args) :- magic[r, a](...),
  <the body clauses before the call>``. The order of the body (which decides what is bound at each
  call) is chosen statically from the bound parameters, like the planner would.

The program is evaluated semi-naively: each round evaluates every program rule once per body table
that gained rows in the previous round, with that table's new rows (its *delta*) in place of the
table, and stops when no table grows. So recursive rules cost work proportional to new facts, not a
naive fixpoint over everything, and a call with bound arguments only ever derives facts reachable
from them. When the outermost call binds nothing, body calls are not specialised on what their
bodies bind (a full bottom-up computation is then cheaper than demand tables for every binding).

``or``/``or-join`` in a rule body that contains rule calls becomes an auxiliary rule; rule calls
inside ``not`` are answered by a nested evaluation (so rules must be stratified: a rule that depends
on itself through ``not`` is an error). Data patterns read inside the fixpoint are scanned and
hash-indexed once per evaluation.
"""

from __future__ import annotations

from operator import itemgetter
from typing import Any

from ..errors import QueryError
from .engine import Env, _seed, bound_vars, solve
from .parser import (
    And,
    Clause,
    FnExpr,
    Not,
    Or,
    Pattern,
    Pred,
    Rule,
    RuleCall,
    Var,
    clause_binds,
    show,
)
from .planner import INSUFFICIENT, insufficient
from .relation import Rel, buckets, columns, merge, tuple_getter

__all__ = ["eval_rule_call"]

_INT = {int}


class Table:
    """A set of tuples that grows during the fixpoint, with hash indexes kept up to date."""

    __slots__ = ("arity", "delta", "indexes", "key", "raw", "rows")

    def __init__(self, key: tuple, arity: int):
        self.key = key
        self.arity = arity
        self.rows: set = set()
        self.delta: set = set()
        self.indexes: dict = {}
        self.raw: set = set()  # positions that hold values other than entity ids (lookup refs, ...)

    def index(self, positions: tuple) -> dict:
        """key (tuple of the values at ``positions``) -> the rows with that key, over all rows so far."""
        ix = self.indexes.get(positions)
        if ix is None:
            rows = list(self.rows)
            ix = self.indexes[positions] = buckets(columns(rows, positions), rows)
        return ix

    def add(self, new: set) -> None:
        self.rows |= new
        rows = list(new)
        for i in range(self.arity):
            if i not in self.raw and not set(map(type, map(itemgetter(i), rows))) <= _INT:
                self.raw.add(i)
        for positions, ix in self.indexes.items():
            buckets(columns(rows, positions), rows, ix)

    def __repr__(self) -> str:
        return f"<Table {self.key} {len(self.rows)}>"


class TableAtom(Clause):
    """A reference to a table in a program rule's body: ``terms`` are Vars or constants."""

    __slots__ = ("table", "terms", "use_delta")

    def __init__(self, table: Table, terms: tuple, form: Any):
        self.table = table
        self.terms = terms
        self.form = form
        self.vars = frozenset(t for t in terms if type(t) is Var)
        self.use_delta = False

    def _rows(self) -> Any:
        return self.table.delta if self.use_delta else self.table.rows

    def cost(self, rels: list[Rel], bound: set) -> float:
        n = len(self._rows())
        if self.vars & bound:
            return 10.0 + min(n, max(len(r.rows) for r in rels if self.vars & r.idx.keys()))
        return 10.0 + n

    def rel(self) -> Rel:
        """The table (or its delta) as a relation over the atom's variables."""
        rows = self._rows()
        out_vars = tuple(dict.fromkeys(t for t in self.terms if type(t) is Var))
        rows = self._filter(rows)
        pos = [self.terms.index(v) for v in out_vars]
        raw = frozenset(v for v, p in zip(out_vars, pos) if p in self.table.raw)
        if not out_vars:
            return Rel(out_vars, [()] if rows else [], raw)
        if pos == list(range(self.table.arity)) and type(rows) is set:
            return Rel(out_vars, list(rows), raw)
        return Rel(out_vars, list(set(columns(rows, pos))), raw)

    def _filter(self, rows: Any) -> Any:
        terms = self.terms
        seen: dict = {}
        for i, t in enumerate(terms):
            if type(t) is Var:
                if t in seen:
                    j = seen[t]
                    rows = [r for r in rows if r[i] == r[j]]
                else:
                    seen[t] = i
            else:
                rows = [r for r in rows if r[i] == t and (type(r[i]) is bool) == (type(t) is bool)]
        return rows

    def apply(self, env: Env, rels: list[Rel], bound: set) -> list[Rel]:
        bvars = [v for v in dict.fromkeys(t for t in self.terms if type(t) is Var) if v in bound]
        if not bvars:
            return [*rels, self.rel()]
        comp, rest = merge(rels, bvars)
        assert comp is not None
        terms = self.terms
        positions = tuple(terms.index(v) for v in bvars)
        has_const = any(type(t) is not Var for t in terms)
        out_vars = [v for v in dict.fromkeys(t for t in terms if type(t) is Var) if v not in comp.idx]
        if self.use_delta or has_const or len(set(t for t in terms if type(t) is Var)) != len(terms):
            rows = list(self._filter(self._rows()))
            table: dict = buckets(columns(rows, positions), rows)
        else:
            table = self.table.index(positions)
        keys = columns(comp.rows, [comp.idx[v] for v in bvars])
        if out_vars:
            eg = tuple_getter([terms.index(v) for v in out_vars])
            get = table.get
            out = [r + eg(x) for r, k in zip(comp.rows, keys) for x in get(k, ())]
        else:
            out = [r for r, k in zip(comp.rows, keys) if k in table]
        raw = frozenset(v for v in out_vars if terms.index(v) in self.table.raw)
        return [*rest, Rel(comp.vars + tuple(out_vars), out, comp.raw | raw)]


class PRule:
    """A program rule: ``head`` table gets ``head_terms`` of each solution of ``body``."""

    __slots__ = ("atoms", "body", "head", "head_terms", "src")

    def __init__(self, head: Table, head_terms: tuple, body: list, src: str):
        self.head = head
        self.head_terms = head_terms
        self.body = tuple(body)
        self.atoms = tuple(i for i, c in enumerate(body) if type(c) is TableAtom)
        self.src = src


def _contains_call(clauses: Any) -> bool:
    for c in clauses:
        if type(c) is RuleCall:
            return True
        if type(c) is Or and any(_contains_call(b) for b in c.branches):
            return True
        if type(c) is And and _contains_call(c.clauses):
            return True
    return False


class Program:
    """The tables and program rules for one top-level rule call."""

    def __init__(self, env: Env):
        self.env = env
        self.rules: dict[str, tuple[Rule, ...]] = dict(env.rules)
        self.tables: dict[tuple, Table] = {}
        self.prules: list[PRule] = []
        self.todo: list[tuple] = []
        self.top_free = True

    def branches(self, name: str, form: Any) -> tuple[Rule, ...]:
        b = self.rules.get(name)
        if b is None:
            raise QueryError("query/unknown-rule", f"Unknown rule '{name} in {show(form)}", {"form": form})
        return b

    def table(self, kind: str, key: tuple, arity: int) -> Table:
        tk = (kind, *key)
        t = self.tables.get(tk)
        if t is None:
            t = self.tables[tk] = Table(tk, arity)
            if kind == "ans":
                self.todo.append(key)
        return t

    def compile_all(self) -> None:
        while self.todo:
            self.compile(self.todo.pop())

    def compile(self, key: tuple) -> None:
        src, name, adorn = key
        ans = self.tables[("ans", *key)]
        magic = self.tables[("magic", *key)]
        for rule in self.branches(name, name):
            params = rule.params
            head_bound = [p for p, b in zip(params, adorn) if b]
            body = [self.desugar(c) for c in rule.clauses]
            order = self.sips(body, set(head_bound), rule)
            bound = set(head_bound)
            magic_atom = TableAtom(magic, tuple(head_bound), rule.form)
            out: list = [magic_atom]
            for c in order:
                if type(c) is RuleCall:
                    callee = self.branches(c.name, c.form)
                    if len(callee[0].params) != len(c.args):
                        raise QueryError("query/where", f"Rule '{c.name} takes {len(callee[0].params)} arguments, "
                                                        f"called with {len(c.args)} in {show(c.form)}",
                                         {"form": c.form})
                    beta = self.adornment(c, callee, bound, any(adorn))
                    csrc = c.src.name if c.src is not None else src
                    ckey = (csrc, c.name, beta)
                    cmagic = self.table("magic", ckey, sum(beta))
                    cans = self.table("ans", ckey, len(c.args))
                    bargs = tuple(a for a, b in zip(c.args, beta) if b)
                    self.prules.append(PRule(cmagic, bargs, list(out), src))
                    out.append(TableAtom(cans, c.args, c.form))
                else:
                    out.append(c)
                bound |= clause_binds(c)
            missing = set(params) - bound
            if missing:
                if name.startswith("__or"):
                    raise QueryError("query/where", f"All clauses in 'or' must use same set of free vars: "
                                                    f"{sorted(v.name for v in missing)} unbound in {show(rule.form)}",
                                     {"form": rule.form})
                raise insufficient(_Form(rule.form), missing)
            self.prules.append(PRule(ans, params, out, src))

    def desugar(self, c: Any) -> Any:
        """``or`` clauses that call rules become calls of auxiliary rules."""
        if type(c) is Or and any(_contains_call(b) for b in c.branches):
            join = c.join_vars()
            name = f"__or_{id(c)}"
            if name not in self.rules:
                self.rules[name] = tuple(Rule(name, c.req, join, b, c.form) for b in c.branches)
            return RuleCall(c.src, name, join, c.form)
        return c

    def adornment(self, c: RuleCall, callee: tuple[Rule, ...], bound: set, head_has_bound: bool) -> tuple:
        nreq = len(callee[0].req)
        full = tuple(type(a) is not Var or a in bound for a in c.args)
        for i in range(nreq):
            if not full[i]:
                raise insufficient(c, {c.args[i]})
        if head_has_bound or not self.top_free:
            return full
        minimal = tuple(type(a) is not Var or i < nreq for i, a in enumerate(c.args))
        params_bound = [set(p for p, b in zip(r.params, minimal) if b) for r in callee]
        if all(self.sips([self.desugar(x) for x in r.clauses], pb, r, check=True) is not None
               for r, pb in zip(callee, params_bound)):
            return minimal
        return full

    def sips(self, body: list, bound: set, rule: Rule, check: bool = False) -> list | None:
        """A static evaluation order for ``body`` given ``bound`` head variables (the sideways
        information passing strategy). None (with ``check``) or an error when none exists."""
        pending = list(body)
        bound = set(bound)
        out = []
        others_cache: set = set()
        while pending:
            best, best_cost = -1, 0.0
            for c in pending:
                others_cache |= clause_binds(c)
            for i, c in enumerate(pending):
                t = type(c)
                if t is Pred or t is FnExpr:
                    if not c.vars <= bound:
                        continue
                    cost = 0.0
                elif t is Not:
                    if c.join is not None:
                        if not c.vars <= bound:
                            continue
                    else:
                        others = set()
                        for x in pending:
                            if x is not c:
                                others |= clause_binds(x)
                        if not (c.vars & others) <= bound or not c.vars & bound:
                            continue
                    cost = 0.5
                elif t is Pattern:
                    nb = sum(1 for x in c.terms if type(x) is not Var or x in bound)
                    cost = 10.0 - 2 * nb - (3 if type(c.terms[0]) is not Var or c.terms[0] in bound else 0)
                elif t is Or:
                    if not set(c.req) <= bound:
                        continue
                    cost = 20.0 - len(c.vars & bound)
                elif t is RuleCall:
                    callee = self.rules.get(c.name)
                    nreq = len(callee[0].req) if callee else 0
                    if any(type(a) is Var and a not in bound for a in c.args[:nreq]):
                        continue
                    cost = 30.0 - len(c.vars & bound)
                else:
                    cost = 5.0
                if best < 0 or cost < best_cost:
                    best, best_cost = i, cost
            if best < 0:
                if check:
                    return None
                for c in pending:
                    if isinstance(c, Pred | FnExpr | Not):
                        missing = c.vars - bound
                        if missing:
                            raise insufficient(c, missing)
                        names = " ".join(sorted(v.name for v in c.vars))
                        raise QueryError(INSUFFICIENT, f"Insufficient bindings: none of #{{{names}}} is bound in "
                                                       f"{show(c.form)}", {"form": c.form})
                raise insufficient(pending[0], pending[0].vars - bound)
            c = pending.pop(best)
            out.append(c)
            bound |= clause_binds(c)
        return out

    def run(self) -> None:
        """Semi-naive evaluation to the fixpoint."""
        env = self.env
        tables = list(self.tables.values())
        while any(t.delta for t in tables):
            new: dict[int, set] = {}
            for pr in self.prules:
                for j in pr.atoms:
                    atom = pr.body[j]
                    if not atom.table.delta:
                        continue
                    atom.use_delta = True
                    try:
                        start = atom.apply(env, [], set())
                    finally:
                        atom.use_delta = False
                    rest = [c for i, c in enumerate(pr.body) if i != j]
                    rels = solve(env, start, rest, pr.src)
                    got = _project_terms(rels, pr.head_terms, pr)
                    if got:
                        s = new.get(id(pr.head))
                        if s is None:
                            new[id(pr.head)] = got
                        else:
                            s |= got
            for t in tables:
                got = new.get(id(t))
                if got:
                    d = got - t.rows
                    t.delta = d
                    if d:
                        t.add(d)
                else:
                    t.delta = set()


class _Form:
    __slots__ = ("form", "vars")

    def __init__(self, form: Any):
        self.form = form
        self.vars = frozenset()


def _project_terms(rels: list[Rel], terms: tuple, pr: PRule) -> set:
    if any(not r.rows for r in rels):
        return set()
    vars = tuple(dict.fromkeys(t for t in terms if type(t) is Var))
    from .relation import project

    got = project(rels, vars)
    if got is None:
        missing = set(vars) - bound_vars(rels)
        raise insufficient(_Form(pr.head.key), missing)
    if len(vars) == len(terms) and all(type(t) is Var for t in terms):
        return got
    pos = {v: i for i, v in enumerate(vars)}
    return {tuple(r[pos[t]] if type(t) is Var else t for t in terms) for r in got}


def eval_rule_call(env: Env, rels: list[Rel], c: RuleCall, src: str, bound: set) -> list[Rel]:
    """Join the answers of rule call ``c`` into ``rels``."""
    prog = Program(env)
    branches = prog.branches(c.name, c.form)
    if len(branches[0].params) != len(c.args):
        raise QueryError("query/where", f"Rule '{c.name} takes {len(branches[0].params)} arguments, called with "
                                        f"{len(c.args)} in {show(c.form)}", {"form": c.form})
    adorn = prog.adornment(c, branches, bound, True)
    prog.top_free = not any(adorn)
    csrc = c.src.name if c.src is not None else src
    key = (csrc, c.name, adorn)
    bvars = tuple(dict.fromkeys(a for a, b in zip(c.args, adorn) if b and type(a) is Var))
    comp, rest = merge(rels, bvars)
    seed_rel = _seed(comp, bvars)
    pos = {v: i for i, v in enumerate(bvars)}
    seed = {tuple(r[pos[a]] if type(a) is Var else a for a, b in zip(c.args, adorn) if b) for r in seed_rel.rows}
    guard = (key, frozenset(seed) if len(seed) < 64 else id(rels))
    if guard in env.solving:
        raise QueryError("query/where", f"Rule '{c.name} depends on itself through negation: {show(c.form)}",
                         {"form": c.form})
    env.solving.add(guard)
    was_caching = env.caching
    env.caching = True
    try:
        magic = prog.table("magic", key, sum(adorn))
        ans = prog.table("ans", key, len(c.args))
        prog.compile_all()
        magic.delta = set(seed)
        magic.add(magic.delta)
        prog.run()
    finally:
        env.caching = was_caching
        env.solving.discard(guard)
    atom = TableAtom(ans, c.args, c.form)
    if comp is None:
        return [*rest, atom.rel()]
    return atom.apply(env, [*rest, comp], bound)
