"""Running fuzz targets: with atheris (coverage-guided, libFuzzer) when it is installed, else with a
pure-Python mutation engine guided by line coverage, so every machine runs something.

Inputs come from the committed seed corpora (``fuzz/corpus/<target>/``, built from the test suite by
``python -m fuzz seed``) and regressions (``fuzz/regressions/<target>/``: inputs that once crashed);
what a run learns (new inputs, crashes, stats) goes to the work directory ``.fuzz/<target>/``.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import subprocess
import sys
import time
import traceback
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .targets import TARGETS, Target

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "fuzz" / "corpus"
REGRESSIONS = ROOT / "fuzz" / "regressions"
WORK = ROOT / ".fuzz"
MAX_LEN = 8192
SLOW_SECONDS = 2.0
"""An input that takes longer than this to run is reported (and saved) as slow."""


@dataclass
class Stats:
    """What one run of one target did."""

    target: str
    engine: str
    seconds: float
    executions: int
    coverage: int
    coverage_unit: str
    corpus: int
    crashes: list[str] = field(default_factory=list)
    slow: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (f"{self.target:<8} {self.engine:<8} {self.seconds:7.1f} s {self.executions:>10} execs "
                f"{self.coverage:>6} {self.coverage_unit:<5} corpus {self.corpus:>5} crashes {len(self.crashes)}"
                + (f" slow {len(self.slow)}" if self.slow else ""))


def check(target: Target, data: bytes) -> BaseException | None:
    """Run ``target`` on ``data``; the exception if it is not one of the target's documented errors."""
    try:
        target.run(data)
    except target.allowed:
        return None
    except Exception as e:  # RecursionError and MemoryError are crashes too
        return e
    return None


def inputs(name: str, *, work: bool = False) -> list[bytes]:
    """The seed corpus and the regressions of target ``name`` (and its work corpus with ``work``)."""
    dirs = [CORPUS / name, REGRESSIONS / name] + ([WORK / name / "corpus"] if work else [])
    out = []
    for d in dirs:
        if d.is_dir():
            out += [p.read_bytes() for p in sorted(d.iterdir()) if p.is_file()]
    return out


def replay(name: str) -> list[tuple[str, BaseException]]:
    """Every seed and regression input of ``name`` run once: the ``(file, error)`` pairs that crash."""
    target = TARGETS[name]
    out = []
    for d in (CORPUS / name, REGRESSIONS / name):
        if d.is_dir():
            for p in sorted(d.iterdir()):
                e = check(target, p.read_bytes())
                if e is not None:
                    out.append((str(p.relative_to(ROOT)), e))
    return out


def _signature(e: BaseException) -> str:
    """Crashes with the same exception type raised at the same place are one crash."""
    frames = [f for f in traceback.extract_tb(e.__traceback__) if f.filename.startswith(str(ROOT))]
    where = f"{Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else "?"
    return f"{type(e).__name__}@{where}"


def _save(directory: Path, data: bytes, prefix: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{prefix}-{hashlib.sha1(data).hexdigest()[:16]}"
    path.write_bytes(data)
    return path


# ------------------------------------------------------------------------------------------------
# The pure-Python engine


class Mutator:
    """Random edits of byte strings: bit flips, inserts, deletes, duplicated ranges, the target's tokens,
    interesting numbers, splices with other inputs."""

    NUMBERS = (b"0", b"-1", b"1", b"255", b"65536", b"2147483648", b"9007199254740992", b"18446744073709551616",
               b"-9223372036854775809", b"1e308", b"1e-400", b"0.1", b"-0")

    def __init__(self, rng: random.Random, tokens: Iterable[bytes]):
        self.rng = rng
        self.tokens = tuple(tokens) or (b"",)

    def mutate(self, data: bytes, others: list[bytes]) -> bytes:
        out = bytearray(data)
        for _ in range(self.rng.choice((1, 1, 2, 3, 4, 8))):
            out = self._one(out, others)
        return bytes(out[:MAX_LEN])

    def _one(self, b: bytearray, others: list[bytes]) -> bytearray:
        r = self.rng
        n = len(b)
        i = r.randint(0, n)
        op = r.randrange(9)
        if op == 0 and n:
            j = r.randrange(n)
            b[j] ^= 1 << r.randrange(8)
        elif op == 1 and n:
            b[r.randrange(n)] = r.randrange(256)
        elif op == 2:
            b[i:i] = bytes(r.randrange(256) for _ in range(r.randint(1, 4)))
        elif op == 3 and n:
            j = r.randint(i, min(n, i + r.choice((1, 2, 4, 16, 64))))
            del b[i:j]
        elif op == 4 and n:
            j = r.randint(i, min(n, i + 64))
            k = r.randint(0, n)
            b[k:k] = b[i:j] * r.choice((1, 2, 8))
        elif op == 5:
            b[i:i] = r.choice(self.tokens)
        elif op == 6 and n:
            j = r.randint(i, min(n, i + 8))
            b[i:j] = r.choice(self.tokens)
        elif op == 7:
            m = re.search(rb"-?[0-9]+", bytes(b[i:]))
            if m:
                b[i + m.start():i + m.end()] = r.choice(self.NUMBERS)
            else:
                b[i:i] = r.choice(self.NUMBERS)
        elif others:
            o = r.choice(others)
            j = r.randint(0, len(o))
            b = b[:i] + o[j:j + r.randint(1, 256)] if r.random() < 0.5 else b[:i] + o[j:]
        return b


class LineCoverage:
    """Which lines of the project's code an input runs (``sys.settrace``, other code not traced)."""

    def __init__(self) -> None:
        self.seen: set[tuple[str, int]] = set()
        self.current: set[tuple[str, int]] = set()
        self._files: dict[str, bool] = {}
        self._roots = (str(ROOT / "core"), str(ROOT / "shell"))

    def _call(self, frame: Any, event: str, arg: Any) -> Any:
        name = frame.f_code.co_filename
        ok = self._files.get(name)
        if ok is None:
            ok = self._files[name] = name.startswith(self._roots)
        return self._line if ok else None

    def _line(self, frame: Any, event: str, arg: Any) -> Any:
        if event == "line":
            self.current.add((frame.f_code.co_filename, frame.f_lineno))
        return self._line

    def run(self, target: Target, data: bytes) -> tuple[BaseException | None, bool]:
        """``(crash or None, whether the input ran a line no input ran before)``."""
        self.current = set()
        sys.settrace(self._call)
        try:
            e = check(target, data)
        finally:
            sys.settrace(None)
        new = not self.current <= self.seen
        if new:
            self.seen |= self.current
        return e, new


def random_run(name: str, *, seconds: float, runs: int | None = None, seed: int | None = None,
               coverage: bool = True, work: Path | None = WORK) -> Stats:
    """Fuzz target ``name`` with random mutations of its corpus for ``seconds`` (or ``runs`` inputs).
    With ``coverage``, inputs that run new lines join the corpus (saved in the work directory)."""
    target = TARGETS[name]
    rng = random.Random(seed)
    mut = Mutator(rng, target.tokens)
    corpus = inputs(name, work=work is not None) or [b""]
    cov = LineCoverage() if coverage else None
    crashes: dict[str, str] = {}
    slow: list[str] = []
    wdir = work / name if work is not None else None
    execs = 0
    t0 = time.monotonic()
    deadline = t0 + seconds

    def one(data: bytes) -> bool:
        start = time.monotonic()
        if cov is not None:
            e, new = cov.run(target, data)
        else:
            e, new = check(target, data), False
        if time.monotonic() - start > SLOW_SECONDS and len(slow) < 20:
            slow.append(str(_save(wdir, data, "slow")) if wdir else repr(data[:80]))
        if e is not None:
            sig = _signature(e)
            if sig not in crashes:
                where = str(_save(wdir / "crashes", data, "crash")) if wdir else repr(data[:200])
                crashes[sig] = f"{sig}: {type(e).__name__}: {str(e)[:200]} ({where})"
        return new

    for data in list(corpus):  # the corpus first: coverage baseline, and a crash there is a crash
        one(data)
        execs += 1
    while time.monotonic() < deadline and (runs is None or execs < runs):
        data = mut.mutate(rng.choice(corpus), corpus)
        if one(data):
            corpus.append(data)
            if wdir is not None:
                _save(wdir / "corpus", data, "cov")
        execs += 1
    return Stats(name, "random", round(time.monotonic() - t0, 1), execs, len(cov.seen) if cov else 0,
                 "lines", len(corpus), list(crashes.values()), slow)


# ------------------------------------------------------------------------------------------------
# atheris


def have_atheris() -> bool:
    """True where atheris is installed (it builds only on some platforms)."""
    try:
        import atheris  # noqa: F401
    except ImportError:
        return False
    return True


def atheris_child(name: str, seconds: float, runs: int | None) -> None:
    """In this process (datsync imported under ``atheris.instrument_imports``, see atheris_main.py): hand
    over to libFuzzer, which exits at the end."""
    import atheris

    target = TARGETS[name]
    wdir = WORK / name
    (wdir / "corpus").mkdir(parents=True, exist_ok=True)
    (wdir / "crashes").mkdir(parents=True, exist_ok=True)

    def one(data: bytes) -> None:
        e = check(target, data)
        if e is not None:
            raise e

    dirs = [str(d) for d in (wdir / "corpus", CORPUS / name, REGRESSIONS / name) if d.is_dir()]
    argv = [sys.argv[0], f"-max_total_time={int(seconds)}", f"-max_len={MAX_LEN}", "-timeout=20",
            f"-artifact_prefix={wdir / 'crashes'}/", "-print_final_stats=1", *dirs]
    if runs is not None:
        argv.insert(1, f"-runs={runs}")
    atheris.Setup(argv, one)
    atheris.Fuzz()


def atheris_run(name: str, *, seconds: float, runs: int | None = None) -> Stats:
    """Fuzz ``name`` with atheris in a child process; its libFuzzer statistics as ``Stats``."""
    wdir = WORK / name
    wdir.mkdir(parents=True, exist_ok=True)
    log = wdir / "atheris.log"
    cmd = [sys.executable, str(ROOT / "fuzz" / "atheris_main.py"), name, str(seconds)]
    if runs is not None:
        cmd.append(str(runs))
    t0 = time.monotonic()
    with open(log, "wb") as out:
        subprocess.run(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONHASHSEED": "0"},
                       check=False, timeout=seconds + 600)
    text = log.read_text(errors="replace")
    execs = re.findall(r"stat::number_of_executed_units: (\d+)", text)
    cov = re.findall(r"\bcov: (\d+)", text)
    corpus = re.findall(r"\bcorp: (\d+)", text)
    crashes = [m for m in re.findall(r"artifact_prefix='[^']*'; Test unit written to (\S+)", text)]
    crashes += [p.name for p in (wdir / "crashes").glob("timeout-*")]
    return Stats(name, "atheris", round(time.monotonic() - t0, 1), int(execs[-1]) if execs else 0,
                 int(cov[-1]) if cov else 0, "edges", int(corpus[-1]) if corpus else 0, sorted(set(crashes)))


def record(stats: Stats) -> None:
    """Append ``stats`` to ``.fuzz/runs.jsonl`` (the history docs/operations.md summarises)."""
    WORK.mkdir(exist_ok=True)
    with open(WORK / "runs.jsonl", "a") as f:
        f.write(json.dumps({"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **asdict(stats)}) + "\n")
