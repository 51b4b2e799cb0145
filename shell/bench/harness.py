"""Timing like DataScript's own benchmark harness: warm up, then samples of repeated runs, median.

Each sample repeats the operation until ``sample_ms`` have passed (at least once) and records
milliseconds per operation; the figure reported is the median sample. The garbage collector runs
as in a user's process (``gc="user"``: left alone, so a process holding a large database pays for
the collections its operations cause), or is run with its survivors frozen before each sample
(``gc="frozen"``: the collector then never scans the data set up before the sample).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Timing:
    """Milliseconds per operation: median, min and max over the samples."""

    median: float
    min: float
    max: float
    samples: tuple[float, ...]


def dotime(duration_ms: float, fn: Callable[[], object]) -> float:
    """Run ``fn`` repeatedly for at least ``duration_ms``; milliseconds per call."""
    start = time.perf_counter()
    n = 0
    while True:
        fn()
        n += 1
        elapsed = (time.perf_counter() - start) * 1000
        if elapsed >= duration_ms:
            return elapsed / n


GC_MODES = ("user", "frozen")
"""How the garbage collector runs while timing: as in a user's process, or frozen before each sample."""


def bench(fn: Callable[[], object], *, samples: int = 5, sample_ms: float = 1000, warmup_ms: float = 2000,
          gc_mode: str = "frozen") -> Timing:
    """Warm up ``fn``, then time ``samples`` samples of it."""
    return bench_interleaved({"fn": fn}, samples=samples, sample_ms=sample_ms, warmup_ms=warmup_ms,
                             gc_mode=gc_mode)["fn"]


def bench_interleaved(fns: dict[str, Callable[[], object]], *, samples: int = 5, sample_ms: float = 1000,
                      warmup_ms: float = 2000, gc_mode: str = "frozen") -> dict[str, Timing]:
    """Warm up each of ``fns``, then time ``samples`` rounds of one sample of each in turn: on a
    machine whose load varies, the figures of one round were taken under the same load."""
    if gc_mode not in GC_MODES:
        raise ValueError(f"gc_mode must be one of {GC_MODES}, got {gc_mode!r}")
    frozen = gc_mode == "frozen"
    for fn in fns.values():
        dotime(warmup_ms, fn)
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(samples):
        for name, fn in fns.items():
            if frozen:
                gc.collect()
                gc.freeze()
            times[name].append(dotime(sample_ms, fn))
            if frozen:
                gc.unfreeze()
    out = {}
    for name, ts in times.items():
        ordered = sorted(ts)
        out[name] = Timing(ordered[len(ordered) // 2], ordered[0], ordered[-1], tuple(ts))
    return out
