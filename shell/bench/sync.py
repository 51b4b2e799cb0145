"""Sync benchmarks: applying deltas, bootstrapping a replica, the wire codec against plain ``json``.

* ``apply-1-datom-1k`` / ``apply-1-datom-200k``: apply a delta of one datom (a transaction asserting
  one value, plus its ``db/txInstant``) to a replica of about 1k datoms, and to one of about 192k
  (the 20k-people database). The cost grows with the delta, not the database: the two are close.
* ``apply-3-datom-10-replicas``: 10 replicas of a 500-person database each apply the same 200
  three-datom deltas (a new age: its retraction, its assertion, the ``db/txInstant``) in turn, as a
  process holding many replicas does when a transaction reaches them all: 2,000 applies per op, each
  on an index another replica last touched (so the figure includes the history indexes' folds).
* ``bootstrap-people``: the 20k-people database (Datomic flavor, ~192k datoms) to a live replica:
  snapshot in chunks, encode every chunk, decode it, build the replica in bulk.
* ``submit-10-pending``: ``rep.submit`` of a one-entity transaction on the 20k-people replica with
  10 pending transactions, as the client session does it: queue, apply on the view (provisional id),
  translate and encode the ``submit``.
* ``delta-10-pending``: another client's one-entity delta arriving at that replica: applied to the
  confirmed database, the 10 pending transactions re-based on it.
* ``open-replica-store``: open the 20k-people replica from its store file (``ReplicaStore.load``):
  compare with ``bootstrap-people``, which is that plus the network, and ``bootstrap-socket``.
* ``bootstrap-socket``: ``connect(url)`` of a fresh replica to a ``datsync serve`` process on
  127.0.0.1 serving the 20k-people database, until it is live, then close: the bootstrap over the
  socket that opening a persisted replica saves (the server runs in a process of its own, started
  once before timing).
* ``session-fanout-32``: 32 deliveries of encoded deltas through a live ``ServerSession`` and one
  ``ack``: the server's per-client CPU cost of a broadcast, without the socket.
* ``codec-encode-delta`` / ``json-encode-delta`` (and ``-decode-``, and ``-chunk`` for a 2,000-datom
  snapshot chunk): our tagged, validated codec against plain ``json.dumps``/``json.loads`` of the
  same message with untagged values.

Run them with ``python -m datsync.shell.bench.sync [NAMES ...]``; each prints the median ms/op and,
where it means something, datoms per second.
"""

from __future__ import annotations

import argparse
import atexit
import json
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from functools import cache
from typing import Any

from datsync.core import empty_db, kw, transact
from datsync.core.datomic import EPOCH
from datsync.core.history import basis_t
from datsync.core.sync import (
    ClientConfig,
    Delta,
    Opened,
    Received,
    SnapshotEnd,
    SubmitTx,
    Welcome,
    add_chunk,
    apply_delta,
    begin_snapshot,
    build_replica,
    client_step,
    decode,
    delta_from_report,
    encode,
    new_client_session,
    replica_of,
    snapshot,
)

from .engine import datasets
from .harness import bench

_TYPES = {
    "name": ("string", "one"), "last-name": ("string", "one"), "full-name": ("string", "one"),
    "alias": ("string", "many"), "sex": ("string", "one"), "age": ("long", "one"), "salary": ("long", "one"),
}
SERVER_SCHEMA = {
    a: {"db/valueType": kw(f"db.type/{t}"), "db/cardinality": kw(f"db.cardinality/{c}")} for a, (t, c) in _TYPES.items()
}
"""The people dataset's attributes as a Datomic schema."""


@cache
def server_db(n_people: int = 20000) -> Any:
    """A Datomic-flavored server database of the first ``n_people`` people (20k: ~192k datoms)."""
    db = empty_db(SERVER_SCHEMA, flavor="datomic")
    return transact(db, datasets().people[:n_people], instant=EPOCH).db_after


@cache
def _apply_case(n_people: int) -> tuple[Any, Delta]:
    db = server_db(n_people)
    e = next(k[0] for k in db.aevt.prefix(("age",)))
    report = transact(db, [["db/add", e, "age", 1000]], instant=EPOCH)
    return replica_of(db), delta_from_report(report)


def apply_small() -> Any:
    """A one-datom delta applied to a replica of ~1k datoms (100 people)."""
    replica, delta = _apply_case(100)
    return apply_delta(replica, delta)


def apply_large() -> Any:
    """A one-datom delta applied to a replica of ~192k datoms (20k people)."""
    replica, delta = _apply_case(20000)
    return apply_delta(replica, delta)


ROUND_ROBIN_REPLICAS = 10
ROUND_ROBIN_DELTAS = 200


@cache
def _round_robin_case() -> tuple[Any, tuple[Delta, ...]]:
    """A replica of 500 people and 200 deltas, each a new age for one of them (three datoms)."""
    db = server_db(500)
    start = db
    people = [k[0] for k in db.aevt.prefix(("age",))]
    deltas = []
    for i in range(ROUND_ROBIN_DELTAS):
        report = transact(db, [["db/add", people[i * 7 % len(people)], "age", 1000 + i]], instant=EPOCH)
        deltas.append(delta_from_report(report))
        db = report.db_after
    return replica_of(start), tuple(deltas)


def apply_round_robin() -> Any:
    """Each of 10 replicas (equal at the start) applies the 200 deltas, one delta to all replicas in turn."""
    start, deltas = _round_robin_case()
    replicas = [start] * ROUND_ROBIN_REPLICAS
    for delta in deltas:
        replicas = [apply_delta(r, delta)[0] for r in replicas]
    return replicas


def bootstrap_people() -> Any:
    """Snapshot the 20k-people server database, encode, decode, build the replica."""
    db = server_db()
    head, chunks = snapshot(db, 2000, db_id="bench")
    wire = [encode(head), *(encode(c) for c in chunks), encode(SnapshotEnd(head.t, head.chunks))]
    msgs = [decode(b) for b in wire]
    b = begin_snapshot(msgs[0])
    for m in msgs[1:-1]:
        b = add_chunk(b, m)
    return build_replica(b)


@cache
def _pending_case() -> tuple[Any, Any, Any]:
    """A live client session on the 20k-people replica with 10 pending one-entity transactions (sent),
    the next submission, and another client's one-entity delta."""
    db = server_db()
    s = new_client_session(ClientConfig(client_id="bench"), replica_of(db, db_id="bench"))
    s, _ = client_step(s, Opened(0.0))
    s, _ = client_step(s, Received(Welcome("bench", basis_t(db), "resume", 32)))
    for i in range(10):
        s, _ = client_step(s, SubmitTx(i, [{"db/id": "p", "name": f"pending-{i}", "age": i}]))
    report = transact(db, [{"name": "someone else", "age": 40}], instant=EPOCH)
    return s, SubmitTx(10, [{"db/id": "p", "name": "new", "age": 1}]), Received(delta_from_report(report))


def submit_10_pending() -> Any:
    s, submit, _ = _pending_case()
    return client_step(s, submit)


def delta_10_pending() -> Any:
    s, _, delta = _pending_case()
    return client_step(s, delta)


@cache
def _store_case() -> str:
    from ..replica_store import ReplicaStore

    path = tempfile.mkdtemp(prefix="datsync-bench-") + "/people.replica"
    store = ReplicaStore(path)
    store.set_base(replica_of(server_db(), db_id="bench"))
    store.close()
    return path


def open_replica_store() -> Any:
    from ..replica_store import ReplicaStore

    store = ReplicaStore(_store_case())
    try:
        return store.load()
    finally:
        store.close()


@cache
def _socket_case(n_people: int = 20000) -> str:
    """A ``datsync serve`` process on 127.0.0.1 over a store holding ``server_db(n_people)`` (a
    checkpoint at its ``t``), stopped by ``stop_socket_server`` or when the process exits: its URL."""
    from ..connection import encode_events
    from ..store import open_store

    path = tempfile.mkdtemp(prefix="datsync-bench-") + "/people.sqlite"
    store = open_store(path)
    try:
        db = server_db(n_people)
        store.write_checkpoint(basis_t(db), encode_events(db))
    finally:
        store.close()
    proc = subprocess.Popen([sys.executable, "-m", "datsync.shell", "serve", "--port", "0", "--store", path],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    _servers.append(proc)
    line = proc.stdout.readline() if proc.stdout else ""
    if not line.startswith("datsync serving "):
        stop_socket_server()
        raise RuntimeError(f"the bench server did not start: {line!r}")
    return line.split()[2]


_servers: list[subprocess.Popen] = []


@atexit.register
def stop_socket_server() -> None:
    """Stop the server ``bootstrap-socket`` started, if any."""
    while _servers:
        proc = _servers.pop()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout:
            proc.stdout.close()
    _socket_case.cache_clear()


def bootstrap_socket(n_people: int = 20000) -> Any:
    from ..client import connect

    with connect(_socket_case(n_people), timeout=300, reconnect=False) as rep:
        return rep.replica


@cache
def _messages() -> dict[str, tuple[Any, Any]]:
    """The delta of a transaction of 15 people (~140 datoms) and a 2,000-datom snapshot chunk, each
    with the same data as plain JSON-ready structures."""
    db = server_db(1000)
    report = transact(db, datasets().people[1000:1015], instant=EPOCH)
    delta = delta_from_report(report)
    plain_delta = {"v": 1, "type": "delta", "t": delta.t, "tx": delta.tx, "instant": delta.instant.isoformat(),
                   "datoms": [[e, a, v.isoformat() if a == "db/txInstant" else v, added]
                              for e, a, v, added in delta.datoms]}
    _, chunks = snapshot(server_db(), 2000)
    next(chunks)
    chunk = next(chunks)
    plain_chunk = {"v": 1, "type": "snapshot-chunk", "t": chunk.t, "seq": chunk.seq,
                   "datoms": [list(d) for d in chunk.datoms]}
    return {"delta": (delta, plain_delta), "chunk": (chunk, plain_chunk)}


def _codec_pair(which: str) -> dict[str, Callable[[], Any]]:
    def ours_enc() -> Any:
        return encode(_messages()[which][0])

    def json_enc() -> Any:
        return json.dumps(_messages()[which][1], separators=(",", ":")).encode()

    ours_bytes = cache(lambda: encode(_messages()[which][0]))
    json_bytes = cache(lambda: json.dumps(_messages()[which][1], separators=(",", ":")).encode())

    def ours_dec() -> Any:
        return decode(ours_bytes())

    def json_dec() -> Any:
        return json.loads(json_bytes())

    return {
        f"codec-encode-{which}": ours_enc, f"json-encode-{which}": json_enc,
        f"codec-decode-{which}": ours_dec, f"json-decode-{which}": json_dec,
    }


@cache
def _fanout_case() -> tuple[Any, list]:
    from datsync.core.sync import AuthDecision, Hello, Opened, Received, ServerConfig, TxCommitted, new_server_session
    from datsync.core.sync import server_step as step

    s = new_server_session(ServerConfig(db_id="bench"), 1)
    for e in (Opened(0.0), Received(Hello("me", 1, "bench")), AuthDecision("me")):
        s, _ = step(s, e)
    _, delta = _apply_case(100)
    events = []
    for t in range(2, 34):
        d = Delta(t, delta.tx - delta.t + t, delta.instant, delta.datoms)
        events.append(TxCommitted(d, encode(d)))
    return s, events


def session_fanout() -> Any:
    """32 deliveries to one live client session, then the client's ack (the per-client cost of a
    broadcast, without the socket)."""
    from datsync.core.sync import Ack, Received
    from datsync.core.sync import server_step as step

    s, events = _fanout_case()
    for e in events:
        s, _ = step(s, e)
    return step(s, Received(Ack(33)))


SYNC_BENCHMARKS: dict[str, Callable[[], Any]] = {
    "apply-1-datom-1k": apply_small,
    "apply-1-datom-200k": apply_large,
    "apply-3-datom-10-replicas": apply_round_robin,
    "bootstrap-people": bootstrap_people,
    "session-fanout-32": session_fanout,
    "submit-10-pending": submit_10_pending,
    "delta-10-pending": delta_10_pending,
    "open-replica-store": open_replica_store,
    "bootstrap-socket": bootstrap_socket,
    **_codec_pair("delta"),
    **_codec_pair("chunk"),
}
"""Benchmark name -> the operation timed."""

SYNC_SETUP: dict[str, Callable[[], Any]] = {
    "apply-1-datom-1k": lambda: _apply_case(100),
    "apply-1-datom-200k": lambda: _apply_case(20000),
    "apply-3-datom-10-replicas": _round_robin_case,
    "bootstrap-people": server_db,
    "session-fanout-32": _fanout_case,
    "submit-10-pending": _pending_case,
    "delta-10-pending": _pending_case,
    "open-replica-store": _store_case,
    "bootstrap-socket": _socket_case,
    **{name: _messages for name in SYNC_BENCHMARKS if "code" in name or "json" in name},
}
"""Fixtures built before timing starts."""


def datoms_per_op(name: str) -> int | None:
    """How many datoms one run of benchmark ``name`` moves (for datoms/second), if that means something."""
    if name in ("bootstrap-people", "open-replica-store", "bootstrap-socket"):
        return len(server_db().eavt)
    if name.endswith("-delta"):
        return len(_messages()["delta"][0].datoms)
    if name.endswith("-chunk"):
        return len(_messages()["chunk"][0].datoms)
    if name == "apply-3-datom-10-replicas":
        return sum(len(d.datoms) for d in _round_robin_case()[1]) * ROUND_ROBIN_REPLICAS
    if name.startswith("apply-"):
        return len(_apply_case(100 if name.endswith("1k") else 20000)[1].datoms)
    return None


def main(argv: list[str] | None = None) -> int:
    """Run the sync benchmarks named (all by default) and print a table."""
    p = argparse.ArgumentParser(prog="python -m datsync.shell.bench.sync", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("names", nargs="*", help=f"benchmarks (default: all): {' '.join(SYNC_BENCHMARKS)}")
    p.add_argument("--samples", type=int, default=5)
    p.add_argument("--sample-ms", type=float, default=1000)
    p.add_argument("--warmup-ms", type=float, default=1000)
    args = p.parse_args(argv)
    names = args.names or list(SYNC_BENCHMARKS)
    unknown = [n for n in names if n not in SYNC_BENCHMARKS]
    if unknown:
        p.error(f"unknown benchmark(s): {' '.join(unknown)}")
    width = max(len(n) for n in names)
    print(f"{'bench':<{width}}  {'ms/op':>10}  {'datoms/s':>12}  datoms/op")
    for name in names:
        if name in SYNC_SETUP:
            SYNC_SETUP[name]()
        t = bench(SYNC_BENCHMARKS[name], samples=args.samples, sample_ms=args.sample_ms, warmup_ms=args.warmup_ms)
        n = datoms_per_op(name)
        rate = f"{n / t.median * 1000:12,.0f}" if n else f"{'-':>12}"
        print(f"{name:<{width}}  {t.median:10.4f}  {rate}  {n or '-'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
