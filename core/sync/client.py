"""The client side of the protocol (a replica's connection), as a sans-I/O state machine.

``client_step(session, event) -> (session, effects)``. The session holds the ``Replica``; the shell
feeds it the transport's events, the application's transactions (``SubmitTx``) and timer ticks,
and carries out its effects (``Send``, ``Close``, ``SetTimer``, ``Notify`` for the application).

Phases::

    closed --Opened--> handshake (hello sent, with the replica's t and db id if it has one)
    handshake --welcome(resume)--> live;  --welcome(bootstrap)--> bootstrapping
    bootstrapping --snapshot-begin, chunks (any order)--> live (the replica is rebuilt in bulk)
    live --delta--> live (applied, already applied: ignored, or a gap: ``sync`` from the replica's t)
    live --resync or snapshot-begin--> bootstrapping
    any --Closed, timeout, malformed bytes--> closed (the replica is kept: reconnect resumes from its t)

Exactly-once queue (``ClientConfig.client_id`` set): ``SubmitTx`` is queued (``Queued``: the
request, its ``seq``, its tx data) even while offline, notified ``tx-queued``, and sent as
``submit(client, seq)`` whenever the session is live: again after every reconnect, in order, until
the answer arrives. The server commits a submission at most once and answers a resubmission with the
original ``t`` and tempids, so a dropped connection never leaves a transaction's outcome unknown.
The delta of the client's own submission carries its ``origin``: it settles the queued entry at
once (``tx-ok``), whether or not the ``tx-ok`` answer made it. Without a client id a connection lost
before the answer notifies ``tx-unknown``.

Scopes (under a server's policy): ``ChangeScopes(req, scopes)`` sends ``scopes`` when live (else
notifies ``scopes-rejected``); ``scopes-ok`` applies its datoms at the replica's ``t`` (which does not
move), makes the new scopes the hello's for later connections and notifies ``scopes-ok``.

Acknowledgements: the client sends ``ack(t)`` every ``ack_every`` applied deltas (the server's
``welcome`` says how many) and on timer ticks, which opens the server's send window.
Transactions: ``SubmitTx(req, tx)`` is translated to server ids and sent; the ``tx-ok`` answer is
notified once the replica has reached the answer's ``t`` (so the new entities are there) with the
tempids in local ids; a connection lost before the answer notifies ``tx-unknown``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pyrsistent import PMap, pmap

from ..errors import DatsyncError
from . import events as ev
from . import messages as msg
from .codec import encode
from .delta import Delta, Origin
from .eids import EidMap
from .errors import MALFORMED, TIMEOUT, UNEXPECTED, ProtocolError, SyncError
from .evolve import evolve
from .heartbeat import PING, Heartbeat, hb_heard, hb_sent, hb_start, hb_tick
from .messages import Ack, Deltas, Error, Hello, Ping, Pong, Resync, Submit, Sync, TxOk, TxRejected, Welcome
from .pending import add_pending, carry_pending, confirm, find_pending, needs_rebase
from .pending import rebase as rebase_pending
from .pending import reject as reject_pending
from .replica import Replica, apply_delta, apply_deltas, apply_visible
from .snapshot import (
    SnapshotBegin,
    SnapshotBuilder,
    SnapshotChunk,
    SnapshotEnd,
    add_chunk,
    begin_snapshot,
    build_replica,
)
from .writes import local_tempids, pending_tx_for_server, tx_for_server, validate_wire_tx

CLOSED = "closed"
HANDSHAKE = "handshake"
BOOTSTRAPPING = "bootstrapping"
LIVE = "live"


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """What a client session needs: credentials for the hello, the id translation a new replica
    starts with (identity for Python; ``EidMap.capped(...)`` for a capped id space), heartbeats.
    The credentials are a secret: never shown in a repr."""

    credentials: Any = field(default=None, repr=False)
    eids: EidMap = field(default_factory=EidMap.identity)
    heartbeat_interval: float = 10.0
    heartbeat_timeout: float = 30.0
    client_id: str | None = None
    """This client's id, stable across restarts: submissions are queued and committed exactly once."""
    max_inflight: int = 32
    """Queued submissions sent and not answered yet, at most (the server refuses more than its
    ``max_pending_tx`` per connection); the rest follow as answers arrive."""
    each_delta: bool = True
    """Notify every delta of a ``deltas`` message with the replica it leads to. False (nobody looks
    at the databases in between): they are applied in one go, and every ``delta`` notification but
    the last carries ``replica`` None."""


@dataclass(frozen=True, slots=True)
class Queued:
    """A queued submission: the application's request id, its ``seq`` (with the client id, the
    submission's name for good) and its tx data in local ids."""

    req: Any
    seq: int
    tx_data: Any


@dataclass(frozen=True, slots=True)
class ClientSession:
    """A replica's connection, client side (see the module docstring for the phases)."""

    config: ClientConfig
    replica: Replica | None = None
    phase: str = CLOSED
    builder: SnapshotBuilder | None = None
    ack_every: int = 1
    acked_t: int = 0
    sync_from: int | None = None
    submitted: PMap = field(default_factory=pmap)
    answers: tuple[TxOk, ...] = ()
    hb: Heartbeat = field(default_factory=Heartbeat)
    stall: tuple[Any, int] = (None, 0)
    queue: tuple[Queued, ...] = ()
    next_seq: int = 1
    scoping: PMap = field(default_factory=pmap)

    def step(self, event: Any) -> tuple[ClientSession, list]:
        """``client_step(self, event)``."""
        return client_step(self, event)

    @property
    def t(self) -> int | None:
        """The replica's ``t`` (None before the first snapshot)."""
        return None if self.replica is None else self.replica.t


def new_client_session(
    config: ClientConfig, replica: Replica | None = None, queue: tuple[Queued, ...] = (), next_seq: int = 1,
) -> ClientSession:
    """A session, not connected yet, for ``replica`` (None: it will bootstrap; a replica restored
    from storage resumes from its ``t``) with the submissions ``queue`` restored with it (resent in
    order once live) and the next ``seq`` to use (never one used before)."""
    next_seq = max([next_seq, *(q.seq + 1 for q in queue)])
    if replica is not None and queue and config.client_id is not None:
        replica = with_queue(replica, queue, config.client_id)
    return ClientSession(config, replica, hb=Heartbeat(config.heartbeat_interval, config.heartbeat_timeout),
                         queue=tuple(queue), next_seq=next_seq)


def client_step(s: ClientSession, event: Any) -> tuple[ClientSession, list]:
    """The session after ``event`` and the effects for the shell, in order. Never raises."""
    fx: list = []
    try:
        handler = _HANDLERS.get(type(event))
        if handler is None:
            return s, []
        if type(event) in (ev.Received, ev.Malformed):
            if s.phase == CLOSED:
                return s, []
            if not s.hb.heard:
                s = evolve(s, hb=hb_heard(s.hb))
        s = handler(s, event, fx)
    except Exception as e:  # never let a bug or a hostile server take the application down
        fx = []
        s = _close(s, "protocol/internal", f"{type(e).__name__}: {e}", fx, tell_server=False)
        return s, fx
    if fx and not s.hb.sent and s.phase != CLOSED and any(type(f) is ev.Send for f in fx):
        s = evolve(s, hb=hb_sent(s.hb))
    return s, fx


# ------------------------------------------------------------------------------------------------
# Helpers


def _send(msg: Any, fx: list) -> None:
    fx.append(ev.Send(encode(msg), msg))


def _close(s: ClientSession, code: str, reason: str, fx: list, *, tell_server: bool = True) -> ClientSession:
    if s.phase == CLOSED:
        return s
    if tell_server:
        _send(Error(code, reason), fx)
    fx.append(ev.Close(code, reason))
    return _closed(s, reason, fx)


def _closed(s: ClientSession, reason: str, fx: list) -> ClientSession:
    queued = {q.req for q in s.queue}
    for req in s.submitted:
        if req not in queued:  # a queued one is sent again once live: its outcome will be known
            fx.append(ev.Notify("tx-unknown", {"req": req}))
    for req in s.scoping:  # the next hello names the scopes in force: ask again once connected
        fx.append(ev.Notify("scopes-rejected", {"req": req, "code": NOT_CONNECTED, "message": reason}))
    fx.append(ev.Notify("closed", {"reason": reason}))
    return evolve(s, phase=CLOSED, builder=None, submitted=pmap(), sync_from=None, scoping=pmap())


def _release(s: ClientSession, fx: list) -> ClientSession:
    """Notify the ``tx-ok`` answers whose ``t`` the replica has reached (a queued one whose delta
    came without its origin is confirmed by the answer: it leaves the pending transactions)."""
    r = s.replica
    if not s.answers or r is None:
        return s
    keep, queue = [], s.queue
    for a in s.answers:
        if a.t > r.t:
            keep.append(a)
            continue
        q = next((q for q in queue if q.req == a.req), None)
        p = None if q is None else find_pending(r, s.config.client_id, q.seq)  # type: ignore[arg-type]
        if p is not None:
            r, p = confirm(r, Origin(p.client, p.seq, a.tempids))
        r, tempids = local_tempids(r, a.tempids)
        data = {"req": a.req, "t": a.t, "tempids": tempids, "replica": r}
        if q is not None:
            queue = tuple(x for x in queue if x is not q)
            data["seq"] = q.seq
        fx.append(ev.Notify("tx-ok", data))
    return evolve(s, replica=r, answers=tuple(keep), queue=queue)


def _maybe_ack(s: ClientSession, fx: list, *, force: bool = False) -> ClientSession:
    r = s.replica
    if r is None or s.phase != LIVE or r.t <= s.acked_t:
        return s
    if force or r.t - s.acked_t >= s.ack_every:
        _send(Ack(r.t), fx)
        return evolve(s, acked_t=r.t)
    return s


# ------------------------------------------------------------------------------------------------
# Events


def _on_opened(s: ClientSession, e: ev.Opened, fx: list) -> ClientSession:
    if s.phase != CLOSED:
        return s
    r = s.replica
    _send(Hello(s.config.credentials, None if r is None else r.t, None if r is None else r.db_id, s.config.client_id,
                batch=True), fx)
    fx.append(ev.SetTimer(e.now + s.config.heartbeat_interval))
    return evolve(s, phase=HANDSHAKE, hb=hb_start(s.hb, e.now), builder=None, sync_from=None,
                   acked_t=0 if r is None else r.t)


def _on_closed(s: ClientSession, e: ev.Closed, fx: list) -> ClientSession:
    if s.phase == CLOSED:
        return s
    return _closed(s, e.reason, fx)


def _on_timer(s: ClientSession, e: ev.Timer, fx: list) -> ClientSession:
    if s.phase == CLOSED:
        return s
    hb, action = hb_tick(s.hb, e.now)
    s = evolve(s, hb=hb)
    if action == "timeout":
        return _close(s, TIMEOUT, "heartbeat timeout: nothing heard from the server", fx, tell_server=False)
    s = _maybe_ack(s, fx, force=True)
    s = _check_stall(s, fx)
    s = _send_queued(s, fx)  # those refused for a passing reason
    if action == PING and not fx:
        _send(Ping(hb.n), fx)
    fx.append(ev.SetTimer(e.now + s.config.heartbeat_interval))
    return s


STALL_TICKS = 2
"""Timer ticks without progress after which a waiting client asks again (``sync``)."""


def _check_stall(s: ClientSession, fx: list) -> ClientSession:
    """Ask again when a snapshot or a catch-up makes no progress for ``STALL_TICKS`` ticks (its
    start was lost to reordering, or the server forgot the request)."""
    if s.phase == BOOTSTRAPPING:
        b = s.builder
        key: Any = ("snapshot", None if b is None else (b.head.t, b.received))
    elif s.phase == LIVE and s.sync_from is not None and s.replica is not None:
        key = ("catch-up", s.replica.t)
    else:
        return evolve(s, stall=(None, 0)) if s.stall[1] else s
    if s.stall[0] != key:
        return evolve(s, stall=(key, 0))
    n = s.stall[1] + 1
    if n < STALL_TICKS:
        return evolve(s, stall=(key, n))
    _send(Sync(None if s.phase == BOOTSTRAPPING else s.replica.t), fx)  # type: ignore[union-attr]
    return evolve(s, stall=(key, 0))


def _on_malformed(s: ClientSession, e: ev.Malformed, fx: list) -> ClientSession:
    return _close(s, e.code, f"malformed message from the server: {e.message}", fx)


def _on_submit(s: ClientSession, e: ev.SubmitTx, fx: list) -> ClientSession:
    def reject(code: str, message: str) -> ClientSession:
        fx.append(ev.Notify("tx-rejected", {"req": e.req, "code": code, "message": message}))
        return s

    if s.config.client_id is not None:
        return _enqueue(s, e, reject, fx)
    if s.phase not in (LIVE, BOOTSTRAPPING) or s.replica is None:
        return reject("sync/offline", "Not connected to the server")
    if type(e.req) not in (int, str):
        return reject("sync/invalid-tx", f"A request id is an int or a str, got {e.req!r:.40}")
    if e.req in s.submitted:
        return reject("sync/duplicate-request", f"Request {e.req!r} is already pending")
    try:
        tx = validate_wire_tx(tx_for_server(s.replica, e.tx_data))  # refused here as the server would
        msg = Submit(e.req, tx)
        data = encode(msg)
    except DatsyncError as err:
        return reject(err.code, err.message)
    except Exception as err:  # the application's data, not the connection's fault
        return reject("sync/invalid-tx", f"{type(err).__name__}: {err}")
    fx.append(ev.Send(data, msg))
    return evolve(s, submitted=s.submitted.set(e.req, True))


def _enqueue(s: ClientSession, e: ev.SubmitTx, reject: Callable[[str, str], ClientSession], fx: list) -> ClientSession:
    if type(e.req) not in (int, str):
        return reject("sync/invalid-tx", f"A request id is an int or a str, got {e.req!r:.40}")
    if any(q.req == e.req for q in s.queue):
        return reject("sync/duplicate-request", f"Request {e.req!r} is already pending")
    try:
        validate_wire_tx(e.tx_data)  # refused here as the server would (ids are checked when sent)
    except DatsyncError as err:
        return reject(err.code, err.message)
    except Exception as err:
        return reject("sync/invalid-tx", f"{type(err).__name__}: {err}")
    q = Queued(e.req, s.next_seq, list(e.tx_data))
    r, tempids, conflict = s.replica, {}, None
    if r is not None:  # applied on the view at once (provisional ids for its new entities)
        try:
            r, p = add_pending(r, q.tx_data, s.config.client_id, q.seq)  # type: ignore[arg-type]
        except DatsyncError as err:
            return reject(err.code, err.message)
        tempids, conflict = dict(p.tempids), p.conflict
    fx.append(ev.Notify("tx-queued", {"req": q.req, "seq": q.seq, "tx_data": q.tx_data, "tempids": tempids,
                                      "conflict": conflict, "replica": r}))
    return _send_queued(evolve(s, replica=r, queue=(*s.queue, q), next_seq=s.next_seq + 1), fx)


def with_queue(r: Replica, queue: tuple[Queued, ...], client: str) -> Replica:
    """``r`` with every queued submission it does not hold yet as a pending transaction (a replica
    restored from disk, or built before any existed: the first snapshot)."""
    for q in queue:
        if find_pending(r, client, q.seq) is None:  # type: ignore[arg-type]
            try:
                r, _ = add_pending(r, q.tx_data, client, q.seq)  # type: ignore[arg-type]
            except DatsyncError:
                continue  # sent as it is; the server decides
    return r


def _send_queued(s: ClientSession, fx: list) -> ClientSession:
    """Send every queued submission not sent on this connection yet, in order (when live)."""
    r = s.replica
    if s.phase != LIVE or r is None or not s.queue:
        return s
    submitted, queue, client = s.submitted, list(s.queue), s.config.client_id
    answered = {a.req for a in s.answers}
    for q in s.queue:
        if q.req in submitted or q.req in answered:
            continue
        if len(submitted) >= s.config.max_inflight:
            break
        p = find_pending(r, client, q.seq)  # type: ignore[arg-type]
        try:
            tx = tx_for_server(r, q.tx_data) if p is None else pending_tx_for_server(r, p)
            msg = Submit(q.req, validate_wire_tx(tx), client, q.seq)
            data = encode(msg)
        except SyncError as err:
            if err.code == PROVISIONAL and _owner_queued(r, err.data.get("id"), q.seq):
                break  # it refers to an earlier one's new entity: sent once that one is confirmed
            r = _drop(s, r, q, err.code, err.message, fx)
            queue.remove(q)
            continue
        except Exception as err:  # the data cannot go to the server: it never will, tell the application
            code = err.code if isinstance(err, DatsyncError) else "sync/invalid-tx"
            message = err.message if isinstance(err, DatsyncError) else f"{type(err).__name__}: {err}"
            r = _drop(s, r, q, code, message, fx)
            queue.remove(q)
            continue
        fx.append(ev.Send(data, msg))
        submitted = submitted.set(q.req, True)
    return evolve(s, replica=r, submitted=submitted, queue=tuple(queue))


PROVISIONAL = "sync/provisional-id"


def _owner_queued(r: Replica, eid: Any, seq: int) -> bool:
    """Is the provisional id ``eid`` owned by a pending transaction queued before ``seq``?"""
    return any(eid in p.provisional for p in r.pending if p.seq < seq)


def _drop(s: ClientSession, r: Replica, q: Queued, code: str, message: str, fx: list) -> Replica:
    """``r`` without the pending transaction of ``q`` (refused: by the server, or before sending),
    notified ``tx-rejected``."""
    r, _ = reject_pending(r, s.config.client_id, q.seq)  # type: ignore[arg-type]
    fx.append(ev.Notify("tx-rejected", {"req": q.req, "seq": q.seq, "code": code, "message": message,
                                        "replica": r}))
    return r


def _settle(s: ClientSession, req: Any) -> ClientSession:
    """``s`` without the queued submission ``req`` (answered)."""
    if not any(q.req == req for q in s.queue):
        return s
    return evolve(s, queue=tuple(q for q in s.queue if q.req != req))


def _on_received(s: ClientSession, e: ev.Received, fx: list) -> ClientSession:
    m = e.message
    t = type(m)
    handler = _MESSAGES.get(t)
    if handler is None:
        _send(Error(UNEXPECTED, f"a server does not send {getattr(m, 'TYPE', t.__name__)} messages"), fx)
        return s
    return handler(s, m, fx)


def _on_ping(s: ClientSession, m: Ping, fx: list) -> ClientSession:
    _send(Pong(m.n), fx)
    r = s.replica
    if m.t is not None and s.phase == LIVE and r is not None and m.t > r.t and s.sync_from != r.t:
        _send(Sync(r.t), fx)  # the server sent a delta this replica never applied: a gap
        return evolve(s, sync_from=r.t)
    return s


def _on_pong(s: ClientSession, m: Pong, fx: list) -> ClientSession:
    return s


def _on_error(s: ClientSession, m: Error, fx: list) -> ClientSession:
    fx.append(ev.Notify("error", {"code": m.code, "message": m.message}))
    return s


def _on_welcome(s: ClientSession, m: Welcome, fx: list) -> ClientSession:
    if s.phase != HANDSHAKE:
        _send(Error(UNEXPECTED, "welcome outside the handshake"), fx)
        return s
    if m.mode == "resume" and s.replica is None:
        return _close(s, UNEXPECTED, "the server resumed a client that has no replica", fx)
    fx.append(ev.Notify("connected", {"db_id": m.db_id, "t": m.t, "mode": m.mode}))
    phase = LIVE if m.mode == "resume" else BOOTSTRAPPING
    return _send_queued(evolve(s, phase=phase, ack_every=m.ack_every), fx)


def _on_resync(s: ClientSession, m: Resync, fx: list) -> ClientSession:
    if s.phase == HANDSHAKE:
        return s
    fx.append(ev.Notify("resync", {"reason": m.reason, "t": m.t}))
    b = s.builder
    keep = b if b is not None and b.head.t >= m.t else None  # the snapshot that follows already started
    return evolve(s, phase=BOOTSTRAPPING, builder=keep)


def _on_snapshot_begin(s: ClientSession, m: SnapshotBegin, fx: list) -> ClientSession:
    if s.phase == HANDSHAKE:
        return s
    r, b = s.replica, s.builder
    if s.phase == LIVE and r is not None and m.t <= r.t:
        return s  # a stale or duplicated snapshot: the replica is already there
    if b is not None and m.t <= b.head.t:
        return s  # the same snapshot again (same t: same data), or an older one
    return evolve(s, phase=BOOTSTRAPPING, builder=begin_snapshot(m))


def _on_snapshot_chunk(s: ClientSession, m: SnapshotChunk, fx: list) -> ClientSession:
    b = s.builder
    if b is None or s.phase != BOOTSTRAPPING or m.t != b.head.t:
        return s  # another snapshot's
    try:
        b = add_chunk(b, m)
    except ProtocolError:
        _send(Sync(None), fx)  # a broken snapshot: ask for another
        return evolve(s, builder=None)
    if b.complete:
        return _finish_snapshot(s, b, fx)
    return evolve(s, builder=b)


def _on_snapshot_end(s: ClientSession, m: SnapshotEnd, fx: list) -> ClientSession:
    b = s.builder
    if b is None or s.phase != BOOTSTRAPPING or m.t != b.head.t or m.chunks == b.head.chunks:
        return s  # chunks still on their way are waited for (a stall asks again)
    _send(Sync(None), fx)
    return evolve(s, builder=None)


def _finish_snapshot(s: ClientSession, b: SnapshotBuilder, fx: list) -> ClientSession:
    eids = s.replica.eids if s.replica is not None else s.config.eids
    try:
        r = build_replica(b, eids)
    except DatsyncError as err:
        code = err.code if err.code.startswith("sync/") else MALFORMED
        return _close(s, code, f"cannot build the replica from the snapshot: {err.message}", fx)
    if s.replica is not None and s.replica.pending:
        r = carry_pending(s.replica, r)  # a new bootstrap keeps the queue
    elif s.queue:
        r = with_queue(r, s.queue, s.config.client_id)  # type: ignore[arg-type]
    s = evolve(s, replica=r, builder=None, phase=LIVE, sync_from=None)
    fx.append(ev.Notify("synced", {"t": r.t, "replica": r}))
    s = _maybe_ack(s, fx, force=True)
    return _send_queued(_release(s, fx), fx)


def _on_delta(s: ClientSession, m: Delta, fx: list, *, rebase: bool = True) -> ClientSession:
    r = s.replica
    if s.phase != LIVE or r is None:
        return s
    try:
        r2, outcome = apply_delta(r, m, rebase=rebase)
    except DatsyncError as err:
        code = err.code if err.code.startswith("sync/") else MALFORMED
        return _close(s, code, f"cannot apply the delta at t={m.t}: {err.message}", fx)
    if outcome.applied:
        s = evolve(s, replica=r2, sync_from=None)
        fx.append(ev.Notify("delta", {"t": m.t, "delta": m, "replica": r2}))
        s = _maybe_ack(s, fx)
        o = m.origin
        if o is not None and o.client == s.config.client_id:
            s = _own_delta(s, m, outcome.confirmed, fx)
        return _send_queued(_release(s, fx), fx)
    if outcome.is_gap and s.sync_from != r.t:
        _send(Sync(r.t), fx)
        return evolve(s, sync_from=r.t)
    return s


def _on_deltas(s: ClientSession, m: Deltas, fx: list) -> ClientSession:
    """Each delta is applied and notified as if it came alone; the pending transactions are re-based
    once, on the last one (the replicas notified before it have the confirmed database moved on and
    compute their ``view`` when asked: ``needs_rebase``)."""
    r = s.replica
    if not s.config.each_delta and s.phase == LIVE and r is not None:
        s2 = _apply_together(s, [d for d in m.deltas if d.t > r.t], fx)
        if s2 is not None:
            return s2
    last = len(m.deltas) - 1
    for i, d in enumerate(m.deltas):
        s = _on_delta(s, d, fx, rebase=i == last)
    r = s.replica
    if r is not None and needs_rebase(r):  # the last one was not applied (the connection closed, say)
        s = evolve(s, replica=rebase_pending(r))
    return s


def _apply_together(s: ClientSession, deltas: list[Delta], fx: list) -> ClientSession | None:
    """``deltas`` applied in one go (``apply_deltas``), each notified (only the last with its
    replica), the client's own settled; None when they must go one by one."""
    if len(deltas) < 2:
        return None
    try:
        applied = apply_deltas(s.replica, deltas)
    except DatsyncError:
        return None  # one by one: the delta that fails closes the session, as it would alone
    if applied is None:
        return None
    r, confirmed = applied
    s = evolve(s, replica=r, sync_from=None)
    last = deltas[-1]
    for d, c in zip(deltas, confirmed):
        fx.append(ev.Notify("delta", {"t": d.t, "delta": d, "replica": r if d is last else None}))
        o = d.origin
        if o is not None and o.client == s.config.client_id:
            s = _own_delta(s, d, c, fx)
    s = _maybe_ack(s, fx)
    return _send_queued(_release(s, fx), fx)


def _own_delta(s: ClientSession, m: Delta, confirmed: Any, fx: list) -> ClientSession:
    """The delta of this client's own submission: its queued entry is settled (``tx-ok``) now, with
    the tempids in local ids (the pending transaction's, confirmed by ``apply_delta``)."""
    o = m.origin
    q = next((q for q in s.queue if q.seq == o.seq), None)  # type: ignore[union-attr]
    if q is None:
        return s  # settled already (its answer came first)
    # every tempid of the server's answer, in local ids (the pending transaction's own say the same,
    # but it knows only those the view could apply)
    r, tempids = local_tempids(s.replica, o.tempids or {})  # type: ignore[arg-type, union-attr]
    if confirmed is not None:
        tempids.update((k, v) for k, v in confirmed.tempids.items() if k in tempids)
    fx.append(ev.Notify("tx-ok", {"req": q.req, "seq": q.seq, "t": m.t, "tempids": tempids, "replica": r}))
    return evolve(_settle(s, q.req), replica=r, submitted=s.submitted.discard(q.req),
                   answers=tuple(a for a in s.answers if a.req != q.req))


def _on_tx_ok(s: ClientSession, m: TxOk, fx: list) -> ClientSession:
    if m.req not in s.submitted or any(a.req == m.req for a in s.answers):
        return s  # a duplicate, settled by its delta, or an answer for a connection since closed
    s = evolve(s, submitted=s.submitted.discard(m.req), answers=(*s.answers, m))
    if not any(q.req == m.req for q in s.queue):
        s = _settle(s, m.req)
    return _send_queued(_release(s, fx), fx)


RETRY_CODES = frozenset({"sync/overloaded", "sync/duplicate-request", "server/shutdown"})
"""Refusals that say nothing about the transaction itself (the connection is busy or its server
stopping): a queued submission stays queued and is sent again; its ``(client, seq)`` keeps it exactly
once. A store failure (``db.error/storage``, ``db.error/unavailable``) is reported to the application."""


def _on_tx_rejected(s: ClientSession, m: TxRejected, fx: list) -> ClientSession:
    if m.req not in s.submitted:
        return s
    s = evolve(s, submitted=s.submitted.discard(m.req))
    q = next((q for q in s.queue if q.req == m.req), None)
    if q is not None and m.code in RETRY_CODES:
        return s  # nothing committed, or the record will tell: sent again on a later tick or reconnect
    if q is not None and s.replica is not None:
        r = _drop(s, s.replica, q, m.code, m.message, fx)
        return _send_queued(evolve(_settle(s, m.req), replica=r), fx)
    fx.append(ev.Notify("tx-rejected", {"req": m.req, "code": m.code, "message": m.message}))
    return _settle(s, m.req)


NOT_CONNECTED = "sync/not-connected"


def _on_change_scopes(s: ClientSession, e: ev.ChangeScopes, fx: list) -> ClientSession:
    scopes = tuple((name, tuple(args)) for name, args in e.scopes)
    if s.phase != LIVE:
        fx.append(ev.Notify("scopes-rejected", {"req": e.req, "code": NOT_CONNECTED,
                                                "message": "not connected: change the scopes once live"}))
        return s
    _send(msg.Scopes(e.req, scopes), fx)
    return evolve(s, scoping=s.scoping.set(e.req, scopes))


def _on_scopes_ok(s: ClientSession, m: msg.ScopesOk, fx: list) -> ClientSession:
    scopes = s.scoping.get(m.req)
    if scopes is None:
        return s
    s = evolve(s, scoping=s.scoping.remove(m.req))
    cred = s.config.credentials
    if isinstance(cred, dict):  # later connections subscribe to these scopes
        cred = {**cred, "scopes": [[name, list(args)] for name, args in scopes]}
        s = evolve(s, config=evolve(s.config, credentials=cred))
    r = s.replica
    if s.phase == BOOTSTRAPPING and not m.datoms:  # sent again before a snapshot under the new scopes
        fx.append(ev.Notify("scopes-ok", {"req": m.req, "t": m.t, "replica": None, "datoms": ()}))
        return s
    if r is None or s.phase != LIVE or r.t != m.t:
        _send(Sync(None), fx)  # the datoms are for another t: a snapshot under the new scopes
        s = evolve(s, phase=BOOTSTRAPPING, builder=None)
        # no replica: the one at hand holds the old scopes' share until that snapshot replaces it
        fx.append(ev.Notify("scopes-ok", {"req": m.req, "t": m.t, "replica": None, "datoms": ()}))
        return s
    try:
        r = apply_visible(r, m.datoms)
    except DatsyncError as err:
        code = err.code if err.code.startswith("sync/") else MALFORMED
        return _close(s, code, f"cannot apply the scopes' datoms at t={m.t}: {err.message}", fx)
    fx.append(ev.Notify("scopes-ok", {"req": m.req, "t": m.t, "replica": r, "datoms": m.datoms}))
    return evolve(s, replica=r)


def _on_scopes_rejected(s: ClientSession, m: msg.ScopesRejected, fx: list) -> ClientSession:
    if m.req not in s.scoping:
        return s
    fx.append(ev.Notify("scopes-rejected", {"req": m.req, "code": m.code, "message": m.message}))
    return evolve(s, scoping=s.scoping.remove(m.req))


_MESSAGES: dict[type, Callable[[ClientSession, Any, list], ClientSession]] = {
    Ping: _on_ping,
    Pong: _on_pong,
    Error: _on_error,
    Welcome: _on_welcome,
    Resync: _on_resync,
    SnapshotBegin: _on_snapshot_begin,
    SnapshotChunk: _on_snapshot_chunk,
    SnapshotEnd: _on_snapshot_end,
    Delta: _on_delta,
    Deltas: _on_deltas,
    TxOk: _on_tx_ok,
    TxRejected: _on_tx_rejected,
    msg.ScopesOk: _on_scopes_ok,
    msg.ScopesRejected: _on_scopes_rejected,
}

_HANDLERS: dict[type, Callable[[ClientSession, Any, list], ClientSession]] = {
    ev.Opened: _on_opened,
    ev.Closed: _on_closed,
    ev.Timer: _on_timer,
    ev.Malformed: _on_malformed,
    ev.Received: _on_received,
    ev.SubmitTx: _on_submit,
    ev.ChangeScopes: _on_change_scopes,
}

__all__ = [
    "BOOTSTRAPPING",
    "CLOSED",
    "HANDSHAKE",
    "LIVE",
    "ClientConfig",
    "ClientSession",
    "Queued",
    "client_step",
    "new_client_session",
    "with_queue",
]
