"""Persistent sorted sets of index keys: the storage under every database index.

A ``SortedIndex`` is a three-level B+tree of key tuples: a list of branches, each a list of sorted
leaves (Python lists of keys), with the last key of every leaf (``_bmaxes``, one list per branch)
and of every branch (``_tops``) beside them. A lookup is three C-level bisections. An update copies
the top-level lists, the one branch and the one leaf it touches (path copying, a few hundred
pointers whatever the size of the index), so old versions stay valid and share everything else. A
transaction edits a ``TransientIndex`` (copy-on-first-write per branch and per leaf) and freezes it
once at the end, which is what makes many small writes in one transaction cheap.

An ``AttrIndex`` is the AEVT order of an EAVT-ordered set of keys ``(e, a, ...)`` without keys of its
own: within one attribute, AEVT order ``(e, v, tx)`` is exactly the EAVT order of that attribute's
keys, so it is a map from attribute to a ``SortedIndex`` holding the very tuple objects of the EAVT
index (a datom costs one key tuple, not two). A transaction copies only the indexes of the
attributes it writes and the small map (``TransientAttrIndex``).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator
from itertools import chain, islice
from typing import Any

LEAF_SIZE = 256
"""Target keys per leaf after a bulk build; a leaf splits in two when it grows past twice this."""

BRANCH_SIZE = 32
"""Target leaves per branch after a bulk build; a branch splits in two when it grows past twice this."""

_flatten = chain.from_iterable


class _Top:
    """Greater than every key component: ``prefix + (TOP,)`` bounds all keys starting with ``prefix``."""

    __slots__ = ()

    def __lt__(self, other: Any) -> bool:
        return False

    def __le__(self, other: Any) -> bool:
        return other is self

    def __gt__(self, other: Any) -> bool:
        return other is not self

    def __ge__(self, other: Any) -> bool:
        return True

    def __eq__(self, other: Any) -> bool:
        return other is self

    def __hash__(self) -> int:
        return 0x70B

    def __repr__(self) -> str:
        return "TOP"


TOP = _Top()


_new_index = object.__new__


def _chunks(xs: list, size: int) -> list[list]:
    return [xs[i:i + size] for i in range(0, len(xs), size)]


class SortedIndex:
    """An immutable sorted set of keys (tuples), sharing structure with the versions it came from."""

    __slots__ = ("_bmaxes", "_branches", "_flat", "_len", "_tops")

    def __init__(self, branches: list[list[list]] | None = None, bmaxes: list[list] | None = None,
                 tops: list | None = None, length: int = 0):
        self._branches = branches if branches is not None else []
        self._bmaxes = bmaxes if bmaxes is not None else []
        self._tops = tops if tops is not None else []
        self._len = length
        self._flat: tuple[list, list] | None = None

    def _flatten_once(self) -> tuple[list, list]:
        flat = self._flat
        if flat is None:
            flat = self._flat = (list(_flatten(self._bmaxes)), list(_flatten(self._branches)))
        return flat

    @property
    def _maxes(self) -> list:
        """The last key of every leaf, in one list (made once per version), for readers that bisect
        the leaves themselves; ``count`` and ``slice_list`` answer the same questions."""
        return self._flatten_once()[0]

    @property
    def _leaves(self) -> list:
        """Every leaf in one list (made once per version), beside ``_maxes``."""
        return self._flatten_once()[1]

    @classmethod
    def from_sorted(cls, keys: Iterable, leaf_size: int | None = None) -> SortedIndex:
        """Bulk-build from keys already sorted and distinct (no checks: the fast path for loading)."""
        keys = keys if isinstance(keys, list) else list(keys)
        leaves = _chunks(keys, leaf_size or LEAF_SIZE)
        branches = _chunks(leaves, BRANCH_SIZE)
        bmaxes = [[leaf[-1] for leaf in branch] for branch in branches]
        return cls(branches, bmaxes, [m[-1] for m in bmaxes], len(keys))

    @classmethod
    def from_keys(cls, keys: Iterable) -> SortedIndex:
        """Build from keys in any order, dropping duplicates."""
        return cls.from_sorted(sorted(set(keys)))

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator:
        return _flatten(_flatten(self._branches))

    def leaves(self) -> list[list]:
        """The leaves in order (the lists themselves: do not modify them)."""
        return list(_flatten(self._branches))

    def _find(self, key: Any) -> tuple[int, int]:
        """``(branch, leaf)`` positions of the leaf where ``key`` is or would go; branch is
        ``len(self._tops)`` when ``key`` is past the last key."""
        tops = self._tops
        i = bisect_left(tops, key)
        if i == len(tops):
            return i, 0
        return i, bisect_left(self._bmaxes[i], key)

    def __contains__(self, key: Any) -> bool:
        tops = self._tops
        i = bisect_left(tops, key)
        if i == len(tops):
            return False
        bm = self._bmaxes[i]
        leaf = self._branches[i][bisect_left(bm, key)]
        return leaf[bisect_left(leaf, key)] == key

    def __repr__(self) -> str:
        return f"SortedIndex({self._len} keys)"

    def transient(self) -> TransientIndex:
        """A mutable copy for one batch of edits; ``persistent()`` freezes it into a new version."""
        t = _new_index(TransientIndex)
        t._branches, t._bmaxes, t._tops, t._len, t._owned = (
            self._branches.copy(), self._bmaxes.copy(), self._tops.copy(), self._len, set())
        return t

    def _leaves_from(self, i: int, j: int) -> Iterator[list]:
        """The leaves from leaf ``j`` of branch ``i`` to the end."""
        branches = self._branches
        if i < len(branches):
            yield from islice(branches[i], j, None)
            for branch in islice(branches, i + 1, None):
                yield from branch

    def slice(self, lo: Any, hi: Any) -> Iterator:
        """Keys ``k`` with ``lo <= k < hi``, in order."""
        i, j = self._find(lo)
        first = True
        for leaf in self._leaves_from(i, j):
            start = bisect_left(leaf, lo) if first else 0
            first = False
            if leaf[-1] < hi:
                yield from islice(leaf, start, None) if start else leaf
            else:
                yield from islice(leaf, start, bisect_left(leaf, hi, start))
                return

    def slice_list(self, lo: Any, hi: Any) -> list:
        """``list(self.slice(lo, hi))``, copying whole leaves at C speed."""
        tops = self._tops
        i = bisect_left(tops, lo)
        if i == len(tops):
            return []
        bm = self._bmaxes[i]
        j = bisect_left(bm, lo)
        leaf = self._branches[i][j]
        if hi <= leaf[-1]:
            return leaf[bisect_left(leaf, lo):bisect_left(leaf, hi)]
        out = leaf[bisect_left(leaf, lo):]
        if hi <= tops[i]:
            k = bisect_left(bm, hi, j + 1)
            out += _flatten(islice(self._branches[i], j + 1, k))
            leaf = self._branches[i][k]
            out += leaf[:bisect_left(leaf, hi)]
            return out
        out += _flatten(islice(self._branches[i], j + 1, None))
        k = bisect_left(tops, hi, i + 1)
        out += _flatten(_flatten(islice(self._branches, i + 1, k)))
        if k < len(tops):
            bm = self._bmaxes[k]
            m = bisect_left(bm, hi)
            out += _flatten(islice(self._branches[k], m))
            leaf = self._branches[k][m]
            out += leaf[:bisect_left(leaf, hi)]
        return out

    def count(self, lo: Any, hi: Any) -> int:
        """How many keys lie in ``[lo, hi)``, by bisection (no key is copied)."""
        return self._rank(hi) - self._rank(lo) if lo < hi else 0

    def _rank(self, key: Any) -> int:
        """How many keys are below ``key``."""
        tops = self._tops
        i = bisect_left(tops, key)
        if i == len(tops):
            return self._len
        before = sum(len(leaf) for branch in islice(self._branches, i) for leaf in branch)
        bm = self._bmaxes[i]
        j = bisect_left(bm, key)
        branch = self._branches[i]
        before += sum(len(leaf) for leaf in islice(branch, j))
        return before + bisect_left(branch[j], key)

    def prefix(self, prefix: tuple) -> Iterator:
        """Keys starting with the components ``prefix``."""
        if not prefix:
            return iter(self)
        return self.slice(prefix, (*prefix, TOP))

    def prefix_list(self, prefix: tuple) -> list:
        """``list(self.prefix(prefix))``."""
        if not prefix:
            out: list = []
            for leaf in _flatten(self._branches):
                out += leaf
            return out
        return self.slice_list(prefix, (*prefix, TOP))

    def first(self, prefix: tuple) -> Any:
        """The first key starting with ``prefix``, or None."""
        tops = self._tops
        i = bisect_left(tops, prefix)
        if i == len(tops):
            return None
        bm = self._bmaxes[i]
        leaf = self._branches[i][bisect_left(bm, prefix)]
        k = leaf[bisect_left(leaf, prefix)]
        return k if k[:len(prefix)] == prefix else None

    def seek(self, start: Any) -> Iterator:
        """Keys ``>= start``, in order."""
        i, j = self._find(start)
        first = True
        for leaf in self._leaves_from(i, j):
            if first:
                first = False
                yield from islice(leaf, bisect_left(leaf, start), None)
            else:
                yield from leaf

    def rseek(self, start: Any) -> Iterator:
        """Keys ``<= start``, in descending order."""
        tops, branches = self._tops, self._branches
        if not tops:
            return
        i = bisect_left(tops, start)
        if i == len(tops):
            i -= 1
            j = len(branches[i]) - 1
        else:
            j = bisect_left(self._bmaxes[i], start)
        leaf = branches[i][j]
        yield from reversed(leaf[:bisect_right(leaf, start)])
        for leaf in reversed(branches[i][:j]):
            yield from reversed(leaf)
        for b in range(i - 1, -1, -1):
            for leaf in reversed(branches[b]):
                yield from reversed(leaf)


class TransientIndex:
    """A one-owner editable version of a ``SortedIndex``: branches and leaves are copied on their
    first write."""

    __slots__ = ("_bmaxes", "_branches", "_len", "_owned", "_tops")

    _branches: list[list[list]]
    _bmaxes: list[list]
    _tops: list
    _len: int
    _owned: set[int]

    def _own_branch(self, i: int) -> tuple[list, list]:
        """Branch ``i``'s leaves and leaf maxima, made this transient's own."""
        branch = self._branches[i]
        if id(branch) in self._owned:
            return branch, self._bmaxes[i]
        branch = self._branches[i] = branch.copy()
        bm = self._bmaxes[i] = self._bmaxes[i].copy()
        self._owned.add(id(branch))
        return branch, bm

    def _own_leaf(self, branch: list, j: int) -> list:
        """Leaf ``j`` of an owned branch, made this transient's own."""
        leaf = branch[j]
        if id(leaf) not in self._owned:
            leaf = branch[j] = leaf.copy()
            self._owned.add(id(leaf))
        return leaf

    def add(self, key: Any) -> bool:
        """Insert ``key``; False if it was already present.

        A key that falls between two leaves (past the last key of one, before the first of the next)
        goes at the end of the first while it has room (fewer than ``LEAF_SIZE`` keys), else at the
        front of the next while that one has room, else into a new leaf between them (a new last
        branch when it is past every key and the last branch is full): keys added in order, past
        the end or into one gap (new entities before the transaction entities), fill the leaves
        they leave behind, and the leaf each write copies stays small."""
        tops = self._tops
        i = bisect_left(tops, key)
        if i == len(tops):
            if not tops:
                self._add_first(key)
                return True
            i -= 1
            j = len(self._branches[i]) - 1
            if len(self._branches[i][j]) >= LEAF_SIZE:
                self._new_leaf(i, j + 1, key)
                return True
            k = -1
        else:
            bm = self._bmaxes[i]
            j = bisect_left(bm, key)
            leaf = self._branches[i][j]
            k = bisect_left(leaf, key)
            if leaf[k] == key:
                return False
            if k == 0 and (j or i):  # in the gap after the leaf before this one
                pi, pj = (i, j - 1) if j else (i - 1, len(self._branches[i - 1]) - 1)
                if len(self._branches[pi][pj]) < LEAF_SIZE:
                    i, j, k = pi, pj, -1
                elif len(leaf) >= LEAF_SIZE:
                    self._new_leaf(i, j, key)
                    return True
        # _own_branch and _own_leaf, inlined: this is the hottest path of a transaction
        owned = self._owned
        branch = self._branches[i]
        if id(branch) in owned:
            bm = self._bmaxes[i]
        else:
            branch = self._branches[i] = branch.copy()
            bm = self._bmaxes[i] = self._bmaxes[i].copy()
            owned.add(id(branch))
        leaf = branch[j]
        if id(leaf) not in owned:
            leaf = branch[j] = leaf.copy()
            owned.add(id(leaf))
        self._len += 1
        if k < 0:  # at the end of leaf j
            leaf.append(key)
            bm[j] = key
            if j == len(branch) - 1:
                tops[i] = key
            return True
        leaf.insert(k, key)
        if len(leaf) > 2 * LEAF_SIZE:
            self._split_leaf(i, branch, bm, j, leaf)
        return True

    def _add_first(self, key: Any) -> None:
        leaf, branch, bm = [key], [], []
        branch.append(leaf)
        bm.append(key)
        self._branches.append(branch)
        self._bmaxes.append(bm)
        self._tops.append(key)
        self._owned.update((id(leaf), id(branch)))
        self._len = 1

    def _new_leaf(self, i: int, j: int, key: Any) -> None:
        """``[key]`` as leaf ``j`` of branch ``i`` (``key`` lies between leaves ``j - 1`` and ``j``);
        past every key with the last branch full, as the first leaf of a new last branch."""
        leaf = [key]
        owned = self._owned
        owned.add(id(leaf))
        self._len += 1
        if i == len(self._branches) - 1 and j == len(self._branches[i]) >= BRANCH_SIZE:
            branch = [leaf]
            self._branches.append(branch)
            self._bmaxes.append([key])
            self._tops.append(key)
            owned.add(id(branch))
            return
        branch, bm = self._own_branch(i)
        branch.insert(j, leaf)
        bm.insert(j, key)
        if j == len(branch) - 1:
            self._tops[i] = key
        self._split_branch(i, branch, bm)

    def _split_leaf(self, i: int, branch: list, bm: list, j: int, leaf: list) -> None:
        half = len(leaf) >> 1
        right = leaf[half:]
        branch[j] = left = leaf[:half]  # fresh lists: no spare capacity kept
        branch.insert(j + 1, right)
        bm.insert(j, left[-1])
        self._owned.update((id(left), id(right)))
        self._split_branch(i, branch, bm)

    def _split_branch(self, i: int, branch: list, bm: list) -> None:
        """Branch ``i`` (owned) split in two when it has grown past twice ``BRANCH_SIZE`` leaves."""
        if len(branch) > 2 * BRANCH_SIZE:
            half = len(branch) >> 1
            rbranch, rbm = branch[half:], bm[half:]
            del branch[half:], bm[half:]
            self._branches.insert(i + 1, rbranch)
            self._bmaxes.insert(i + 1, rbm)
            self._tops.insert(i, bm[-1])
            self._owned.add(id(rbranch))

    def discard(self, key: Any) -> bool:
        """Remove ``key``; False if it was absent."""
        tops = self._tops
        i = bisect_left(tops, key)
        if i == len(tops):
            return False
        bm = self._bmaxes[i]
        j = bisect_left(bm, key)
        leaf = self._branches[i][j]
        k = bisect_left(leaf, key)
        if leaf[k] != key:
            return False
        self._len -= 1
        branch, bm = self._own_branch(i)
        if len(leaf) == 1:
            del branch[j], bm[j]
            if not branch:
                del self._branches[i], self._bmaxes[i], tops[i]
            elif j == len(branch):
                tops[i] = bm[-1]
            return True
        leaf = self._own_leaf(branch, j)
        del leaf[k]
        if k == len(leaf):
            bm[j] = leaf[-1]
            if j == len(branch) - 1:
                tops[i] = leaf[-1]
        return True

    def update(self, keys: Iterable) -> None:
        """Insert many keys."""
        for key in keys:
            self.add(key)

    def persistent(self) -> SortedIndex:
        """Freeze into an immutable ``SortedIndex``; this transient must not be used afterwards."""
        new = _new_index(SortedIndex)
        new._branches, new._bmaxes, new._tops, new._len, new._flat = (
            self._branches, self._bmaxes, self._tops, self._len, None)
        self._branches = self._bmaxes = self._tops = None  # type: ignore[assignment]
        return new

    # Read access while editing (a transaction reads its own writes).
    __len__ = SortedIndex.__len__
    __iter__ = SortedIndex.__iter__
    __contains__ = SortedIndex.__contains__
    leaves = SortedIndex.leaves
    _find = SortedIndex._find
    _leaves_from = SortedIndex._leaves_from
    _rank = SortedIndex._rank
    count = SortedIndex.count
    slice = SortedIndex.slice
    slice_list = SortedIndex.slice_list
    prefix = SortedIndex.prefix
    prefix_list = SortedIndex.prefix_list
    first = SortedIndex.first
    seek = SortedIndex.seek
    rseek = SortedIndex.rseek



_EMPTY = SortedIndex()


def _in_attr(prefix: tuple) -> tuple:
    """An AEVT-ordered prefix ``(a, e, ...)`` as a prefix of attribute ``a``'s keys ``(e, a, ...)``."""
    if len(prefix) < 2:
        return ()
    return (prefix[1], prefix[0], *prefix[2:])


class _ByAttribute:
    """The reads of AEVT order over keys grouped by attribute (``AttrIndex`` and its transient):
    prefixes and starting points are given in AEVT order ``(a, e, ...)``, keys come as they are
    stored, ``(e, a, ...)``."""

    __slots__ = ()

    def attribute(self, a: Any) -> SortedIndex | TransientIndex:
        """The keys of attribute ``a`` as one index (empty if none; do not modify it)."""
        raise NotImplementedError

    def attributes(self) -> list:
        """The attributes that have keys, sorted."""
        raise NotImplementedError

    def __iter__(self) -> Iterator:
        return _flatten([self.attribute(a) for a in self.attributes()])

    def __contains__(self, key: Any) -> bool:
        return key in self.attribute(key[1])

    def leaves(self) -> list[list]:
        """The leaves of every attribute's index, in AEVT order (the lists themselves: do not modify them)."""
        return [leaf for a in self.attributes() for leaf in self.attribute(a).leaves()]

    def prefix_list(self, prefix: tuple) -> list:
        """The keys whose AEVT order starts with ``prefix`` ``(a, e, rank, v, ...)``, in AEVT order."""
        if not prefix:
            return list(self)
        return self.attribute(prefix[0]).prefix_list(_in_attr(prefix))

    def prefix(self, prefix: tuple) -> Iterator:
        """``prefix_list`` as an iterator."""
        if not prefix:
            return iter(self)
        return self.attribute(prefix[0]).prefix(_in_attr(prefix))

    def first(self, prefix: tuple) -> Any:
        """The first key (AEVT order) starting with ``prefix``, or None."""
        if not prefix:
            return next(iter(self), None)
        return self.attribute(prefix[0]).first(_in_attr(prefix))

    def seek(self, start: tuple) -> Iterator:
        """Keys at or after ``start`` (AEVT order), in AEVT order."""
        attrs = self.attributes()
        i = 0
        if start:
            a = start[0]
            i = bisect_left(attrs, a)
            if i < len(attrs) and attrs[i] == a:
                yield from self.attribute(a).seek(_in_attr(start))
                i += 1
        for a in islice(attrs, i, None):
            yield from self.attribute(a)

    def rseek(self, start: tuple) -> Iterator:
        """Keys at or before ``start`` (AEVT order; ``TOP`` components bound prefixes), descending."""
        attrs = self.attributes()
        a = start[0]
        i = bisect_right(attrs, a)
        if i and attrs[i - 1] == a:
            yield from self.attribute(a).rseek(_in_attr(start))
            i -= 1
        for a in reversed(attrs[:i]):
            yield from self.attribute(a).rseek((TOP,))


class AttrIndex(_ByAttribute):
    """An immutable AEVT view of EAVT-ordered keys ``(e, a, ...)``: attribute -> ``SortedIndex`` of
    its keys (the same tuple objects as the EAVT index), sharing structure with the versions it came
    from."""

    __slots__ = ("_attrs", "_by_attr", "_len")

    def __init__(self, by_attr: dict | None = None, length: int | None = None):
        self._by_attr: dict = by_attr if by_attr is not None else {}
        self._len = length if length is not None else sum(map(len, self._by_attr.values()))
        self._attrs: list | None = None

    @classmethod
    def from_sorted(cls, keys: Iterable) -> AttrIndex:
        """Bulk-build from keys ``(e, a, ...)`` sorted in EAVT order and distinct (no checks)."""
        groups: dict = {}
        for k in keys:
            group = groups.get(k[1])
            if group is None:
                group = groups[k[1]] = []
            group.append(k)
        return cls.from_groups(groups)

    @classmethod
    def from_groups(cls, groups: dict) -> AttrIndex:
        """Bulk-build from attribute -> its keys, each list sorted and distinct (no checks)."""
        return cls({a: SortedIndex.from_sorted(keys) for a, keys in groups.items() if keys})

    def attribute(self, a: Any) -> SortedIndex:
        """The keys of attribute ``a`` as one index (empty if none)."""
        return self._by_attr.get(a, _EMPTY)

    def attributes(self) -> list:
        """The attributes that have keys, sorted (made once per version)."""
        attrs = self._attrs
        if attrs is None:
            attrs = self._attrs = sorted(self._by_attr)
        return attrs

    def __len__(self) -> int:
        return self._len

    def __repr__(self) -> str:
        return f"AttrIndex({self._len} keys, {len(self._by_attr)} attributes)"

    def transient(self) -> TransientAttrIndex:
        """A mutable copy for one batch of edits; ``persistent()`` freezes it into a new version."""
        return TransientAttrIndex(self)


class TransientAttrIndex(_ByAttribute):
    """A one-owner editable version of an ``AttrIndex``: an attribute's index becomes a
    ``TransientIndex`` on its first write; the map is copied once, when frozen."""

    __slots__ = ("_by_attr", "_edited", "_len", "_source")

    def __init__(self, source: AttrIndex):
        self._source = source
        self._by_attr = source._by_attr
        self._len = source._len
        self._edited: dict = {}

    def attribute(self, a: Any) -> SortedIndex | TransientIndex:
        """The keys of attribute ``a`` as one index, this transient's edits included."""
        ix = self._edited.get(a)
        return ix if ix is not None else self._by_attr.get(a, _EMPTY)

    def attributes(self) -> list:
        """The attributes that have keys, sorted."""
        return sorted(a for a in self._by_attr.keys() | self._edited.keys() if len(self.attribute(a)))

    def _editing(self, a: Any) -> TransientIndex:
        """Attribute ``a``'s index made this transient's own."""
        ix = self._edited.get(a)
        if ix is None:
            ix = self._edited[a] = self._by_attr.get(a, _EMPTY).transient()
        return ix

    def add(self, key: Any) -> bool:
        """Insert ``key`` ``(e, a, ...)``; False if it was already present."""
        ix = self._edited.get(key[1])  # _editing, inlined: a transaction's hottest path
        if ix is None:
            ix = self._editing(key[1])
        return ix.add(key)

    def discard(self, key: Any) -> bool:
        """Remove ``key``; False if it was absent."""
        return self._editing(key[1]).discard(key)

    def update(self, keys: Iterable) -> None:
        """Insert many keys."""
        for key in keys:
            self.add(key)

    def __len__(self) -> int:
        by_attr = self._by_attr
        return self._len + sum(len(ix) - len(by_attr.get(a, _EMPTY)) for a, ix in self._edited.items())

    def persistent(self) -> AttrIndex:
        """Freeze into an immutable ``AttrIndex``; this transient must not be used afterwards."""
        edited = self._edited
        if not edited:
            return self._source
        by_attr = self._by_attr.copy()
        length = self._len
        for a, ix in edited.items():
            old = by_attr.get(a)
            n = len(ix)
            length += n - len(old) if old is not None else n
            if n:
                by_attr[a] = ix.persistent()
            elif old is not None:
                del by_attr[a]
        self._edited = None  # type: ignore[assignment]
        new = _new_index(AttrIndex)
        new._by_attr, new._len, new._attrs = by_attr, length, None
        return new


LAYOUT_MIN_KEYS = 4096
"""A transaction that adds at least this many keys makes them anew attribute by attribute
(``lay_out_by_attribute``)."""


def _owned_leaves(ix: TransientIndex) -> Iterator[list]:
    """The leaves ``ix`` owns (copied or made by its edits), in order."""
    owned = ix._owned
    for branch in ix._branches:
        if id(branch) in owned:
            for leaf in branch:
                if id(leaf) in owned:
                    yield leaf


def lay_out_by_attribute(eavt: TransientIndex, aevt: TransientAttrIndex, tx: int) -> None:
    """Make the keys ``(e, a, rank, v, tx)`` of transaction ``tx`` anew, attribute by attribute in
    AEVT order, in both indexes (which share them), in place.

    A transaction makes its keys entity by entity, so one attribute's keys lie scattered among the
    other attributes' (and the transaction's other objects) in memory, and a scan of one attribute,
    what most query patterns do, misses the cache on every key: made anew in the order such a scan
    reads them, the people benchmarks' queries take about half the time (q2 2.8 instead of 4.3-8 ms).
    Worth it for a large transaction (an import), whose keys are read many times afterwards."""
    fresh: dict[int, tuple] = {}
    edited = aevt._edited
    for a in sorted(edited):
        for leaf in _owned_leaves(edited[a]):
            for i, k in enumerate(leaf):
                if k[4] == tx:
                    leaf[i] = fresh[id(k)] = (k[0], k[1], k[2], k[3], tx)
    for leaf in _owned_leaves(eavt):
        for i, k in enumerate(leaf):
            if k[4] == tx:
                leaf[i] = fresh.get(id(k), k)


HISTORY_FOLD_EVENTS = 128
"""Events a ``HistoryIndexes`` holds unfolded at most: past this, appending folds them in. Small, so
that a fold (~0.1 ms) delays no transaction or delta much, even when a process's many replicas fold
on the same delta; large enough that a fold copies each touched leaf once for dozens of transactions."""


class HistoryIndexes:
    """The history indexes ``heavt`` (a ``SortedIndex`` of events ``(e, a, rank, v, tx, added)``) and
    ``haevt`` (an ``AttrIndex`` over the same tuples), immutable, with the events appended since they
    were last built kept aside and folded in on the first read.

    A transaction or an applied delta appends its events in O(1) instead of copying a leaf of each
    history index (the current indexes are read by every transaction; history only by time views),
    and the fold writes many transactions' events through one transient of each index. The fold is
    memoized in the value (deterministic; two threads folding at once build equal indexes)."""

    __slots__ = ("_built", "_pending", "_unfolded")

    def __init__(self, heavt: SortedIndex | None = None, haevt: AttrIndex | None = None):
        self._built: tuple | None = (heavt if heavt is not None else SortedIndex(),
                                     haevt if haevt is not None else AttrIndex())
        self._pending: tuple | None = None  # (the value appended to, its events): set when _built is not
        self._unfolded = 0

    def appended(self, events: list) -> HistoryIndexes:
        """These indexes with ``events`` (new, distinct) added; ``events`` must not change afterwards."""
        if not events:
            return self
        new = _new_index(HistoryIndexes)
        new._built, new._pending, new._unfolded = None, (self, events), self._unfolded + len(events)
        if new._unfolded > HISTORY_FOLD_EVENTS:
            new._fold()
        return new

    def _fold(self) -> tuple[SortedIndex, AttrIndex]:
        """Build (once) and return ``(heavt, haevt)``."""
        built = self._built
        if built is not None:
            return built
        batches = []
        node = self
        while True:
            built = node._built
            if built is not None:
                break
            pending = node._pending
            if pending is None:  # folded by another thread between the two reads
                built = node._built
                break
            node, events = pending
            batches.append(events)
        heavt, haevt = built[0].transient(), built[1].transient()
        for events in reversed(batches):
            for event in events:
                heavt.add(event)
                haevt.add(event)
        built = self._built = (heavt.persistent(), haevt.persistent())
        self._pending = None  # after _built: see the reads above
        self._unfolded = 0
        return built

    @property
    def heavt(self) -> SortedIndex:
        """Every event in EAVT order."""
        return self._fold()[0]

    @property
    def haevt(self) -> AttrIndex:
        """Every event in AEVT order (the same tuples)."""
        return self._fold()[1]

    def __len__(self) -> int:
        return len(self._fold()[0])

    def __repr__(self) -> str:
        return f"HistoryIndexes({'built' if self._built is not None else f'{self._unfolded} events unfolded'})"


__all__ = ["BRANCH_SIZE", "HISTORY_FOLD_EVENTS", "LEAF_SIZE", "TOP", "AttrIndex", "HistoryIndexes", "SortedIndex",
           "TransientAttrIndex", "TransientIndex"]
