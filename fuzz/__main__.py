"""``python -m fuzz``: run fuzz targets for as long as asked (see the package docstring)."""

from __future__ import annotations

import argparse
import sys

from .harness import atheris_run, have_atheris, random_run, record, replay
from .targets import TARGETS


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m fuzz", description="Fuzz datsync's parsers and server session.")
    p.add_argument("what", help="a target, 'all', 'list', 'replay' or 'seed'")
    p.add_argument("--seconds", type=float, default=60.0, help="how long per target (default 60)")
    p.add_argument("--runs", type=int, default=None, help="stop after this many inputs per target")
    p.add_argument("--engine", default="auto", choices=["auto", "atheris", "random"],
                   help="atheris (coverage-guided, where installed), random (pure Python); auto: atheris if installed")
    p.add_argument("--seed", type=int, default=None, help="random engine: the random seed")
    p.add_argument("--no-coverage", action="store_true", help="random engine: no line-coverage guidance (faster)")
    a = p.parse_args(argv)

    if a.what == "list":
        for t in TARGETS.values():
            print(f"{t.name:<8} {t.doc}; allowed errors: {', '.join(e.__name__ for e in t.allowed) or 'none'}")
        return 0
    if a.what == "seed":
        from .seeds import build

        for target, n in build().items():
            print(f"{target:<8} {n} seeds")
        return 0
    names = list(TARGETS) if a.what in ("all", "replay") else [a.what]
    unknown = [n for n in names if n not in TARGETS]
    if unknown:
        p.error(f"unknown target {unknown[0]!r} (known: {', '.join(TARGETS)})")
    if a.what == "replay":
        bad = [(n, f, e) for n in names for f, e in replay(n)]
        for n, f, e in bad:
            print(f"{n}: {f}: {type(e).__name__}: {e}")
        print(f"replayed {len(names)} targets: {len(bad)} crashes")
        return 1 if bad else 0
    engine = a.engine if a.engine != "auto" else ("atheris" if have_atheris() else "random")
    if engine == "atheris" and not have_atheris():
        p.error("atheris is not installed (pip install -e '.[fuzz]'; it builds only on some platforms)")
    crashed = False
    for name in names:
        if engine == "atheris":
            stats = atheris_run(name, seconds=a.seconds, runs=a.runs)
        else:
            stats = random_run(name, seconds=a.seconds, runs=a.runs, seed=a.seed, coverage=not a.no_coverage)
        record(stats)
        print(stats.line(), flush=True)
        for c in stats.crashes + [f"slow: {s}" for s in stats.slow]:
            print(f"  {c}", flush=True)
        crashed = crashed or bool(stats.crashes)
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
