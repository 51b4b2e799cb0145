"""DataScript's built-in query functions and predicates, and the built-in aggregates, in Python.

Semantics follow Clojure/DataScript where Python differs: only ``None`` and ``False`` are false;
``=`` tells booleans from numbers; ``<``/``>``/``<=``/``>=`` and ``compare``, ``min``/``max`` compare
any two values in the database's total order (DataScript 1.8.1 does the same), so ``(< ?a 10)`` is
defined for a string ``?a``; ``str`` prints ``nil``/``true``/keywords the Clojure way.

Functions that need the database (``get-else``, ``get-some``, ``missing?``) take it as their first
argument (``$`` in the query). The random ones (``rand``, ``rand-int``, aggregates ``rand`` and
``sample``) take their randomness from the ``random`` argument of ``q`` (a ``random.Random`` or a
seed) or from a ``random.Random`` passed as an input; without one they raise ``QueryError``
(``query/random``): the core has no global randomness.
"""

from __future__ import annotations

import math
import random as _random
import re
from collections.abc import Callable, Mapping
from fractions import Fraction
from functools import cmp_to_key
from itertools import pairwise
from typing import Any

from ..edn import write_edn
from ..errors import QueryError
from ..values import Keyword, Symbol, compare_values

__all__ = ["AGGREGATES", "BUILTINS", "DB_FUNCTIONS", "RANDOM_FUNCTIONS", "truthy"]


def truthy(x: Any) -> bool:
    """Clojure truthiness: everything but ``None`` and ``False``."""
    return x is not None and x is not False


def _is_num(x: Any) -> bool:
    return (isinstance(x, int | float | Fraction) and not isinstance(x, bool)) or type(x).__name__ == "Decimal"


def _same(a: Any, b: Any) -> bool:
    """Clojure ``=`` on two values: Python equality, booleans apart from numbers."""
    if (type(a) is bool) != (type(b) is bool):
        return False
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def eq(*xs: Any) -> bool:
    return all(_same(xs[0], x) for x in xs[1:])


def num_eq(*xs: Any) -> bool:
    for x in xs:
        _check_num(x, "==")
    return all(xs[0] == x for x in xs[1:])


def not_eq(*xs: Any) -> bool:
    return not eq(*xs)


def _chain(op: Callable[[int], bool]) -> Callable[..., bool]:
    def f(*xs: Any) -> bool:
        return all(op(compare_values(a, b)) for a, b in pairwise(xs))

    return f


lt = _chain(lambda c: c < 0)
gt = _chain(lambda c: c > 0)
le = _chain(lambda c: c <= 0)
ge = _chain(lambda c: c >= 0)


def _check_num(x: Any, fn: str) -> None:
    if not _is_num(x):
        raise TypeError(f"{fn} expects numbers, got {_pr(x)}")


def add(*xs: Any) -> Any:
    for x in xs:
        _check_num(x, "+")
    return sum(xs, 0)


def sub(*xs: Any) -> Any:
    for x in xs:
        _check_num(x, "-")
    if len(xs) == 1:
        return -xs[0]
    out = xs[0]
    for x in xs[1:]:
        out = out - x
    return out


def mul(*xs: Any) -> Any:
    out: Any = 1
    for x in xs:
        _check_num(x, "*")
        out = out * x
    return out


def _div2(a: Any, b: Any) -> Any:
    if type(a) is int and type(b) is int:
        q, r = divmod(a, b)
        return q if r == 0 else a / b
    return a / b


def div(*xs: Any) -> Any:
    for x in xs:
        _check_num(x, "/")
    if len(xs) == 1:
        return _div2(1, xs[0])
    out = xs[0]
    for x in xs[1:]:
        out = _div2(out, x)
    return out


def quot(a: Any, b: Any) -> Any:
    _check_num(a, "quot")
    _check_num(b, "quot")
    q = abs(a) // abs(b)
    q = q if (a >= 0) == (b >= 0) else -q
    return int(q) if type(a) is int and type(b) is int else float(q)


def rem(a: Any, b: Any) -> Any:
    _check_num(a, "rem")
    _check_num(b, "rem")
    return math.fmod(a, b) if isinstance(a, float) or isinstance(b, float) else a - b * quot(a, b)


def mod(a: Any, b: Any) -> Any:
    _check_num(a, "mod")
    _check_num(b, "mod")
    return a % b


def _minmax(pick: Callable[[int], bool]) -> Callable[..., Any]:
    def f(*xs: Any) -> Any:
        best = xs[0]
        for x in xs[1:]:
            if pick(compare_values(x, best)):
                best = x
        return best

    return f


def _pr(x: Any) -> str:
    """``pr-str`` of one value."""
    try:
        return write_edn(x)
    except Exception:
        return repr(x)


def _str1(x: Any) -> str:
    """Clojure ``str`` of one value."""
    if x is None:
        return ""
    if type(x) is str:
        return x
    if x is True:
        return "true"
    if x is False:
        return "false"
    if type(x) is int:
        return str(x)
    return _pr(x)


def str_(*xs: Any) -> str:
    return "".join(_str1(x) for x in xs)


def pr_str(*xs: Any) -> str:
    return " ".join(_pr(x) for x in xs)


def print_str(*xs: Any) -> str:
    return " ".join(_str1(x) if type(x) is not str else x for x in xs)


def _name(x: Any) -> str:
    if type(x) is str:
        return x
    if isinstance(x, Keyword):
        return x.local
    if isinstance(x, Symbol):
        n = x.name
        i = n.find("/", 1)
        return n[i + 1:] if i > 0 else n
    raise TypeError(f"Doesn't support name: {_pr(x)}")


def _namespace(x: Any) -> str | None:
    if isinstance(x, Keyword):
        return x.ns
    if isinstance(x, Symbol):
        i = x.name.find("/", 1)
        return x.name[:i] if i > 0 else None
    raise TypeError(f"Doesn't support namespace: {_pr(x)}")


def _keyword(*xs: Any) -> Keyword | None:
    if len(xs) == 1:
        x = xs[0]
        if isinstance(x, Keyword):
            return x
        if x is None:
            return None
        return Keyword(_name(x) if isinstance(x, Symbol) else str(x))
    ns, n = xs
    return Keyword(f"{ns}/{n}" if ns is not None else n)


def _count(x: Any) -> int:
    return 0 if x is None else len(x)


def _range(*xs: Any) -> list:
    if not xs:
        raise TypeError("(range) without arguments is infinite")
    if all(type(x) is int for x in xs):
        return list(range(*xs))
    start, end, step = (0, xs[0], 1) if len(xs) == 1 else (xs[0], xs[1], xs[2] if len(xs) > 2 else 1)
    out = []
    x = start
    while (step > 0 and x < end) or (step < 0 and x > end):
        out.append(x)
        x += step
    return out


def _not_empty(x: Any) -> Any:
    return x if x else None


def _empty(x: Any) -> bool:
    return x is None or len(x) == 0


def _contains(coll: Any, k: Any) -> bool:
    if coll is None:
        return False
    if isinstance(coll, Mapping | set | frozenset):
        return k in coll
    if isinstance(coll, list | tuple | str):
        return type(k) is int and 0 <= k < len(coll)
    raise TypeError(f"contains? not supported on {_pr(coll)}")


def _get(coll: Any, k: Any, default: Any = None) -> Any:
    if coll is None:
        return default
    if isinstance(coll, Mapping):
        return coll.get(k, default)
    if isinstance(coll, set | frozenset):
        return k if k in coll else default
    if isinstance(coll, list | tuple | str):
        return coll[k] if type(k) is int and 0 <= k < len(coll) else default
    return default


def _subs(s: str, start: int, end: int | None = None) -> str:
    if end is None:
        end = len(s)
    if not 0 <= start <= end <= len(s):
        raise IndexError(f"String index out of range: subs {start} {end} on a string of length {len(s)}")
    return s[start:end]


def _pattern(p: Any) -> re.Pattern:
    if isinstance(p, re.Pattern):
        return p
    if type(p) is str:
        return re.compile(p)
    raise TypeError(f"Expected a regex pattern, got {_pr(p)}")


def _match_value(m: re.Match) -> Any:
    if m.re.groups:
        return [m.group(0), *m.groups()]
    return m.group(0)


def _re_find(p: Any, s: str) -> Any:
    if type(s) is not str:
        raise TypeError("re-find must match against a string.")
    m = _pattern(p).search(s)
    return None if m is None else _match_value(m)


def _re_matches(p: Any, s: str) -> Any:
    if type(s) is not str:
        raise TypeError("re-matches must match against a string.")
    m = _pattern(p).fullmatch(s)
    return None if m is None else _match_value(m)


def _re_seq(p: Any, s: str) -> Any:
    if type(s) is not str:
        raise TypeError("re-seq must match against a string.")
    out = [_match_value(m) for m in _pattern(p).finditer(s)]
    return out or None


def _differ(*xs: Any) -> bool:
    half = len(xs) // 2
    return not eq(tuple(xs[:half]), tuple(xs[half:]))


def _and(*xs: Any) -> Any:
    out: Any = True
    for x in xs:
        if not truthy(x):
            return x
        out = x
    return out


def _or(*xs: Any) -> Any:
    out: Any = None
    for x in xs:
        if truthy(x):
            return x
        out = x
    return out


def _complement(f: Callable) -> Callable:
    return lambda *xs: not truthy(f(*xs))


def _hash_map(*xs: Any) -> dict:
    if len(xs) % 2:
        raise TypeError("hash-map needs an even number of arguments")
    return dict(zip(xs[::2], xs[1::2]))


def _blank(s: Any) -> bool:
    return s is None or (type(s) is str and s.strip() == "")


def _compare(a: Any, b: Any) -> int:
    return compare_values(a, b)


def _set(coll: Any) -> frozenset:
    return frozenset(() if coll is None else coll)


BUILTINS: dict[str, Callable[..., Any]] = {
    "=": eq, "==": num_eq, "not=": not_eq, "!=": not_eq,
    "<": lt, ">": gt, "<=": le, ">=": ge,
    "+": add, "-": sub, "*": mul, "/": div, "quot": quot, "rem": rem, "mod": mod,
    "inc": lambda x: add(x, 1), "dec": lambda x: sub(x, 1),
    "max": _minmax(lambda c: c > 0), "min": _minmax(lambda c: c < 0),
    "zero?": lambda x: _check_num(x, "zero?") or x == 0,
    "pos?": lambda x: _check_num(x, "pos?") or x > 0,
    "neg?": lambda x: _check_num(x, "neg?") or x < 0,
    "even?": lambda x: _check_num(x, "even?") or x % 2 == 0,
    "odd?": lambda x: _check_num(x, "odd?") or x % 2 == 1,
    "compare": _compare,
    "true?": lambda x: x is True, "false?": lambda x: x is False,
    "nil?": lambda x: x is None, "some?": lambda x: x is not None,
    "not": lambda x: not truthy(x), "and": _and, "or": _or,
    "complement": _complement, "identical?": lambda a, b: a is b or (_same(a, b) and type(a) is type(b)
                                                                      and isinstance(a, int | Keyword | Symbol)),
    "identity": lambda x: x, "keyword": _keyword, "meta": lambda x: None, "name": _name,
    "namespace": _namespace, "type": type,
    "vector": lambda *xs: list(xs), "list": lambda *xs: tuple(xs), "set": _set, "hash-map": _hash_map,
    "array-map": _hash_map,
    "count": _count, "range": _range, "not-empty": _not_empty, "empty?": _empty, "contains?": _contains,
    "str": str_, "pr-str": pr_str, "print-str": print_str,
    "println-str": lambda *xs: print_str(*xs) + "\n", "prn-str": lambda *xs: pr_str(*xs) + "\n",
    "subs": _subs, "get": _get,
    "re-find": _re_find, "re-matches": _re_matches, "re-seq": _re_seq, "re-pattern": _pattern,
    "-differ?": _differ, "ground": lambda x: x,
    "clojure.string/blank?": _blank,
    "clojure.string/includes?": lambda s, sub: sub in s,
    "clojure.string/starts-with?": lambda s, p: s.startswith(p),
    "clojure.string/ends-with?": lambda s, p: s.endswith(p),
    "tuple": lambda *xs: tuple(xs), "untuple": lambda x: x,
}
"""Name -> function, for names that need neither the database nor randomness."""


# Functions that take the database first ----------------------------------------------------------


def _attr_name(a: Any) -> Any:
    return a.name if isinstance(a, Keyword) else a


def get_else(source: Any, e: Any, a: Any, default: Any) -> Any:
    if default is None:
        raise QueryError("query/where", "get-else: nil default value is not supported", {"fn": "get-else"})
    v = source.first_value(e, _attr_name(a))
    return default if v is None else v[0]


def get_some(source: Any, e: Any, *attrs: Any) -> Any:
    for a in attrs:
        name = _attr_name(a)
        v = source.first_value(e, name)
        if v is not None:
            return (a, v[0])
    return None


def missing(source: Any, e: Any, a: Any) -> bool:
    return source.first_value(e, _attr_name(a), strict=False) is None


DB_FUNCTIONS: dict[str, Callable[..., Any]] = {"get-else": get_else, "get-some": get_some, "missing?": missing}
"""Name -> function taking a query source (``$``) first; the engine passes its source object."""


# Random functions (randomness comes from outside) ------------------------------------------------


def _rand(rng: _random.Random, n: Any = 1) -> float:
    return rng.random() * n


def _rand_int(rng: _random.Random, n: int) -> int:
    return int(rng.random() * n)


RANDOM_FUNCTIONS: dict[str, Callable[..., Any]] = {"rand": _rand, "rand-int": _rand_int}
"""Name -> function taking a ``random.Random`` first."""


# Aggregates --------------------------------------------------------------------------------------

_ckey = cmp_to_key(compare_values)


def _sum(xs: list) -> Any:
    out: Any = 0
    for x in xs:
        _check_num(x, "sum")
        out = out + x
    return out


def _avg(xs: list) -> Any:
    return _div2(_sum(xs), len(xs))


def _median(xs: list) -> Any:
    terms = sorted(xs, key=_ckey)
    n = len(terms)
    mid = n >> 1
    if n % 2:
        return terms[mid]
    return _div2(add(terms[mid - 1], terms[mid]), 2)


def _variance(xs: list) -> Any:
    mean = _avg(xs)
    return _div2(_sum([(x - mean) * (x - mean) for x in xs]), len(xs))


def _stddev(xs: list) -> float:
    return math.sqrt(_variance(xs))


def _agg_min(*args: Any) -> Any:
    """``(min ?x)``, or ``(min n ?x)``: the ``n`` smallest values in ascending order."""
    if len(args) == 1:
        return min(args[0], key=_ckey)
    n, xs = args
    return sorted(xs, key=_ckey)[:n] if n > 0 else []


def _agg_max(*args: Any) -> Any:
    """``(max ?x)``, or ``(max n ?x)``: the ``n`` largest values in ascending order, as DataScript gives them."""
    if len(args) == 1:
        return max(args[0], key=_ckey)
    n, xs = args
    if n <= 0:  # DataScript's reduce keeps the largest value even then
        return [max(xs, key=_ckey)] if xs else []
    return sorted(xs, key=_ckey)[max(len(xs) - n, 0):]


def _distinct(xs: list) -> set:
    return set(xs)


def _count_distinct(xs: list) -> int:
    return len(set(xs))


AGGREGATES: dict[str, Callable[..., Any]] = {
    "count": len, "count-distinct": _count_distinct, "sum": _sum, "avg": _avg, "median": _median,
    "variance": _variance, "stddev": _stddev, "min": _agg_min, "max": _agg_max, "distinct": _distinct,
}
"""Name -> aggregate over the list of a group's values (extra leading arguments first)."""


def _agg_rand(rng: _random.Random, *args: Any) -> Any:
    if len(args) == 1:
        xs = args[0]
        return xs[int(rng.random() * len(xs))]
    n, xs = args
    return [xs[int(rng.random() * len(xs))] for _ in range(n)]


def _agg_sample(rng: _random.Random, n: int, xs: list) -> list:
    xs = list(xs)
    rng.shuffle(xs)
    return xs[:n]


RANDOM_AGGREGATES: dict[str, Callable[..., Any]] = {"rand": _agg_rand, "sample": _agg_sample}
"""Aggregates taking a ``random.Random`` first."""

FUNCTION_NAMES = frozenset(BUILTINS) | frozenset(DB_FUNCTIONS) | frozenset(RANDOM_FUNCTIONS)
"""Every built-in function name (the parser uses it to tell calls from lookup refs in Python data)."""
