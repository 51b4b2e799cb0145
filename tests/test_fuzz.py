"""The fuzz targets in CI: every seed and every past crash replayed, then a short random run per target
(the long runs are `python -m fuzz TARGET --seconds N`, recorded in docs/operations.md)."""

from __future__ import annotations

import pytest

from fuzz import TARGETS, Target, check, random_run, replay
from fuzz.harness import CORPUS, REGRESSIONS, Mutator

SMOKE_SECONDS = 3.0


@pytest.mark.parametrize("name", list(TARGETS))
def test_seeds_and_past_crashes_run_clean(name):
    assert any((CORPUS / name).iterdir()), f"no seed corpus for {name}: python -m fuzz seed"
    assert replay(name) == []


@pytest.mark.parametrize("name", list(TARGETS))
def test_a_short_random_run_finds_no_crash(name):
    stats = random_run(name, seconds=SMOKE_SECONDS, seed=13, coverage=False, work=None)
    assert stats.crashes == [], stats.crashes
    assert stats.executions > len(list((CORPUS / name).iterdir()))  # it ran mutated inputs, not only the seeds


def test_only_documented_errors_pass():
    def run(data: bytes) -> None:
        raise {b"a": ValueError, b"b": KeyError}.get(data, RuntimeError)(data)

    t = Target("t", run, (ValueError,), (), "")
    assert check(t, b"a") is None
    assert isinstance(check(t, b"b"), KeyError) and isinstance(check(t, b"c"), RuntimeError)
    assert check(TARGETS["session"], b"\xff") is None  # nothing allowed, and nothing raised


def test_past_crashes_are_kept_as_regressions():
    assert {p.parent.name for p in REGRESSIONS.glob("*/*")} >= {"codec", "wire-tx", "session"}


def test_mutations_stay_bounded_and_vary():
    import random

    m = Mutator(random.Random(1), (b"~t", b"["))
    out = {m.mutate(b'{"v":1}', [b"[1,2]"]) for _ in range(200)}
    assert len(out) > 100 and all(len(x) <= 8192 for x in out)
