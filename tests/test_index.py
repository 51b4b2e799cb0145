"""Examples for ``core.index``: the persistent sorted sets under every database index.

``SortedIndex`` is immutable; ``TransientIndex`` is the editable copy a transaction works on, frozen
once with ``persistent()``. Most tests use tiny leaves (``leaf_size=2`` for bulk builds, ``LEAF_SIZE``
patched to 2 so a leaf splits when it grows past 4 keys) so that every boundary between leaves is
exercised with a handful of keys.
"""

from __future__ import annotations

import operator
from itertools import pairwise

import pytest

from datsync.core import index
from datsync.core.index import TOP, AttrIndex, HistoryIndexes, SortedIndex, TransientIndex


@pytest.fixture
def small_leaves(monkeypatch: pytest.MonkeyPatch) -> int:
    """Leaves split once they hold more than 2 * 2 = 4 keys, branches once they hold more than 4 leaves."""
    monkeypatch.setattr(index, "LEAF_SIZE", 2)
    monkeypatch.setattr(index, "BRANCH_SIZE", 2)
    return 2


def leaves(ix: SortedIndex | TransientIndex) -> list[list]:
    """The leaf lists (a copy), for checking the B+tree layout."""
    return [list(leaf) for leaf in ix.leaves()]


def maxes(ix: SortedIndex | TransientIndex) -> list:
    """The last key of every leaf, as the tree records them."""
    return [m for bm in ix._bmaxes for m in bm]


def check_structure(ix: SortedIndex | TransientIndex) -> None:
    """The invariants every version keeps: no empty branch or leaf, each branch's maxes are its
    leaves' last keys and its top its last max, keys strictly increasing across leaves, the length
    is the number of keys."""
    assert all(ix._branches), "empty branch"
    assert ix._bmaxes == [[leaf[-1] for leaf in branch] for branch in ix._branches]
    assert ix._tops == [bm[-1] for bm in ix._bmaxes]
    ls = ix.leaves()
    assert all(ls), "empty leaf"
    flat = [k for leaf in ls for k in leaf]
    assert all(a < b for a, b in pairwise(flat))
    assert len(ix) == len(flat)


def ints(n: int) -> list[tuple[int]]:
    """Keys (0,), (10,), (20,), ... so that there is room between any two of them."""
    return [(10 * i,) for i in range(n)]


# ------------------------------------------------------------------------------------------------
# Building


def test_empty_index_answers_every_query_with_nothing():
    ix = SortedIndex()
    assert len(ix) == 0
    assert list(ix) == []
    assert (1,) not in ix
    assert ix.first(()) is None
    assert ix.first((1,)) is None
    assert list(ix.slice((0,), (9,))) == []
    assert ix.slice_list((0,), (9,)) == []
    assert list(ix.prefix(())) == []
    assert ix.prefix_list((1,)) == []
    assert list(ix.seek((0,))) == []
    assert list(ix.rseek((9,))) == []


def test_from_sorted_cuts_leaves_of_leaf_size():
    ix = SortedIndex.from_sorted(ints(7), leaf_size=3)
    assert leaves(ix) == [[(0,), (10,), (20,)], [(30,), (40,), (50,)], [(60,)]]
    assert maxes(ix) == [(20,), (50,), (60,)]
    assert len(ix) == 7
    assert list(ix) == ints(7)
    check_structure(ix)


def test_from_sorted_accepts_any_iterable_and_empty_input():
    ix = SortedIndex.from_sorted(iter(ints(3)), leaf_size=2)
    assert list(ix) == ints(3)
    assert leaves(ix) == [[(0,), (10,)], [(20,)]]
    empty = SortedIndex.from_sorted([], leaf_size=2)
    assert len(empty) == 0 and leaves(empty) == []


def test_from_sorted_default_leaf_size_is_leaf_size():
    ix = SortedIndex.from_sorted([(i,) for i in range(index.LEAF_SIZE + 1)])
    assert [len(leaf) for leaf in ix.leaves()] == [index.LEAF_SIZE, 1]


def test_from_keys_sorts_and_drops_duplicates():
    ix = SortedIndex.from_keys([(3, "c"), (1, "a"), (2, "b"), (1, "a"), (3, "c")])
    assert list(ix) == [(1, "a"), (2, "b"), (3, "c")]
    assert len(ix) == 3
    check_structure(ix)


def test_repr_names_the_size():
    assert repr(SortedIndex.from_sorted(ints(3))) == "SortedIndex(3 keys)"


# ------------------------------------------------------------------------------------------------
# Membership


@pytest.mark.parametrize("key", [(0,), (10,), (20,), (30,), (40,)])
def test_contains_every_key_including_leaf_boundaries(key):
    ix = SortedIndex.from_sorted(ints(5), leaf_size=2)
    assert key in ix


@pytest.mark.parametrize("key", [(-1,), (5,), (15,), (25,), (41,), (10, "more")])
def test_does_not_contain_keys_before_between_or_after(key):
    ix = SortedIndex.from_sorted(ints(5), leaf_size=2)
    assert key not in ix


# ------------------------------------------------------------------------------------------------
# Transient edits


def test_add_reports_whether_the_key_was_new():
    t = SortedIndex.from_sorted(ints(3), leaf_size=2).transient()
    assert t.add((15,)) is True
    assert t.add((15,)) is False
    assert t.add((0,)) is False
    assert len(t) == 4
    assert list(t) == [(0,), (10,), (15,), (20,)]
    check_structure(t)


def test_add_to_an_empty_index_creates_the_first_leaf():
    t = SortedIndex().transient()
    assert t.add((7,)) is True
    assert leaves(t) == [[(7,)]]
    assert maxes(t) == [(7,)]
    assert len(t) == 1


def test_add_after_the_last_key_extends_the_last_leaf_and_its_max():
    t = SortedIndex.from_sorted(ints(4), leaf_size=2).transient()
    assert t.add((99,))
    assert leaves(t) == [[(0,), (10,)], [(20,), (30,), (99,)]]
    assert maxes(t)[-1] == (99,)
    check_structure(t)


def test_add_before_the_first_key_goes_into_the_first_leaf():
    t = SortedIndex.from_sorted(ints(4), leaf_size=2).transient()
    assert t.add((-5,))
    assert leaves(t) == [[(-5,), (0,), (10,)], [(20,), (30,)]]
    check_structure(t)


def test_add_between_leaves_goes_to_the_end_of_the_leaf_before_while_it_has_room():
    t = SortedIndex.from_sorted(ints(4), leaf_size=2).transient()  # leaves of 2 < LEAF_SIZE keys
    assert t.add((15,))
    assert leaves(t) == [[(0,), (10,), (15,)], [(20,), (30,)]]
    assert maxes(t) == [(15,), (30,)]
    check_structure(t)


def test_add_between_full_leaves_goes_to_the_front_of_the_next_while_it_has_room(small_leaves):
    t = SortedIndex.from_sorted(ints(3), leaf_size=2).transient()  # [(0,), (10,)] full, [(20,)] not
    assert t.add((15,))
    assert leaves(t) == [[(0,), (10,)], [(15,), (20,)]]
    check_structure(t)


def test_add_between_two_full_leaves_starts_a_leaf_between_them(small_leaves):
    t = SortedIndex.from_sorted(ints(4), leaf_size=2).transient()  # two full leaves
    for k in [(15,), (16,), (17,), (14,)]:
        assert t.add(k)
    # (15,) starts a leaf; (16,) goes after it; (17,) finds it full and (20,)'s full: a new leaf;
    # (14,) comes before the full [(15,), (16,)] with [(0,), (10,)] full too: a new leaf again
    assert leaves(t) == [[(0,), (10,)], [(14,)], [(15,), (16,)], [(17,)], [(20,), (30,)]]
    check_structure(t)
    check_structure(t.persistent())


def test_keys_added_in_order_into_one_gap_fill_leaves(small_leaves):
    """New entities go between the entities and the transaction entities: in order, into one gap."""
    t = SortedIndex.from_sorted([(1,), (2,), (100,), (101,)], leaf_size=2).transient()
    for k in range(3, 10):
        t.add((k,))
    assert leaves(t) == [[(1,), (2,)], [(3,), (4,)], [(5,), (6,)], [(7,), (8,)], [(9,)], [(100,), (101,)]]
    check_structure(t)


def test_discard_reports_whether_the_key_was_present():
    t = SortedIndex.from_sorted(ints(4), leaf_size=2).transient()
    assert t.discard((10,)) is True
    assert t.discard((10,)) is False
    assert t.discard((5,)) is False
    assert t.discard((99,)) is False
    assert t.discard((-1,)) is False
    assert list(t) == [(0,), (20,), (30,)]
    assert len(t) == 3
    check_structure(t)


def test_discard_of_a_leafs_last_key_lowers_its_max():
    t = SortedIndex.from_sorted(ints(4), leaf_size=2).transient()
    t.discard((10,))
    assert maxes(t) == [(0,), (30,)]
    assert (5,) not in t
    assert t.first((0,)) == (0,)
    check_structure(t)


def test_discard_of_the_only_key_of_a_leaf_removes_the_leaf():
    t = SortedIndex.from_sorted(ints(5), leaf_size=2).transient()
    t.discard((40,))
    assert leaves(t) == [[(0,), (10,)], [(20,), (30,)]]
    t.discard((0,))
    t.discard((10,))
    assert leaves(t) == [[(20,), (30,)]]
    assert maxes(t) == [(30,)]
    check_structure(t)


def test_removing_every_key_empties_the_index_and_it_can_grow_again():
    t = SortedIndex.from_sorted(ints(5), leaf_size=2).transient()
    for k in [(20,), (0,), (40,), (30,), (10,)]:
        assert t.discard(k)
    assert len(t) == 0
    assert leaves(t) == [] and maxes(t) == []
    assert list(t) == [] and t.first(()) is None and list(t.rseek((99,))) == []
    assert t.add((5,))
    assert list(t) == [(5,)]
    frozen = t.persistent()
    assert list(frozen) == [(5,)]
    check_structure(frozen)


def test_update_inserts_many_keys():
    t = SortedIndex().transient()
    t.update([(3,), (1,), (2,), (1,)])
    assert list(t) == [(1,), (2,), (3,)]
    assert len(t) == 3


def test_leaf_splits_in_two_when_it_grows_past_twice_leaf_size(small_leaves):
    t = SortedIndex().transient()
    for i in [4, 0, 1, 2, 3]:  # (4,) first: the others go into the middle of the index
        t.add((i,))
    # 5 > 2 * LEAF_SIZE: the leaf split at its middle
    assert leaves(t) == [[(0,), (1,)], [(2,), (3,), (4,)]]
    assert maxes(t) == [(1,), (4,)]
    check_structure(t)


def test_keys_added_in_order_fill_leaves_and_branches_and_start_new_ones(small_leaves):
    """Past the last key, a full last leaf (LEAF_SIZE keys) is followed by a new one, and a full last
    branch (BRANCH_SIZE leaves) by a new one: no half-empty leaves behind, a small tail to copy."""
    v = SortedIndex.from_sorted(ints(3), leaf_size=2)  # leaves [(0,), (10,)] [(20,)]
    t = v.transient()
    for k in range(21, 26):
        t.add((k,))
    assert leaves(t) == [[(0,), (10,)], [(20,), (21,)], [(22,), (23,)], [(24,), (25,)]]
    assert [len(b) for b in t._branches] == [2, 2]
    assert list(v) == [(0,), (10,), (20,)] and leaves(v) == [[(0,), (10,)], [(20,)]]
    check_structure(t)
    check_structure(t.persistent())


def test_split_in_the_middle_of_the_index_keeps_both_halves_reachable(small_leaves):
    t = SortedIndex.from_sorted(ints(6), leaf_size=2).transient()
    for k in [(21,), (22,), (23,)]:
        t.add(k)
    # the middle leaf [(20,), (30,)] took (21,)..(23,) and split
    assert leaves(t) == [[(0,), (10,)], [(20,), (21,)], [(22,), (23,), (30,)], [(40,), (50,)]]
    for k in [(0,), (21,), (22,), (23,), (20,), (50,)]:
        assert k in t
    assert list(t.slice((11,), (23,))) == [(20,), (21,), (22,)]
    check_structure(t)


def test_many_inserts_keep_leaves_bounded(small_leaves):
    t = SortedIndex().transient()
    keys = [((i * 37) % 101,) for i in range(101)]
    for k in keys:
        t.add(k)
    frozen = t.persistent()
    assert list(frozen) == sorted(keys)
    assert len(frozen.leaves()) > 20
    assert all(1 <= len(leaf) <= 2 * small_leaves for leaf in frozen.leaves())
    check_structure(frozen)


# ------------------------------------------------------------------------------------------------
# Range reads


@pytest.fixture
def ix() -> SortedIndex:
    """(0,) ... (90,) in leaves of two: [(0,) (10,)] [(20,) (30,)] ... [(80,) (90,)]."""
    return SortedIndex.from_sorted(ints(10), leaf_size=2)


@pytest.mark.parametrize(
    ("lo", "hi", "expected"),
    [
        ((10,), (30,), [(10,), (20,)]),  # lo included, hi excluded
        ((10,), (31,), [(10,), (20,), (30,)]),
        ((11,), (30,), [(20,)]),  # lo between keys
        ((20,), (20,), []),  # empty range
        ((30,), (10,), []),  # lo > hi
        ((-99,), (5,), [(0,)]),  # lo before everything
        ((85,), (999,), [(90,)]),  # hi after everything
        ((95,), (999,), []),  # lo after everything
        ((-99,), (999,), [(10 * i,) for i in range(10)]),  # everything, across all leaves
        ((10,), (11,), [(10,)]),  # last key of a leaf
        ((20,), (21,), [(20,)]),  # first key of a leaf
        ((15,), (65,), [(20,), (30,), (40,), (50,), (60,)]),  # spans four leaves
    ],
)
def test_slice_and_slice_list_at_boundaries(ix, lo, hi, expected):
    assert list(ix.slice(lo, hi)) == expected
    assert ix.slice_list(lo, hi) == expected


def test_slice_list_inside_one_leaf_is_a_copy(ix):
    part = ix.slice_list((20,), (30,))
    part.append((999,))
    assert list(ix) == ints(10)


def test_prefix_selects_keys_starting_with_the_components():
    keys = [(1, "a", 1), (1, "a", 2), (1, "b", 1), (2, "a", 1), (2, "b", 5), (3, "a", 0)]
    ix = SortedIndex.from_sorted(keys, leaf_size=2)
    assert list(ix.prefix((1,))) == keys[:3]
    assert ix.prefix_list((1,)) == keys[:3]
    assert ix.prefix_list((1, "a")) == keys[:2]
    assert ix.prefix_list((2, "b")) == [(2, "b", 5)]
    assert ix.prefix_list((2, "b", 5)) == [(2, "b", 5)]
    assert ix.prefix_list((2, "c")) == []
    assert ix.prefix_list((0,)) == []
    assert ix.prefix_list((4,)) == []
    assert list(ix.prefix(())) == keys
    assert ix.prefix_list(()) == keys


def test_prefix_spanning_several_leaves():
    keys = [(1, i) for i in range(7)] + [(2, 0)]
    ix = SortedIndex.from_sorted(keys, leaf_size=2)
    assert ix.prefix_list((1,)) == keys[:7]
    assert list(ix.prefix((1,))) == keys[:7]


def test_first_finds_the_first_key_with_a_prefix():
    keys = [(1, "a"), (1, "b"), (2, "a"), (4, "z")]
    ix = SortedIndex.from_sorted(keys, leaf_size=2)
    assert ix.first(()) == (1, "a")
    assert ix.first((1,)) == (1, "a")
    assert ix.first((1, "b")) == (1, "b")
    assert ix.first((2,)) == (2, "a")  # first key of the second leaf
    assert ix.first((3,)) is None  # between leaves: the next key does not match
    assert ix.first((1, "c")) is None  # inside a leaf, no match
    assert ix.first((0,)) is None  # before everything
    assert ix.first((5,)) is None  # after everything


@pytest.mark.parametrize(
    ("start", "expected"),
    [
        ((30,), [(30,), (40,), (50,)]),  # exact key: included
        ((31,), [(40,), (50,)]),  # between keys (and between leaves)
        ((-1,), [(0,), (10,), (20,), (30,), (40,), (50,)]),
        ((50,), [(50,)]),
        ((51,), []),
        ((20,), [(20,), (30,), (40,), (50,)]),  # first key of a leaf
    ],
)
def test_seek(start, expected):
    ix = SortedIndex.from_sorted(ints(6), leaf_size=2)
    assert list(ix.seek(start)) == expected


@pytest.mark.parametrize(
    ("start", "expected"),
    [
        ((30,), [(30,), (20,), (10,), (0,)]),  # exact key: included
        ((29,), [(20,), (10,), (0,)]),  # between keys
        ((10,), [(10,), (0,)]),  # last key of a leaf
        ((20,), [(20,), (10,), (0,)]),  # first key of a leaf
        ((-1,), []),  # before everything
        ((0,), [(0,)]),
        ((999,), [(50,), (40,), (30,), (20,), (10,), (0,)]),  # after everything
        ((50, TOP), [(50,), (40,), (30,), (20,), (10,), (0,)]),
    ],
)
def test_rseek(start, expected):
    ix = SortedIndex.from_sorted(ints(6), leaf_size=2)
    assert list(ix.rseek(start)) == expected


def test_top_is_greater_than_every_component():
    for x in [0, -(10**9), 10**9, "zzz", "", (1, 2), None]:
        assert (1, x) < (1, TOP)
        assert operator.gt((1, TOP), (1, x))
        assert not operator.lt(TOP, x)
        assert not operator.le(TOP, x)
        assert operator.ge(TOP, x)
        assert operator.gt(TOP, x)
        assert operator.ne(TOP, x)
    assert (1, TOP) < (2,)
    assert operator.eq(TOP, TOP)
    assert operator.le(TOP, TOP)
    assert operator.ge(TOP, TOP)
    assert not operator.gt(TOP, TOP)
    assert repr(TOP) == "TOP"
    assert hash(TOP) == hash(TOP)


def test_transient_reads_its_own_writes(small_leaves):
    t = SortedIndex.from_sorted(ints(4), leaf_size=2).transient()
    t.add((15,))
    t.discard((20,))
    assert (15,) in t and (20,) not in t
    assert t.first((15,)) == (15,)
    assert t.slice_list((0,), (99,)) == [(0,), (10,), (15,), (30,)]
    assert t.prefix_list((15,)) == [(15,)]
    assert list(t.seek((11,))) == [(15,), (30,)]
    assert list(t.rseek((29,))) == [(15,), (10,), (0,)]


# ------------------------------------------------------------------------------------------------
# Persistence


def test_old_version_is_unchanged_by_edits_to_a_transient(small_leaves):
    v1 = SortedIndex.from_sorted(ints(8), leaf_size=2)
    before = list(v1)
    before_leaves = leaves(v1)
    t = v1.transient()
    t.add((5,))
    t.add((6,))
    t.add((7,))  # splits the first leaf
    t.discard((30,))
    t.discard((40,))
    t.discard((50,))  # empties a leaf
    t.add((999,))
    v2 = t.persistent()
    assert list(v1) == before
    assert leaves(v1) == before_leaves
    assert len(v1) == 8
    assert (5,) not in v1 and (30,) in v1
    assert list(v2) == [(0,), (5,), (6,), (7,), (10,), (20,), (60,), (70,), (999,)]
    check_structure(v1)
    check_structure(v2)


def test_two_transients_from_one_version_are_independent(small_leaves):
    v1 = SortedIndex.from_sorted(ints(6), leaf_size=2)
    a, b = v1.transient(), v1.transient()
    a.add((15,))
    a.discard((0,))
    b.add((16,))
    b.discard((50,))
    va, vb = a.persistent(), b.persistent()
    assert list(va) == [(10,), (15,), (20,), (30,), (40,), (50,)]
    assert list(vb) == [(0,), (10,), (16,), (20,), (30,), (40,)]
    assert list(v1) == ints(6)


def test_edits_after_a_freeze_do_not_reach_the_frozen_version(small_leaves):
    # what a transaction does when it hands its in-progress db to a function
    t = SortedIndex.from_sorted(ints(4), leaf_size=2).transient()
    t.add((1,))
    snapshot = t.persistent()
    t2 = snapshot.transient()
    t2.add((2,))
    t2.discard((1,))
    t2.discard((30,))
    assert list(snapshot) == [(0,), (1,), (10,), (20,), (30,)]
    assert list(t2.persistent()) == [(0,), (2,), (10,), (20,)]


def test_persistent_ends_the_transient():
    t = SortedIndex.from_sorted(ints(3)).transient()
    frozen = t.persistent()
    assert list(frozen) == ints(3)
    with pytest.raises((AttributeError, TypeError)):
        t.add((5,))


def test_unchanged_leaves_are_shared_not_copied():
    v1 = SortedIndex.from_sorted(ints(6), leaf_size=2)
    t = v1.transient()
    t.add((45,))
    v2 = t.persistent()
    assert v2.leaves()[0] is v1.leaves()[0]
    assert v2.leaves()[1] is v1.leaves()[1]
    assert v2.leaves()[2] is not v1.leaves()[2]


# ------------------------------------------------------------------------------------------------
# AttrIndex: AEVT order over EAVT keys


EAV = [(1, "age", 30), (1, "name", "Ivan"), (2, "age", 20), (2, "name", "Petr"), (3, "name", "Oleg")]


def test_attr_index_iterates_in_aevt_order_and_holds_the_same_key_objects():
    ix = AttrIndex.from_sorted(EAV)
    assert list(ix) == [(1, "age", 30), (2, "age", 20), (1, "name", "Ivan"), (2, "name", "Petr"),
                        (3, "name", "Oleg")]
    assert {id(k) for k in ix} == {id(k) for k in EAV}
    assert len(ix) == 5
    assert ix.attributes() == ["age", "name"]


def test_attr_index_prefixes_are_given_in_aevt_order():
    ix = AttrIndex.from_sorted(EAV)
    assert ix.prefix_list(("name",)) == [(1, "name", "Ivan"), (2, "name", "Petr"), (3, "name", "Oleg")]
    assert ix.prefix_list(("name", 2)) == [(2, "name", "Petr")]
    assert list(ix.prefix(("age", 1, 30))) == [(1, "age", 30)]
    assert ix.prefix_list(("nothing",)) == []
    assert ix.first(("name",)) == (1, "name", "Ivan")
    assert ix.first(("name", 4)) is None
    assert (2, "age", 20) in ix and (2, "age", 21) not in ix


def test_attr_index_seeks_across_attributes():
    ix = AttrIndex.from_sorted(EAV)
    assert list(ix.seek(("age", 2))) == [(2, "age", 20), (1, "name", "Ivan"), (2, "name", "Petr"),
                                         (3, "name", "Oleg")]
    assert list(ix.seek(("b",))) == [(1, "name", "Ivan"), (2, "name", "Petr"), (3, "name", "Oleg")]
    assert list(ix.rseek(("name", 1, TOP))) == [(1, "name", "Ivan"), (2, "age", 20), (1, "age", 30)]
    assert list(ix.rseek((TOP,))) == list(reversed(list(ix)))
    assert list(ix.rseek(("b", TOP))) == [(2, "age", 20), (1, "age", 30)]


def test_attr_index_transient_copies_only_the_attributes_it_writes():
    v1 = AttrIndex.from_sorted(EAV)
    t = v1.transient()
    assert t.add((4, "name", "Ivan")) is True
    assert t.add((4, "name", "Ivan")) is False
    assert t.discard((9, "name", "x")) is False
    assert t.prefix_list(("name", 4)) == [(4, "name", "Ivan")]
    assert len(t) == 6
    v2 = t.persistent()
    assert v2.attribute("age") is v1.attribute("age")
    assert v2.attribute("name") is not v1.attribute("name")
    assert list(v1) == sorted(EAV, key=lambda k: (k[1], k[0]))
    assert len(v2) == 6 and v2.prefix_list(("name", 4)) == [(4, "name", "Ivan")]


def test_attr_index_drops_an_attribute_whose_last_key_goes():
    t = AttrIndex.from_sorted(EAV).transient()
    assert t.discard((1, "age", 30)) and t.discard((2, "age", 20))
    assert t.attributes() == ["name"]
    v = t.persistent()
    assert v.attributes() == ["name"] and len(v) == 3
    assert v.attribute("age") is not None and len(v.attribute("age")) == 0


def test_attr_index_persistent_without_edits_is_the_source():
    v1 = AttrIndex.from_sorted(EAV)
    assert v1.transient().persistent() is v1


def test_history_indexes_take_events_as_batches_and_fold_them_when_read():
    """A transaction appends its events without touching the indexes; the first read folds every
    batch in, once; the versions appended to keep reading what they held."""
    h0 = HistoryIndexes()
    h1 = h0.appended([(2, "b", 0, 7, 10, True)])
    h2 = h1.appended([(2, "b", 0, 7, 11, False), (1, "c", 0, 5, 11, True)])
    assert h2.appended([]) is h2
    assert h2._built is None and h1._built is None
    assert list(h2.heavt) == [(1, "c", 0, 5, 11, True), (2, "b", 0, 7, 10, True), (2, "b", 0, 7, 11, False)]
    assert list(h2.haevt) == [(2, "b", 0, 7, 10, True), (2, "b", 0, 7, 11, False), (1, "c", 0, 5, 11, True)]
    assert h2._pending is None and h2.heavt is h2.heavt  # folded once, the chain let go
    assert h1._built is None and list(h1.heavt) == [(2, "b", 0, 7, 10, True)]
    assert len(h0) == 0 and len(h2) == 3


def test_history_indexes_fold_by_themselves_past_the_bound(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(index, "HISTORY_FOLD_EVENTS", 4)
    h = HistoryIndexes()
    for i in range(9):
        h = h.appended([(i, "a", 0, i, 100 + i, True), (i, "b", 0, i, 100 + i, True)])
        assert h._unfolded <= 4
    assert h._unfolded == 0 and h._built is not None  # every third batch folds (2 + 2 + 2 > 4), the ninth too
    assert [k[0] for k in h.heavt] == [i for i in range(9) for _ in "ab"]


@pytest.mark.parametrize("flavor", ["datascript", "datomic"])
def test_a_large_transaction_lays_its_keys_out_anew_and_both_indexes_still_share_them(flavor):
    from datsync.core import datoms, empty_db, kw, transact

    schema = {} if flavor == "datascript" else {
        a: {"db/valueType": kw(f"db.type/{t}"), "db/cardinality": kw("db.cardinality/one")}
        for a, t in {"name": "string", "age": "long", "tag": "string"}.items()}
    people = [{"name": f"p{i}", "age": i % 90, "tag": "x" if i % 2 else "y"} for i in range(index.LAYOUT_MIN_KEYS // 2)]
    before = transact(empty_db(schema, flavor=flavor), people[:500]).db_after
    first, second = (d.e for d in datoms(before, "aevt", "name")[:2])
    edits = [["db/retract", first, "age", 0], ["db/add", second, "age", 1000]]
    kept = {id(k): k for k in before.eavt}
    after = transact(before, [*people[500:], *edits]).db_after
    assert len(after.eavt) - len(before.eavt) >= index.LAYOUT_MIN_KEYS
    # the same datoms as smaller transactions give (which are not laid out again)
    step = before
    for i in range(500, len(people), 100):
        step = transact(step, people[i:i + 100]).db_after
    step = transact(step, edits).db_after

    def content(db, order):
        return [(d.e, d.a, d.v) for d in datoms(db, order) if d.a != "db/txInstant"]

    assert content(after, "eavt") == content(step, "eavt") and content(after, "aevt") == content(step, "aevt")
    assert not datoms(after, "eavt", first, "age") and datoms(after, "eavt", second, "age")[0].v == 1000
    # one key object per datom, in both indexes; keys of earlier transactions still the earlier objects
    in_eavt = {id(k) for k in after.eavt}
    in_aevt = {id(k) for a in after.aevt.attributes() for k in after.aevt.attribute(a)}
    assert in_eavt == in_aevt and len(in_eavt) == len(after.eavt)
    old_keys = [k for k in after.eavt if k[4] != after.max_tx]
    assert len(old_keys) > 1000 and all(kept.get(id(k)) is k for k in old_keys)
