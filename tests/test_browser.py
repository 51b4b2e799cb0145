"""The todo demo in a real browser: Debian's Chromium, headless, driven through the ``playwright``
package against a real ``datsync serve --static docs/examples/todo``, with a Python replica beside
it. Outside CI the tests skip (with the reason) when no Chromium or no playwright can be had; under
``CI=true`` they must run (.ci/run installs Chromium when it is absent)."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import time
from pathlib import Path

import pytest

from datsync.core import q
from datsync.shell import connect
from tests.sync_server import FAST_RECONNECT, ROOT, Servers, wait_until

TODO = ROOT / "docs" / "examples" / "todo"
ARTIFACTS = Path(os.environ.get("DATSYNC_ARTIFACTS", ROOT / "test-artifacts"))
TITLES = '[:find [?t ...] :where [?e :todo/title ?t]]'


def chromium_path() -> str:
    """Chromium's executable, or skip (fail under CI) saying what is missing."""
    why = None
    path = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        why = "no Chromium (apt-get install chromium)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            why = "the playwright package is not installed (pip install -e '.[dev]')"
    if why is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"browser tests must run under CI: {why}")
        pytest.skip(f"browser tests skipped: {why}")
    return path


@pytest.fixture
def browser():
    path = chromium_path()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=path, headless=True, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def servers(tmp_path):
    s = Servers(tmp_path)
    yield s
    s.close()


def start(servers: Servers, port: int = 0):
    return servers.start("todo.sqlite", "--schema", str(TODO / "schema.edn"), "--static", str(TODO),
                         "--heartbeat-interval", "1", "--heartbeat-timeout", "5", port=port, schema=False)


def open_page(browser, url: str):
    page = browser.new_context().new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    page.wait_for_function("window.replica && window.replica.status === 'online' && window.replica.t !== null")
    page.errors = errors
    return page


def add_todo(page, title: str) -> None:
    page.fill('[data-testid="new-todo"] input', title)
    page.press('[data-testid="new-todo"] input', "Enter")


def titles(page) -> list[str]:
    return page.locator('[data-testid="todos"] li .title').all_inner_texts()


def test_todos_travel_between_two_browsers_and_python_within_a_second(browser, servers):
    server = start(servers)
    a, b = open_page(browser, server.http), open_page(browser, server.http)
    with connect(server.url, **FAST_RECONNECT) as rep:
        t0 = time.monotonic()
        add_todo(a, "buy milk")
        b.wait_for_selector('[data-testid="todos"] li:has-text("buy milk")', timeout=1000)
        wait_until(lambda: "buy milk" in (q(TITLES, rep.db) or []), timeout=1.0)
        assert time.monotonic() - t0 < 2.0

        # a todo written in Python appears in both pages; toggles and deletes travel back
        rep.transact([{"db/id": "l", "list/name": "Inbox"},
                      {"todo/title": "from python", "todo/done": False, "todo/list": "l",
                       "todo/created": dt.datetime.now(dt.UTC)}])
        for page in (a, b):
            page.wait_for_selector('[data-testid="todos"] li:has-text("from python")', timeout=1000)
        b.locator('[data-testid="todos"] li:has-text("buy milk") input[type=checkbox]').check()
        a.wait_for_selector('[data-testid="todos"] li.done:has-text("buy milk")', timeout=1000)
        a.locator('[data-testid="todos"] li:has-text("from python") button').click()
        b.wait_for_selector('[data-testid="todos"] li:has-text("from python")', state="detached", timeout=1000)
        wait_until(lambda: "from python" not in (q(TITLES, rep.db) or []), timeout=1.0)
        assert a.errors == b.errors == []
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        a.screenshot(path=str(ARTIFACTS / "todo.png"), full_page=True)


def test_offline_todos_land_exactly_once_and_a_reload_shows_the_stored_data(browser, servers):
    server = start(servers)
    port = server.port
    blocked = []  # while true, the page's WebSockets are refused (its HTTP still works)

    def route(ws):
        if blocked:
            ws.close()
        else:
            ws.connect_to_server()

    context = browser.new_context()
    context.route_web_socket(lambda url: True, route)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server.http + "?backoff=0.1,1")
    page.wait_for_function("window.replica && window.replica.status === 'online' && window.replica.t !== null")
    add_todo(page, "before")
    page.wait_for_selector('[data-testid="todos"] li:has-text("before")')

    # the server goes away: the page says so; todos added meanwhile show at once (optimistic) and
    # wait as pending
    assert server.stop() == 0
    page.wait_for_selector('[data-testid="status"]:has-text("offline")', timeout=20000)
    for title in ("offline 1", "offline 2"):
        add_todo(page, title)
        page.wait_for_selector(f'[data-testid="todos"] li.unconfirmed:has-text("{title}")', timeout=2000)
    page.wait_for_selector('[data-testid="pending"]:has-text("2 pending")')
    assert page.locator('[data-testid="todos"] li.unconfirmed:has-text("before")').count() == 0

    # a reload before the network answers shows the todos and the queue kept in IndexedDB
    blocked.append(True)
    server = start(servers, port=port)
    page.reload()
    page.wait_for_selector('[data-testid="todos"] li:has-text("before")', timeout=5000)
    page.wait_for_selector('[data-testid="todos"] li:has-text("offline 2")', timeout=5000)
    assert page.evaluate("window.replica.status") in ("connecting", "offline")
    assert page.evaluate("window.replica.t") == 2
    page.wait_for_selector('[data-testid="pending"]:has-text("2 pending")', timeout=5000)

    # the network is back: each queued todo lands, once
    blocked.clear()
    for title in ("offline 1", "offline 2"):
        page.wait_for_selector(f'[data-testid="todos"] li:has-text("{title}")', timeout=15000)
    page.wait_for_selector('[data-testid="pending"]', state="hidden", timeout=5000)
    assert page.locator('[data-testid="todos"] li.unconfirmed').count() == 0
    with connect(server.url, **FAST_RECONNECT) as rep:
        got = q("[:find ?t (count ?e) :where [?e :todo/title ?t]]", rep.db)
        assert sorted(got) == [("before", 1), ("offline 1", 1), ("offline 2", 1)]
    assert errors == []


def test_the_browser_benchmark_runs(capsys):
    chromium_path()
    from datsync.shell.bench.browser import main

    assert main(["--people", "300", "--seconds", "1", "--rate", "10"]) == 0
    out = capsys.readouterr().out
    rows = {line.split("|")[1].strip(): line for line in out.splitlines() if line.startswith("| ")}
    assert {"bootstrap", "latency"} <= set(rows), out
    assert "people" in rows["bootstrap"] and "10 transactions" in rows["latency"], out


def test_the_demo_under_its_policy_needs_a_token(browser, servers):
    server = servers.start("todo.sqlite", "--schema", str(TODO / "schema.edn"), "--static", str(TODO),
                           "--tokens", str(TODO / "tokens.edn"), "--policy", str(TODO / "policy.edn"), schema=False)
    page = open_page(browser, server.http + "?token=alice-token")
    add_todo(page, "alice's todo")
    page.wait_for_selector('[data-testid="todos"] li:not(.unconfirmed):has-text("alice\'s todo")', timeout=5000)
    with connect(server.url, token="bob-token", **FAST_RECONNECT) as bob:
        wait_until(lambda: "alice's todo" in (q(TITLES, bob.db) or []), timeout=5.0)
    # a page without a token (loopback) holds no user's share: no lists, no todos
    anonymous = open_page(browser, server.http + "?store=anonymous")
    assert anonymous.evaluate("window.replica.t") >= 2
    assert titles(anonymous) == []
    refused = anonymous.evaluate("window.replica.transact([{'list/name': 'mine'}]).then(() => null, (e) => e.code)")
    assert refused == "sync.error/forbidden"
