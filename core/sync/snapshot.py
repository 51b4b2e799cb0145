"""Bootstrap: a snapshot of the server database at its basis ``t``, streamed in chunks, and a replica
built from the chunks in bulk.

``snapshot(db, chunk_size)`` returns the snapshot's header (``SnapshotBegin``: ``t``, tx id,
``max_eid``, datom and chunk counts, and the old names of renamed attributes, which the server still
resolves and no datom holds) and a lazy iterator of ``SnapshotChunk`` messages of at most
``chunk_size`` datoms ``(e, a, v, tx)`` each: schema datoms first (every datom of a schema attribute,
``db/ident`` included, so a consumer knows the schema before the data), then all the others in EAVT
order. The database is an immutable value, so iterating lazily is safe while the server moves on.

On the replica side ``SnapshotBuilder`` accumulates chunks (a value; ``add_chunk`` returns a new
one; chunks may come in any order, duplicates are ignored) and ``build_replica`` derives the server
schema from the schema datoms, translates ids, and bulk-builds the replica's indexes
(``core.db.make_db``: sorting, not per-datom inserts).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any, ClassVar

from pyrsistent import PMap, pmap

from ..datomic import SCHEMA_ATTRS
from ..db import DB, TX0, make_db, make_db_from_columns
from ..history import basis_t
from ..values import RANK_TUPLE, OrderedTuple
from .eids import EidMap, datoms_to_local
from .errors import ProtocolError
from .replica import Replica, with_history
from .schema import ident_aliases, ref_info, replica_schema, server_schema_from_datoms

SnapshotDatom = tuple[int, str, object, int]
"""``(e, a, v, tx)`` in server ids."""

DEFAULT_CHUNK_SIZE = 2000
_EMPTY: PMap = pmap()
_SHAREABLE = frozenset({int, str})
"""Value types a builder shares (equal and hashable alike: ``True == 1`` keeps them apart by type)."""


@dataclass(frozen=True, slots=True)
class SnapshotBegin:
    """The header of a snapshot (and the ``snapshot-begin`` message)."""

    TYPE: ClassVar[str] = "snapshot-begin"

    t: int
    tx: int
    max_eid: int
    datoms: int
    chunks: int
    db_id: str | None = None
    aliases: tuple[tuple[str, str], ...] = ()
    """The old attribute names the server still resolves, as ``(old, current)`` pairs."""


@dataclass(frozen=True, slots=True)
class SnapshotChunk:
    """Chunk number ``seq`` (from 0) of the snapshot at ``t`` (the ``snapshot-chunk`` message)."""

    TYPE: ClassVar[str] = "snapshot-chunk"

    t: int
    seq: int
    datoms: tuple[SnapshotDatom, ...]


@dataclass(frozen=True, slots=True)
class SnapshotEnd:
    """The end of the snapshot at ``t`` (the ``snapshot-end`` message)."""

    TYPE: ClassVar[str] = "snapshot-end"

    t: int
    chunks: int


def _plain(v: object) -> object:
    if type(v) is OrderedTuple:
        return tuple(_plain(x) for x in v)
    return v


def snapshot_datoms(db: DB, keep: Callable[[int, str], bool] | None = None) -> Iterator[SnapshotDatom]:
    """Every current datom of ``db`` as ``(e, a, v, tx)``: schema datoms first, then the rest attribute
    by attribute, in AEVT order (only those ``keep(e, a)`` accepts, when given: a replica's share
    under a policy). A replica builds its index keys in the order they arrive, and keys made
    attribute by attribute lie together in memory, where a query's scan of an attribute reads them
    (``core.index.lay_out_by_attribute``)."""
    if db.is_view:
        raise ValueError("snapshot of a view: take it of the database value itself")
    schema_attrs = sorted(SCHEMA_ATTRS)
    for a in schema_attrs:
        for k in db.aevt.prefix((a,)):
            yield (k[0], a, _plain(k[3]) if k[2] == RANK_TUPLE else k[3], k[4])
    skip = frozenset(schema_attrs)
    for a in db.aevt.attributes():  # attribute by attribute: a replica makes each one's keys together
        if a in skip:
            continue
        for e, _, r, v, tx in db.aevt.attribute(a):
            if keep is None or keep(e, a):
                yield (e, a, _plain(v) if r == RANK_TUPLE else v, tx)


def snapshot(db: DB, chunk_size: int = DEFAULT_CHUNK_SIZE, *, db_id: str | None = None,
             keep: Callable[[int, str], bool] | None = None) -> tuple[SnapshotBegin, Iterator[SnapshotChunk]]:
    """The snapshot of the server database ``db`` at its basis ``t``: its header and a lazy
    iterator of chunks of at most ``chunk_size`` datoms (end with ``SnapshotEnd(t, header.chunks)``).
    ``keep(e, a)``: only the non-schema datoms it accepts (counted up front, so not lazy then)."""
    if chunk_size < 1:
        raise ValueError("chunk_size must be positive")
    kept = None if keep is None else list(snapshot_datoms(db, keep))
    n = len(db.eavt) if kept is None else len(kept)
    t = basis_t(db) if db.flavor == "datomic" else db.max_tx - TX0
    aliases = tuple(sorted(ident_aliases(db).items())) if db.flavor == "datomic" else ()
    head = SnapshotBegin(t, db.max_tx, db.max_eid, n, -(-n // chunk_size), db_id, aliases)

    def chunks() -> Iterator[SnapshotChunk]:
        buf: list[SnapshotDatom] = []
        seq = 0
        for d in snapshot_datoms(db) if kept is None else kept:
            buf.append(d)
            if len(buf) == chunk_size:
                yield SnapshotChunk(t, seq, tuple(buf))
                seq += 1
                buf = []
        if buf:
            yield SnapshotChunk(t, seq, tuple(buf))

    return head, chunks()


@dataclass(frozen=True, slots=True)
class SnapshotBuilder:
    """A snapshot being received: its header and the chunks so far (``seq`` -> the chunk's datoms as
    four columns ``(es, as, vs, txs)``: four pointers a datom until the build, not a tuple each).
    Chunks may arrive in any order and more than once: a snapshot at a given ``t`` is the same data
    every time. ``shared`` makes equal ids and values one object as chunks arrive (a decoded message
    holds one object per occurrence): it only ever changes which equal object a datom holds."""

    head: SnapshotBegin
    chunks: PMap = _EMPTY
    count: int = 0
    shared: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def complete(self) -> bool:
        """True once every chunk the header announced has arrived."""
        return len(self.chunks) == self.head.chunks and self.count == self.head.datoms

    @property
    def received(self) -> int:
        """How many distinct chunks have arrived."""
        return len(self.chunks)


def begin_snapshot(head: SnapshotBegin) -> SnapshotBuilder:
    """An empty builder for the snapshot ``head`` announces."""
    return SnapshotBuilder(head, _EMPTY, 0, {})


def add_chunk(builder: SnapshotBuilder, chunk: SnapshotChunk) -> SnapshotBuilder:
    """``builder`` with ``chunk`` added (unchanged if it already has it); ``ProtocolError`` if the
    chunk belongs to another snapshot or is beyond the announced count."""
    head = builder.head
    if chunk.t != head.t or not 0 <= chunk.seq < head.chunks:
        raise ProtocolError(
            "protocol/unexpected",
            f"Snapshot chunk {chunk.seq} at t={chunk.t} does not belong to the snapshot at t={head.t} "
            f"({head.chunks} chunks)",
            {"t": chunk.t, "seq": chunk.seq},
        )
    if chunk.seq in builder.chunks:
        return builder
    if builder.count + len(chunk.datoms) > head.datoms:
        raise ProtocolError("protocol/unexpected", f"Snapshot at t={head.t} has more datoms than announced",
                            {"t": head.t})
    share = builder.shared.setdefault
    ds = chunk.datoms
    columns = (tuple(share(d[0], d[0]) for d in ds), tuple(share(d[1], d[1]) for d in ds),
               tuple(share(v, v) if type(v) in _SHAREABLE else v for v in (d[2] for d in ds)),
               tuple(share(d[3], d[3]) for d in ds))
    return SnapshotBuilder(head, builder.chunks.set(chunk.seq, columns), builder.count + len(ds), builder.shared)


def builder_datoms(builder: SnapshotBuilder) -> Iterable[SnapshotDatom]:
    """The datoms ``(e, a, v, tx)`` the builder holds, in the snapshot's order (made as iterated:
    each tuple lives only as long as its reader keeps it); iterable again and again."""
    chunks, n = builder.chunks, builder.head.chunks
    return _Datoms([chunks[seq] for seq in range(n) if seq in chunks])


class _Datoms:
    """Re-iterable datoms over chunk columns."""

    __slots__ = ("columns",)

    def __init__(self, columns: list[tuple]):
        self.columns = columns

    def __iter__(self) -> Iterator[SnapshotDatom]:
        for es, as_, vs, txs in self.columns:
            yield from zip(es, as_, vs, txs)


def build_replica(builder: SnapshotBuilder, eids: EidMap | None = None, *, history: bool = True) -> Replica:
    """The replica a complete snapshot describes, built in bulk (``ProtocolError`` if incomplete or
    inconsistent; ``SyncError`` if a capped id space cannot hold its ids); ``history``: it keeps the
    history of what it sees from now on (time travel)."""
    if not builder.complete:
        raise ProtocolError(
            "protocol/unexpected",
            f"Snapshot at t={builder.head.t} is incomplete: {builder.received} of {builder.head.chunks} chunks, "
            f"{builder.count} of {builder.head.datoms} datoms",
            {"t": builder.head.t},
        )
    return replica_from_datoms(builder_datoms(builder), builder.head,
                               eids if eids is not None else EidMap.identity(), history=history)


def replica_from_datoms(datoms: Iterable[SnapshotDatom], head: SnapshotBegin, eids: EidMap, *,
                        history: bool = True) -> Replica:
    """Bulk-build the replica of the server datoms ``(e, a, v, tx)`` at ``head.t`` (``history``: keeping
    history from there); ``datoms`` is read twice (a list, or re-iterable)."""
    aliases = dict(head.aliases)
    server_schema = server_schema_from_datoms((d for d in datoms if d[1] in SCHEMA_ATTRS), aliases)
    refs = ref_info(server_schema)
    eids, local = (eids, datoms) if eids.is_identity else datoms_to_local(eids, refs, datoms)
    max_eid = head.max_eid if eids.is_identity else None
    db = make_db(replica_schema(server_schema), "datascript", local, max_eid=max_eid, max_tx=head.tx)
    return _replica(db, head, server_schema, eids, aliases, history)


def replica_from_columns(columns: list[tuple[str, list, list, list]], eavt_order: list[int],
                         head: SnapshotBegin, *, history: bool = True) -> Replica:
    """``replica_from_datoms`` of server datoms in columns sorted as indexes (``make_db_from_columns``),
    with local ids equal to the server's: a replica kept in a file opens without sorting."""
    aliases = dict(head.aliases)
    schema_datoms = [d for a, es, vs, txs in columns if a in SCHEMA_ATTRS for d in zip(es, repeat(a), vs, txs)]
    server_schema = server_schema_from_datoms(schema_datoms, aliases)
    db = make_db_from_columns(replica_schema(server_schema), "datascript", columns, eavt_order,
                              max_eid=head.max_eid, max_tx=head.tx)
    return _replica(db, head, server_schema, EidMap.identity(), aliases, history)


def _replica(db: DB, head: SnapshotBegin, server_schema: Any, eids: EidMap, aliases: dict, history: bool) -> Replica:
    if history:
        db = with_history(db)
    return Replica(db, head.t, server_schema, eids, ref_info(server_schema), head.db_id, aliases=pmap(aliases),
                   base_t=head.t if history else None, base_db=db if history else None)


def replica_of(db: DB, eids: EidMap | None = None, *, db_id: str | None = None, history: bool = True) -> Replica:
    """The replica of the server database ``db`` at its basis ``t`` (a snapshot without the wire)."""
    head, chunks = snapshot(db, max(1, len(db.eavt)), db_id=db_id)
    datoms = [d for c in chunks for d in c.datoms]
    return replica_from_datoms(datoms, head, eids if eids is not None else EidMap.identity(), history=history)


def chunk_all(head: SnapshotBegin, chunks: Iterable[SnapshotChunk]) -> list[object]:
    """The whole snapshot as messages: header, chunks, end (for in-memory use and tests)."""
    return [head, *chunks, SnapshotEnd(head.t, head.chunks)]


__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "SnapshotBegin",
    "SnapshotBuilder",
    "SnapshotChunk",
    "SnapshotDatom",
    "SnapshotEnd",
    "add_chunk",
    "begin_snapshot",
    "build_replica",
    "chunk_all",
    "replica_from_columns",
    "replica_from_datoms",
    "replica_of",
    "snapshot",
    "snapshot_datoms",
]
