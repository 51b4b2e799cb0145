"""Model-based tests of ``core.index`` against a plain sorted Python list.

The machine edits a ``TransientIndex`` and mirrors every edit on a sorted list; from time to time it
freezes the transient into a ``SortedIndex`` version and keeps that version together with a copy of
the model. Later it may branch off any kept version (as a transaction starts from an older database
value). Every read is compared with the model, and every kept version must keep answering exactly as
it did when it was frozen, whatever happened to its descendants. ``LEAF_SIZE`` and ``BRANCH_SIZE`` are
patched to 2 so that leaves and branches split and empty after a few keys.
"""

from __future__ import annotations

import bisect
from contextlib import contextmanager
from itertools import pairwise
from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from datsync.core import index
from datsync.core.index import TOP, AttrIndex, HistoryIndexes, SortedIndex

LEAF = 2

# Keys look like index keys: (component, component). Small ranges make collisions and shared
# prefixes likely.
keys = st.tuples(st.integers(0, 12), st.integers(0, 3))
bounds = st.one_of(
    keys,
    st.tuples(st.integers(-1, 13)),
    st.tuples(st.integers(-1, 13), st.just(TOP)),
)
prefixes = st.one_of(st.just(()), st.tuples(st.integers(-1, 13)), keys)


def model_slice(model: list, lo, hi) -> list:
    return model[bisect.bisect_left(model, lo):bisect.bisect_left(model, hi)]


def model_prefix(model: list, prefix: tuple) -> list:
    return [k for k in model if k[:len(prefix)] == prefix]


def model_seek(model: list, start) -> list:
    return model[bisect.bisect_left(model, start):]


def model_rseek(model: list, start) -> list:
    return list(reversed(model[:bisect.bisect_right(model, start)]))


def check_reads(ix, model: list, lo, hi, prefix: tuple) -> None:
    """Every read of ``ix`` agrees with the sorted list ``model``."""
    assert list(ix) == model
    assert len(ix) == len(model)
    assert list(ix.slice(lo, hi)) == model_slice(model, lo, hi)
    assert ix.slice_list(lo, hi) == model_slice(model, lo, hi)
    assert ix.count(lo, hi) == len(model_slice(model, lo, hi))
    expected_prefix = model_prefix(model, prefix)
    assert list(ix.prefix(prefix)) == expected_prefix
    assert ix.prefix_list(prefix) == expected_prefix
    assert ix.first(prefix) == (expected_prefix[0] if expected_prefix else None)
    assert list(ix.seek(lo)) == model_seek(model, lo)
    assert list(ix.rseek(hi)) == model_rseek(model, hi)


def check_structure(ix) -> None:
    assert all(ix._branches), "empty branch"
    assert all(len(branch) <= 2 * LEAF for branch in ix._branches)
    assert ix._bmaxes == [[leaf[-1] for leaf in branch] for branch in ix._branches]
    assert ix._tops == [bm[-1] for bm in ix._bmaxes]
    assert all(ix.leaves()), "empty leaf"
    assert all(len(leaf) <= 2 * LEAF for leaf in ix.leaves())


@contextmanager
def small_leaves():
    with mock.patch.object(index, "LEAF_SIZE", LEAF), mock.patch.object(index, "BRANCH_SIZE", LEAF):
        yield


class IndexMachine(RuleBasedStateMachine):
    """A transient under edit plus every version frozen so far, each with its model."""

    versions = Bundle("versions")

    def __init__(self) -> None:
        super().__init__()
        self._patch = small_leaves()
        self._patch.__enter__()
        self.transient = SortedIndex().transient()
        self.model: list = []
        self.kept: list[tuple[SortedIndex, list]] = []

    def teardown(self) -> None:
        self._patch.__exit__(None, None, None)

    @initialize(target=versions, initial=st.lists(keys, max_size=20))
    def bulk_build(self, initial):
        model = sorted(set(initial))
        version = SortedIndex.from_sorted(model, leaf_size=LEAF)
        self.kept.append((version, list(model)))
        self.transient = version.transient()
        self.model = list(model)
        return version

    @rule(key=keys)
    def add(self, key):
        present = key in self.model
        assert self.transient.add(key) is (not present)
        if not present:
            bisect.insort(self.model, key)

    @rule(key=keys)
    def discard(self, key):
        present = key in self.model
        assert self.transient.discard(key) is present
        if present:
            self.model.remove(key)

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def discard_existing(self, data):
        key = data.draw(st.sampled_from(self.model))
        assert self.transient.discard(key) is True
        self.model.remove(key)

    @rule(new=st.lists(keys, max_size=8))
    def update(self, new):
        self.transient.update(new)
        self.model = sorted(set(self.model) | set(new))

    @rule(target=versions)
    def freeze(self):
        """Freeze the transient into a kept version and continue editing a transient of it."""
        version = self.transient.persistent()
        self.kept.append((version, list(self.model)))
        self.transient = version.transient()
        return version

    @rule(version=versions)
    def branch(self, version):
        """Start editing from an older version (its current descendants are abandoned)."""
        (model,) = [m for v, m in self.kept if v is version]
        self.transient = version.transient()
        self.model = list(model)

    @rule(version=versions, key=keys)
    def second_transient_of_a_version(self, version, key):
        """Edit a second transient of a kept version: the current transient is not affected."""
        (model,) = [m for v, m in self.kept if v is version]
        other = version.transient()
        other.add(key)
        other.discard(model[0] if model else key)
        expected = sorted((set(model) | {key}) - {model[0] if model else key})
        assert list(other.persistent()) == expected

    @rule(lo=bounds, hi=bounds, prefix=prefixes)
    def read_transient(self, lo, hi, prefix):
        check_reads(self.transient, self.model, lo, hi, prefix)

    @rule(lo=bounds, hi=bounds, prefix=prefixes, data=st.data())
    def read_kept_version(self, lo, hi, prefix, data):
        version, model = data.draw(st.sampled_from(self.kept))
        check_reads(version, model, lo, hi, prefix)

    @invariant()
    def transient_matches_model(self):
        assert list(self.transient) == self.model
        assert len(self.transient) == len(self.model)
        check_structure(self.transient)

    @invariant()
    def kept_versions_never_change(self):
        for version, model in self.kept:
            assert list(version) == model
            assert len(version) == len(model)
            check_structure(version)


IndexMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
TestIndexMachine = IndexMachine.TestCase


@settings(max_examples=100, deadline=None)
@given(
    initial=st.lists(keys, max_size=30),
    ops=st.lists(st.tuples(st.booleans(), keys), max_size=60),
    lo=bounds,
    hi=bounds,
    prefix=prefixes,
)
def test_operation_lists_match_a_sorted_list(initial, ops, lo, hi, prefix):
    """One batch of adds and discards on a transient of a bulk-built index; the base never changes."""
    with small_leaves():
        base_model = sorted(set(initial))
        assert list(SortedIndex.from_keys(initial)) == base_model
        base = SortedIndex.from_sorted(base_model, leaf_size=LEAF)
        t = base.transient()
        model = list(base_model)
        for is_add, key in ops:
            if is_add:
                assert t.add(key) is (key not in model)
                if key not in model:
                    bisect.insort(model, key)
            else:
                assert t.discard(key) is (key in model)
                if key in model:
                    model.remove(key)
            check_structure(t)
        check_reads(t, model, lo, hi, prefix)
        frozen = t.persistent()
        check_reads(frozen, model, lo, hi, prefix)
        check_reads(base, base_model, lo, hi, prefix)


# ------------------------------------------------------------------------------------------------
# AttrIndex: AEVT order over EAVT keys (e, a, v)

eav_keys = st.tuples(st.integers(0, 6), st.sampled_from("abc"), st.integers(0, 2))
attrs = st.sampled_from(["", "a", "ab", "b", "c", "d"])
aevt_starts = st.one_of(
    st.just(()),
    st.tuples(attrs),
    st.tuples(attrs, st.integers(-1, 7)),
    st.tuples(attrs, st.integers(-1, 7), st.integers(-1, 3)),
)
aevt_bounds = st.one_of(
    st.just((TOP,)),
    st.tuples(attrs, st.just(TOP)),
    st.tuples(attrs, st.integers(-1, 7), st.just(TOP)),
    st.tuples(attrs, st.integers(-1, 7), st.integers(-1, 3), st.just(TOP)),
)


def in_aevt(k: tuple) -> tuple:
    return (k[1], k[0], *k[2:])


def check_aevt_reads(ix, model: set, start: tuple, bound: tuple) -> None:
    """Every read of the ``AttrIndex`` (or its transient) ``ix`` agrees with the set of EAVT keys
    ``model`` sorted in AEVT order."""
    ordered = sorted(model, key=in_aevt)
    assert list(ix) == ordered
    assert len(ix) == len(model)
    assert ix.attributes() == sorted({k[1] for k in model})
    expected = [k for k in ordered if in_aevt(k)[:len(start)] == start]
    assert ix.prefix_list(start) == expected
    assert list(ix.prefix(start)) == expected
    assert ix.first(start) == (expected[0] if expected else None)
    assert list(ix.seek(start)) == [k for k in ordered if in_aevt(k) >= start]
    assert list(ix.rseek(bound)) == [k for k in reversed(ordered) if in_aevt(k) <= bound]
    for k in model:
        assert k in ix


@settings(max_examples=150, deadline=None)
@given(
    initial=st.lists(eav_keys, max_size=30),
    batches=st.lists(st.lists(st.tuples(st.booleans(), eav_keys), max_size=20), max_size=4),
    start=aevt_starts,
    bound=aevt_bounds,
)
def test_attr_index_matches_a_sorted_list_in_aevt_order(initial, batches, start, bound):
    """Batches of adds and discards, each on a transient of the previous version: every version and
    transient reads as the model, and no version changes once frozen."""
    with small_leaves():
        model = set(initial)
        version = AttrIndex.from_sorted(sorted(model))
        kept = [(version, set(model))]
        for ops in batches:
            t = version.transient()
            for is_add, key in ops:
                assert (t.add if is_add else t.discard)(key) is ((key not in model) if is_add else (key in model))
                (model.add if is_add else model.discard)(key)
            check_aevt_reads(t, model, start, bound)
            version = t.persistent()
            kept.append((version, set(model)))
        for version, model_then in kept:
            check_aevt_reads(version, model_then, start, bound)


@settings(max_examples=150, deadline=None)
@given(
    initial=st.lists(eav_keys, max_size=20, unique=True),
    batches=st.lists(st.lists(eav_keys, max_size=8, unique=True), max_size=8),
    reads=st.lists(st.booleans(), min_size=8, max_size=8),
    fold_after=st.integers(0, 12),
)
def test_history_indexes_read_as_every_event_appended(initial, batches, reads, fold_after):
    """Events appended batch by batch (each version read or not, folded when more than
    ``fold_after`` wait): every version's ``heavt`` and ``haevt`` hold exactly the events up to it,
    whenever and in whatever order the versions are read."""
    with small_leaves(), mock.patch.object(index, "HISTORY_FOLD_EVENTS", fold_after):
        seen = set(initial)
        start = sorted(seen)
        version = HistoryIndexes(SortedIndex.from_sorted(start), AttrIndex.from_sorted(start))
        kept = [(version, set(seen))]
        for events, read in zip(batches, reads):
            fresh = [k for k in events if k not in seen]
            version = version.appended(fresh)
            seen.update(fresh)
            assert version._unfolded <= fold_after
            if read:
                assert list(version.heavt) == sorted(seen)
            kept.append((version, set(seen)))
        for version, then in reversed(kept):  # newest first: older versions fold on their own
            assert list(version.heavt) == sorted(then)
            assert list(version.haevt) == sorted(then, key=lambda k: (k[1], k[0], *k[2:]))
            assert len(version) == len(then)


@settings(max_examples=200, deadline=None)
@given(
    initial=st.lists(st.integers(0, 400), max_size=40, unique=True),
    runs=st.lists(st.tuples(st.integers(0, 400), st.integers(1, 12), st.sampled_from([1, -1, 7, -3])), max_size=8),
    lo=bounds,
    hi=bounds,
    prefix=prefixes,
)
def test_runs_of_keys_in_order_keep_the_index_exact_and_its_leaves_full(initial, runs, lo, hi, prefix):
    """Runs of keys added in order, ascending or descending, past the end or into the gaps between
    leaves (as new entities arrive): every read agrees with the model, and with no discards no two
    neighbouring leaves are both short of ``LEAF`` keys, so the leaves stay at most about twice as
    many as full ones would be."""
    with small_leaves():
        model = sorted({(k * 10, 0) for k in initial})
        t = SortedIndex.from_sorted(model, leaf_size=LEAF).transient()
        added = set(model)
        for start, count, step in runs:
            for n in range(count):
                key = (start * 10 + n * step, 1)
                assert t.add(key) is (key not in added)
                added.add(key)
        model = sorted(added)
        frozen = t.persistent()
        check_structure(frozen)
        check_reads(frozen, model, lo, hi, prefix)
        sizes = [len(leaf) for leaf in frozen.leaves()]
        assert not any(a < LEAF and b < LEAF for a, b in pairwise(sizes)), sizes
