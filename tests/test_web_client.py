"""The browser client's own tests (tests/web/*.test.mjs) run on Node.js: its codec against the shared
protocol vectors, its values, and its replica logic on the real DataScript."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WEB_TESTS = sorted((ROOT / "tests" / "web").glob("*.test.mjs"))


def require_node() -> str:
    """The ``node`` executable; outside CI a test without it is skipped (under ``CI=true`` it fails)."""
    node = shutil.which("node")
    if node is None:
        if os.environ.get("CI") == "true":
            pytest.fail("Node.js is required under CI for the browser client's tests")
        pytest.skip("Node.js not found: the browser client's tests need it")
    return node


@pytest.mark.parametrize("path", WEB_TESTS, ids=[p.name for p in WEB_TESTS])
def test_node(path):
    node = require_node()
    r = subprocess.run([node, "--test", str(path)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-3000:]
