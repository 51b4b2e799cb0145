"""Memory of a replica holding about a million datoms: the process's RSS once it is built.

A child process builds a server database of generated people (the benchmark suite's generator,
continued past its 20k people until the database holds ``--datoms`` datoms), snapshots it and writes
the encoded snapshot messages to a temporary file, and the replica's base to a replica store file.
Two fresh processes, which never hold the server database, then build the replica as a client does
and report their resident set size (RSS) after the build, and its peak, from ``/proc/self/status``:

* ``bootstrap``: what a bootstrapping replica does with the snapshot messages as they arrive:
  decode each one, add its chunk, build the replica in bulk;
* ``store``: open the persisted replica (``ReplicaStore.load``).

    python -m datsync.shell.bench.replica_memory              # --datoms 1000000 --chunk 2000
"""

from __future__ import annotations

import argparse
import gc
import json
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_FRAME = struct.Struct("<I")


def _status_kb(field: str) -> int:
    """A ``VmRSS``-like field of ``/proc/self/status``, in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def write_snapshot(path: str, store_path: str, datoms: int, chunk: int) -> int:
    """Build a server database of about ``datoms`` datoms, write its encoded snapshot messages to
    ``path`` (each one length-prefixed) and its replica to a replica store at ``store_path``; return
    the number of datoms."""
    from datsync.core import empty_db, transact
    from datsync.core.datomic import EPOCH
    from datsync.core.sync import SnapshotEnd, encode, replica_of, snapshot

    from ..replica_store import ReplicaStore
    from .dataset import Datasets
    from .sync import SERVER_SCHEMA

    gen = Datasets(42)
    db = empty_db(SERVER_SCHEMA, flavor="datomic")
    while len(db.eavt) < datoms:
        people = [gen.random_man() for _ in range(10000)]
        db = transact(db, people, instant=EPOCH).db_after
    head, chunks = snapshot(db, chunk, db_id="bench")
    with open(path, "wb") as f:
        for msg in (head, *chunks, SnapshotEnd(head.t, head.chunks)):
            data = encode(msg)
            data = data.encode() if isinstance(data, str) else data
            f.write(_FRAME.pack(len(data)))
            f.write(data)
    store = ReplicaStore(store_path)
    store.set_base(replica_of(db, db_id="bench"))
    store.close()
    return head.datoms


def _frames(path: str):
    with open(path, "rb") as f:
        while header := f.read(_FRAME.size):
            yield f.read(_FRAME.unpack(header)[0])


def _measured(build) -> dict:
    """Run ``build()`` (it returns a replica) and report the process's memory around it."""
    gc.collect()
    base_kb = _status_kb("VmRSS")
    start = time.perf_counter()
    replica = build()
    gc.collect()
    seconds = time.perf_counter() - start
    rss_kb = _status_kb("VmRSS")
    n = len(replica.db.eavt)
    return {"datoms": n, "rss_mb": rss_kb / 1024, "base_mb": base_kb / 1024, "peak_mb": _status_kb("VmHWM") / 1024,
            "bytes_per_datom": (rss_kb - base_kb) * 1024 / n, "seconds": seconds}


def bootstrap_from_file(path: str) -> object:
    """The replica a client bootstraps from the snapshot messages in ``path``."""
    from datsync.core.sync import add_chunk, begin_snapshot, build_replica, decode

    frames = _frames(path)
    builder = begin_snapshot(decode(next(frames)))
    for data in frames:
        msg = decode(data)
        if not hasattr(msg, "datoms"):
            break
        builder = add_chunk(builder, msg)
    return build_replica(builder)


def open_store(path: str) -> object:
    """The replica a client opens from its store file at ``path``."""
    from ..replica_store import ReplicaStore

    store = ReplicaStore(path)
    try:
        return store.load().replica
    finally:
        store.close()


def main(argv: list[str] | None = None) -> int:
    """Write the data in a child process, build the replica both ways in fresh ones, print the figures."""
    p = argparse.ArgumentParser(prog="python -m datsync.shell.bench.replica_memory", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datoms", type=int, default=1_000_000, help="datoms of the database (default 1000000)")
    p.add_argument("--chunk", type=int, default=2000, help="datoms per snapshot chunk (default 2000)")
    p.add_argument("--write", nargs=2, metavar="FILE", help=argparse.SUPPRESS)  # the children's parts
    p.add_argument("--measure", nargs=2, metavar=("HOW", "FILE"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.write:
        print(write_snapshot(*args.write, args.datoms, args.chunk))
        return 0
    if args.measure:
        how, path = args.measure
        print(json.dumps(_measured(lambda: (bootstrap_from_file if how == "bootstrap" else open_store)(path))))
        return 0
    me = [sys.executable, "-m", "datsync.shell.bench.replica_memory"]
    with tempfile.TemporaryDirectory() as tmp:
        snap, store = str(Path(tmp) / "snapshot.bin"), str(Path(tmp) / "people.replica")
        subprocess.run([*me, "--write", snap, store, "--datoms", str(args.datoms), "--chunk", str(args.chunk)],
                       check=True, stdout=subprocess.DEVNULL)
        for how, path in (("bootstrap", snap), ("store", store)):
            out = subprocess.run([*me, "--measure", how, path], check=True, capture_output=True, text=True).stdout
            r = json.loads(out)
            print(f"{how:9s} replica of {r['datoms']:,} datoms: RSS {r['rss_mb']:.0f} MB after the build "
                  f"(peak {r['peak_mb']:.0f} MB; {r['base_mb']:.0f} MB before it: interpreter and modules), "
                  f"{r['bytes_per_datom']:.0f} bytes per datom, {r['seconds']:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
