"""Timing like DataScript's own benchmark harness: warm up, then samples of repeated runs, median.

Each sample repeats the operation until ``sample_ms`` have passed (at least once) and records
milliseconds per operation; the figure reported is the median sample. The garbage collector is run
and the survivors frozen between samples, as the JS side runs ``gc()`` between its samples.
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


def bench(fn: Callable[[], object], *, samples: int = 5, sample_ms: float = 1000, warmup_ms: float = 2000) -> Timing:
    """Warm up ``fn``, then time ``samples`` samples of it."""
    dotime(warmup_ms, fn)
    times = []
    for _ in range(samples):
        gc.collect()
        gc.freeze()
        times.append(dotime(sample_ms, fn))
        gc.unfreeze()
    ordered = sorted(times)
    return Timing(ordered[len(ordered) // 2], ordered[0], ordered[-1], tuple(times))
