"""Deltas: what one server transaction changed, as the minimal value a replica needs.

A ``Delta`` is computed from a Datomic-flavored ``TxReport``: the transaction's ``t`` (the sync
cursor), its tx id (``TX0 + t``), its ``db/txInstant``, its datoms as ``(e, a, v, added)`` with
attribute names (every datom of a transaction has the transaction's id, so it is not repeated), and
the schema change it made (``SchemaDelta``: empty unless it touched schema datoms). Deltas are
values on the wire too (``type: "delta"``); ``core.sync.codec`` encodes them once for every replica.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from typing import Any, ClassVar

from ..datomic import from_history
from ..db import DB, TX0, apply_datoms, datoms
from ..errors import DatsyncError
from ..history import history
from ..transact import TxReport
from .schema import NO_SCHEMA_CHANGE, SchemaDelta, schema_delta

DeltaDatom = tuple[int, str, Any, bool]
"""``(e, a, v, added)`` in server ids."""


@dataclass(frozen=True, slots=True)
class Origin:
    """Who submitted a transaction: the client's id and sequence number, and the tempids the server
    answered with (server ids). Sent only to the submitting client (other clients see no origin), so
    it recognises its own transaction in the stream."""

    client: str
    seq: int
    tempids: Any = None


@dataclass(frozen=True, slots=True)
class Delta:
    """One server transaction as a replica applies it (and as the ``delta`` message)."""

    TYPE: ClassVar[str] = "delta"

    t: int
    tx: int
    instant: _dt.datetime
    datoms: tuple[DeltaDatom, ...]
    schema: SchemaDelta = NO_SCHEMA_CHANGE
    origin: Origin | None = None

    def __repr__(self) -> str:
        extra = f" schema={dict(self.schema.changes)} renames={self.schema.renames}" if self.schema else ""
        if self.origin is not None:
            extra += f" origin={self.origin.client}/{self.origin.seq}"
        return f"<Delta t={self.t} {len(self.datoms)} datoms{extra}>"


def delta_from_report(report: TxReport) -> Delta:
    """The delta of a Datomic-flavored transaction report."""
    db = report.db_after
    if db.flavor != "datomic":
        raise DatsyncError("sync/flavor", "Deltas come from a Datomic-flavored server database", {})
    tx = db.max_tx
    instant = None
    datoms = []
    for d in report.tx_data:
        if d.a == "db/txInstant" and d.e == tx and d.added:
            instant = d.v
        datoms.append((d.e, d.a, d.v, d.added))
    if instant is None:  # the engine always asserts it; be defensive about hand-made reports
        raise DatsyncError("sync/no-instant", f"Transaction {tx} has no db/txInstant datom", {"tx": tx})
    return Delta(tx - TX0, tx, instant, tuple(datoms), schema_delta(report.db_before, db))


def history_events(events: list[tuple], delta: Delta) -> list[tuple]:
    """History events ``(e, a, v, tx, added)`` followed by ``delta``'s, as the server's history holds
    them: an ident rename in ``delta`` renames every earlier event of the old attribute (the server
    rewrites its history indexes), so ``core.datomic.from_history`` of the result equals the server's
    database. For rebuilding a server from a log of deltas."""
    out = events
    if delta.schema.renames:
        renames = dict(delta.schema.renames)
        out = [(e, renames.get(a, a), v, tx, added) for e, a, v, tx, added in events]
    tx = delta.tx
    return [*out, *((e, a, v, tx, added) for e, a, v, added in delta.datoms)]


def server_db_with(db: DB, delta: Delta) -> DB:
    """The server database ``db`` (Datomic flavor) after ``delta``, the next transaction another
    server committed: its datoms written straight in (no transaction re-run); a delta that changes
    the schema rebuilds the value from its history instead (rare, and renames rewrite history)."""
    if delta.schema:
        events = [tuple(d) for d in datoms(history(db), "eavt")]
        return from_history(history_events(events, delta))
    return apply_datoms(db, ((e, a, v, delta.tx, added) for e, a, v, added in delta.datoms), max_tx=delta.tx)


# ------------------------------------------------------------------------------------------------
# What applying a delta did


APPLIED = "applied"
ALREADY_APPLIED = "already-applied"
GAP = "gap"


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result of ``apply_delta``: ``kind`` is ``"applied"``, ``"already-applied"`` (the replica's
    ``t`` was already at or past the delta's: nothing changed) or ``"gap"`` (deltas are missing
    between ``replica_t`` and ``delta_t``: nothing changed, ask the server to catch up from
    ``replica_t``). ``confirmed``: the replica's pending transaction the delta committed (a
    ``PendingTx`` whose tempids are the local ids of the server's entities), if any."""

    kind: str
    replica_t: int
    delta_t: int
    confirmed: Any = None

    @property
    def applied(self) -> bool:
        return self.kind == APPLIED

    @property
    def is_gap(self) -> bool:
        return self.kind == GAP


__all__ = [
    "ALREADY_APPLIED", "APPLIED", "GAP", "Delta", "DeltaDatom", "Origin", "Outcome", "delta_from_report",
    "history_events",
]
