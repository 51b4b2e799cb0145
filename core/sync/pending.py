"""Pending transactions: a replica's optimistic local writes, re-based on every server change.

A replica's ``db`` is the confirmed database, exactly the server's at ``t``. Its ``pending``
transactions (oldest first) are the application's submissions the server has not answered yet, each
with a client-chosen id ``(client, seq)``; ``replica.view`` is ``db`` with them applied on top, in
order: what an application reads.

* ``add_pending(replica, tx_data, client, seq)`` queues a transaction and applies it on the view at
  once; its tempids get provisional ids (``PROVISIONAL_BASE`` upward: never a server id).
* ``apply_delta`` confirms the pending transaction whose ``(client, seq)`` is the delta's origin: it
  leaves the queue, and its provisional ids map to the local ids of the server's entities
  everywhere: in the view, in later pending transactions that refer to them (their tx data is
  rewritten), and through ``resolve(replica, id)`` for ids the application kept. The rest is re-based.
* ``reject(replica, client, seq, code, message)`` drops one and re-bases the rest: no trace left.
* ``rebase`` re-applies the queue on the confirmed database. A pending transaction that no longer
  applies (its ``db/cas`` fails now, say, or it refers to a new entity of a rejected transaction)
  stays queued, the server decides, and carries ``conflict``: the local error's code and message.
  Provisional ids are stable across rebases.
* ``carry_pending(old, new)``: a replica bootstrapped again keeps the old one's queue.

The view applies transactions with the replica's (DataScript) semantics, attribute names resolved as
the server resolves them; the server's answer is what counts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from pyrsistent import PMap, pmap

from ..db import DB, TX0, apply_datoms
from ..errors import DatsyncError
from ..flavor import transact
from ..schema import TYPE_REF
from ..transact import CURRENT_TX_KEY, is_tx_tempid
from .delta import Origin
from .eids import is_provisional, tx_ids, value_ids
from .errors import SyncError

if TYPE_CHECKING:
    from .replica import Replica

AUTO_TEMPID = "datsync.pending/"
"""The prefix of the tempids given to map forms without ``db/id`` (so every new entity of a pending
transaction has a tempid the server's answer names)."""

_EMPTY: PMap = pmap()


@dataclass(frozen=True, slots=True)
class PendingTx:
    """One pending transaction: its id ``(client, seq)``, its tx data (local ids; every map form has a
    ``db/id``), its tempids -> ids in the view (provisional ids for new entities), the provisional ids
    it owns (allocated to it, in order), and ``conflict``: ``(code, message)`` when it does not apply
    on the current confirmed database, else None."""

    client: str
    seq: int
    tx_data: tuple
    tempids: PMap = _EMPTY
    provisional: tuple[int, ...] = ()
    conflict: tuple[str, str] | None = None
    provisional_refs: frozenset | None = None
    """The provisional ids ``tx_data`` refers to (None: not known), so a confirmation rewrites only
    the transactions that refer to its new entities."""
    view_datoms: tuple | None = field(default=None, compare=False, repr=False)
    """What it wrote in the view, ``(e, a, v)`` assertions on its own new entities, when that is what
    it writes on any confirmed database (``_writes_alike``): a re-base writes them again at its new
    place instead of transacting it again. None: transacted again on every re-base."""
    view_schema: Any = field(default=None, compare=False, repr=False)
    """The server schema ``view_datoms`` were written under (another one: transacted again)."""

    @property
    def key(self) -> tuple[str, int]:
        """``(client, seq)``."""
        return (self.client, self.seq)


def find_pending(replica: Replica, client: str, seq: int) -> PendingTx | None:
    """The pending transaction ``(client, seq)`` of ``replica``, if queued."""
    for p in replica.pending:
        if p.seq == seq and p.client == client:
            return p
    return None


def resolve(replica: Replica, eid: Any) -> Any:
    """The id ``eid`` stands for now: the local id of the server's entity for a confirmed provisional
    id, else ``eid`` itself."""
    return replica.resolved.get(eid, eid) if is_provisional(eid) else eid


def add_pending(replica: Replica, tx_data: Any, client: str, seq: int) -> tuple[Replica, PendingTx]:
    """Queue ``tx_data`` (local ids, the application's tempids) as the pending transaction
    ``(client, seq)`` and apply it on the view: the new replica and the queued ``PendingTx`` (its
    ``tempids`` are what the application gets at once; ``conflict`` is set if it does not apply
    locally). ``SyncError("sync/duplicate-pending")`` if ``(client, seq)`` is already queued."""
    if find_pending(replica, client, seq) is not None:
        raise SyncError("sync/duplicate-pending", f"Transaction {client}/{seq} is already pending",
                        {"client": client, "seq": seq})
    if not isinstance(tx_data, list | tuple):
        raise SyncError("sync/invalid-tx", f"Transaction data is a list of forms, got {type(tx_data).__name__}", {})
    n = iter(range(1 << 62))
    resolved = replica.resolved
    refs: set[int] = set()

    def local(x: int) -> int:
        x = resolved.get(x, x)
        if is_provisional(x):
            refs.add(x)
        return x

    data = tx_ids(replica.refs, replica.server_schema, replica.aliases, list(tx_data), local,
                  tempid=lambda: f"{AUTO_TEMPID}{next(n)}")
    p = PendingTx(client, seq, tuple(data), provisional_refs=frozenset(refs))
    live = {x for q in replica.pending if q.conflict is None for x in q.provisional}
    view, p, nxt = _apply(replica, _without_history(replica.view), p, replica.next_provisional, live)
    return replica.replace(pending=(*replica.pending, p), pending_db=view, next_provisional=nxt), p


def reject(replica: Replica, client: str, seq: int) -> tuple[Replica, PendingTx | None]:
    """``replica`` without the pending transaction ``(client, seq)`` (the server refused it), the
    rest re-based; and the dropped one (None if it was not queued)."""
    p = find_pending(replica, client, seq)
    if p is None:
        return replica, None
    return rebase(replica.replace(pending=tuple(x for x in replica.pending if x is not p))), p


def rebase(replica: Replica) -> Replica:
    """Re-apply the pending transactions, in order, on the confirmed database: the new view; a
    transaction that does not apply stays queued with ``conflict`` set (and is skipped in the view)."""
    if not replica.pending:
        return replica.replace(pending_db=None) if replica.pending_db is not None else replica
    schema = replica.server_schema
    if all(p.view_datoms is not None and p.view_schema is schema for p in replica.pending):
        return replica.replace(pending_db=_write_again(replica))
    view, nxt = _without_history(replica.db), replica.next_provisional
    out = []
    live: set[int] = set()
    for p in replica.pending:
        view, p, nxt = _apply(replica, view, p, nxt, live)
        if p.conflict is None:
            live.update(p.provisional)
        out.append(p)
    return replica.replace(pending=tuple(out), pending_db=view, next_provisional=nxt)


def needs_rebase(replica: Replica) -> bool:
    """Were deltas applied to ``replica`` without re-basing its pending transactions on them
    (``apply_delta(..., rebase=False)``)? Its ``view`` is then computed on each use."""
    return replica.pending_db is None and bool(replica.pending)


def confirm(replica: Replica, origin: Origin | None, *, then_rebase: bool = True) -> tuple[Replica, PendingTx | None]:
    """After the delta with ``origin`` is applied to the confirmed database: the pending transaction
    it commits leaves the queue and its provisional ids map to the server's entities (in
    ``replica.resolved``, in later pending transactions); then the queue is re-based (unless
    ``then_rebase`` is False: a later delta's will). Returns the replica and the confirmed
    ``PendingTx`` with its tempids as local ids (None if none)."""
    p = find_pending(replica, origin.client, origin.seq) if origin is not None else None
    if p is None:
        return (rebase(replica) if then_rebase else replica), None
    eids = replica.eids
    answer = origin.tempids or {}
    eids = eids.assign(v for v in answer.values() if type(v) is int)
    mapping: dict[int, int] = {}
    tempids: dict[Any, Any] = {}
    for t, pid in p.tempids.items():
        server = answer.get(t)
        if server is not None:
            tempids[t] = eids.to_local(server)
            if pid in p.provisional:
                mapping[pid] = tempids[t]
        else:
            tempids[t] = pid
    rest = tuple(_remap(replica, x, mapping) for x in replica.pending if x is not p)
    replica = replica.replace(eids=eids, pending=rest, resolved=replica.resolved.update(mapping))
    if rest and not then_rebase:
        replica = replica.replace(pending_db=None)
    return (rebase(replica) if then_rebase else replica), replace(p, tempids=pmap(tempids))


def carry_pending(old: Replica, new: Replica) -> Replica:
    """The replica ``new`` (bootstrapped again) with ``old``'s pending transactions, resolved and
    provisional ids, re-based on it. Local ids in the queue and in ``resolved`` are translated through
    the server's ids when the two replicas' id maps differ (``SyncError`` if one has no server id)."""
    pending, resolved = old.pending, old.resolved
    if old.eids != new.eids and (pending or resolved):
        seen = [x for p in pending for x in ids_in_tx(old, p.tx_data)] + list(resolved.values())
        eids = new.eids.assign(old.eids.to_remote(x) for x in seen if not is_provisional(x))

        def move(x: int) -> int:
            return x if is_provisional(x) else eids.to_local(old.eids.to_remote(x))

        new = new.replace(eids=eids)
        pending = tuple(
            replace(p, tx_data=tuple(tx_ids(old.refs, old.server_schema, old.aliases, list(p.tx_data), move)))
            for p in pending
        )
        resolved = pmap({x: move(e) for x, e in resolved.items()})
    return rebase(new.replace(pending=pending, resolved=resolved,
                              next_provisional=max(old.next_provisional, new.next_provisional)))


# ------------------------------------------------------------------------------------------------


def _without_history(db: DB) -> DB:
    """The view keeps no history: time travel is over the confirmed database."""
    return db if db.hist is None else db.replace(hist=None)


def ids_in_tx(replica: Replica, tx_data: Iterable) -> list[int]:
    """Every entity id (positive ints in id positions) in the tx data ``tx_data`` of ``replica``."""
    seen: list[int] = []
    tx_ids(replica.refs, replica.server_schema, replica.aliases, list(tx_data), lambda x: seen.append(x) or x)
    return seen


def _remap(replica: Replica, p: PendingTx, mapping: dict[int, int]) -> PendingTx:
    """``p`` with the provisional ids in ``mapping`` replaced by the ids they resolved to."""
    if not mapping:
        return p
    refs = p.provisional_refs
    in_data = refs is None or not refs.isdisjoint(mapping)
    if not in_data and not any(e in mapping for e in p.tempids.values()):
        return p
    f = lambda x: mapping.get(x, x)
    data = tuple(tx_ids(replica.refs, replica.server_schema, replica.aliases, list(p.tx_data), f)) if in_data \
        else p.tx_data
    tempids = pmap({t: mapping.get(e, e) for t, e in p.tempids.items()})
    return replace(p, tx_data=data, tempids=tempids, view_datoms=None,
                   provisional_refs=None if refs is None else refs.difference(mapping))


def _apply(replica: Replica, view: DB, p: PendingTx, nxt: int, live: set[int]) -> tuple[DB, PendingTx, int]:
    """Apply ``p`` on ``view``: the new view, ``p`` with its tempids and conflict updated, and the next
    free provisional id. New entities get ``p``'s provisional ids again (new ones if it has none). A
    transaction that refers to a provisional id no earlier transaction in the view holds (its
    transaction was rejected, or conflicts) does not apply: ``sync/provisional-id``.

    The transaction allocates the provisional ids itself (one index write); when its result is not
    exactly what relabelling a plain transaction gives (see ``_provisional_ids``), it is transacted
    again plainly and relabelled."""
    missing = []

    def check(x: int) -> int:
        if is_provisional(x) and x not in live:
            missing.append(x)
        return x

    local = tx_ids(replica.refs, replica.server_schema, replica.aliases, list(p.tx_data), check, names=True)
    base_max = view.max_eid
    try:
        if missing:
            x = missing[0]
            raise SyncError("sync/provisional-id", f"Entity {x} of an earlier pending transaction is not in the view",
                            {"id": x})
        found = _transact_at_provisional_ids(view, local, p, nxt)
        if found is None:
            report = transact(view, local)
            relabel, tempids, own, nxt_after = _provisional_ids(p, report, lambda e: base_max < e < TX0, nxt)
        else:
            report, tempids, own, nxt_after = found
            relabel = {}
    except DatsyncError as e:
        conflict = (e.code, e.message)
        return view, (p if p.conflict == conflict else replace(p, conflict=conflict, view_datoms=None)), nxt
    nxt = nxt_after
    refs = replica.refs
    datoms = [(d.e, d.a, d.v, d.tx, d.added) for d in report.tx_data]
    if relabel:
        f = lambda x: relabel.get(x, x)
        datoms = [(f(e), a, value_ids(refs, a, v, f) if refs.holds_ids(a) else v, tx, added)
                  for e, a, v, tx, added in datoms]
        view = apply_datoms(view, datoms, max_eid=base_max, max_tx=report.db_after.max_tx)
    else:  # no entity to relabel: the transaction's own result is the view
        view = report.db_after
    tempids_p = pmap(tempids)
    written = _writes_alike(replica, local, datoms, own)
    if tempids_p != p.tempids or own != p.provisional or p.conflict is not None or p.view_datoms != written \
            or p.view_schema is not replica.server_schema:
        p = replace(p, tempids=tempids_p, provisional=own, conflict=None, view_datoms=written,
                    view_schema=replica.server_schema)
    return view, p, nxt


def _transact_at_provisional_ids(view: DB, tx_data: list, p: PendingTx, nxt: int) -> tuple | None:
    """``p``'s transaction (``tx_data``) on ``view`` with its new entities at their provisional ids
    from the start: ``(report, tempids, provisional ids owned, next free one)`` when that is exactly
    what relabelling the plain transaction gives (same ids, the view's ``max_eid`` unchanged), else
    None (an error, an entity id above ``max_eid`` given explicitly, another flavor...)."""
    if view.flavor != "datascript":
        return None
    allocator = _ProvisionalAllocator(p, nxt)
    try:
        report = transact(view, tx_data, new_eid=allocator)
    except DatsyncError:
        return None  # its message may name the ids: the plain transaction says what the conflict is
    if report.db_after.max_eid != view.max_eid:
        return None
    relabel, tempids, own, nxt = _provisional_ids(p, report, allocator.issued.__contains__, nxt)
    if any(k != v for k, v in relabel.items()):
        return None
    return report, tempids, own, nxt


class _ProvisionalAllocator:
    """``new_eid`` for a pending transaction's transact: the provisional id ``_provisional_ids``
    would relabel the new entity of each tempid to (the one it had, a free one it owns, or the next
    new one), so the transaction writes its datoms at their provisional ids at once."""

    __slots__ = ("free", "issued", "nxt", "own", "tempids")

    def __init__(self, p: PendingTx, nxt: int):
        held = set(p.tempids.values())
        self.tempids = p.tempids
        self.own = set(p.provisional)
        self.free = [x for x in p.provisional if x not in held]
        self.nxt = nxt
        self.issued: set[int] = set()

    def __call__(self, tempid: Any) -> int:
        eid = self.tempids.get(tempid)
        if eid not in self.own or eid in self.issued:
            if self.free:
                eid = self.free.pop(0)
            else:
                eid, self.nxt = self.nxt, self.nxt + 1
        self.issued.add(eid)
        return eid


def _provisional_ids(p: PendingTx, report: Any, is_new: Callable[[int], bool],
                     nxt: int) -> tuple[dict[int, int], dict[Any, Any], tuple[int, ...], int]:
    """The provisional ids of the new entities (``is_new``) of ``report``, ``p``'s transaction: the
    relabelling ``{id: provisional id}``, the tempids, the provisional ids ``p`` owns, and the next
    free one. A tempid keeps the provisional id it had, else gets a free one ``p`` owns, else a new
    one from ``nxt``; then the new entities no tempid names, in datom order."""
    owned = set(p.provisional)
    added: list[int] = []
    held = set(p.tempids.values())
    free = [x for x in p.provisional if x not in held]
    relabel: dict[int, int] = {}
    given: set[int] = set()
    tempids: dict[Any, Any] = {}
    for t, e in report.tempids.items():
        if t == CURRENT_TX_KEY or is_tx_tempid(t):
            continue
        if is_new(e):
            if e not in relabel:
                old = p.tempids.get(t)
                if old not in owned or old in given:
                    old = free.pop(0) if free else None
                if old is None:
                    old, nxt = nxt, nxt + 1
                    added.append(old)
                relabel[e] = old
                given.add(old)
            tempids[t] = relabel[e]
        else:
            tempids[t] = e
    for d in report.tx_data:
        e = d.e
        if is_new(e) and e not in relabel:
            if free:
                relabel[e] = free.pop(0)
            else:
                relabel[e], nxt = nxt, nxt + 1
                added.append(relabel[e])
    return relabel, tempids, (*p.provisional, *added) if added else p.provisional, nxt


_READS_THE_DB = ("db/unique", "db/tupleAttrs", "db/tupleType", "db/tupleTypes", "db/isComponent")
"""Attribute properties under which what an assertion writes depends on what the database holds
(an upsert, a uniqueness check, a derived tuple, a component) or that make its value an entity id."""


def _writes_alike(replica: Replica, tx_data: list, datoms: list, own: tuple[int, ...]) -> tuple | None:
    """``datoms`` (the ``(e, a, v, tx, added)`` a pending transaction wrote in the view) as ``(e, a,
    v)`` when it writes the same on any confirmed database of the same schema: it is map forms
    only, each on a tempid, of plain values of attributes that read nothing (no unique, ref, tuple,
    component or schema attribute), and it wrote one assertion per value, on its own new entities.
    Else None."""
    schema = replica.server_schema
    values = 0
    for form in tx_data:
        if type(form) is not dict or type(form.get("db/id")) is not str or is_tx_tempid(form["db/id"]):
            return None
        for a, v in form.items():
            if a == "db/id":
                continue
            if type(a) is not str or a.startswith(("db/", "db.")) or a.rpartition("/")[2].startswith("_") \
                    or isinstance(v, list | tuple | set | frozenset | dict) or v is None:
                return None
            props = schema.get(a)
            if props is not None and (props.get("db/valueType") == TYPE_REF or any(k in props for k in _READS_THE_DB)):
                return None
            values += 1
    if len(datoms) != values or any(not added or e not in own for e, _, _, _, added in datoms):
        return None
    return tuple((e, a, v) for e, a, v, _, _ in datoms)


def _write_again(replica: Replica) -> DB:
    """The view when every pending transaction writes what it wrote before (``view_datoms``): their
    datoms on the confirmed database, each at the transaction id a transaction would give it."""
    db = replica.db
    tx = db.max_tx
    rows = []
    for p in replica.pending:
        tx += 1
        rows += [(e, a, v, tx, True) for e, a, v in p.view_datoms]  # type: ignore[union-attr]
    return apply_datoms(_without_history(db), rows, max_eid=db.max_eid, max_tx=tx)


__all__ = [
    "AUTO_TEMPID",
    "PendingTx",
    "add_pending",
    "carry_pending",
    "confirm",
    "find_pending",
    "ids_in_tx",
    "needs_rebase",
    "rebase",
    "reject",
    "resolve",
]
