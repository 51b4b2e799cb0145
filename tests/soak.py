"""Soak (outside CI): kill -9 loops of the server and of clients under a list-append workload, then the
whole history checked (tests/consistency.py).

    .venv/bin/python -m tests.soak --rounds 50

Each round new clients append, write and read through their replicas while the server process is
killed with SIGKILL at a random moment and restarted on the same port and store; then one client is
killed mid-work (its replica and its task cancelled: no close, a write it was waiting for stays of
unknown outcome). Prints one line per round and
the checker's summary; exits 1 on any anomaly.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from pathlib import Path

import trio

from datsync.shell import open_replica
from datsync.shell.connection import Connection
from datsync.shell.store import open_store
from tests.consistency import SCHEMA_EDN, Op, check, list_at, run_client, summary
from tests.sync_server import ServerProcess

FAST = {"backoff": (0.02, 0.3), "heartbeat_interval": 0.5, "heartbeat_timeout": 2.0, "connect_timeout": 3.0}


async def soak(workdir: Path, rounds: int, ops: int, clients: int, seed: int) -> int:
    rng = random.Random(seed)
    schema = workdir / "lists.edn"
    schema.write_text(SCHEMA_EDN)
    store = workdir / "soak.sqlite"
    server = ServerProcess(store, "--schema", str(schema), "--heartbeat-interval", "0.5",
                           "--heartbeat-timeout", "2", log=workdir / "server.log")
    await trio.to_thread.run_sync(server.start)
    history: list[Op] = []
    next_id = 0
    try:
        for r in range(rounds):
            outs, dead = await _round(server, rng, first_id=next_id, clients=clients, ops=ops,
                                      seed=seed * 10_000 + r, tag=f"r{r}")
            history += [op for out in outs for op in out]
            next_id += clients
            print(f"round {r + 1}/{rounds}: {sum(map(len, outs))} operations, server killed and restarted, "
                  f"client {dead} killed after {len(outs[dead])}", flush=True)
        async with open_replica(server.url, **FAST) as last:
            history += [Op(next_id, "read", f"k{k}", t=last.t, values=list_at(last.confirmed_db, f"k{k}"))
                        for k in range(4)]
            history += [Op(next_id, "read-register", f"r{k}", t=last.t,
                           values=list_at(last.confirmed_db, f"r{k}", "reg/value")) for k in range(4)]
    finally:
        await trio.to_thread.run_sync(server.stop)
    report = check(history, Connection.recover(open_store(store)).db)
    print(summary(report))
    for _, message in report.anomalies[:20]:
        print("  " + message)
    return 1 if report.anomalies else 0


async def _round(server: ServerProcess, rng: random.Random, *, first_id: int, clients: int, ops: int, seed: int,
                 tag: str) -> tuple[list[list[Op]], int]:
    """One round: the clients' histories, and which client was killed."""
    outs: list[list[Op]] = [[] for _ in range(clients)]
    scopes = [trio.CancelScope() for _ in range(clients)]
    dead = rng.randrange(clients)

    async def client(i: int) -> None:
        with scopes[i]:
            async with open_replica(server.url, **FAST) as rep:
                await run_client(first_id + i, rep, outs[i], ops=ops, seed=seed, tag=tag)

    async def killer() -> None:
        await trio.sleep(rng.uniform(0.1, 0.8))
        await trio.to_thread.run_sync(server.kill)
        await trio.sleep(rng.uniform(0.0, 0.3))
        await trio.to_thread.run_sync(server.start)
        await trio.sleep(rng.uniform(0.0, 0.5))
        scopes[dead].cancel()  # this client's process dies mid-work: no close, no goodbye

    async with trio.open_nursery() as nursery:
        for i in range(clients):
            nursery.start_soon(client, i)
        nursery.start_soon(killer)
    return outs, dead


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.soak", description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=50)
    p.add_argument("--ops", type=int, default=40, help="operations per client per round (default 40)")
    p.add_argument("--clients", type=int, default=3)
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="datsync-soak-") as d:
        return trio.run(soak, Path(d), a.rounds, a.ops, a.clients, a.seed)


if __name__ == "__main__":
    sys.exit(main())
