"""Smoke test of the server benchmark script (shell/bench/server.py): a real server process on
127.0.0.1, tiny parameters, the table rows printed. Figures are not checked (benchmarks measure
speed, tests do not)."""

from __future__ import annotations

import subprocess
import sys

from tests.sync_server import ROOT


def test_server_bench_prints_every_row():
    cmd = [sys.executable, "-m", "datsync.shell.bench.server", "--replicas", "2", "--seconds", "1",
           "--writers", "2", "--people", "300", "--missed", "3"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in out.stdout.splitlines()
            if line.startswith("| ") and not line.startswith("| workload")]
    keys = {(r[0], r[1], r[2]) for r in rows}
    for mode in ("datsync", "broadcast"):
        assert ("tx/s", mode, "2") in keys, out.stdout
        assert ("latency", mode, "2") in keys, out.stdout
        assert ("reconnect", mode, "1") in keys, out.stdout
    assert ("bootstrap", "both", "1") in keys, out.stdout
    reconnect = {r[1]: r[4] for r in rows if r[0] == "reconnect"}
    assert reconnect["datsync"].startswith("resume"), reconnect
    assert reconnect["broadcast"].startswith("bootstrap"), reconnect
    assert "unseen" not in out.stdout, out.stdout


def test_server_bench_on_postgresql_prints_the_scale_out_rows(pg_database):
    cmd = [sys.executable, "-m", "datsync.shell.bench.server", "--replicas", "2", "--seconds", "1",
           "--writers", "2", "--people", "0", "--skip-sqlite", "--pg", pg_database, "--processes", "2",
           "--failover-replicas", "2", "--client-processes", "2"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    rows = {tuple(c.strip() for c in line.strip("|").split("|"))[:3]: line for line in out.stdout.splitlines()
            if line.startswith("| ") and not line.startswith("| workload")}
    assert set(rows) == {("tx/s", "pg-1", "2"), ("tx/s", "pg-2", "2"), ("latency", "pg-2", "2"),
                         ("failover", "pg-2", "2")}, out.stdout
    assert "2 back, resume" in rows[("failover", "pg-2", "2")], out.stdout
    assert "2 clients" in rows[("latency", "pg-2", "2")], out.stdout
    assert "unseen" not in out.stdout, out.stdout
