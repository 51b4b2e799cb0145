"""Soak (outside CI): kill -9 loops of the server and of clients under a list-append workload, then the
whole history checked (tests/consistency.py).

    .venv/bin/python -m tests.soak --rounds 50

Each round the clients append and read through their replicas while the server process is killed
with SIGKILL at a random moment and restarted on the same port and store; one client per round is
dropped without closing (its process "dies") and replaced by a new one. Prints one line per round and
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
from tests.consistency import SCHEMA_EDN, Op, check, list_at, run_workload, summary
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
            async with trio.open_nursery() as nursery:
                reps = []
                scopes = []
                for _ in range(clients):
                    scope = trio.CancelScope()
                    scopes.append(scope)
                    reps.append(await nursery.start(_client, server.url, scope))

                async def killer() -> None:
                    await trio.sleep(rng.uniform(0.1, 0.8))
                    await trio.to_thread.run_sync(server.kill)
                    await trio.sleep(rng.uniform(0.0, 0.3))
                    await trio.to_thread.run_sync(server.start)

                nursery.start_soon(killer)
                ops_r = await run_workload(reps, ops_per_client=ops, seed=seed * 10_000 + r, tag=f"r{r}")
                # renumber clients: each round's clients are new clients
                history += [Op(op.client + next_id, op.kind, op.key, op.value, op.outcome, op.t, op.values)
                            for op in ops_r]
                dead = rng.randrange(clients)
                scopes[dead].cancel()  # this client's process dies: no close, no goodbye
                for i, (rep, scope) in enumerate(zip(reps, scopes)):
                    if i != dead:
                        await rep.aclose()
                        scope.cancel()
            next_id += clients
            print(f"round {r + 1}/{rounds}: {len(ops_r)} operations, server restarted", flush=True)
        async with open_replica(server.url, **FAST) as last:
            history += [Op(next_id, "read", f"k{k}", t=last.t, values=list_at(last.confirmed_db, f"k{k}"))
                        for k in range(4)]
    finally:
        await trio.to_thread.run_sync(server.stop)
    report = check(history, Connection.recover(open_store(store)).db)
    print(summary(report))
    for _, message in report.anomalies[:20]:
        print("  " + message)
    return 1 if report.anomalies else 0


async def _client(url: str, scope: trio.CancelScope, *, task_status: trio.TaskStatus) -> None:
    with scope:
        async with open_replica(url, **FAST) as rep:
            task_status.started(rep)
            await trio.sleep_forever()


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
