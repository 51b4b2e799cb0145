"""Query sources: what a data pattern reads. A database (any view) or a collection of tuples.

``match(e, a, v, tx, n)`` returns the matching rows and their *layout*, the positions of
``(e, a, v, tx, added)`` inside each row (``added`` None: always true). For a current, unfiltered
database the rows are the index keys themselves (``core.db`` documents their layouts), so a pattern
costs one index slice and no datom objects; a scan of one attribute reads that attribute's index in
AEVT (EAVT key tuples, so EAVT's layout) whole. Every view goes through ``core.db.datoms``, which
applies time bases and filters.
"""

from __future__ import annotations

from bisect import bisect_left
from operator import itemgetter
from typing import Any

from ..db import DB, datoms, entid
from ..history import is_history
from ..index import TOP
from ..values import Keyword, index_value, value_rank

__all__ = ["CollSource", "DbSource", "make_source"]

EAVT = (0, 1, 3, 4, None)
AVET = (3, 0, 2, 4, None)
VAET = (2, 1, 0, 3, None)
DATOM = (0, 1, 2, 3, 4)


def _range_count(idx: Any, lo: tuple, hi: tuple) -> int:
    """How many keys of a ``SortedIndex`` lie in ``[lo, hi)``, by bisection (no key is copied)."""
    maxes = getattr(idx, "_maxes", None)
    leaves = getattr(idx, "_leaves", None)
    if maxes is None or leaves is None:
        return len(idx.slice_list(lo, hi))
    n = len(maxes)
    i = bisect_left(maxes, lo)
    if i == n:
        return 0
    lo_off = bisect_left(leaves[i], lo)
    j = bisect_left(maxes, hi)
    if j == n:
        return sum(map(len, leaves[i:])) - lo_off
    return sum(map(len, leaves[i:j])) + bisect_left(leaves[j], hi) - lo_off


def _range_list(idx: Any, lo: tuple, hi: tuple) -> list:
    """The keys of a ``SortedIndex`` in ``[lo, hi)`` as a list, copying whole leaves at C speed."""
    maxes = getattr(idx, "_maxes", None)
    leaves = getattr(idx, "_leaves", None)
    if maxes is None or leaves is None:
        return idx.slice_list(lo, hi)
    n = len(maxes)
    i = bisect_left(maxes, lo)
    if i == n:
        return []
    leaf = leaves[i]
    start = bisect_left(leaf, lo)
    if hi <= leaf[-1]:
        return leaf[start:bisect_left(leaf, hi)]
    out = leaf[start:]
    i += 1
    while i < n:
        leaf = leaves[i]
        if hi <= leaf[-1]:
            out += leaf[:bisect_left(leaf, hi)]
            break
        out += leaf
        i += 1
    return out


def _prefix_list(idx: Any, prefix: tuple) -> list:
    return _range_list(idx, prefix, (*prefix, TOP))


def _vfilter(rows: Any, vp: int, rp: int | None, v: Any) -> list:
    """Rows whose value (at ``vp``; its type rank at ``rp`` if the layout has one) is ``v``."""
    if type(v) is str:
        return [k for k in rows if k[vp] == v]
    iv = index_value(v)
    r = value_rank(v)
    if rp is not None:
        return [k for k in rows if k[vp] == iv and k[rp] == r]
    return [k for k in rows if k[vp] == iv and value_rank(k[vp]) == r]


def _vfilter_chunks(chunks: list[list], vp: int, rp: int, v: Any) -> list:
    """``_vfilter`` over sorted runs of keys (an index's leaves), without joining them first; a run
    whose values don't include ``v`` is skipped by a C-level search (a rare value costs little)."""
    get = itemgetter(vp)
    if type(v) is str:
        return [k for run in chunks if v in map(get, run) for k in run if k[vp] == v]
    iv = index_value(v)
    r = value_rank(v)
    return [k for run in chunks if iv in map(get, run) for k in run if k[vp] == iv and k[rp] == r]


def _rows_in(matched: tuple[list, tuple], pos: int, keys: Any) -> tuple[list, tuple]:
    """Matched ``(rows, layout)`` keeping the rows whose pattern position ``pos`` is in ``keys``."""
    rows, layout = matched
    p = layout[pos]
    return [k for k in rows if k[p] in keys], layout


class DbSource:
    """A database (current, time view or filtered) as a pattern source."""

    __slots__ = ("_counts", "db", "fast", "history", "props")

    def __init__(self, db: DB):
        self.db = db
        self.fast = db.view is None and db.pred is None
        self.history = is_history(db) if db.view is not None else False
        self.props = db.props
        self._counts: dict = {}

    # -- entity ids ---------------------------------------------------------------------------

    def resolve_e(self, x: Any) -> int | None:
        """A bound value in an entity position as an eid (lookup refs and idents resolved), None if
        it names none: a value that cannot name an entity (a string, a float) matches nothing, as in
        DataScript; a malformed lookup ref raises ``ResolveError``."""
        if type(x) is int:
            return x
        if isinstance(x, tuple | list | Keyword):
            return entid(self.db, x)
        return None

    def resolve_e_strict(self, x: Any) -> int | None:
        """``resolve_e`` for a value written in the query or given to ``get-else``/``get-some``: one
        that cannot name an entity raises ``ResolveError`` (``entity-id/syntax``), as in DataScript."""
        if type(x) is int or isinstance(x, tuple | list | Keyword):
            return self.resolve_e(x)
        return entid(self.db, x)

    def is_ref(self, a: Any) -> bool:
        return a in self.props.ref

    # -- matching -----------------------------------------------------------------------------

    def match(self, e: Any, a: Any, v: Any, tx: Any, n: int = 5) -> tuple[list, tuple]:
        """Rows matching the given constants (None: any), and their layout."""
        if self.fast:
            rows, layout = self._match_fast(e, a, v)
        else:
            rows, layout = self._match_view(e, a, v)
        if tx is not None:
            tp = layout[3]
            rows = [k for k in rows if k[tp] == tx]
        return rows, layout

    def _match_fast(self, e: Any, a: Any, v: Any) -> tuple[list, tuple]:
        db = self.db
        if e is not None:
            if a is not None:
                if v is not None:
                    return db.eavt.prefix_list((e, a, value_rank(v), index_value(v))), EAVT
                return db.eavt.prefix_list((e, a)), EAVT
            rows = db.eavt.prefix_list((e,))
            return (rows if v is None else _vfilter(rows, 3, 2, v)), EAVT
        if a is not None:
            if v is not None:
                if a in self.props.indexed:
                    return _prefix_list(db.avet, (a, value_rank(v), index_value(v))), AVET
                if type(v) is int and a in self.props.ref:
                    return _prefix_list(db.vaet, (v, a)), VAET
                return _vfilter_chunks(db.aevt.attribute(a).leaves(), 3, 2, v), EAVT
            return db.aevt.prefix_list((a,)), EAVT
        rows = list(db.eavt)
        return (rows if v is None else _vfilter(rows, 3, 2, v)), EAVT

    def match_in(self, pos: int, keys: Any, e: Any, a: Any, v: Any, tx: Any, n: int = 5) -> tuple[list, tuple]:
        """``match`` restricted to rows whose pattern position ``pos`` (0 entity, 2 value) holds a
        value in ``keys`` (a set: it answers ``in`` faster than a dict): an entity join filters the
        attribute's range before its value, and allocates only the rows it keeps."""
        if self.fast and pos == 0 and e is None and a is not None and tx is None and (
                v is None or (a not in self.props.indexed and not (type(v) is int and a in self.props.ref))):
            chunks = self.db.aevt.attribute(a).leaves()
            if v is None:
                return [k for run in chunks for k in run if k[0] in keys], EAVT
            if type(v) is str:
                return [k for run in chunks for k in run if k[0] in keys and k[3] == v], EAVT
            return _vfilter([k for run in chunks for k in run if k[0] in keys], 3, 2, v), EAVT
        return _rows_in(self.match(e, a, v, tx, n), pos, keys)

    def _match_view(self, e: Any, a: Any, v: Any) -> tuple[list, tuple]:
        db = self.db
        if e is not None:
            if a is not None:
                rows = datoms(db, "eavt", e, a) if v is None else datoms(db, "eavt", e, a, v)
                return rows, DATOM
            rows = datoms(db, "eavt", e)
            return (rows if v is None else _vfilter(rows, 2, None, v)), DATOM
        if a is not None:
            if v is not None:
                if a in self.props.indexed:
                    return datoms(db, "avet", a, v), DATOM
                if type(v) is int and a in self.props.ref:
                    return datoms(db, "vaet", v, a), DATOM
                return _vfilter(datoms(db, "aevt", a), 2, None, v), DATOM
            return datoms(db, "aevt", a), DATOM
        rows = datoms(db, "eavt")
        return (rows if v is None else _vfilter(rows, 2, None, v)), DATOM

    def lookup_kind(self, a: Any, pos: str) -> bool:
        """Whether rows with a bound ``pos`` ("e" or "v") and constant attribute ``a`` can be looked up
        by index instead of scanned."""
        if pos == "e":
            return True
        return a is not None and (a in self.props.indexed or a in self.props.ref)

    # -- estimates ----------------------------------------------------------------------------

    def count_attr(self, a: Any) -> int:
        """Current datoms of attribute ``a`` (an estimate for views)."""
        c = self._counts.get(a)
        if c is None:
            c = self._counts[a] = len(self.db.aevt.attribute(a))
        return c

    def count_av(self, a: Any, v: Any) -> int:
        """Current datoms with attribute ``a`` and value ``v`` (exact for indexed attributes)."""
        if a in self.props.indexed:
            key = (a, value_rank(v), index_value(v))
            return _range_count(self.db.avet, key, (*key, TOP))
        return max(1, self.count_attr(a) // 10)

    def size(self) -> int:
        return len(self.db.eavt)

    # -- single values (get-else, get-some, missing?) -----------------------------------------

    def first_value(self, e: Any, a: Any, strict: bool = True) -> tuple | None:
        """``(v,)`` of the first datom ``[e a v]`` (reverse attributes ``_a`` too), else None;
        ``strict``: ``e`` that cannot name an entity raises (else it has no values)."""
        if isinstance(a, Keyword):
            a = a.name
        eid = self.resolve_e_strict(e) if strict else self.resolve_e(e)
        if eid is None:
            return None
        slash = a.rfind("/")
        local = a[slash + 1:]
        if local.startswith("_"):
            fwd = a[:slash + 1] + local[1:]
            if self.fast:
                k = self.db.vaet.first((eid, fwd))
                return None if k is None else (k[2],)
            ds = datoms(self.db, "vaet", eid, fwd)
            return (ds[0].e,) if ds else None
        if self.fast:
            k = self.db.eavt.first((eid, a))
            return None if k is None else (k[3],)
        ds = datoms(self.db, "eavt", eid, a)
        return (ds[0].v,) if ds else None


class CollSource:
    """A collection of tuples (``[[e a v] ...]``) as a pattern source: rows match positionally."""

    __slots__ = ("rows",)

    def __init__(self, coll: Any):
        self.rows = [tuple(r) for r in coll]

    def resolve_e(self, x: Any) -> Any:
        return x

    def is_ref(self, a: Any) -> bool:
        return False

    def match(self, e: Any, a: Any, v: Any, tx: Any, n: int = 5) -> tuple[list, tuple]:
        rows = [r for r in self.rows if len(r) >= n]
        for pos, c in ((0, e), (1, a), (2, v), (3, tx)):
            if c is not None:
                rows = [r for r in rows if r[pos] == c and (type(r[pos]) is bool) == (type(c) is bool)]
        return rows, DATOM

    def match_in(self, pos: int, keys: Any, e: Any, a: Any, v: Any, tx: Any, n: int = 5) -> tuple[list, tuple]:
        """``match`` restricted to rows whose position ``pos`` holds a value in ``keys``."""
        return _rows_in(self.match(e, a, v, tx, n), pos, keys)

    def lookup_kind(self, a: Any, pos: str) -> bool:
        return False

    def count_attr(self, a: Any) -> int:
        return len(self.rows)

    def count_av(self, a: Any, v: Any) -> int:
        return len(self.rows)

    def size(self) -> int:
        return len(self.rows)

    def first_value(self, e: Any, a: Any, strict: bool = True) -> tuple | None:
        if isinstance(a, Keyword):
            a = a.name
        for r in self.rows:
            if len(r) >= 3 and r[0] == e and r[1] == a:
                return (r[2],)
        return None


def make_source(x: Any) -> DbSource | CollSource:
    """The source for an input value: a ``DB`` or a collection of tuples."""
    if isinstance(x, DB):
        return DbSource(x)
    if isinstance(x, DbSource | CollSource):
        return x
    if isinstance(x, list | tuple | set | frozenset):
        return CollSource(x)
    raise TypeError(f"expected a database or a collection of tuples as a query source, got {type(x).__name__}")
