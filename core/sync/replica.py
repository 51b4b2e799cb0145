"""The replica value and ``apply_delta``: a DataScript-flavored database kept equal to the server's.

A ``Replica`` holds the replica's confirmed database (DataScript flavor, local ids), the server ``t``
it reflects, the server schema it was derived from, the eid translation, where its data came from
(``db_id``), and its pending transactions: optimistic local writes the server has not answered yet.
``replica.view`` (what an application reads) is ``db`` with them applied on top, re-based whenever a
delta arrives (``core.sync.pending``).

``apply_delta`` writes the server's datoms straight into the replica's indexes (``core.db.apply_datoms``),
so the replica's datoms *are* the server's, tx ids included, and the cost grows with the delta, not
the database. Schema changes first rename datoms of renamed attributes and then re-derive the
replica schema, fixing index membership of the attributes whose properties changed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from heapq import merge
from itertools import repeat
from typing import Any

from pyrsistent import PMap, pmap

from ..db import DB, TX0, apply_datoms
from ..history import as_of, history, resolve_tx, since
from ..index import AttrIndex, HistoryIndexes, SortedIndex
from .delta import ALREADY_APPLIED, APPLIED, GAP, Delta, Outcome
from .eids import PROVISIONAL_BASE, EidMap, datoms_to_local, datoms_to_remote
from .errors import SyncError
from .pending import confirm, rebase
from .schema import Aliases, RefInfo, apply_aliases, apply_schema_delta, ref_info, replica_schema

_EMPTY: PMap = pmap()
NO_ALIASES: Aliases = _EMPTY


@dataclass(frozen=True, slots=True)
class Replica:
    """A replica: ``db`` (DataScript flavor, local ids) equal to the server's database at ``t``
    through ``eids``; ``server_schema`` is the server's ``DB.schema`` at ``t`` and ``aliases`` the old
    attribute names it still resolves (old -> current name). ``pending`` (``PendingTx``, oldest
    first) applied on ``db`` give ``pending_db`` (None: no pending, the view is ``db``);
    ``resolved`` maps confirmed provisional ids to local ids; ``next_provisional`` is the next free
    provisional id. ``base_t``: the ``t`` the replica was bootstrapped at, where its history
    starts, and ``base_db`` its confirmed database then (renames applied); ``db`` records every
    assertion and retraction since in its history indexes (None: it keeps no history)."""

    db: DB
    t: int
    server_schema: Mapping[str, Mapping[str, Any]]
    eids: EidMap
    refs: RefInfo
    db_id: str | None = None
    pending: tuple = ()
    aliases: Aliases = NO_ALIASES
    pending_db: DB | None = None
    resolved: PMap = _EMPTY
    next_provisional: int = PROVISIONAL_BASE
    base_t: int | None = None
    base_db: DB | None = None

    @property
    def view(self) -> DB:
        """What an application reads: the confirmed database with the pending transactions applied
        (re-based here when deltas were applied without it: ``apply_delta(..., rebase=False)``)."""
        if self.pending_db is not None:
            return self.pending_db
        return rebase(self).view if self.pending else self.db

    def __repr__(self) -> str:
        return f"<Replica {self.db_id or '?'} t={self.t} {len(self.db.eavt)} datoms {self.eids!r}>"

    def replace(self, **changes: Any) -> Replica:
        """A copy with some fields replaced."""
        return replace(self, **changes)


def server_datoms(replica: Replica) -> list[tuple]:
    """The replica's current datoms ``(e, a, v, tx)`` in server ids, in the replica's EAVT order
    (for comparing a replica with the server)."""
    ds = [(k[0], k[1], k[3], k[4]) for k in replica.db.eavt]
    return datoms_to_remote(replica.eids, replica.refs, ds)


def apply_delta(replica: Replica, delta: Delta, *, rebase: bool = True) -> tuple[Replica, Outcome]:
    """Apply ``delta`` to ``replica``: the new replica and what happened. A delta at or below the
    replica's ``t`` changes nothing (idempotent); one beyond ``t + 1`` is a gap: nothing changes and
    the outcome carries the replica's ``t`` to catch up from. Pending transactions are re-based on the
    new confirmed database (``rebase=False``: not yet, a later delta's will; the replica's ``view``
    is then computed on each use); the one the delta's origin names is confirmed
    (``Outcome.confirmed``). Raises ``SyncError`` if an id cannot be translated (a capped id space
    exhausted)."""
    t = replica.t
    if delta.t <= t:
        return replica, Outcome(ALREADY_APPLIED, t, delta.t)
    if delta.t > t + 1:
        return replica, Outcome(GAP, t, delta.t)
    db = replica.db
    server_schema, refs = replica.server_schema, replica.refs
    new_schema = None
    aliases, base_db = replica.aliases, replica.base_db
    if delta.schema:
        if delta.schema.renames:
            db = _rename(db, server_schema, delta.schema.renames)
            if base_db is not None:
                base_db = _rename(base_db, server_schema, delta.schema.renames)
        server_schema = apply_schema_delta(server_schema, delta.schema)
        aliases = pmap(apply_aliases(aliases, delta.schema, server_schema))
        refs = ref_info(server_schema)
        new_schema = replica_schema(server_schema)
    eids, local = datoms_to_local(replica.eids, refs, delta.datoms)
    tx = delta.tx
    db = apply_datoms(db, [(e, a, v, tx, added) for e, a, v, added in local], schema=new_schema, max_tx=tx)
    out = Replica(db, delta.t, server_schema, eids, refs, replica.db_id, replica.pending, aliases,
                  None, replica.resolved, replica.next_provisional, replica.base_t, base_db)
    confirmed = None
    if out.pending:
        out, confirmed = confirm(out, delta.origin, then_rebase=rebase)
    return out, Outcome(APPLIED, t, delta.t, confirmed)


def apply_deltas(replica: Replica, deltas: Any) -> tuple[Replica, list] | None:
    """Apply the consecutive ``deltas`` (the first at the replica's ``t + 1``, none changing the
    schema) in one go: their datoms written in one pass, each one's origin confirmed in order, the
    pending transactions re-based once. The replica ``apply_delta`` one after another gives, and each
    delta's confirmed ``PendingTx`` (or None); None when the deltas are not such a run (apply them
    one by one). The databases in between are never made: for whoever does not look at them."""
    t = replica.t
    if not deltas or any(d.t != t + i or d.schema for i, d in enumerate(deltas, 1)):
        return None
    refs, out = replica.refs, replica
    rows: list[tuple] = []
    confirmed = []
    for d in deltas:  # ids are assigned in the order one by one would assign them
        eids, local = datoms_to_local(out.eids, refs, d.datoms)
        tx = d.tx
        rows += [(e, a, v, tx, added) for e, a, v, added in local]
        out = replace(out, eids=eids, t=d.t, pending_db=None)
        c = None
        if out.pending:
            out, c = confirm(out, d.origin, then_rebase=False)
        confirmed.append(c)
    out = replace(out, db=apply_datoms(replica.db, rows, max_tx=deltas[-1].tx))
    return (rebase(out) if out.pending else out), confirmed


def apply_visible(replica: Replica, datoms: Any) -> Replica:
    """``replica`` with ``datoms`` (``(e, a, v, added)``, server ids) applied at its own ``t``, which
    does not move: what a change of scopes makes visible or takes away. Pending transactions are
    re-based on the new confirmed database."""
    eids, local = datoms_to_local(replica.eids, replica.refs, datoms)
    tx = replica.db.max_tx
    db = apply_datoms(replica.db, [(e, a, v, tx, added) for e, a, v, added in local], max_tx=tx)
    out = replace(replica, db=db, eids=eids, pending_db=None)
    return confirm(out, None)[0] if out.pending else out


def _rename(db: DB, server_schema: Mapping[str, Mapping[str, Any]], renames: tuple[tuple[str, str], ...]) -> DB:
    """``db`` with the datoms of each renamed attribute rewritten under its new name (same tx),
    history included, as the server did: the old names keep their index membership while they are
    moved."""
    mid = dict(server_schema)
    rewrites: list[tuple] = []
    for old, new in renames:
        if old in server_schema:
            mid[new] = server_schema[old]
        for e, _, _, v, tx in db.aevt.prefix_list((old,)):
            rewrites.append((e, old, v, tx, False))
            rewrites.append((e, new, v, tx, True))
    out = db
    if rewrites:
        plain = db if db.hist is None else db.replace(hist=None)
        out = apply_datoms(plain, rewrites, schema=replica_schema(mid), max_tx=db.max_tx, max_eid=db.max_eid)
    if db.hist is None:
        return out
    heavt, haevt = db.heavt.transient(), db.haevt.transient()
    for old, new in renames:
        for k in db.haevt.prefix_list((old,)):
            e, _, r, v, tx, added = k
            haevt.discard(k)
            heavt.discard(k)
            renamed = (e, new, r, v, tx, added)
            haevt.add(renamed)
            heavt.add(renamed)
    return out.replace(hist=HistoryIndexes(heavt.persistent(), haevt.persistent()))


def with_history(db: DB) -> DB:
    """``db`` recording every datom ``apply_datoms`` writes from now on in (empty) history indexes."""
    return db.replace(hist=HistoryIndexes())


# ------------------------------------------------------------------------------------------------
# Time travel over what the replica saw

BEFORE_HISTORY = "sync/before-history"
"""The error code for an ``as_of`` before the replica's history starts (its bootstrap ``t``)."""


def _history_db(replica: Replica) -> DB:
    """The confirmed database with its whole history: the datoms current at bootstrap as assertions
    (at their own tx), then every event since (built on demand: a bootstrap pays nothing for it)."""
    db, base = replica.db, replica.base_db
    if base is None or db.hist is None:
        raise SyncError("sync/no-history", "This replica keeps no history (built with history=False)", {})
    added = repeat((True,))
    heavt = SortedIndex.from_sorted(list(merge(map(tuple.__add__, base.eavt, added), db.heavt)))
    return db.replace(hist=HistoryIndexes(heavt, AttrIndex.from_sorted(heavt)))


def replica_as_of(replica: Replica, t: Any) -> DB:
    """The replica's database as it was right after transaction ``t`` (a basis ``t``, a tx id or a
    datetime), equal to the server's ``as_of`` through the id map; ``SyncError(BEFORE_HISTORY)`` for a
    ``t`` before the replica's bootstrap ``t`` (``replica.base_t``), which it never saw."""
    db = _history_db(replica)
    tx = resolve_tx(db, t)
    if tx < TX0 + replica.base_t:  # type: ignore[operator]
        raise SyncError(BEFORE_HISTORY,
                        f"t={tx - TX0} is before this replica's history, which starts at t={replica.base_t}",
                        {"t": tx - TX0, "base_t": replica.base_t})
    return as_of(db, tx)


def replica_since(replica: Replica, t: Any) -> DB:
    """The replica's current datoms added by transactions after ``t`` (any ``t``: every current datom
    keeps the tx that asserted it), equal to the server's ``since``."""
    return since(_history_db(replica), t)


def replica_history(replica: Replica) -> DB:
    """Every assertion and retraction the replica saw: exact after its bootstrap ``t`` (compose with
    ``since(db, replica.base_t)``); before it, only the assertions of the datoms current then."""
    return history(_history_db(replica))


__all__ = [
    "BEFORE_HISTORY",
    "Replica",
    "apply_delta",
    "apply_deltas",
    "apply_visible",
    "replica_as_of",
    "replica_history",
    "replica_since",
    "server_datoms",
    "with_history",
]
