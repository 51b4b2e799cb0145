"""The browser client's own tests (tests/web/*.test.mjs) run on Node.js: its codec against the shared
protocol vectors, its values, and its replica logic on the real DataScript."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest

from tests.sync_server import Servers

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


def test_the_vendored_datascript_is_the_npm_package_wrapped_as_an_es_module():
    spec = importlib.util.spec_from_file_location("vendor_datascript", ROOT / "scripts" / "vendor_datascript.py")
    vendor = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(vendor)
    if not vendor.NPM.exists():
        pytest.skip("tests/oracle/node_modules missing: run (cd tests/oracle && npm ci)")
    assert (ROOT / "shell" / "web" / "datascript.js").read_text(encoding="utf-8") == vendor.expected(), (
        "shell/web/datascript.js is stale: python3 scripts/vendor_datascript.py")


def test_serve_answers_the_browser_client_and_an_app_folder_over_http(tmp_path):
    app = tmp_path / "app"
    (app / "sub").mkdir(parents=True)
    (app / "index.html").write_text("<!doctype html><title>app</title>")
    (app / "sub" / "main.js").write_text("export const x = 1;\n")
    (tmp_path / "secret.txt").write_text("no")
    servers = Servers(tmp_path)
    try:
        server = servers.start("db.sqlite", "--static", str(app))
        status, body = server.get("/datsync/client.js")
        assert status == 200 and "export function connect" in body
        for name in ("codec.js", "values.js", "replica.js", "datascript.js"):
            assert server.get(f"/datsync/{name}")[0] == 200
        with urllib.request.urlopen(server.http + "datsync/client.js", timeout=10) as r:
            assert r.headers["Content-Type"].startswith("text/javascript")
        assert server.get("/") == (200, "<!doctype html><title>app</title>")
        assert server.get("/sub/main.js") == (200, "export const x = 1;\n")
        assert server.get("/nope.js")[0] == 404
        assert server.get("/%2e%2e/secret.txt")[0] == 404
        assert server.get("/datsync/%2e%2e/server.py")[0] == 404
        assert server.get("/health")[0] == 200
    finally:
        servers.close()


def test_the_browser_client_ships_in_the_package():
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"datsync.shell" = ["web/*.js", "web/package.json"]' in pyproject
    from datsync.shell.static import WEB_DIR

    assert {p.name for p in WEB_DIR.glob("*.js")} >= {"client.js", "codec.js", "values.js", "replica.js",
                                                      "datascript.js"}


def test_the_client_stays_small():
    """Everything a page that connects a replica with a store loads besides DataScript (client.js and
    what it imports: replica, codec, values, both stores), bundled and minified by esbuild."""
    from datsync.shell.bench.browser import ESBUILD, minified_size

    if not ESBUILD.exists():
        if os.environ.get("CI") == "true":
            pytest.fail("esbuild missing under CI: scripts/test runs npm ci in tests/web")
        pytest.skip("esbuild missing: run (cd tests/web && npm ci)")
    minified, gzipped = minified_size()
    assert minified <= 30 * 1024 and gzipped <= 12 * 1024, (minified, gzipped)  # docs/benchmarks.md
