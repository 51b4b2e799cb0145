"""Server benchmarks: ``datsync serve`` as a real process on 127.0.0.1, Python replicas over WebSocket.

    python -m datsync.shell.bench.server [--replicas 1,10,100] [--seconds N] [--mode datsync|broadcast|both]
                                         [--pg postgresql://HOST:PORT/DB [--processes 3]]

Each mode starts its own server process (``python -m datsync.shell serve --host 127.0.0.1 --port 0``)
on a fresh store in a temporary directory, and stops it (SIGTERM) at the end. Workloads:

* ``tx/s``: ``--writers`` replicas, each transacting one small entity after another for ``--seconds``;
  a transaction counts once ``transact`` returned, i.e. it is durable on the server (SQLite
  ``synchronous=FULL``, group commit) and applied on the writer's replica.
* ``latency``: for each count in ``--replicas``, that many listening replicas plus one writer that
  starts a transaction every ``1/--rate`` s (open loop) for ``--seconds``. Each transaction carries
  ``time.perf_counter()`` taken just before it is sent; every replica's listener records the time
  it saw the transaction minus that value. So a figure is send -> durable commit -> fan-out ->
  replica applied, over all (transaction, replica) pairs: p50 and p99. Writer, replicas and server
  share the machine's cores (one client process, one server process).
* ``bootstrap``: a separate server with the 20k-people database (DataScript's benchmark dataset,
  ``--people`` of them, imported over the socket in transactions of 1,000 people, Datomic schema
  installed first). Time for a fresh replica from connect until it holds the database: datoms/s.
* ``reconnect``: on that database a replica disconnects, ``--missed`` transactions commit, and it
  reconnects. ``datsync`` mode resumes from its ``t`` (only the missed deltas come over);
  ``broadcast`` mode re-bootstraps (a fresh replica: the whole database comes over).
  With ``tx`` among the workloads too, a ``tx/s`` row on that database follows (its checkpoints
  write ~192k datoms each).

With ``--pg URL`` the same workloads also run on a PostgreSQL store (in a schema of their own in that
database, dropped at the end): ``tx/s`` with one server process and with ``--processes`` processes
(the writers spread over them), ``latency`` with the listening replicas spread over the processes
and the writer on the first (so most deltas cross processes: commit, NOTIFY, read, fan-out), and
``failover``: replicas given every process's URL, on the first process, which is killed
(``kill -9``); the time from the kill until each replica is live again on another process
(resumed from its ``t``), p50/max.

``--mode broadcast`` emulates the original datsync (every transaction pushed in full to every client,
a full re-bootstrap on reconnect) with our own pieces: the server runs with ``--window`` and
``--max-buffered`` so large that delivery never waits for a replica's ack (each committed
transaction's datoms go to every client at once; the server's 8 MiB in-flight byte bound stays), and
reconnecting replicas are fresh ones. Our default mode is ``--window 64 --max-buffered 1024`` and
resume on reconnect. Deltas are full transactions in both modes (a delta *is* the transaction's
datoms), so on the steady-state workloads the two differ only by flow control; the reconnect row
is where they differ by design.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import math
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, NamedTuple

import trio

from datsync.shell.client import ReplicaChange, ReplicaConnection

from .dataset import Datasets

SCHEMA_EDN = """\
{:name      {:db/valueType :db.type/string :db/cardinality :db.cardinality/one}
 :last-name {:db/valueType :db.type/string :db/cardinality :db.cardinality/one}
 :full-name {:db/valueType :db.type/string :db/cardinality :db.cardinality/one}
 :sex       {:db/valueType :db.type/string :db/cardinality :db.cardinality/one}
 :age       {:db/valueType :db.type/long   :db/cardinality :db.cardinality/one}
 :salary    {:db/valueType :db.type/long   :db/cardinality :db.cardinality/one}
 :alias     {:db/valueType :db.type/string :db/cardinality :db.cardinality/many}
 :follows   {:db/valueType :db.type/ref    :db/cardinality :db.cardinality/many}
 :id        {:db/valueType :db.type/long   :db/cardinality :db.cardinality/one :db/unique :db.unique/identity}
 :bench/sent   {:db/valueType :db.type/double :db/cardinality :db.cardinality/one}
 :bench/writer {:db/valueType :db.type/long   :db/cardinality :db.cardinality/one}}
"""
"""The people dataset's attributes as a Datomic schema, plus the two attributes the write workloads use."""

MODE_FLAGS = {
    "datsync": ["--window", "64", "--max-buffered", "1024"],
    "broadcast": ["--window", "1000000", "--max-buffered", "1000000"],
}
"""Server options per mode (see the module docstring)."""

LIMITS = ["--max-connections", "4096", "--max-connections-per-address", "4096"]
"""Every client of the bench comes from 127.0.0.1: lift the per-address connection limit."""

ROW = "| {:<10} | {:<9} | {:>8} | {:>16} | {:<34} |"


def row(workload: str, mode: str, replicas: Any, figure: str, note: str) -> None:
    print(ROW.format(workload, mode, replicas, figure, note), flush=True)


class Server:
    """``python -m datsync.shell serve`` on 127.0.0.1, a free port, ``store`` (a path in a temp dir,
    or a database URL: then ``log`` says where its stderr goes)."""

    def __init__(self, store: Path | str, schema: Path, flags: list[str], log: Path | None = None):
        self.cmd = [sys.executable, "-m", "datsync.shell", "serve", "--host", "127.0.0.1", "--port", "0",
                    "--store", str(store), "--schema", str(schema), "--log-level", "warning", *LIMITS, *flags]
        self.log = log if log is not None else Path(store).with_suffix(".log")
        self.proc: subprocess.Popen | None = None
        self.url = ""

    def __enter__(self) -> Server:
        env = {k: v for k, v in os.environ.items() if k != "DATSYNC_TOKEN"}
        with open(self.log, "ab") as err:
            self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=err, env=env, text=True)
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(30)
        if not line or not line[0].startswith("datsync serving "):
            self.__exit__()
            raise RuntimeError(f"server did not start: {line!r}\n{self.log.read_text()}")
        self.url = line[0].split()[2]
        return self

    def counters(self) -> dict:
        """The server's ``/health`` counters (empty when it cannot be asked)."""
        import urllib.request

        try:
            with urllib.request.urlopen(self.url.replace("ws", "http", 1) + "health", timeout=10) as r:
                return json.loads(r.read())["counters"]
        except (OSError, ValueError, KeyError):
            return {}

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the server process has used so far; NaN where /proc is missing."""
        try:
            assert self.proc is not None
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError, AssertionError):
            return float("nan")

    def kill(self) -> None:
        """``kill -9``."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def __exit__(self, *exc: object) -> None:
        p = self.proc
        if p is not None and p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)
        if p is not None and p.stdout is not None:
            p.stdout.close()


def clients_note(args: argparse.Namespace) -> str:
    return f", {args.client_processes} clients" if args.client_processes > 1 else ""


def pct(xs: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``xs``, nearest rank."""
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))]


async def open_replicas(nursery: trio.Nursery, url: str | list, n: int, **options: Any) -> list[ReplicaConnection]:
    """``n`` live replicas (bootstrapped), no reconnecting; started a few at a time. Given a list,
    replica ``i`` connects to ``url[i % len(url)]`` (spread over server processes; an item that is
    itself a list of URLs is a replica's failover list)."""
    urls = [url] if isinstance(url, str) else url
    options = {"reconnect": False, "connect_timeout": 60, **options}
    reps = [ReplicaConnection(urls[i % len(urls)], **options) for i in range(n)]
    limit = trio.CapacityLimiter(8)

    async def start(rep: ReplicaConnection) -> None:
        async with limit:
            await nursery.start(rep.run)

    async with trio.open_nursery() as starters:
        for rep in reps:
            starters.start_soon(start, rep)
    return reps


async def close_all(reps: list[ReplicaConnection]) -> None:
    async with trio.open_nursery() as n:
        for rep in reps:
            n.start_soon(rep.aclose)


def no_cpu() -> float:
    return float("nan")


class Throughput(NamedTuple):
    """A ``tx/s`` run: the rate, the transactions counted, the server's CPU seconds over the timed
    part and this (the writers') process's."""

    rate: float
    count: int
    server_cpu_s: float
    writers_cpu_s: float


async def throughput(url: str | list[str], writers: int, seconds: float,
                     cpu: Any = no_cpu, in_flight: int = 1) -> Throughput:
    """Durable transactions per second with ``writers`` closed-loop writers (spread over the URLs),
    each keeping ``in_flight`` submissions on their way (``submit``; a transaction counts once its
    result is in: durable on the server and applied on the writer's replica); with the server CPU
    seconds (``cpu()``, before and after) and this process's they took."""
    async with trio.open_nursery() as nursery:
        reps = await open_replicas(nursery, url, writers)
        counts = [0] * writers
        c0, p0 = cpu(), time.process_time()
        t0 = time.perf_counter()
        deadline = t0 + seconds

        async def write(i: int) -> None:
            rep = reps[i]
            waiting: collections.deque = collections.deque()
            while time.perf_counter() < deadline:
                while len(waiting) < in_flight:
                    waiting.append(await rep.submit([{"bench/writer": i, "bench/sent": time.perf_counter()}]))
                await waiting.popleft().result()
                counts[i] += 1
            for p in waiting:  # those still on their way count too (the time runs until the last)
                await p.result()
                counts[i] += 1

        async with trio.open_nursery() as ws:
            for i in range(writers):
                ws.start_soon(write, i)
        elapsed = time.perf_counter() - t0
        cpu_s, own_s = cpu() - c0, time.process_time() - p0
        await close_all(reps)
    return Throughput(sum(counts) / elapsed, sum(counts), cpu_s, own_s)


class Listeners:
    """Replicas that record, for every transaction carrying ``bench/sent``, the time from that value
    (``time.perf_counter()``, one clock for every process of the machine) until they applied it."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self.reps: list[ReplicaConnection] = []
        self._bootstraps = 0
        self.cpu_at_settled = float("nan")

    def _listener(self, change: ReplicaChange) -> None:
        now = time.perf_counter()
        if change.kind != "delta":
            return
        for d in change.tx_data:
            if d.a == "bench/sent" and d.added:
                self.samples.append(now - d.v)

    async def open(self, nursery: trio.Nursery, url: str | list[str], n: int) -> None:
        self.reps = await open_replicas(nursery, url, n)
        for rep in self.reps:
            rep.listen(self._listener)
        self._bootstraps = sum(r.stats.bootstraps for r in self.reps)

    async def settle(self, last_t: int, timeout: float, cpu: Any = no_cpu) -> int:
        """Wait until every replica has ``last_t`` (at most ``timeout`` s); resyncs meanwhile.
        ``cpu_at_settled``: ``cpu()`` then (before the replicas close)."""
        with trio.move_on_after(timeout):
            for rep in self.reps:
                await rep.wait_for_t(last_t)
        self.cpu_at_settled = cpu()
        resyncs = sum(r.stats.bootstraps for r in self.reps) - self._bootstraps
        await close_all(self.reps)
        return resyncs


async def write_open_loop(writer: ReplicaConnection, seconds: float, rate: float) -> tuple[int, float, int]:
    """Start a transaction every ``1/rate`` s for ``seconds``: (sent, achieved rate, last t)."""
    sent = 0
    last_t = [0]
    t0 = time.perf_counter()

    async def one() -> None:
        r = await writer.transact([{"bench/writer": -1, "bench/sent": time.perf_counter()}])
        last_t[0] = max(last_t[0], r.t)

    async with trio.open_nursery() as ws:
        while (now := time.perf_counter()) < t0 + seconds:
            ws.start_soon(one)
            sent += 1
            await trio.sleep(max(0.0, t0 + sent / rate - now))
    return sent, sent / (time.perf_counter() - t0), last_t[0]


def _latency_figures(samples: list[float], sent: int, replicas: int, achieved: float, resyncs: int,
                     cpu_s: float, client_cpu_s: float = float("nan")) -> dict:
    return {"p50": pct(samples, 0.5) * 1000 if samples else float("nan"),
            "p99": pct(samples, 0.99) * 1000 if samples else float("nan"),
            "n": len(samples), "sent": sent, "rate": achieved, "missing": sent * replicas - len(samples),
            "resyncs": resyncs, "cpu_s": cpu_s, "client_cpu_s": client_cpu_s}


def client_cpu_note(m: dict) -> str:
    """The listener processes' CPU per delivery, when they ran apart (``--client-processes``)."""
    if not m["n"] or math.isnan(m["client_cpu_s"]):
        return ""
    return f"; client CPU {m['client_cpu_s'] / m['n'] * 1e6:.0f} µs/delivery"


async def latency(url: str | list[str], replicas: int, seconds: float, rate: float, clients: int = 1,
                  cpu: Any = no_cpu) -> dict:
    """Send -> replica-applied latency over ``replicas`` listeners at ``rate`` tx/s (listeners spread
    over the URLs, the writer on the first). With ``clients`` > 1 the listeners live in that many
    client processes of their own (``--listener``), so one Python process does not decode every
    delta for all of them. ``cpu_s``: the server CPU seconds (``cpu()``) from the first transaction
    until every replica has the last."""
    urls = [url] if isinstance(url, str) else url
    if clients > 1:
        return await _latency_spread(urls, replicas, seconds, rate, clients, cpu)
    listeners = Listeners()
    async with trio.open_nursery() as nursery:
        (writer,) = await open_replicas(nursery, urls[0], 1)
        await listeners.open(nursery, urls, replicas)
        c0 = cpu()
        sent, achieved, last_t = await write_open_loop(writer, seconds, rate)
        resyncs = await listeners.settle(last_t, max(30.0, seconds * 3), cpu)
        await writer.aclose()
    return _latency_figures(listeners.samples, sent, replicas, achieved, resyncs, listeners.cpu_at_settled - c0)


async def _latency_spread(urls: list[str], replicas: int, seconds: float, rate: float, clients: int,
                          cpu: Any = no_cpu) -> dict:
    share = [replicas // clients + (1 if i < replicas % clients else 0) for i in range(clients)]
    procs = []
    for i, n in enumerate(share):
        k = sum(share[:i]) % len(urls)  # keep the spread over the server processes even
        spec = json.dumps({"urls": urls[k:] + urls[:k], "replicas": n, "timeout": max(30.0, seconds * 3)})
        procs.append(subprocess.Popen([sys.executable, "-m", "datsync.shell.bench.server", "--listener", spec],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
    try:
        for p in procs:
            line = await trio.to_thread.run_sync(p.stdout.readline)
            if line.strip() != "ready":
                raise RuntimeError(f"a listener process did not start: {line!r}")
        async with trio.open_nursery() as nursery:
            (writer,) = await open_replicas(nursery, urls[0], 1)
            c0 = cpu()
            sent, achieved, last_t = await write_open_loop(writer, seconds, rate)
            await writer.aclose()
        samples: list[float] = []
        resyncs = 0
        client_cpu_s = 0.0
        for p in procs:
            out, _ = await trio.to_thread.run_sync(lambda p=p: p.communicate(f"{last_t}\n", timeout=300))
            result = json.loads(out)
            samples += result["samples"]
            resyncs += result["resyncs"]
            client_cpu_s += result["cpu_s"]
        cpu_s = cpu() - c0  # (an upper bound: it includes the listeners' closing)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return _latency_figures(samples, sent, replicas, achieved, resyncs, cpu_s, client_cpu_s)


async def listener_process(spec: dict) -> None:
    """``--listener``: open the replicas, say ``ready``, read the last ``t`` on stdin, print the samples
    and the process's CPU seconds (user + system, every thread) from ``ready`` until every replica had it."""
    listeners = Listeners()
    async with trio.open_nursery() as nursery:
        await listeners.open(nursery, spec["urls"], spec["replicas"])
        print("ready", flush=True)
        c0 = time.process_time()
        last_t = int(await trio.to_thread.run_sync(sys.stdin.readline))
        resyncs = await listeners.settle(last_t, spec["timeout"], time.process_time)
    print(json.dumps({"samples": listeners.samples, "resyncs": resyncs, "cpu_s": listeners.cpu_at_settled - c0}),
          flush=True)


async def import_people(url: str, people: list[dict], batch: int = 1000) -> float:
    """Transact ``people`` over the socket in batches; seconds taken."""
    t0 = time.perf_counter()
    async with trio.open_nursery() as nursery:
        (rep,) = await open_replicas(nursery, url, 1)
        for i in range(0, len(people), batch):
            await rep.transact(people[i:i + batch])
        await rep.aclose()
    return time.perf_counter() - t0


async def bootstrap_and_reconnect(url: str, missed: int) -> dict:
    """A fresh replica's bootstrap; then reconnect after ``missed`` transactions, by resuming and
    by re-bootstrapping."""
    out: dict = {}
    async with trio.open_nursery() as nursery:
        t0 = time.perf_counter()
        (rep,) = await open_replicas(nursery, url, 1)
        out["bootstrap_s"] = time.perf_counter() - t0
        out["datoms"] = len(rep.db.eavt)
        kept = rep.replica
        await rep.aclose()
        (writer,) = await open_replicas(nursery, url, 1)
        for i in range(missed):
            r = await writer.transact([{"bench/writer": -2, "bench/sent": float(i)}])
        target = r.t if missed else kept.t
        await writer.aclose()
        for mode, options in (("datsync", {"replica": kept}), ("broadcast", {})):
            t0 = time.perf_counter()
            (again,) = await open_replicas(nursery, url, 1, **options)
            await again.wait_for_t(target)
            out[mode] = (time.perf_counter() - t0, again.stats.last_mode)
            await again.aclose()
    return out


async def throughput_row(server: Server, args: argparse.Namespace, mode: str, k: int, on: str = "") -> None:
    """Measure and print a ``tx/s`` row: ``args.writers`` writers with ``k`` in flight each."""
    before = await trio.to_thread.run_sync(server.counters)
    m = await throughput(server.url, args.writers, args.seconds, server.cpu_seconds, k)
    after = await trio.to_thread.run_sync(server.counters)
    appends = after.get("store_appends", 0) - before.get("store_appends", 0)
    per_commit = f", {m.count / appends:.1f} tx per commit" if appends > 0 else ""
    checkpoints = after.get("checkpoints", 0) - before.get("checkpoints", 0)
    server_ms, writers_ms = m.server_cpu_s / m.count * 1000, m.writers_cpu_s / m.count * 1000
    row("tx/s", mode, args.writers, f"{m.rate:,.0f} tx/s",
        f"{m.count} durable tx{on}, {args.writers} writers, {k} in flight each{per_commit}, {checkpoints} "
        f"checkpoints; CPU per tx: server {server_ms:.2f} ms, writers {writers_ms:.2f} ms")


async def run(args: argparse.Namespace, tmp: Path) -> None:
    schema = tmp / "schema.edn"
    schema.write_text(SCHEMA_EDN)
    modes = ["datsync", "broadcast"] if args.mode == "both" else [args.mode]
    print(f"datsync server bench: Python {platform.python_version()}, {os.cpu_count()} cores, "
          f"server and clients on 127.0.0.1 (server: one process; clients: this process)", flush=True)
    print(ROW.format("workload", "mode", "replicas", "figure", "note"))
    print("|------------|-----------|---------:|-----------------:|------------------------------------|")
    for mode in [] if args.skip_sqlite else modes:
        with Server(tmp / f"{mode}.sqlite", schema, MODE_FLAGS[mode]) as server:
            for k in args.in_flight if "tx" in args.workloads else []:
                await throughput_row(server, args, mode, k)
            per_tx = None  # server CPU per transaction with one replica: the commit's share of a delivery
            for r in args.replicas if "latency" in args.workloads else []:
                m = await latency(server.url, r, args.seconds, args.rate, args.client_processes, server.cpu_seconds)
                note = f"{m['n']} samples at {m['rate']:.0f} tx/s" + clients_note(args)
                if m["n"]:
                    note += f"; server CPU {m['cpu_s'] / m['n'] * 1e6:.0f} µs/delivery"
                    if r == 1:
                        per_tx = m["cpu_s"] / m["sent"]
                    elif per_tx is not None:
                        note += f" ({(m['cpu_s'] - per_tx * m['sent']) / m['n'] * 1e6:.0f} beyond the commit)"
                note += client_cpu_note(m)
                if m["missing"]:
                    note += f", {m['missing']} unseen"
                if m["resyncs"]:
                    note += f", {m['resyncs']} resyncs"
                row("latency", mode, r, f"{m['p50']:.1f}/{m['p99']:.1f} ms", "p50/p99; " + note)
    if args.pg:
        await run_postgres(args, tmp, schema)
    if args.people > 0 and not args.skip_sqlite and "people" in args.workloads:
        people = Datasets().people[:args.people]
        with Server(tmp / "people.sqlite", schema, MODE_FLAGS["datsync"]) as server:
            took = await import_people(server.url, people)
            row("import", "-", 1, f"{took:.1f} s", f"{len(people)} people over the socket")
            b = await bootstrap_and_reconnect(server.url, args.missed)
            rate = b["datoms"] / b["bootstrap_s"]
            row("bootstrap", "both", 1, f"{b['bootstrap_s']:.2f} s", f"{b['datoms']:,} datoms, {rate:,.0f} datoms/s")
            for mode in modes:
                s, how = b[mode]
                row("reconnect", mode, 1, f"{s * 1000:.0f} ms", f"{how} after {args.missed} missed tx")
            for k in args.in_flight if "tx" in args.workloads else []:
                await throughput_row(server, args, "datsync", k, f" on the {len(people)}-people database")


async def failover(servers: list[Server], replicas: int) -> dict:
    """``replicas`` replicas on the first process with every URL; kill it; seconds until each is live
    again elsewhere (and how it came back: resume or bootstrap)."""
    urls = [s.url for s in servers]
    async with trio.open_nursery() as nursery:
        reps = await open_replicas(nursery, [urls], replicas, reconnect=True, backoff=(0.02, 0.5))
        before = [r.stats.connects for r in reps]
        t0 = time.perf_counter()
        servers[0].kill()
        back: list[float] = []
        with trio.move_on_after(60):
            while len(back) < replicas:
                back = [time.perf_counter() - t0 for r, n in zip(reps, before)
                        if r.stats.connects > n and r.connected]
                await trio.sleep(0.002)
        modes = {r.stats.last_mode for r in reps}
        await close_all(reps)
    return {"p50": pct(back, 0.5) if back else float("nan"), "max": max(back, default=float("nan")),
            "back": len(back), "modes": modes}


async def run_postgres(args: argparse.Namespace, tmp: Path, schema: Path) -> None:
    """The tx/s, latency and failover rows on a PostgreSQL store (a fresh schema, dropped after)."""
    import uuid

    import psycopg

    from datsync.shell.store_postgres import with_search_path

    name = f"datsync_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(args.pg, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {name}")
        try:
            url = with_search_path(args.pg, name)
            flags = MODE_FLAGS["datsync"]
            with Server(url, schema, flags, log=tmp / "pg-1.log") as server:
                m = await throughput(server.url, args.writers, args.seconds)
                row("tx/s", "pg-1", args.writers, f"{m.rate:,.0f} tx/s", f"{m.count} durable tx, 1 process")
            k = args.processes
            with contextlib.ExitStack() as stack:
                servers = [stack.enter_context(Server(url, schema, flags, log=tmp / f"pg-{i}.log")) for i in range(k)]
                urls = [s.url for s in servers]
                m = await throughput(urls, args.writers, args.seconds)
                row("tx/s", f"pg-{k}", args.writers, f"{m.rate:,.0f} tx/s", f"{m.count} durable tx, {k} processes")
                for r in args.replicas:
                    m = await latency(urls, r, args.seconds, args.rate, args.client_processes)
                    note = f"{m['n']} samples at {m['rate']:.0f} tx/s, {k} processes" + clients_note(args)
                    note += client_cpu_note(m)
                    if m["missing"]:
                        note += f", {m['missing']} unseen"
                    row("latency", f"pg-{k}", r, f"{m['p50']:.1f}/{m['p99']:.1f} ms", "p50/p99; " + note)
                if k > 1:
                    f = await failover(servers, args.failover_replicas)
                    figure = f"{f['p50'] * 1000:.0f}/{f['max'] * 1000:.0f} ms"
                    modes = "/".join(sorted(map(str, f["modes"])))
                    row("failover", f"pg-{k}", args.failover_replicas, figure,
                        f"p50/max kill -9 -> live; {f['back']} back, {modes}")
        finally:
            admin.execute(f"DROP SCHEMA {name} CASCADE")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m datsync.shell.bench.server", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--replicas", default="1,10,100", help="listening replica counts for latency (default 1,10,100)")
    p.add_argument("--seconds", type=float, default=5.0, help="length of each timed workload (default 5)")
    p.add_argument("--mode", choices=["datsync", "broadcast", "both"], default="both",
                   help="ours, the original-datsync emulation, or both (default)")
    p.add_argument("--writers", type=int, default=8, help="concurrent writers for tx/s (default 8)")
    p.add_argument("--in-flight", default="1", metavar="K[,K...]",
                   help="submissions each tx/s writer keeps on their way, one row per value (default 1: "
                        "one transaction after another)")
    p.add_argument("--workloads", default="tx,latency,people", metavar="W[,W...]",
                   help="which workloads run: tx (tx/s), latency, people (import, bootstrap, reconnect); "
                        "default all")
    p.add_argument("--rate", type=float, default=50.0, help="write rate for latency, tx/s (default 50)")
    p.add_argument("--people", type=int, default=20000,
                   help="people in the bootstrap database (default 20000, ~192k datoms; 0: skip)")
    p.add_argument("--missed", type=int, default=100, help="transactions missed before reconnect (default 100)")
    p.add_argument("--pg", metavar="URL", help="also run tx/s, latency and failover on this PostgreSQL database")
    p.add_argument("--processes", type=int, default=3, help="server processes on PostgreSQL (default 3)")
    p.add_argument("--failover-replicas", type=int, default=30, help="replicas in the failover row (default 30)")
    p.add_argument("--skip-sqlite", action="store_true", help="only the PostgreSQL rows (with --pg)")
    p.add_argument("--client-processes", type=int, default=1, metavar="N",
                   help="run the latency listeners in N client processes (default 1: in this one)")
    p.add_argument("--listener", metavar="JSON", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.listener:
        trio.run(listener_process, json.loads(args.listener))
        return 0
    try:
        args.replicas = [int(x) for x in args.replicas.split(",") if x.strip()]
        args.in_flight = [int(x) for x in args.in_flight.split(",") if x.strip()]
    except ValueError:
        p.error("--replicas, --in-flight: comma-separated integers")
    args.workloads = {w.strip() for w in args.workloads.split(",") if w.strip()}
    if not args.workloads <= {"tx", "latency", "people"}:
        p.error("--workloads: a comma-separated list of tx, latency, people")
    if args.seconds <= 0 or args.rate <= 0 or args.writers < 1 or any(r < 1 for r in args.replicas) \
            or any(k < 1 for k in args.in_flight):
        p.error("need --seconds > 0, --rate > 0, --writers >= 1, replicas >= 1, --in-flight >= 1")
    with tempfile.TemporaryDirectory(prefix="datsync-bench-") as tmp:
        trio.run(run, args, Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
