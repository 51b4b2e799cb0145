"""Running DataScript's side of a benchmark: ``tests/oracle/bench_ds.js`` on Node, in the same run."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

ORACLE_DIR = Path(__file__).resolve().parents[2] / "tests" / "oracle"


def available() -> str | None:
    """None when DataScript can run here, else the reason it cannot."""
    if shutil.which("node") is None:
        return "node is not on PATH"
    if not (ORACLE_DIR / "bench_ds.js").exists():
        return f"{ORACLE_DIR / 'bench_ds.js'} is missing (a source checkout is needed)"
    if not (ORACLE_DIR / "node_modules" / "datascript").exists():
        return f"DataScript is not installed: run (cd {ORACLE_DIR} && npm ci)"
    return None


def run(names: list[str], *, samples: int, sample_ms: float, warmup_ms: float) -> dict[str, dict]:
    """DataScript's timings (ms/op: median, min, max) for ``names``, from one Node process."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "ds.json"
        cmd = [
            "node", "--expose-gc", "bench_ds.js", *names, "--samples", str(samples),
            "--sample-ms", str(sample_ms), "--warmup-ms", str(warmup_ms), "--json", str(out),
        ]
        subprocess.run(cmd, cwd=ORACLE_DIR, check=True, stdout=subprocess.DEVNULL)
        return json.loads(out.read_text())["results"]
