"""Atomic values of the data model: keywords, symbols, datoms, and the total order of values.

Attribute names are plain ``str`` (``"person/name"``); keyword *values* are ``Keyword`` objects,
interned so that equality is identity. Values of different types share one index, so every value
gets a type rank and indexes compare ``(rank, value)``, never Python objects of different types.
"""

from __future__ import annotations

import datetime as _dt
import decimal as _decimal
import uuid as _uuid
import weakref
from typing import Any, NamedTuple

from pyrsistent import PMap
from pyrsistent import pmap as _pmap


def _split(name: str) -> tuple[str | None, str]:
    """``(namespace, local name)`` of a keyword or symbol name, split at its first ``/`` as Clojure does."""
    slash = name.find("/", 1)
    return (name[:slash], name[slash + 1:]) if slash > 0 else (None, name)


def _order_key(name: str) -> tuple:
    """How Clojure orders keywords and symbols: no namespace first, then by namespace, then by name."""
    ns, local = _split(name)
    return (0, "", local) if ns is None else (1, ns, local)


class _Ordered:
    """Comparison by a precomputed ``order`` key (keywords with keywords, symbols with symbols)."""

    __slots__ = ()
    order: tuple

    def __lt__(self, other: Any) -> Any:
        return self.order < other.order if isinstance(other, _Ordered) else NotImplemented

    def __le__(self, other: Any) -> Any:
        return self.order <= other.order if isinstance(other, _Ordered) else NotImplemented

    def __gt__(self, other: Any) -> Any:
        return self.order > other.order if isinstance(other, _Ordered) else NotImplemented

    def __ge__(self, other: Any) -> Any:
        return self.order >= other.order if isinstance(other, _Ordered) else NotImplemented


class Keyword(_Ordered):
    """An interned keyword value such as ``:db.type/ref`` (spelled ``kw("db.type/ref")``).

    Keywords order as Clojure compares them (``order``): without a namespace first, then by
    namespace, then by name, so ``:a/b`` < ``:a-/b`` although ``"a-/b"`` < ``"a/b"`` as text.
    """

    __slots__ = ("__weakref__", "local", "name", "ns", "order")
    _interned: weakref.WeakValueDictionary[str, Keyword] = weakref.WeakValueDictionary()
    """Interned while referenced: keywords read off the wire do not pile up for good."""

    name: str
    ns: str | None
    local: str
    order: tuple

    def __new__(cls, name: str) -> Keyword:
        name = name[1:] if name.startswith(":") else name
        existing = cls._interned.get(name)
        if existing is not None:
            return existing
        self = object.__new__(cls)
        ns, local = _split(name)
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "ns", ns)
        object.__setattr__(self, "local", local)
        object.__setattr__(self, "order", _order_key(name))
        cls._interned[name] = self
        return self

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError("Keyword is immutable")

    def __repr__(self) -> str:
        return f"kw({self.name!r})"

    def __str__(self) -> str:
        return ":" + self.name

    def __hash__(self) -> int:
        return hash((Keyword, self.name))

    def __reduce__(self):
        return (Keyword, (self.name,))


def kw(name: str) -> Keyword:
    """The keyword named ``name`` (a leading colon is optional)."""
    return Keyword(name)


class Symbol(_Ordered):
    """An EDN symbol such as ``?e``, ``...`` or ``pull``; interned, and ordered, like ``Keyword``."""

    __slots__ = ("__weakref__", "name", "order")
    _interned: weakref.WeakValueDictionary[str, Symbol] = weakref.WeakValueDictionary()

    name: str
    order: tuple

    def __new__(cls, name: str) -> Symbol:
        existing = cls._interned.get(name)
        if existing is not None:
            return existing
        self = object.__new__(cls)
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "order", _order_key(name))
        cls._interned[name] = self
        return self

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError("Symbol is immutable")

    def __repr__(self) -> str:
        return f"Symbol({self.name!r})"

    def __str__(self) -> str:
        return self.name

    def __hash__(self) -> int:
        return hash((Symbol, self.name))

    def __reduce__(self):
        return (Symbol, (self.name,))


def sym(name: str) -> Symbol:
    """The symbol named ``name``."""
    return Symbol(name)


class Datom(NamedTuple):
    """One fact: entity ``e`` has attribute ``a`` with value ``v``, asserted (or retracted) in ``tx``."""

    e: int
    a: str
    v: Any
    tx: int
    added: bool = True

    def __repr__(self) -> str:
        return f"#datom [{self.e} {self.a!r} {self.v!r} {self.tx} {'true' if self.added else 'false'}]"


# ---------------------------------------------------------------------------------------------
# Total order of values: DataScript's, booleans < numbers < strings < keywords < ... < tuples.

RANK_NIL = 0
RANK_BOOL = 1
RANK_NUMBER = 2
RANK_STRING = 3
RANK_KEYWORD = 4
RANK_SYMBOL = 5
RANK_UUID = 6
RANK_INSTANT = 7
RANK_BYTES = 8
RANK_TUPLE = 9
RANK_OTHER = 10

RANKS: dict[type, int] = {
    # exact types only: value_rank handles subclasses
    type(None): RANK_NIL,
    bool: RANK_BOOL,
    int: RANK_NUMBER,
    float: RANK_NUMBER,
    _decimal.Decimal: RANK_NUMBER,
    str: RANK_STRING,
    Keyword: RANK_KEYWORD,
    Symbol: RANK_SYMBOL,
    _uuid.UUID: RANK_UUID,
    _dt.datetime: RANK_INSTANT,
    bytes: RANK_BYTES,
    tuple: RANK_TUPLE,
    list: RANK_TUPLE,  # a vector: the same value as the tuple of its elements (``index_value``)
}


def value_rank(v: Any) -> int:
    """The rank of ``v``'s type in the total order of values."""
    r = RANKS.get(type(v))
    if r is not None:
        return r
    for t, rank in RANKS.items():
        if isinstance(v, t) and t is not type(None):
            return rank
    return RANK_OTHER


class OrderedTuple(tuple):
    """A tuple value in the total order of values: shorter tuples first (as Clojure compares
    vectors), then element by element, ``None`` and mixed types included; ``(1, True)`` is not
    ``(1, 1)``. Indexes store tuple values in this form so every comparison is defined.
    """

    __slots__ = ()

    def _cmp(self, other: tuple) -> int:
        if len(self) != len(other):
            return -1 if len(self) < len(other) else 1
        for x, y in zip(self, other):
            c = compare_values(x, y)
            if c:
                return c
        return 0

    def __lt__(self, other: tuple) -> bool:  # type: ignore[override]
        return self._cmp(other) < 0

    def __le__(self, other: tuple) -> bool:  # type: ignore[override]
        return self._cmp(other) <= 0

    def __gt__(self, other: tuple) -> bool:  # type: ignore[override]
        return self._cmp(other) > 0

    def __ge__(self, other: tuple) -> bool:  # type: ignore[override]
        return self._cmp(other) >= 0

    def __eq__(self, other: object) -> bool:
        return isinstance(other, tuple) and self._cmp(other) == 0

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    __hash__ = tuple.__hash__  # equal to the plain tuple it wraps, so hashed like it


def index_value(v: Any) -> Any:
    """``v`` in the form indexes store: tuples (and lists) become ``OrderedTuple``, maps and sets
    their immutable, hashable forms (``freeze``); everything else is itself."""
    t = type(v)
    if t in _ATOMIC or t is OrderedTuple:
        return v
    if isinstance(v, tuple | list):
        return OrderedTuple(index_value(x) for x in v)
    if isinstance(v, _MUTABLE):
        return freeze(v)
    return v


_MUTABLE = (dict, set, frozenset)
_ATOMIC = frozenset({int, str, float, bool, type(None), Keyword, Symbol})
"""Types whose values are immutable and hashable, so ``freeze`` and ``index_value`` return them as is."""


def freeze(x: Any) -> Any:
    """``x`` as an immutable, hashable value: lists and tuples become tuples, dicts
    ``pyrsistent.pmap``s and sets ``frozenset``s, recursively; other values are themselves. Values
    that enter query results (inputs, function results, stored maps) pass through here, so a result
    set can hold a map or a list as DataScript's do."""
    if type(x) in _ATOMIC:
        return x
    if isinstance(x, tuple):
        items = tuple(map(freeze, x))
        return x if all(a is b for a, b in zip(items, x)) else tuple(items)
    if isinstance(x, list):
        return tuple(map(freeze, x))
    if isinstance(x, _MUTABLE):
        if isinstance(x, dict):
            return _pmap({freeze(k): freeze(v) for k, v in x.items()})
        return frozenset(map(freeze, x))
    if isinstance(x, PMap):
        return _pmap({freeze(k): freeze(v) for k, v in x.items()})
    return x


def compare_values(a: Any, b: Any) -> int:
    """Three-way comparison of any two values in the total order (-1, 0 or 1)."""
    ra, rb = value_rank(a), value_rank(b)
    if ra != rb:
        return -1 if ra < rb else 1
    if ra == RANK_NIL:
        return 0
    if ra == RANK_TUPLE:
        return index_value(a)._cmp(b)
    if ra == RANK_OTHER:
        a, b = (type(a).__name__, repr(a)), (type(b).__name__, repr(b))
    return -1 if a < b else (1 if b < a else 0)
