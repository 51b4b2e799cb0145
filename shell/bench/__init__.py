"""``datsync bench``: DataScript's benchmark suite on our engine and on DataScript, in one run.

Prints one row per benchmark: our median ms/op, DataScript's, and the ratio ours / DataScript
(below 1.0: we are faster). DataScript runs from ``tests/oracle`` when Node is available.

Measured as a user runs them: the garbage collector left alone in a process that holds the data
(``--gc frozen``: run and frozen before each sample instead), queries written with keyword
attributes (``--attrs string``: DataScript's spelling, ``"name"``).
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import sys
import tracemalloc
from typing import Any

from . import datascript
from .engine import BENCHMARKS as ENGINE_BENCHMARKS
from .engine import SETUP as ENGINE_SETUP
from .engine import datasets, empty
from .harness import GC_MODES, bench, bench_interleaved
from .policy import POLICY_BENCHMARKS, POLICY_SETUP, SLOW
from .query import ATTRIBUTE_SPELLINGS, QUERY_BENCHMARKS, query_benchmarks
from .query import SETUP as QUERY_SETUP
from .sync import SYNC_BENCHMARKS, SYNC_SETUP

BENCHMARKS = {**ENGINE_BENCHMARKS, **QUERY_BENCHMARKS, **SYNC_BENCHMARKS, **POLICY_BENCHMARKS}
SETUP = {**ENGINE_SETUP, **QUERY_SETUP, **SYNC_SETUP, **POLICY_SETUP}
GROUPS = {"policy": list(POLICY_BENCHMARKS)}
"""Names that stand for several benchmarks; the policy ones (a minute or more to set up) run only when
named."""
DEFAULT = [n for n in BENCHMARKS if n not in POLICY_BENCHMARKS]
IN_DATASCRIPT = {*ENGINE_BENCHMARKS, *QUERY_BENCHMARKS}
"""Benchmarks DataScript's suite has too (the sync ones are ours alone)."""


def bytes_per_datom() -> tuple[float, int]:
    """Memory the 20k-people database holds per datom (values are shared with the input data)."""
    from datsync.core import db_with

    people = datasets().people
    empty()
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    db = db_with(empty(), people)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return (after - before) / len(db.eavt), len(db.eavt)


def _time_alone(name: str, fn: Any, args: argparse.Namespace) -> Any:
    """Set up and time benchmark ``name`` (running ``fn``) on its own."""
    if name in SETUP:
        SETUP[name]()
    if name in SLOW:
        return bench(fn, samples=1, sample_ms=0, warmup_ms=0, gc_mode=args.gc)
    return bench(fn, samples=args.samples, sample_ms=args.sample_ms, warmup_ms=args.warmup_ms, gc_mode=args.gc)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks named on the command line (all by default) and print the table."""
    p = argparse.ArgumentParser(prog="datsync bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("names", nargs="*", help=f"benchmarks to run (default: all but the policy ones; `policy` "
                                            f"names those): {' '.join(BENCHMARKS)}")
    p.add_argument("--samples", type=int, default=5, help="samples per benchmark (default 5)")
    p.add_argument("--sample-ms", type=float, default=1000, help="minimum length of one sample (default 1000)")
    p.add_argument("--warmup-ms", type=float, default=2000, help="warm-up before sampling (default 2000)")
    p.add_argument("--no-datascript", action="store_true", help="do not run DataScript alongside")
    p.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    p.add_argument("--gc", choices=GC_MODES, default="user", help="garbage collector while timing: `user` leaves "
                   "it alone, as in a user's process holding the data (default); `frozen` runs it and freezes the "
                   "survivors before each sample")
    p.add_argument("--attrs", choices=ATTRIBUTE_SPELLINGS, default="keyword", help="attributes in the query "
                   "benchmarks: `keyword` (:name, as a user writes EDN; default) or `string` (\"name\", DataScript's)")
    p.add_argument("--interleave", action="store_true", help="time the benchmarks side by side: set all up, "
                   "then rounds of one sample of each (fairer figures on a machine whose load varies)")
    args = p.parse_args(argv)
    names = [m for n in args.names for m in GROUPS.get(n, [n])] or DEFAULT
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        p.error(f"unknown benchmark(s): {' '.join(unknown)}")

    fns = {**BENCHMARKS, **query_benchmarks(args.attrs)}
    print(f"datsync bench: Python {platform.python_version()}, {platform.machine()}, "
          f"{args.samples} samples x {args.sample_ms:.0f} ms, warm-up {args.warmup_ms:.0f} ms, "
          f"gc {args.gc}, {args.attrs} attributes", flush=True)
    theirs: dict[str, Any] = {}
    why_not = "disabled (--no-datascript)" if args.no_datascript else datascript.available()
    ds_names = [n for n in names if n in IN_DATASCRIPT]
    if why_not is None and ds_names:
        print("running DataScript (Node) ...", flush=True)
        if ds_names:
            theirs = datascript.run(ds_names, samples=args.samples, sample_ms=args.sample_ms,
                                    warmup_ms=args.warmup_ms)
    else:
        print(f"DataScript not run: {why_not}", flush=True)

    width = max(len(n) for n in names)
    print(f"{'bench':<{width}}  {'datsync ms':>11}  {'DataScript ms':>13}  {'ratio':>6}")
    results: dict[str, Any] = {}
    timed: dict[str, Any] = {}
    if args.interleave:
        for name in names:
            if name in SETUP:
                SETUP[name]()
        timed = bench_interleaved({n: fns[n] for n in names}, samples=args.samples, sample_ms=args.sample_ms,
                                  warmup_ms=args.warmup_ms, gc_mode=args.gc)
    for name in names:
        t = timed.get(name) or _time_alone(name, fns[name], args)
        ds = theirs.get(name, {}).get("median")
        ratio = f"{t.median / ds:6.2f}" if ds else "     -"
        ds_s = f"{ds:13.3f}" if ds else f"{'-':>13}"
        print(f"{name:<{width}}  {t.median:11.3f}  {ds_s}  {ratio}", flush=True)
        results[name] = {"datsync_ms": t.median, "datascript_ms": ds, "min": t.min, "max": t.max}
    per_datom, n = bytes_per_datom()
    print(f"memory: {per_datom:.0f} bytes per datom (20k-people database, {n} datoms, values shared)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"results": results, "bytes_per_datom": per_datom}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
