"""Soak (outside CI): kill -9 loops of the server and of client processes under a list-append
workload, then the whole history checked (tests/consistency.py).

    .venv/bin/python -m tests.soak --rounds 50

Each round starts new client processes that append, write and read through their replicas, each
recording its operations in a file as it goes (a write as of unknown outcome before it is sent).
The server process is killed with SIGKILL at a random moment and restarted on the same port and
store, and one client process is killed with SIGKILL after a random number of its operations (no
close; a write it was waiting for stays of unknown outcome). With ``--persist`` each client slot keeps
a persisted replica (``store=``) from round to round: the next process in the killed client's slot
opens what it left and resubmits its queued writes (which must commit at most once). Prints one line
per round and the checker's summary; exits 1 on any anomaly or if a client that was not killed failed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import trio

from datsync.core import datoms
from datsync.core import history as core_history
from datsync.shell import open_replica
from datsync.shell.connection import Connection
from datsync.shell.store import open_store
from tests.consistency import SCHEMA_EDN, Op, check, list_at, run_client, summary
from tests.sync_server import ServerProcess

FAST = {"backoff": (0.02, 0.3), "heartbeat_interval": 0.5, "heartbeat_timeout": 2.0, "connect_timeout": 3.0}
ROOT = Path(__file__).resolve().parents[1]


class RecordedOps(list):
    """A client's history that also writes every operation (and every change of one) to a file at
    once, one JSON line ``[index, op]``, so what a process killed with SIGKILL did is still known."""

    def __init__(self, path: Path):
        super().__init__()
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def _write(self, index: int, op: Op) -> None:
        record = {**op.__dict__, "values": sorted(op.values)}
        os.write(self._fd, (json.dumps([index, record]) + "\n").encode())

    def append(self, op: Op) -> None:
        super().append(op)
        self._write(len(self) - 1, op)

    def __setitem__(self, index: Any, op: Any) -> None:
        super().__setitem__(index, op)
        self._write(index % len(self), op)


def read_ops(path: Path) -> list[Op]:
    """The history a client process recorded in ``path`` (the last record of each operation wins; a
    line cut short by a kill is ignored)."""
    ops: dict[int, Op] = {}
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            index, record = json.loads(line)
        except ValueError:
            continue
        ops[index] = Op(**{**record, "values": frozenset(record["values"])})
    return [ops[i] for i in sorted(ops)]


async def client_main(url: str, client: int, ops: int, seed: int, tag: str, out: Path, store: str) -> None:
    """One client process: the workload through its own replica (persisted in ``store`` unless it is
    empty), recorded in ``out``."""
    async with open_replica(url, **FAST, **({"store": store} if store else {})) as rep:
        await run_client(client, rep, RecordedOps(out), ops=ops, seed=seed, tag=tag)


async def soak(workdir: Path, rounds: int, ops: int, clients: int, seed: int, persist: bool = False) -> int:
    rng = random.Random(seed)
    schema = workdir / "lists.edn"
    schema.write_text(SCHEMA_EDN)
    store = workdir / "soak.sqlite"
    server = ServerProcess(store, "--schema", str(schema), "--heartbeat-interval", "0.5",
                           "--heartbeat-timeout", "2", log=workdir / "server.log")
    await trio.to_thread.run_sync(server.start)
    history: list[Op] = []
    failures: list[str] = []
    next_id = 0
    try:
        for r in range(rounds):
            outs, dead, failed = await _round(server, rng, workdir, first_id=next_id, clients=clients, ops=ops,
                                              seed=seed * 10_000 + r, tag=f"r{r}", persist=persist)
            history += [op for out in outs for op in out]
            failures += failed
            next_id += clients
            print(f"round {r + 1}/{rounds}: {sum(map(len, outs))} operations, server killed and restarted, "
                  f"client process {dead} killed after {len(outs[dead])}" + (f", FAILED: {failed}" if failed else ""),
                  flush=True)
        async with open_replica(server.url, **FAST) as last:
            history += [Op(next_id, "read", f"k{k}", t=last.t, values=list_at(last.confirmed_db, f"k{k}"))
                        for k in range(4)]
            history += [Op(next_id, "read-register", f"r{k}", t=last.t,
                           values=list_at(last.confirmed_db, f"r{k}", "reg/value")) for k in range(4)]
    finally:
        await trio.to_thread.run_sync(server.stop)
    db = Connection.recover(open_store(store)).db
    report = check(history, db)
    written = {d.v for attr in ("list/item", "reg/value") for d in datoms(core_history(db), "aevt", attr)}
    committed = sum(op.outcome == "unknown" and op.value in written for op in history)
    print(summary(report) + f"; {committed} of the unknown committed (once); {rounds} server kills and {rounds} "
          "client process kills (SIGKILL)")
    for _, message in report.anomalies[:20]:
        print("  " + message)
    for message in failures[:20]:
        print("  client failed: " + message)
    return 1 if report.anomalies or failures else 0


async def _round(server: ServerProcess, rng: random.Random, workdir: Path, *, first_id: int, clients: int,
                 ops: int, seed: int, tag: str, persist: bool) -> tuple[list[list[Op]], int, list[str]]:
    """One round: the clients' histories, which client process was killed, and the failures of the
    others (a non-zero exit)."""
    files = [workdir / f"{tag}-c{i}.jsonl" for i in range(clients)]
    errors = [workdir / f"{tag}-c{i}.err" for i in range(clients)]
    procs = []
    for i in range(clients):
        with errors[i].open("w") as err:
            procs.append(subprocess.Popen([sys.executable, "-m", "tests.soak", "client", server.url, str(first_id + i),
                                           str(ops), str(seed), tag, str(files[i]),
                                           str(workdir / f"slot{i}.replica") if persist else ""],
                                          cwd=ROOT, stderr=err))
    dead = rng.randrange(clients)
    kill_after = rng.randrange(1, ops)

    def recorded(i: int) -> int:
        return len(files[i].read_text().splitlines()) if files[i].exists() else 0

    async def server_killer() -> None:
        while not all(recorded(i) for i in range(clients)) and all(p.poll() is None for p in procs):
            await trio.sleep(0.02)  # every client is connected and working
        await trio.sleep(rng.uniform(0.0, 0.6))
        await trio.to_thread.run_sync(server.kill)
        await trio.sleep(rng.uniform(0.0, 0.3))
        await trio.to_thread.run_sync(server.start)

    async def client_killer() -> None:
        while recorded(dead) < kill_after and procs[dead].poll() is None:
            await trio.sleep(0.01)
        await trio.sleep(rng.uniform(0.0, 0.05))
        procs[dead].send_signal(signal.SIGKILL)  # no close, no goodbye

    try:
        with trio.fail_after(300):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(server_killer)
                nursery.start_soon(client_killer)
            for p in procs:
                await trio.to_thread.run_sync(p.wait)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    failed = [f"{tag} client {i}: exit {p.returncode}: {errors[i].read_text()[-500:]}"
              for i, p in enumerate(procs) if i != dead and p.returncode != 0]
    return [read_ops(f) for f in files], dead, failed


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["client"]:
        url, client, ops, seed, tag, out, store = argv[1:]
        trio.run(client_main, url, int(client), int(ops), int(seed), tag, Path(out), store)
        return 0
    p = argparse.ArgumentParser(prog="python -m tests.soak", description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=50)
    p.add_argument("--ops", type=int, default=40, help="operations per client per round (default 40)")
    p.add_argument("--clients", type=int, default=3)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--persist", action="store_true",
                   help="each client slot keeps a persisted replica across rounds (a killed client's queue resumes)")
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="datsync-soak-") as d:
        return trio.run(soak, Path(d), a.rounds, a.ops, a.clients, a.seed, a.persist)


if __name__ == "__main__":
    sys.exit(main())
