"""Persistent sorted sets of index keys: the storage under every database index.

A ``SortedIndex`` is a two-level B+tree: a list of sorted leaves (Python lists of key tuples) and the
list of each leaf's last key. Lookups are two C-level bisections; an update copies only the top-level
lists and the leaves it touches (path copying), so old versions stay valid and share everything else.
A transaction edits a ``TransientIndex`` (copy-on-first-write per leaf) and freezes it once at the end,
which is what makes many small writes in one transaction cheap.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator
from itertools import islice
from typing import Any

LEAF_SIZE = 512
"""Target keys per leaf after a bulk build; a leaf splits in two when it grows past twice this."""


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


class SortedIndex:
    """An immutable sorted set of keys (tuples), sharing structure with the versions it came from."""

    __slots__ = ("_leaves", "_len", "_maxes")

    def __init__(self, leaves: list[list] | None = None, maxes: list | None = None, length: int = 0):
        self._leaves = leaves if leaves is not None else []
        self._maxes = maxes if maxes is not None else []
        self._len = length

    @classmethod
    def from_sorted(cls, keys: Iterable, leaf_size: int = LEAF_SIZE) -> SortedIndex:
        """Bulk-build from keys already sorted and distinct (no checks: the fast path for loading)."""
        keys = keys if isinstance(keys, list) else list(keys)
        leaves = [keys[i:i + leaf_size] for i in range(0, len(keys), leaf_size)]
        return cls(leaves, [leaf[-1] for leaf in leaves], len(keys))

    @classmethod
    def from_keys(cls, keys: Iterable) -> SortedIndex:
        """Build from keys in any order, dropping duplicates."""
        return cls.from_sorted(sorted(set(keys)))

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator:
        for leaf in self._leaves:
            yield from leaf

    def __contains__(self, key: Any) -> bool:
        maxes = self._maxes
        i = bisect_left(maxes, key)
        if i == len(maxes):
            return False
        leaf = self._leaves[i]
        j = bisect_left(leaf, key)
        return leaf[j] == key

    def __repr__(self) -> str:
        return f"SortedIndex({self._len} keys)"

    def transient(self) -> TransientIndex:
        """A mutable copy for one batch of edits; ``persistent()`` freezes it into a new version."""
        return TransientIndex(self)

    def slice(self, lo: Any, hi: Any) -> Iterator:
        """Keys ``k`` with ``lo <= k < hi``, in order."""
        maxes, leaves = self._maxes, self._leaves
        i = bisect_left(maxes, lo)
        n = len(maxes)
        if i == n:
            return
        leaf = leaves[i]
        j = bisect_left(leaf, lo)
        while True:
            if leaf[-1] < hi:
                yield from islice(leaf, j, None) if j else leaf
            else:
                yield from islice(leaf, j, bisect_left(leaf, hi, j))
                return
            i += 1
            if i == n:
                return
            leaf = leaves[i]
            j = 0

    def slice_list(self, lo: Any, hi: Any) -> list:
        """``list(self.slice(lo, hi))``, faster for the common case of a range inside one leaf."""
        maxes = self._maxes
        i = bisect_left(maxes, lo)
        if i == len(maxes):
            return []
        leaf = self._leaves[i]
        if hi <= leaf[-1]:
            return leaf[bisect_left(leaf, lo):bisect_left(leaf, hi)]
        return list(self.slice(lo, hi))

    def prefix(self, prefix: tuple) -> Iterator:
        """Keys starting with the components ``prefix``."""
        if not prefix:
            return iter(self)
        return self.slice(prefix, (*prefix, TOP))

    def prefix_list(self, prefix: tuple) -> list:
        """``list(self.prefix(prefix))``."""
        if not prefix:
            return list(self)
        return self.slice_list(prefix, (*prefix, TOP))

    def first(self, prefix: tuple) -> Any:
        """The first key starting with ``prefix``, or None."""
        maxes = self._maxes
        i = bisect_left(maxes, prefix)
        if i == len(maxes):
            return None
        leaf = self._leaves[i]
        k = leaf[bisect_left(leaf, prefix)]
        return k if k[:len(prefix)] == prefix else None

    def seek(self, start: Any) -> Iterator:
        """Keys ``>= start``, in order."""
        maxes, leaves = self._maxes, self._leaves
        i = bisect_left(maxes, start)
        if i == len(maxes):
            return
        leaf = leaves[i]
        yield from islice(leaf, bisect_left(leaf, start), None)
        for leaf in islice(leaves, i + 1, None):
            yield from leaf

    def rseek(self, start: Any) -> Iterator:
        """Keys ``<= start``, in descending order."""
        maxes, leaves = self._maxes, self._leaves
        i = bisect_left(maxes, start)
        if i == len(maxes):
            i -= 1
            if i < 0:
                return
        leaf = leaves[i]
        yield from reversed(leaf[:bisect_right(leaf, start)])
        for k in range(i - 1, -1, -1):
            yield from reversed(leaves[k])


class TransientIndex:
    """A one-owner editable version of a ``SortedIndex``: leaves are copied on their first write."""

    __slots__ = ("_leaves", "_len", "_maxes", "_owned")

    def __init__(self, source: SortedIndex):
        self._leaves = list(source._leaves)
        self._maxes = list(source._maxes)
        self._len = source._len
        self._owned: set[int] = set()

    def _own(self, i: int) -> list:
        leaf = self._leaves[i]
        if id(leaf) not in self._owned:
            leaf = list(leaf)
            self._leaves[i] = leaf
            self._owned.add(id(leaf))
        return leaf

    def add(self, key: Any) -> bool:
        """Insert ``key``; False if it was already present."""
        maxes = self._maxes
        if not maxes:
            leaf = [key]
            self._leaves.append(leaf)
            self._owned.add(id(leaf))
            maxes.append(key)
            self._len = 1
            return True
        i = bisect_left(maxes, key)
        if i == len(maxes):
            i -= 1
            leaf = self._own(i)
            leaf.append(key)
            maxes[i] = key
        else:
            leaf = self._leaves[i]
            j = bisect_left(leaf, key)
            if leaf[j] == key:
                return False
            leaf = self._own(i)
            leaf.insert(j, key)
        self._len += 1
        if len(leaf) > 2 * LEAF_SIZE:
            half = len(leaf) >> 1
            right = leaf[half:]
            del leaf[half:]
            self._leaves.insert(i + 1, right)
            self._owned.add(id(right))
            maxes.insert(i, leaf[-1])
        return True

    def discard(self, key: Any) -> bool:
        """Remove ``key``; False if it was absent."""
        maxes = self._maxes
        i = bisect_left(maxes, key)
        if i == len(maxes):
            return False
        leaf = self._leaves[i]
        j = bisect_left(leaf, key)
        if leaf[j] != key:
            return False
        self._len -= 1
        if len(leaf) == 1:
            del self._leaves[i]
            del maxes[i]
            return True
        leaf = self._own(i)
        del leaf[j]
        if j == len(leaf):
            maxes[i] = leaf[-1]
        return True

    def update(self, keys: Iterable) -> None:
        """Insert many keys."""
        for key in keys:
            self.add(key)

    def persistent(self) -> SortedIndex:
        """Freeze into an immutable ``SortedIndex``; this transient must not be used afterwards."""
        leaves, maxes, length = self._leaves, self._maxes, self._len
        self._leaves = self._maxes = None  # type: ignore[assignment]
        return SortedIndex(leaves, maxes, length)

    # Read access while editing (a transaction reads its own writes).
    __len__ = SortedIndex.__len__
    __iter__ = SortedIndex.__iter__
    __contains__ = SortedIndex.__contains__
    slice = SortedIndex.slice
    slice_list = SortedIndex.slice_list
    prefix = SortedIndex.prefix
    prefix_list = SortedIndex.prefix_list
    first = SortedIndex.first
    seek = SortedIndex.seek
    rseek = SortedIndex.rseek


__all__ = ["LEAF_SIZE", "TOP", "SortedIndex", "TransientIndex"]
