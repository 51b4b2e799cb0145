"""A list-append and register workload in Elle's model and a checker of its history.

Clients append unique values to a few lists (``list/key`` -> ``list/item``, cardinality many), write
unique values to a few registers (``list/key`` -> ``reg/value``, cardinality one) through their
replicas, and read both on their replicas' confirmed database, at the replica's ``t``. The
history is the operations in each client's order with their outcomes; ``check(history, server_db)``
holds it against the server's database (with its history) and reports anomalies:

* ``lost`` / ``duplicated``: an acknowledged append (or register write) is missing, or was added more than once, or at
  another ``t`` than acknowledged; an append whose outcome was unknown was added at most once;
* ``gap``: the server's transactions do not have every ``t`` from 1 up;
* ``stale-read`` (or ``wrong-read``): a replica read at ``t`` differs from the server's list at ``t``;
* ``non-monotonic``: a client's reads went back in ``t`` or a list lost values;
* ``read-your-writes``: a client read a list (a register) at a ``t`` at or after its own acknowledged
  append (write) to it and did not see it (saw a value written before it).
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import trio

from datsync.core import TX0, as_of, datoms, history
from datsync.shell import TxOutcomeUnknown

SCHEMA_EDN = """\
{:list/key  {:db/valueType :db.type/string :db/cardinality :db.cardinality/one :db/unique :db.unique/identity}
 :list/item {:db/valueType :db.type/string :db/cardinality :db.cardinality/many}
 :reg/value {:db/valueType :db.type/string :db/cardinality :db.cardinality/one}}
"""


@dataclass(frozen=True)
class Op:
    """One operation of one client: an ``append`` or a register ``write`` (``value``; ``outcome`` ok
    or unknown, ``t`` when ok), a ``read`` of a list or a ``read-register`` (``values`` seen at the
    replica's ``t``)."""

    client: int
    kind: str
    key: str
    value: str | None = None
    outcome: str = "ok"
    t: int | None = None
    values: frozenset = frozenset()


@dataclass
class Report:
    """What the checker looked at and what it found."""

    operations: int = 0
    appends_ok: int = 0
    appends_unknown: int = 0
    reads: int = 0
    transactions: int = 0
    anomalies: list[tuple[str, str]] = field(default_factory=list)


def list_at(db: Any, key: str, attr: str = "list/item") -> frozenset:
    """The values of list ``key`` in ``db`` (of register ``key`` with ``attr="reg/value"``: 0 or 1)."""
    out = set()
    for d in datoms(db, "avet", "list/key", key):
        out |= {x.v for x in datoms(db, "eavt", d.e, attr)}
    return frozenset(out)


_ATTR = {"read": "list/item", "read-register": "reg/value"}


def check(ops: list[Op], server_db: Any) -> Report:
    """Hold the history ``ops`` (each client's operations in its order) against ``server_db`` (a
    Datomic-flavored database with its history: the server's, recovered from its store)."""
    r = Report(operations=len(ops))
    bad = r.anomalies
    added: dict[str, list[int]] = defaultdict(list)  # value -> t of every assertion
    for attr in _ATTR.values():
        for d in datoms(history(server_db), "aevt", attr):
            if d.added:
                added[d.v].append(d.tx - TX0)
    ts = sorted({d.tx - TX0 for d in datoms(history(server_db), "aevt", "db/txInstant")} - {0})  # 0: built-ins
    r.transactions = len(ts)
    if ts != list(range(1, len(ts) + 1)):
        bad.append(("gap", f"the server's t are not 1..{len(ts)}"))
    for op in ops:
        if op.kind not in ("append", "write"):
            continue
        seen = added.get(op.value, [])
        if op.outcome == "ok":
            r.appends_ok += 1
            if not seen:
                bad.append(("lost", f"acknowledged append {op.value} at t={op.t} is not in the server's database"))
            elif len(seen) > 1 or seen[0] != op.t:
                bad.append(("duplicated", f"append {op.value} acknowledged at t={op.t}, added at t={seen}"))
        elif op.outcome == "unknown":
            r.appends_unknown += 1
            if len(seen) > 1:
                bad.append(("duplicated", f"append {op.value} of unknown outcome added at t={seen}"))
    last: dict[int, tuple[int, dict[str, frozenset]]] = {}
    acked: dict[tuple[int, str], list[tuple[str, int]]] = defaultdict(list)
    def written_at(values: frozenset) -> int:
        return max((min(added.get(v, [0])) for v in values), default=0)

    for op in ops:
        if op.kind in ("append", "write") and op.outcome == "ok":
            acked[(op.client, op.key)].append((op.value, op.t))
            continue
        if op.kind not in _ATTR:
            continue
        r.reads += 1
        assert op.t is not None
        truth = list_at(as_of(server_db, op.t), op.key, _ATTR[op.kind]) if op.t > 0 else frozenset()
        if op.values != truth:
            stale = op.values < truth if op.kind == "read" else written_at(op.values) < written_at(truth)
            bad.append(("stale-read" if stale else "wrong-read",
                        f"client {op.client} read {op.key} at t={op.t}: {sorted(op.values)} != {sorted(truth)}"))
        prev_t, prev = last.get(op.client, (0, {}))
        if op.t < prev_t or (op.kind == "read" and not prev.get(op.key, frozenset()) <= op.values):
            bad.append(("non-monotonic", f"client {op.client} read {op.key} at t={op.t} after t={prev_t}"))
        last[op.client] = (max(prev_t, op.t), {**prev, op.key: op.values})
        for value, t in acked[(op.client, op.key)]:
            unseen = value not in op.values if op.kind == "read" else written_at(op.values) < t
            if op.t >= t and unseen:
                bad.append(("read-your-writes", f"client {op.client} read {op.key} at t={op.t} without its "
                            f"own {value} (t={t})"))
    return r


async def run_client(i: int, rep: Any, out: list[Op], *, ops: int, keys: int = 4, seed: int = 0,
                     read_share: float = 0.5, pause: float = 0.01, tag: str = "", registers: float = 0.3) -> None:
    """Client ``i``: random appends, register writes (a ``registers`` share of the operations) and
    reads through ``rep``, ``pause`` seconds apart on average, recorded in ``out`` in order. A write is
    recorded as of unknown outcome before it is sent, so a client killed while waiting leaves it so.
    Values are ``{tag}c{i}-{n}``: give each run over the same database its own ``tag``."""
    rng = random.Random(seed * 1000 + i)
    for n in range(ops):
        await trio.sleep(rng.random() * 2 * pause)
        register = rng.random() < registers
        key = f"{'r' if register else 'k'}{rng.randrange(keys)}"
        if rng.random() < read_share:
            kind = "read-register" if register else "read"
            out.append(Op(i, kind, key, t=rep.t, values=list_at(rep.confirmed_db, key, _ATTR[kind])))
            continue
        kind, attr = ("write", "reg/value") if register else ("append", "list/item")
        value = f"{tag}c{i}-{n}"
        out.append(Op(i, kind, key, value, "unknown"))
        try:
            res = await rep.transact([{"list/key": key, attr: value}])
            out[-1] = Op(i, kind, key, value, "ok", res.t)
        except TxOutcomeUnknown:
            pass


async def run_workload(replicas: list[Any], *, ops_per_client: int, **options: Any) -> list[Op]:
    """Each replica a client (``run_client``), concurrently; the history in client order."""
    histories: list[list[Op]] = [[] for _ in replicas]
    async with trio.open_nursery() as nursery:
        for i, rep in enumerate(replicas):
            nursery.start_soon(partial(run_client, i, rep, histories[i], ops=ops_per_client, **options))
    return [op for h in histories for op in h]


def summary(r: Report) -> str:
    """One line: operations checked and anomalies found by kind."""
    kinds = Counter(k for k, _ in r.anomalies)
    return (f"{r.operations} operations ({r.appends_ok} appends and writes acknowledged, {r.appends_unknown} unknown, "
            f"{r.reads} reads) over {r.transactions} transactions: {len(r.anomalies)} anomalies"
            + (f" {dict(kinds)}" if kinds else ""))


__all__ = ["SCHEMA_EDN", "Op", "Report", "check", "list_at", "run_client", "run_workload", "summary"]
