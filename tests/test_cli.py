"""The ``datsync`` command, run as a real process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from datsync.core import kw
from datsync.core.edn import read_edn, read_edn_all

ROOT = Path(__file__).resolve().parents[1]
PEOPLE = str(ROOT / "docs" / "examples" / "people.edn")


def datsync(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "datsync.shell", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)


def test_db_prints_every_datom_in_eavt_order():
    r = datsync("db", PEOPLE)
    assert r.returncode == 0, r.stderr
    rows = read_edn_all(r.stdout)
    assert len(rows) == 11
    assert rows == sorted(rows, key=lambda d: (d[0], d[1].name))
    assert [1, kw("person/age"), 32, 536870915] in rows


def test_db_pull_and_entity():
    r = datsync("db", PEOPLE, "--pull", "[:person/name {:person/friends [:person/name]}]", '[:person/name "Oleg"]')
    assert r.returncode == 0, r.stderr
    assert read_edn(r.stdout) == {
        kw("person/name"): "Oleg",
        kw("person/friends"): [{kw("person/name"): "Ivan"}, {kw("person/name"): "Petr"}],
    }
    r = datsync("db", PEOPLE, "--entity", '[:person/name "Ivan"]')
    assert read_edn(r.stdout)[kw("person/aliases")] == frozenset({"Vanya", "John"})


def test_db_datomic_flavor_types_values():
    r = datsync("db", PEOPLE, "--flavor", "datomic", "--datoms", "avet", "person/age")
    assert r.returncode == 0, r.stderr
    assert [row[2] for row in read_edn_all(r.stdout)] == [27, 32, 40]


def test_db_reports_a_failing_transaction(tmp_path):
    bad = tmp_path / "bad.edn"
    bad.write_text('{:schema {:a {:db/cardinality :db.cardinality/one}} :tx-data [[[:db/add -1 :a nil]]]}')
    r = datsync("db", str(bad))
    assert r.returncode == 1
    assert "transaction 0 failed: transact/syntax" in r.stderr


def test_db_reports_unreadable_files(tmp_path):
    r = datsync("db", str(tmp_path / "missing.edn"))
    assert r.returncode == 2 and "cannot read" in r.stderr
    broken = tmp_path / "broken.edn"
    broken.write_text("{:schema {")
    r = datsync("db", str(broken))
    assert r.returncode == 2 and "cannot read" in r.stderr


def test_bench_runs_and_prints_the_table():
    r = datsync("bench", "find-datoms", "--samples", "1", "--sample-ms", "10", "--warmup-ms", "10", "--no-datascript")
    assert r.returncode == 0, r.stderr
    assert "find-datoms" in r.stdout and "bytes per datom" in r.stdout


def test_interleaved_samples_alternate_between_the_benchmarks():
    from datsync.shell.bench.harness import bench_interleaved

    calls: list[str] = []
    timed = bench_interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, samples=3,
                              sample_ms=0, warmup_ms=0)
    assert calls == ["a", "b"] + ["a", "b"] * 3  # warm-up, then one sample of each per round
    assert set(timed) == {"a", "b"} and all(len(t.samples) == 3 for t in timed.values())


def test_bench_collector_modes():
    import gc

    from datsync.shell.bench.harness import bench_interleaved

    frozen_during: list[int] = []
    sample = lambda: frozen_during.append(gc.get_freeze_count())
    bench_interleaved({"a": sample}, samples=1, sample_ms=0, warmup_ms=0, gc_mode="user")
    bench_interleaved({"a": sample}, samples=1, sample_ms=0, warmup_ms=0, gc_mode="frozen")
    assert frozen_during[1] == 0 and frozen_during[3] > 0  # the user's way leaves the collector alone
    assert gc.get_freeze_count() == 0
    with pytest.raises(ValueError):
        bench_interleaved({"a": sample}, samples=1, sample_ms=0, warmup_ms=0, gc_mode="off")


def test_bench_queries_in_both_spellings_are_datascripts_queries():
    from datsync.shell.bench.query import PEOPLE_QUERIES, RULES, spelled

    js = (Path(__file__).parent / "oracle" / "bench_ds.js").read_text()
    for text, _ in PEOPLE_QUERIES.values():
        assert '"name"' not in text and spelled(text, "keyword") == text
        assert spelled(text, "string") in js  # DataScript's suite runs the same query
    assert spelled(RULES, "string").count('"follows"') == 2 and ":follows" not in spelled(RULES, "string")


def test_help_teaches():
    r = datsync("--help")
    assert r.returncode == 0 and "examples:" in r.stdout
