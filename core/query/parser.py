"""Parsing Datalog queries and rules into immutable values, with errors that say where they went wrong.

A query arrives as EDN text (vector or map form) or as the same structure in Python data. Both become
one ``Query`` value. Text queries are cached in an LRU keyed by the text; data queries by a frozen copy
of the data when it is hashable.

Spelling rules (EDN text):

* ``?x`` variables, ``_`` blank, ``$``/``$name`` sources, ``%`` rules, ``...`` and ``.`` in find/bindings;
* a keyword in attribute position (``[?e :person/name ?n]``) is the attribute name ``"person/name"``;
  elsewhere it is a ``Keyword`` value;
* ``[...]`` is a clause or a binding, ``(...)`` a call: ``[(> ?a 1)]``, ``(not ...)``, ``(rule ?x)``.

Python data additionally accepts plain strings for the special symbols: ``"?x"`` is a variable,
``"_"`` the blank, ``"$"``/``"$x"`` sources, ``"%"`` rules, ``"..."``/``"."`` in find and bindings;
map-form keys may be ``"find"``/``":find"``/``kw("find")``; vector-form keys must be keywords
(``kw("find")``) or ``":find"``. Calls are tuples: ``[(">", "?a", 1)]``, ``("not", [...])``,
``("follows", "?x", "?y")`` (a list with a non-variable string or symbol head is read as a call too,
and so is a list headed by a Python callable). So a string *value* starting with ``?`` or ``$`` cannot
be written in a data query: pass it as an input.
"""

from __future__ import annotations

from typing import Any

from ..edn import EdnError, read_edn, write_edn
from ..errors import QueryError
from ..forms import FormCache
from ..values import Keyword, Symbol, freeze
from .builtins import FUNCTION_NAMES

__all__ = [
    "BLANK",
    "And",
    "Agg",
    "BindColl",
    "BindIgnore",
    "BindScalar",
    "BindTuple",
    "FnExpr",
    "Not",
    "Or",
    "Pattern",
    "Pred",
    "Pull",
    "Query",
    "Rule",
    "RuleCall",
    "Src",
    "Var",
    "clear_query_cache",
    "parse_query",
    "parse_rules",
    "show",
]

SYNTAX = "query/syntax"


# ------------------------------------------------------------------------------------------------
# Terms


class _Name:
    """A name interned per subclass: equal names are the same object, so comparison is identity."""

    __slots__ = ("name",)
    _interned: dict[str, _Name]

    def __init_subclass__(cls) -> None:
        cls._interned = {}

    def __new__(cls, name: str) -> _Name:
        v = cls._interned.get(name)
        if v is None:
            v = object.__new__(cls)
            object.__setattr__(v, "name", name)
            cls._interned[name] = v
        return v

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __repr__(self) -> str:
        return self.name

    def __reduce__(self):
        return (type(self), (self.name,))


class Var(_Name):
    """A logic variable (``?x``)."""

    __slots__ = ()


class Src(_Name):
    """A source variable (``$``, ``$db``)."""

    __slots__ = ()


class _Blank:
    __slots__ = ()

    def __repr__(self) -> str:
        return "_"


BLANK = _Blank()
"""The placeholder ``_``: matches anything, binds nothing."""

DEFAULT_SRC = Src("$")


def show(x: Any) -> str:
    """EDN-ish text of a query fragment, for error messages."""
    try:
        return write_edn(_unparse(x))
    except Exception:
        return repr(x)


def _unparse(x: Any) -> Any:
    if isinstance(x, Var | Src):
        return Symbol(x.name)
    if x is BLANK:
        return Symbol("_")
    if isinstance(x, list):
        return [_unparse(y) for y in x]
    if isinstance(x, tuple):
        return tuple(_unparse(y) for y in x)
    if callable(x) and not isinstance(x, Keyword | Symbol | type):
        return Symbol(getattr(x, "__name__", "fn"))
    return x


# ------------------------------------------------------------------------------------------------
# Bindings (in :in and function expressions)


class BindScalar:
    """``?x``: one value."""

    __slots__ = ("var",)

    def __init__(self, var: Var):
        self.var = var

    def vars(self) -> tuple[Var, ...]:
        return (self.var,)

    def __repr__(self) -> str:
        return repr(self.var)


class BindIgnore:
    """``_``: a value that is not bound."""

    __slots__ = ()

    def vars(self) -> tuple[Var, ...]:
        return ()

    def __repr__(self) -> str:
        return "_"


class BindTuple:
    """``[?a ?b]``: a sequence bound element-wise."""

    __slots__ = ("items",)

    def __init__(self, items: tuple):
        self.items = items

    def vars(self) -> tuple[Var, ...]:
        return tuple(v for b in self.items for v in b.vars())

    def __repr__(self) -> str:
        return f"[{' '.join(map(repr, self.items))}]"


class BindColl:
    """``[?x ...]`` (and ``[[?a ?b]]``, a collection of tuples): one binding per element."""

    __slots__ = ("inner",)

    def __init__(self, inner: Any):
        self.inner = inner

    def vars(self) -> tuple[Var, ...]:
        return self.inner.vars()

    def __repr__(self) -> str:
        return f"[{self.inner!r} ...]"


class InSrc:
    """``$name`` in ``:in``: a database or collection source."""

    __slots__ = ("src",)

    def __init__(self, src: Src):
        self.src = src

    def __repr__(self) -> str:
        return self.src.name


class InRules:
    """``%`` in ``:in``: the rules."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "%"


class InPatternName:
    """A plain symbol in ``:in``: a pull pattern given as input."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return self.name


# ------------------------------------------------------------------------------------------------
# Clauses


class Clause:
    """Base of where clauses. ``vars`` are the variables the clause mentions (outside nested scopes
    of ``or-join``/``not-join``: only the join variables); ``form`` is the clause as written."""

    __slots__ = ("form", "vars")


class Pattern(Clause):
    """A data pattern ``[src? e a v tx added]`` (terms: Var, BLANK or a constant)."""

    __slots__ = ("src", "terms")

    def __init__(self, src: Src | None, terms: tuple, form: Any):
        self.src = src
        self.terms = terms
        self.form = form
        self.vars = frozenset(t for t in terms if type(t) is Var)


class Pred(Clause):
    """A predicate expression ``[(f args...)]``; ``fn`` is a Symbol name, a Var or a callable."""

    __slots__ = ("args", "fn")

    def __init__(self, fn: Any, args: tuple, form: Any):
        self.fn = fn
        self.args = args
        self.form = form
        vs = {a for a in args if type(a) is Var}
        if type(fn) is Var:
            vs.add(fn)
        self.vars = frozenset(vs)


class FnExpr(Clause):
    """A function expression ``[(f args...) binding]``; ``vars`` are its inputs, ``out`` what it binds."""

    __slots__ = ("args", "binding", "fn", "out")

    def __init__(self, fn: Any, args: tuple, binding: Any, form: Any):
        self.fn = fn
        self.args = args
        self.binding = binding
        self.form = form
        vs = {a for a in args if type(a) is Var}
        if type(fn) is Var:
            vs.add(fn)
        self.vars = frozenset(vs)
        self.out = tuple(dict.fromkeys(binding.vars()))


class RuleCall(Clause):
    """A rule invocation ``(src? name args...)``."""

    __slots__ = ("args", "name", "src")

    def __init__(self, src: Src | None, name: str, args: tuple, form: Any):
        self.src = src
        self.name = name
        self.args = args
        self.form = form
        self.vars = frozenset(a for a in args if type(a) is Var)


class Not(Clause):
    """``(not ...)`` (``join`` None: joins on every variable bound outside) or ``(not-join [vars] ...)``."""

    __slots__ = ("clauses", "inner_vars", "join", "src")

    def __init__(self, src: Src | None, join: tuple | None, clauses: tuple, form: Any):
        self.src = src
        self.join = join
        self.clauses = clauses
        self.form = form
        self.inner_vars = frozenset(v for c in clauses for v in _all_vars(c))
        self.vars = frozenset(join) if join is not None else self.inner_vars


class Or(Clause):
    """``(or ...)`` (joins on every variable of its branches) or ``(or-join [[req...] opt...] ...)``.

    ``branches`` are tuples of clauses (an ``and`` branch has several)."""

    __slots__ = ("branches", "join", "req", "src")

    def __init__(self, src: Src | None, req: tuple, join: tuple | None, branches: tuple, form: Any):
        self.src = src
        self.req = req
        self.branches = branches
        self.form = form
        if join is None:
            join = tuple(dict.fromkeys(v for b in branches for c in b for v in sorted(_all_vars(c), key=_vkey)))
            self.join = None
        else:
            self.join = join
        self.vars = frozenset(join)

    def join_vars(self) -> tuple[Var, ...]:
        """The variables the branches are joined on with the outside."""
        if self.join is not None:
            return self.join
        return tuple(sorted(self.vars, key=_vkey))


class And(Clause):
    """``(and ...)``: only inside ``or``."""

    __slots__ = ("clauses",)

    def __init__(self, clauses: tuple, form: Any):
        self.clauses = clauses
        self.form = form
        self.vars = frozenset(v for c in clauses for v in _all_vars(c))


def _vkey(v: Var) -> str:
    return v.name


def _all_vars(c: Clause) -> frozenset:
    if isinstance(c, FnExpr):
        return c.vars | frozenset(c.out)
    return c.vars


def reads_default_source(c: Clause) -> bool:
    """Whether a clause reads the default source ``$``: a pattern or rule call without a source, a
    function given ``$``, a ``not``/``or`` (without another source) over such clauses."""
    t = type(c)
    if t is Pattern or t is RuleCall:
        return c.src in (None, DEFAULT_SRC)
    if t is Pred or t is FnExpr:
        return DEFAULT_SRC in c.args
    if t is Not:
        return c.src in (None, DEFAULT_SRC) and any(reads_default_source(x) for x in c.clauses)
    if t is Or:
        return c.src in (None, DEFAULT_SRC) and any(reads_default_source(x) for b in c.branches for x in b)
    if t is And:
        return any(reads_default_source(x) for x in c.clauses)
    return False


def clause_binds(c: Clause) -> frozenset:
    """Variables a clause can bind (empty for predicates and negations)."""
    if isinstance(c, Pattern | RuleCall | Or):
        return c.vars
    if isinstance(c, FnExpr):
        return frozenset(c.out)
    return frozenset()


# ------------------------------------------------------------------------------------------------
# Find elements, rules, query


class Pull:
    """``(pull src? ?e pattern)`` in :find; ``pattern`` is data, or a Var/str naming an input."""

    __slots__ = ("pattern", "src", "var")

    def __init__(self, src: Src | None, var: Var, pattern: Any):
        self.src = src
        self.var = var
        self.pattern = pattern

    def __repr__(self) -> str:
        return f"(pull {self.var!r} ...)"


class Agg:
    """An aggregate ``(fn args... ?x)``: ``fn`` a Symbol name, a Var bound to a callable, or a callable."""

    __slots__ = ("args", "fn", "var")

    def __init__(self, fn: Any, args: tuple, var: Var):
        self.fn = fn
        self.args = args
        self.var = var

    def __repr__(self) -> str:
        return f"({self.fn} {self.var!r})"


class Rule:
    """One branch of a rule: ``[(name [req...] opt...) clauses...]``."""

    __slots__ = ("clauses", "form", "name", "params", "req")

    def __init__(self, name: str, req: tuple, params: tuple, clauses: tuple, form: Any):
        self.name = name
        self.req = req
        self.params = params
        self.clauses = clauses
        self.form = form


class Query:
    """A parsed query (opaque to users; immutable)."""

    __slots__ = ("find", "find_kind", "form", "in_given", "inputs", "return_keys", "return_kind", "where",
                 "with_")

    def __init__(self, find: tuple, find_kind: str, return_kind: str | None, return_keys: tuple,
                 with_: tuple, inputs: tuple, where: tuple, form: Any, in_given: bool = True):
        self.in_given = in_given  # False: :in was inferred from the use of $
        self.find = find
        self.find_kind = find_kind
        self.return_kind = return_kind
        self.return_keys = return_keys
        self.with_ = with_
        self.inputs = inputs
        self.where = where
        self.form = form

    def __repr__(self) -> str:
        return f"<Query {show(self.form)}>"


# ------------------------------------------------------------------------------------------------
# The parser


def _err(message: str, fragment: Any = None, code: str = SYNTAX) -> QueryError:
    return QueryError(code, message, {"form": fragment})


_SPECIAL_HEADS = {"not", "not-join", "or", "or-join", "and"}
_QUERY_KEYS = ("find", "keys", "strs", "syms", "with", "in", "where")


class _Parser:
    """Turns query data into ``Query`` (``edn``: the data came from EDN text, so strings are values)."""

    __slots__ = ("edn",)

    def __init__(self, edn: bool):
        self.edn = edn

    # -- atoms --------------------------------------------------------------------------------

    def sym_name(self, x: Any) -> str | None:
        """The name of a symbol (or, in Python data, of a string), else None."""
        if type(x) is Symbol:
            return x.name
        if not self.edn and type(x) is str:
            return x
        return None

    def var(self, x: Any) -> Var | None:
        n = self.sym_name(x)
        if n is not None and n[:1] == "?" and len(n) > 1:
            return Var(n)
        return None

    def src(self, x: Any) -> Src | None:
        n = self.sym_name(x)
        if n is not None and n[:1] == "$":
            return Src(n)
        return None

    def is_blank(self, x: Any) -> bool:
        return self.sym_name(x) == "_"

    def term(self, x: Any, where: Any) -> Any:
        """A pattern/argument term: Var, BLANK, Src or a constant."""
        n = self.sym_name(x)
        if n is not None:
            if n == "_":
                return BLANK
            if n[:1] == "?" and len(n) > 1:
                return Var(n)
            if n[:1] == "$":
                return Src(n)
            if n == "%":
                raise _err(f"Rules var % can't be used as a value in {show(where)}", where)
        if type(x) is list:
            return freeze(x)  # a lookup ref or tuple constant written as a vector, nested ones too
        return x

    # -- query --------------------------------------------------------------------------------

    def query(self, form: Any) -> Query:
        sections = self.sections(form)
        if "find" not in sections:
            raise _err(f"Query should have :find, got: {show(form)}", form)
        find_kind, find = self.find_spec(sections["find"], form)
        return_kind, return_keys = None, ()
        present = [k for k in ("keys", "strs", "syms") if k in sections]
        if len(present) > 1:
            raise _err("Only one of :keys/:strs/:syms may be present", form)
        if present:
            return_kind = present[0]
            names = []
            for k in sections[return_kind]:
                n = k.name if type(k) in (Symbol, Keyword) else k if type(k) is str else None
                if n is None:
                    raise _err(f"Expected a symbol in :{return_kind}, got: {show(k)}", k)
                names.append(n)
            return_keys = tuple(names)
            if len(return_keys) != len(find):
                raise _err(
                    f"Count of :{return_kind} must match count of :find: {len(return_keys)} vs {len(find)}", form
                )
            if find_kind not in ("rel", "tuple"):
                raise _err(f":{return_kind} is only allowed with relation and tuple find specs", form)
        with_ = tuple(self.with_var(x) for x in sections.get("with", ()))
        find_vars = {x if type(x) is Var else x.var for x in find}
        both = [v.name for v in with_ if v in find_vars]
        if both:
            raise _err(f":find and :with should not use same variables: [{' '.join(both)}]", form)
        where = tuple(self.clause(c) for c in sections.get("where", ()))
        if "in" in sections:
            inputs = tuple(self.in_binding(x) for x in sections["in"])
        elif any(reads_default_source(c) for c in where) or any(
                type(x) is Pull and x.src in (None, DEFAULT_SRC) for x in find):
            inputs = (InSrc(DEFAULT_SRC),)
        else:
            inputs = ()  # DataScript's rule: no :in and no use of $ means no inputs
        seen: set = set()
        for b in inputs:
            key = b.src.name if isinstance(b, InSrc) else "%" if isinstance(b, InRules) else None
            if key is not None:
                if key in seen:
                    raise _err(f"Duplicate input {key} in :in", form)
                seen.add(key)
        return Query(find, find_kind, return_kind, return_keys, with_, inputs, where, form, "in" in sections)

    def sections(self, form: Any) -> dict[str, list]:
        out: dict[str, list] = {}
        if isinstance(form, dict):
            for k, v in form.items():
                name = self.key_name(k, allow_plain=True)
                if name is None:
                    raise _err(f"Unknown query key {show(k)}: expected one of :find :keys :strs :syms :with :in "
                               f":where", form)
                if not isinstance(v, list | tuple):
                    raise _err(f"Expected a vector of forms after :{name}, got: {show(v)}", form)
                out[name] = list(v)
            return out
        if not isinstance(form, list | tuple):
            raise _err(f"Query should be a vector or a map, got: {show(form)}", form)
        current = None
        for x in form:
            name = self.key_name(x, allow_plain=False)
            if name is not None:
                if name in out:
                    raise _err(f"Duplicate :{name} in query", form)
                current = name
                out[name] = []
            elif current is None:
                raise _err(f"Query should start with a keyword such as :find, got: {show(x)}", form)
            else:
                out[current].append(x)
        return out

    def key_name(self, k: Any, allow_plain: bool) -> str | None:
        if type(k) is Keyword:
            name = k.name
        elif type(k) is str and not self.edn:
            name = k[1:] if k.startswith(":") else k if allow_plain else None
        else:
            return None
        return name if name in _QUERY_KEYS else None

    def with_var(self, x: Any) -> Var:
        v = self.var(x)
        if v is None:
            raise _err(f"Expected a variable in :with, got: {show(x)}", x)
        return v

    # -- find ---------------------------------------------------------------------------------

    def find_spec(self, elems: list, form: Any) -> tuple[str, tuple]:
        if not elems:
            raise _err("Query :find is empty", form)
        if len(elems) == 2 and self.sym_name(elems[1]) == ".":
            return "scalar", (self.find_elem(elems[0]),)
        if len(elems) == 1 and type(elems[0]) is list:
            inner = elems[0]
            if len(inner) == 2 and self.sym_name(inner[1]) == "...":
                return "coll", (self.find_elem(inner[0]),)
            if not inner:
                raise _err("Tuple find spec [] is empty", form)
            return "tuple", tuple(self.find_elem(x) for x in inner)
        return "rel", tuple(self.find_elem(x) for x in elems)

    def find_elem(self, x: Any) -> Any:
        v = self.var(x)
        if v is not None:
            return v
        if isinstance(x, tuple) or (type(x) is list and x and not self.edn):
            if not x:
                raise _err("Empty find element ()", x)
            head = x[0]
            hn = self.sym_name(head)
            if hn == "pull":
                args = list(x[1:])
                src = self.src(args[0]) if args else None
                if src is not None:
                    args = args[1:]
                if len(args) != 2 or self.var(args[0]) is None:
                    raise _err(f"Expected (pull ?var pattern) in :find, got: {show(x)}", x)
                pat = args[1]
                pv = self.var(pat)
                if pv is not None:
                    pat = pv
                elif type(pat) is Symbol:
                    pat = pat.name  # a pattern name bound in :in
                return Pull(src, self.var(args[0]), pat)
            fn: Any
            hv = self.var(head)
            if hv is not None:
                fn = hv
            elif hn is not None:
                fn = Symbol(hn)
            elif callable(head):
                fn = head
            else:
                raise _err(f"Expected an aggregate or pull in :find, got: {show(x)}", x)
            if len(x) < 2:
                raise _err(f"Aggregate {show(x)} needs a variable", x)
            var = self.var(x[-1])
            if var is None:
                raise _err(f"The last argument of aggregate {show(x)} must be a variable", x)
            args = tuple(self.term(a, x) for a in x[1:-1])
            return Agg(fn, args, var)
        raise _err(f"Expected a variable, pull or aggregate in :find, got: {show(x)}", x)

    # -- :in ----------------------------------------------------------------------------------

    def in_binding(self, x: Any) -> Any:
        n = self.sym_name(x)
        if n is not None:
            if n == "%":
                return InRules()
            if n[:1] == "$":
                return InSrc(Src(n))
            if n == "_":
                return BindIgnore()
            if n[:1] == "?":
                return BindScalar(Var(n))
            if type(x) is Symbol:
                return InPatternName(n)
        return self.binding(x, x)

    def binding(self, x: Any, where: Any) -> Any:
        n = self.sym_name(x)
        if n is not None:
            if n == "_":
                return BindIgnore()
            v = self.var(x)
            if v is not None:
                return BindScalar(v)
        if type(x) is list or (type(x) is tuple and not self.edn):
            if len(x) == 2 and self.sym_name(x[1]) == "...":
                return BindColl(self.binding(x[0], where))
            if len(x) == 1 and isinstance(x[0], list | tuple):
                return BindColl(self.binding(x[0], where))
            if not x:
                raise _err(f"Empty binding form in {show(where)}", where)
            items = tuple(self.binding(y, where) for y in x)
            return BindTuple(items)
        raise _err(f"Cannot parse binding {show(x)} in {show(where)}: expected ?var, _, [?a ?b], [?x ...] or "
                   f"[[?a ?b]]", where)

    # -- :where -------------------------------------------------------------------------------

    def clauses(self, forms: Any, where: Any) -> tuple:
        return tuple(self.clause(c) for c in forms)

    def clause(self, form: Any) -> Clause:
        if type(form) is tuple:
            return self.call_clause(form)
        if type(form) is list:
            if not form:
                raise _err("Empty clause []", form)
            head = form[0]
            if (type(head) is tuple and (self.edn or len(form) <= 2) and self.is_call(head)) or (
                    type(head) is list and not self.edn and head and callable(head[0])):
                return self.expr_clause(form)
            if not self.edn and self.sym_name(head) is not None and not self.src(head) and self.var(head) is None \
                    and not self.is_blank(head):
                return self.call_clause(tuple(form))
            if type(head) is Symbol and self.src(head) is None and self.var(head) is None \
                    and not self.is_blank(head):
                raise _err(f"Cannot parse clause {show(form)}: a data pattern can't start with symbol {head}; "
                           f"write calls in parentheses", form)
            return self.pattern(form)
        raise _err(f"Cannot parse clause {show(form)}: expected a data pattern [...], an expression [(f ...)], "
                   f"or (not ...)/(or ...)/(rule ...)", form)

    def is_call(self, t: tuple) -> bool:
        """Whether a parenthesized head is a call (else, in Python data, a lookup ref entity)."""
        if self.edn or len(t) != 2:
            return True
        head = t[0]
        if type(head) is Symbol or callable(head) or self.var(head) is not None:
            return True
        return type(head) is str and head in FUNCTION_NAMES

    def pattern(self, form: list) -> Pattern:
        src = self.src(form[0])
        terms = form[1:] if src is not None else form
        if not 1 <= len(terms) <= 5:
            raise _err(f"Data pattern {show(form)} should have 1 to 5 elements (e a v tx added)", form)
        out = []
        for i, t in enumerate(terms):
            x = self.term(t, form)
            if type(x) is Src:
                raise _err(f"Source {x.name} can only come first in data pattern {show(form)}", form)
            if i == 1 and type(x) is Keyword:
                x = x.name
            out.append(x)
        return Pattern(src, tuple(out), form)

    def fn_ref(self, head: Any, form: Any) -> Any:
        v = self.var(head)
        if v is not None:
            return v
        n = self.sym_name(head)
        if n is not None:
            return Symbol(n)
        if callable(head):
            return head
        raise _err(f"Expected a function name, a variable or a callable in {show(form)}, got: {show(head)}", form)

    def expr_clause(self, form: list) -> Clause:
        call = form[0]
        if not call:
            raise _err(f"Empty call () in {show(form)}", form)
        fn = self.fn_ref(call[0], form)
        args = tuple(self.term(a, form) for a in call[1:])
        if len(form) == 1:
            return Pred(fn, args, form)
        if len(form) == 2:
            binding = self.binding(form[1], form)
            return FnExpr(fn, args, binding, form)
        raise _err(f"Expression clause {show(form)} should be [(f args...)] or [(f args...) binding]", form)

    def call_clause(self, form: tuple) -> Clause:
        if not form:
            raise _err("Empty clause ()", form)
        src = self.src(form[0])
        rest = form[1:] if src is not None else form
        if not rest:
            raise _err(f"Clause {show(form)} has a source and nothing else", form)
        head = rest[0]
        name = self.sym_name(head)
        if name is None or name[:1] in ("?", "$") or name == "_":
            raise _err(f"Cannot parse clause {show(form)}: expected not, not-join, or, or-join, and or a rule name "
                       f"at its head", form)
        body = rest[1:]
        if name == "not":
            if not body:
                raise _err(f"(not) needs at least one clause: {show(form)}", form)
            return Not(src, None, self.clauses(body, form), form)
        if name == "not-join":
            if len(body) < 2 or not isinstance(body[0], list | tuple):
                raise _err(f"Expected (not-join [?vars...] clauses...), got: {show(form)}", form)
            join = tuple(self.join_var(v, form) for v in body[0])
            return Not(src, join, self.clauses(body[1:], form), form)
        if name == "or" or name == "or-join":
            req: tuple = ()
            join = None
            if name == "or-join":
                if len(body) < 2 or not isinstance(body[0], list | tuple):
                    raise _err(f"Expected (or-join [?vars...] clauses...), got: {show(form)}", form)
                spec = list(body[0])
                if spec and isinstance(spec[0], list | tuple):
                    req = tuple(self.join_var(v, form) for v in spec[0])
                    spec = spec[1:]
                join = req + tuple(self.join_var(v, form) for v in spec)
                body = body[1:]
            if not body:
                raise _err(f"({name}) needs at least one clause: {show(form)}", form)
            branches = []
            for b in body:
                c = self.clause(b)
                branches.append(c.clauses if isinstance(c, And) else (c,))
            return Or(src, req, join, tuple(branches), form)
        if name == "and":
            if not body:
                raise _err(f"(and) needs at least one clause: {show(form)}", form)
            return And(self.clauses(body, form), form)
        args = []
        for a in body:
            t = self.term(a, form)
            if type(t) is Src:
                raise _err(f"Rule call {show(form)} can't take source {t.name} as an argument", form)
            args.append(t)
        if not args:
            raise _err(f"Rule call {show(form)} needs arguments", form)
        return RuleCall(src, name, tuple(args), form)

    def join_var(self, x: Any, form: Any) -> Var:
        v = self.var(x)
        if v is None:
            raise _err(f"Expected a variable in the join list of {show(form)}, got: {show(x)}", form)
        return v

    # -- rules --------------------------------------------------------------------------------

    def rules(self, form: Any) -> dict[str, tuple[Rule, ...]]:
        if not isinstance(form, list | tuple):
            raise _err(f"Rules should be a vector of rules, got: {show(form)}", form)
        out: dict[str, list[Rule]] = {}
        for r in form:
            rule = self.rule(r)
            branches = out.setdefault(rule.name, [])
            if branches and (len(branches[0].params) != len(rule.params) or len(branches[0].req) != len(rule.req)):
                raise _err(f"All branches of rule '{rule.name}' must have the same arity (and required vars): "
                           f"{show(r)}", r)
            branches.append(rule)
        return {k: tuple(v) for k, v in out.items()}

    def rule(self, form: Any) -> Rule:
        if not isinstance(form, list | tuple) or len(form) < 2 or not isinstance(form[0], list | tuple):
            raise _err(f"Expected a rule [(name ?args...) clauses...], got: {show(form)}", form)
        head = list(form[0])
        if not head:
            raise _err(f"Rule head () is empty in {show(form)}", form)
        name = self.sym_name(head[0])
        if name is None or name[:1] in ("?", "$", "%") or name in _SPECIAL_HEADS or name == "_":
            raise _err(f"Rule name should be a plain symbol, got: {show(head[0])} in {show(form)}", form)
        params = head[1:]
        req: tuple = ()
        if params and isinstance(params[0], list | tuple):
            req = tuple(self.join_var(v, form) for v in params[0])
            params = params[1:]
        opt = tuple(self.join_var(v, form) for v in params)
        allp = req + opt
        if not allp:
            raise _err(f"Rule '{name}' has no parameters: {show(form)}", form)
        if len(set(allp)) != len(allp):
            raise _err(f"Rule '{name}' repeats a parameter: {show(form)}", form)
        clauses = self.clauses(form[1:], form)
        return Rule(name, req, allp, clauses, form)


# ------------------------------------------------------------------------------------------------
# Entry points and caches

_CACHE = FormCache(256)
_RULES_CACHE = FormCache(256)


def _read(text: str, what: str) -> Any:
    try:
        return read_edn(text)
    except EdnError as err:
        raise QueryError(SYNTAX, f"Cannot read {what} {text!r}: {err}", {"text": text}) from err


def parse_query(query: Any) -> Query:
    """The parsed form of ``query`` (EDN text or Python data); ``QueryError`` ``query/syntax`` if malformed."""
    if isinstance(query, Query):
        return query
    return _CACHE.get_or_parse(query, lambda form, edn: _Parser(edn).query(_read(form, "query") if edn else form))


def parse_rules(rules: Any) -> dict[str, tuple[Rule, ...]]:
    """Rules (EDN text or data) as ``{name: (branch, ...)}``; ``QueryError`` ``query/syntax`` if malformed."""
    if isinstance(rules, dict) and all(isinstance(v, tuple) for v in rules.values()):
        return rules
    return _RULES_CACHE.get_or_parse(rules, lambda form, edn: _Parser(edn).rules(_read(form, "rules") if edn else form))


def clear_query_cache() -> None:
    """Forget every cached parsed query and rule set."""
    _CACHE.clear()
    _RULES_CACHE.clear()
