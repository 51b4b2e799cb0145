"""Browser client benchmarks: headless Chromium (Debian's, through the ``playwright`` package) on a real
``datsync serve`` process with the 20k-people database.

    python -m datsync.shell.bench.browser [--people 20000] [--rate 10] [--seconds 10]

* ``bootstrap``: a page connects a fresh replica (the JavaScript client on the real DataScript) to
  the server holding ``--people`` people (DataScript's benchmark dataset, imported over the socket
  first): time from ``connect`` until ``replica.ready``, in the page's own clock.
* ``latency``: a Python replica transacts one small entity every ``1/--rate`` s for ``--seconds``,
  each carrying the wall-clock time (ms) taken just before it is sent; the page's ``d.listen`` on
  the replica's conn records when each arrives in its DataScript (``performance.timeOrigin +
  performance.now()``, the same machine's clock): send -> durable commit -> fan-out -> decoded ->
  applied to DataScript -> listeners called. p50/p99.
* ``size``: the client's modules (client, replica, codec, values; DataScript excluded) bundled and
  minified by esbuild (tests/web's devDependency), and gzipped.

Needs Chromium (``apt-get install chromium``) and ``pip install playwright``; without them it says
so and exits 2.
"""

from __future__ import annotations

import argparse
import gzip
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio

from datsync.shell import connect

from .dataset import Datasets
from .server import SCHEMA_EDN, Server, import_people, pct

ROOT = Path(__file__).resolve().parents[2]
WEB = Path(__file__).resolve().parents[1] / "web"
ESBUILD = ROOT / "tests" / "web" / "node_modules" / ".bin" / "esbuild"

BOOTSTRAP_JS = """async ([url, runs]) => {
  const m = await import('/datsync/client.js');
  let arrivals = [];
  class Timed extends WebSocket {  // when each message arrives, before the client handles it
    constructor(u) { super(u); this.addEventListener('message', () => arrivals.push(performance.now())); }
  }
  const out = [];
  let replica = null;
  for (let i = 0; i < runs; i++) {
    if (replica !== null) await replica.close();
    arrivals = [];
    const t0 = performance.now();
    replica = m.connect(url, { WebSocket: Timed });
    await replica.ready;
    const t1 = performance.now();
    out.push({ ms: t1 - t0, first: arrivals[0] - t0, last: arrivals[arrivals.length - 1] - t0 });
  }
  window.replica = replica;
  window.samples = [];
  m.datascript.listen(replica.conn, 'bench', (report) => {
    const now = performance.timeOrigin + performance.now();
    for (const dt of report.tx_data) if (dt.a === 'bench/sent' && dt.tx > 0) window.samples.push(now - dt.v);
  });
  return { runs: out, datoms: m.datascript.datoms(replica.db, ':eavt').length, t: replica.t };
}"""


def chromium() -> str | None:
    return os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def minified_size() -> tuple[int, int] | None:
    """(minified bytes, gzipped bytes) of the client without DataScript; None without esbuild.

    Members whose name ends in ``_`` are the client's private ones: a minifier may rename them."""
    if not ESBUILD.exists():
        return None
    out = subprocess.run([str(ESBUILD), str(WEB / "client.js"), "--bundle", "--minify", "--format=esm",
                          "--external:./datascript.js", "--mangle-props=_$", "--log-level=error"],
                         capture_output=True, check=True).stdout
    return len(out), len(gzip.compress(out, 9))


def write_at_rate(url: str, rate: float, seconds: float) -> int:
    """Transact one entity every ``1/rate`` s (open loop) for ``seconds``; how many."""
    n = 0
    with connect(url) as rep:
        start = time.perf_counter()
        while (due := start + n / rate) < start + seconds:
            time.sleep(max(0.0, due - time.perf_counter()))
            rep.transact([{"bench/writer": -1, "bench/sent": time.time() * 1000}])
            n += 1
    return n


def run(args: argparse.Namespace, tmp: Path) -> int:
    exe = chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    if exe is None or sync_playwright is None:
        print("browser bench needs Chromium (apt-get install chromium) and playwright (pip install playwright)",
              file=sys.stderr)
        return 2
    schema = tmp / "schema.edn"
    schema.write_text(SCHEMA_EDN)
    print(f"datsync browser bench: Chromium {exe}, Python {platform.python_version()}, {os.cpu_count()} cores, "
          "server, browser and writer on 127.0.0.1", flush=True)
    print("| workload  | figure           | note |")
    print("|-----------|-----------------:|------|")
    size = minified_size()
    if size is not None:
        print(f"| size      | {size[0] / 1000:.1f} KB min | {size[1] / 1000:.1f} KB gzipped; client, replica, codec, "
              "values (DataScript excluded) |", flush=True)
    people = Datasets().people[:args.people]
    with Server(tmp / "people.sqlite", schema, ["--window", "64"]) as server:
        took = trio.run(import_people, server.url, people) if people else 0.0
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=exe, headless=True, args=["--no-sandbox"])
            page = browser.new_page()
            page.goto(server.url.replace("ws://", "http://") + "health")
            boot = page.evaluate(BOOTSTRAP_JS, [server.url, args.bootstraps])
            runs = sorted(boot["runs"], key=lambda r: r["ms"])
            mid = runs[len(runs) // 2]
            each = ", ".join(f"{r['ms'] / 1000:.2f}" for r in boot["runs"])
            print(f"| bootstrap | {mid['ms'] / 1000:.2f} s | median of {len(runs)} ({each}); {boot['datoms']:,} datoms "
                  f"({len(people)} people, imported in {took:.1f} s); first message at {mid['first']:.0f} ms, last "
                  f"at {mid['last']:.0f} ms, then {mid['ms'] - mid['last']:.0f} ms building the database |", flush=True)
            sent = write_at_rate(server.url, args.rate, args.seconds)
            page.wait_for_function(f"window.samples.length >= {sent}", timeout=30000)
            samples = page.evaluate("window.samples")
            print(f"| latency   | {pct(samples, 0.5):.1f}/{pct(samples, 0.99):.1f} ms | p50/p99; {len(samples)} "
                  f"transactions at {args.rate:g} tx/s seen in the page's DataScript |", flush=True)
            browser.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m datsync.shell.bench.browser", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--people", type=int, default=20000, help="people in the database (default 20000, ~192k datoms)")
    p.add_argument("--rate", type=float, default=10.0, help="remote transactions per second (default 10)")
    p.add_argument("--seconds", type=float, default=10.0, help="length of the latency run (default 10)")
    p.add_argument("--bootstraps", type=int, default=3, help="bootstraps timed, the median reported (default 3)")
    args = p.parse_args(argv)
    if args.people < 0 or args.rate <= 0 or args.seconds <= 0 or args.bootstraps < 1:
        p.error("need --people >= 0, --rate > 0, --seconds > 0, --bootstraps >= 1")
    with tempfile.TemporaryDirectory(prefix="datsync-browser-bench-") as tmp:
        return run(args, Path(tmp))


if __name__ == "__main__":
    sys.exit(main())
