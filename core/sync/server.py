"""The server side of one client connection, as a sans-I/O state machine.

``server_step(session, event) -> (session, effects)``. One ``ServerSession`` per connection; the
shell feeds it the connection's events and every committed transaction (``TxCommitted``, the delta
encoded once for everyone), and carries out its effects.

Phases::

    handshake --hello--> authorizing --AuthDecision(principal)--> catching-up | bootstrapping | live
    catching-up --LogRead--> live (or another read, while the server moved on)
    bootstrapping --SnapshotReady--> catching-up | live
    live --gap in the feed--> catching-up;  any --too far behind--> bootstrapping (resync)
    any --close, timeout, auth denied, too many errors--> closed

Delivery: deltas for the client go through a queue (``queue``: unsent, contiguous after what was
sent) and a send window (``inflight``: sent, not yet acknowledged by the client's ``ack``; at most
``window`` deltas and ``window_bytes``). The queue is bounded (``max_buffered`` deltas and
``max_buffered_bytes``): a client that lets it overflow is too far behind and is told to resync
(``resync`` message, then a fresh snapshot) instead of growing the server's memory. A client that
resumes from a ``t`` at most ``max_buffered`` behind catches up from the log (``RequestLogRead``);
further behind, it bootstraps.

``config.delta_filter`` (a pure function ``(principal, delta) -> delta | None``) is the slot for
scoped subscriptions and security filters: each client gets what it returns (None: an empty delta,
so the client's ``t`` still advances); re-encoded only when it differs from the shared delta.

Exactly once: a ``submit`` naming ``(client, seq)`` becomes ``RequestTransact(..., submission)``; the
shell answers a resubmission from its record (``core.sync.submissions``). A delta's ``origin`` goes
only to the sessions whose ``hello`` named that client: the shared bytes carry none.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import DatsyncError
from . import events as ev
from .codec import encode, encode_batch, with_origin
from .delta import Delta
from .errors import AUTH, TIMEOUT, UNEXPECTED, VERSION
from .evolve import evolve
from .heartbeat import PING, Heartbeat, hb_heard, hb_sent, hb_start, hb_tick
from .messages import (
    PROTOCOL_VERSION,
    Ack,
    Error,
    Hello,
    Ping,
    Pong,
    Resync,
    Scopes,
    ScopesOk,
    ScopesRejected,
    Submit,
    Sync,
    TxOk,
    TxRejected,
    Welcome,
)
from .schema import NO_SCHEMA_CHANGE
from .writes import validate_wire_tx

HANDSHAKE = "handshake"
AUTHORIZING = "authorizing"
CATCHING_UP = "catching-up"
BOOTSTRAPPING = "bootstrapping"
LIVE = "live"
CLOSED = "closed"
ATTACHED = frozenset({CATCHING_UP, BOOTSTRAPPING, LIVE})

BATCH_BYTES = 1 << 20
"""Largest ``deltas`` message the server makes (a delta above it goes alone)."""

_DELTA_PREFIX = b'{"v":%d,"type":"delta",' % PROTOCOL_VERSION
"""How every encoded delta begins (``encode`` writes ``v`` and ``type`` first): what may be batched."""


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """What a server session needs to know (the same for every connection, typically)."""

    db_id: str = "datsync"
    window: int = 64
    window_bytes: int = 8 << 20
    max_buffered: int = 1024
    max_buffered_bytes: int = 64 << 20
    chunk_size: int = 2000
    heartbeat_interval: float = 10.0
    heartbeat_timeout: float = 30.0
    handshake_timeout: float = 10.0
    max_pending_tx: int = 64
    max_errors: int = 16
    delta_filter: Callable[[Any, Delta], Delta | None] | None = None


@dataclass(frozen=True, slots=True)
class ServerSession:
    """One client connection, server side (see the module docstring for the phases)."""

    config: ServerConfig
    server_t: int
    phase: str = HANDSHAKE
    principal: Any = None
    hello: Hello | None = None
    client: str | None = None
    cursor_t: int = 0
    acked_t: int = 0
    inflight: tuple[tuple[int, int], ...] = ()
    inflight_bytes: int = 0
    queue: tuple[tuple[int, bytes], ...] = ()
    queue_bytes: int = 0
    awaiting: int | None = None
    seq: int = 0
    pending_tx: frozenset = frozenset()
    scopes_sent: tuple[tuple[Any, int], ...] = ()
    errors: int = 0
    opened_at: float = 0.0
    hb: Heartbeat = field(default_factory=Heartbeat)

    def step(self, event: Any) -> tuple[ServerSession, list]:
        """``server_step(self, event)``."""
        return server_step(self, event)

    @property
    def buffered(self) -> int:
        """Deltas held for this client: queued (unsent) plus in flight (unacknowledged)."""
        return len(self.queue) + len(self.inflight)


def new_server_session(config: ServerConfig, server_t: int) -> ServerSession:
    """A session for a connection just accepted, on a server whose database is at ``server_t``."""
    return ServerSession(
        config, server_t, hb=Heartbeat(config.heartbeat_interval, config.heartbeat_timeout),
    )


def server_step(s: ServerSession, event: Any) -> tuple[ServerSession, list]:
    """The session after ``event`` and the effects for the shell to carry out, in order. Never raises:
    anything unexpected closes the connection with a reason."""
    if s.phase == CLOSED:
        return s, []
    fx: list = []
    try:
        handler = _HANDLERS.get(type(event))
        if handler is None:
            return s, []
        if type(event) in (ev.Received, ev.Malformed) and not s.hb.heard:
            s = evolve(s, hb=hb_heard(s.hb))
        s = handler(s, event, fx)
    except Exception as e:  # a bug must not take the shell down: close this connection, say why
        fx = [_send_msg(Error("protocol/internal", f"Internal error: {type(e).__name__}: {e}"))]
        fx.append(ev.Close("protocol/internal", f"{type(e).__name__}: {e}"))
        return evolve(s, phase=CLOSED), fx
    if fx and not s.hb.sent and s.phase != CLOSED and any(type(f) is ev.Send or type(f) is ev.SendStream for f in fx):
        s = evolve(s, hb=hb_sent(s.hb))
    return s, fx


# ------------------------------------------------------------------------------------------------
# Helpers


def _send_msg(msg: Any) -> ev.Send:
    return ev.Send(encode(msg), msg)


def _close(s: ServerSession, code: str, reason: str, fx: list) -> ServerSession:
    fx.append(_send_msg(Error(code, reason)))
    fx.append(ev.Close(code, reason))
    return evolve(s, phase=CLOSED, queue=(), queue_bytes=0, inflight=(), inflight_bytes=0)


def _for_client(s: ServerSession, delta: Delta, data: bytes | None) -> bytes:
    """The bytes of ``delta`` for this client: ``data`` (the shared encoding, without the origin)
    unless the filter changes it or it is the client's own submission (then with its origin: no
    other client learns who submitted what, nor their tempids)."""
    origin = delta.origin
    own = origin is not None and s.client is not None and origin.client == s.client
    mine = delta
    f = s.config.delta_filter
    if f is not None:
        mine = f(s.principal, delta)
        if mine is None:
            mine = Delta(delta.t, delta.tx, delta.instant, (), NO_SCHEMA_CHANGE)
    if own:
        if mine is delta and data is not None:
            return with_origin(data, origin)  # type: ignore[arg-type]
        return encode(mine if mine.origin is origin else evolve(mine, origin=origin))
    if mine is delta and data is not None:
        return data
    return encode(mine if mine.origin is None else evolve(mine, origin=None))


def _append(s: ServerSession, t: int, data: bytes, fx: list) -> ServerSession:
    cfg = s.config
    if s.buffered + 1 > cfg.max_buffered or s.queue_bytes + s.inflight_bytes + len(data) > cfg.max_buffered_bytes:
        return _resync(s, f"too far behind: more than {cfg.max_buffered} deltas or "
                          f"{cfg.max_buffered_bytes} bytes waiting", fx)
    return evolve(s, queue=(*s.queue, (t, data)), queue_bytes=s.queue_bytes + len(data), cursor_t=t)


def _flush(s: ServerSession, fx: list) -> ServerSession:
    cfg = s.config
    if not s.queue or s.phase not in (LIVE, CATCHING_UP):
        return s
    inflight, nbytes = list(s.inflight), s.inflight_bytes
    queue = s.queue
    batch = s.hello is not None and s.hello.batch
    i = 0
    while i < len(queue) and len(inflight) < cfg.window and nbytes < cfg.window_bytes:
        t, data = queue[i]
        if not batch:
            fx.append(ev.Send(data))
        inflight.append((t, len(data)))
        nbytes += len(data)
        i += 1
    if i == 0:
        return s
    if batch:
        _send_batched([d for _, d in queue[:i]], fx)
    sent = queue[:i]
    return evolve(s, queue=queue[i:], queue_bytes=s.queue_bytes - sum(len(d) for _, d in sent),
                   inflight=tuple(inflight), inflight_bytes=nbytes)


def _send_batched(payloads: list[bytes], fx: list) -> None:
    """Send the queued messages ``payloads`` in order: runs of consecutive deltas as ``deltas``
    messages of up to ``BATCH_BYTES`` each (one frame and one decode on the client for all of them),
    a lone delta and anything else (a ``scopes-ok`` queued behind deltas) as it is."""
    group: list[bytes] = []
    size = 0

    def flush() -> None:
        if group:
            fx.append(ev.Send(encode_batch(group) if len(group) > 1 else group[0]))
            group.clear()

    for data in payloads:
        if not data.startswith(_DELTA_PREFIX):
            flush()
            fx.append(ev.Send(data))
            size = 0
            continue
        if group and size + len(data) > BATCH_BYTES:
            flush()
            size = 0
        group.append(data)
        size += len(data) + 1
    flush()


def _reset_to(s: ServerSession, t: int) -> ServerSession:
    """Forget what was queued and in flight: the client is at ``t``."""
    return evolve(s, cursor_t=t, acked_t=t, queue=(), queue_bytes=0, inflight=(), inflight_bytes=0)


def _bootstrap(s: ServerSession, fx: list) -> ServerSession:
    for req, t in s.scopes_sent:  # their answers may be dropped with the queue: again, before the snapshot
        fx.append(_send_msg(ScopesOk(req, t, ())))
    seq = s.seq + 1
    fx.append(ev.RequestSnapshot(seq, s.config.chunk_size))
    return evolve(s, phase=BOOTSTRAPPING, awaiting=seq, seq=seq, queue=(), queue_bytes=0, inflight=(),
                   inflight_bytes=0)


def _resync(s: ServerSession, reason: str, fx: list) -> ServerSession:
    fx.append(_send_msg(Resync(reason, s.server_t)))
    return _bootstrap(s, fx)


def _catch_up(s: ServerSession, fx: list) -> ServerSession:
    """Bring the client from ``cursor_t`` to ``server_t``: live if there, else from the log if not
    too far, else a resync."""
    behind = s.server_t - s.cursor_t
    if behind <= 0:
        return _flush(evolve(s, phase=LIVE, awaiting=None), fx)
    if s.buffered + behind > s.config.max_buffered:
        return _resync(s, f"too far behind: {behind} transactions to catch up", fx)
    seq = s.seq + 1
    fx.append(ev.RequestLogRead(seq, s.cursor_t, s.server_t))
    return _flush(evolve(s, phase=CATCHING_UP, awaiting=seq, seq=seq), fx)


# ------------------------------------------------------------------------------------------------
# Events


def _on_opened(s: ServerSession, e: ev.Opened, fx: list) -> ServerSession:
    fx.append(ev.SetTimer(e.now + s.config.heartbeat_interval))
    return evolve(s, opened_at=e.now, hb=hb_start(s.hb, e.now))


def _on_timer(s: ServerSession, e: ev.Timer, fx: list) -> ServerSession:
    if s.phase in (HANDSHAKE, AUTHORIZING) and e.now - s.opened_at >= s.config.handshake_timeout:
        return _close(s, TIMEOUT, "handshake timeout", fx)
    hb, action = hb_tick(s.hb, e.now)
    s = evolve(s, hb=hb)
    if action == "timeout":
        return _close(s, TIMEOUT, "heartbeat timeout: nothing heard from the client", fx)
    if action == PING:
        fx.append(_send_msg(Ping(hb.n, s.cursor_t if s.phase in ATTACHED else None)))
    fx.append(ev.SetTimer(e.now + s.config.heartbeat_interval))
    return s


def _on_closed(s: ServerSession, e: ev.Closed, fx: list) -> ServerSession:
    return evolve(s, phase=CLOSED, queue=(), queue_bytes=0, inflight=(), inflight_bytes=0)


def _on_malformed(s: ServerSession, e: ev.Malformed, fx: list) -> ServerSession:
    s = evolve(s, errors=s.errors + 1)
    if e.reply is not None:  # another protocol version: refuse in words the peer can read
        fx.append(ev.Send(e.reply))
        fx.append(ev.Close(e.code, e.message))
        return evolve(s, phase=CLOSED, queue=(), queue_bytes=0, inflight=(), inflight_bytes=0)
    if s.phase in (HANDSHAKE, AUTHORIZING) or e.code == VERSION or s.errors > s.config.max_errors:
        return _close(s, e.code, e.message, fx)
    fx.append(_send_msg(Error(e.code, e.message)))
    return s


def _unexpected(s: ServerSession, what: str, fx: list) -> ServerSession:
    s = evolve(s, errors=s.errors + 1)
    if s.phase in (HANDSHAKE, AUTHORIZING) or s.errors > s.config.max_errors:
        return _close(s, UNEXPECTED, what, fx)
    fx.append(_send_msg(Error(UNEXPECTED, what)))
    return s


def _on_received(s: ServerSession, e: ev.Received, fx: list) -> ServerSession:
    m = e.message
    t = type(m)
    if t is Ping:
        fx.append(_send_msg(Pong(m.n)))
        return s
    if t is Pong or t is Error:
        return s
    if t is Hello:
        if s.phase != HANDSHAKE:
            return _unexpected(s, "hello after the handshake", fx)
        fx.append(ev.Authorize(m.credentials))
        return evolve(s, phase=AUTHORIZING, hello=m, client=m.client)
    if s.phase not in ATTACHED:
        return _unexpected(s, f"{getattr(m, 'TYPE', t.__name__)} before the handshake completed", fx)
    if t is Ack:
        return _on_ack(s, m, fx)
    if t is Submit:
        return _on_submit(s, m, fx)
    if t is Sync:
        return _on_sync(s, m, fx)
    if t is Scopes:
        fx.append(ev.RequestScopes(m.req, m.scopes))
        return s
    return _unexpected(s, f"a client does not send {getattr(m, 'TYPE', t.__name__)} messages", fx)


def _on_auth(s: ServerSession, e: ev.AuthDecision, fx: list) -> ServerSession:
    if s.phase != AUTHORIZING or s.hello is None:
        return s
    if not e.principal:
        return _close(s, AUTH, e.reason, fx)
    h, cfg = s.hello, s.config
    s = evolve(s, principal=e.principal, hello=evolve(h, credentials=None))  # keep no secrets around
    resume = (
        h.t is not None and h.db_id == cfg.db_id and 0 <= h.t <= s.server_t
        and s.server_t - h.t <= cfg.max_buffered
    )
    fx.append(_send_msg(Welcome(cfg.db_id, s.server_t, "resume" if resume else "bootstrap", max(1, cfg.window // 2))))
    if resume:
        return _catch_up(_reset_to(s, h.t), fx)  # type: ignore[arg-type]
    return _bootstrap(s, fx)


def _on_sync(s: ServerSession, m: Sync, fx: list) -> ServerSession:
    if m.t is None:
        return _bootstrap(s, fx)
    if m.t > s.server_t:
        return _resync(s, f"your t={m.t} is ahead of the server's t={s.server_t}", fx)
    return _catch_up(_reset_to(s, m.t), fx)


def _on_ack(s: ServerSession, m: Ack, fx: list) -> ServerSession:
    if m.t <= s.acked_t:
        return s
    keep = tuple(x for x in s.inflight if x[0] > m.t)
    s = evolve(s, acked_t=min(m.t, s.cursor_t), inflight=keep, inflight_bytes=sum(n for _, n in keep))
    if s.scopes_sent:  # a delta after a scopes-ok is applied: so was the scopes-ok
        s = evolve(s, scopes_sent=tuple(x for x in s.scopes_sent if x[1] >= m.t))
    return _flush(s, fx)


def _on_submit(s: ServerSession, m: Submit, fx: list) -> ServerSession:
    if m.req in s.pending_tx:
        fx.append(_send_msg(TxRejected(m.req, "sync/duplicate-request", f"Request {m.req!r} is already pending")))
        return s
    if len(s.pending_tx) >= s.config.max_pending_tx:
        fx.append(_send_msg(TxRejected(m.req, "sync/overloaded",
                                       f"More than {s.config.max_pending_tx} transactions pending")))
        return s
    try:
        tx = validate_wire_tx(m.tx_data)
    except DatsyncError as err:
        fx.append(_send_msg(TxRejected(m.req, err.code, err.message)))
        return s
    submission = None if m.client is None or m.seq is None else (m.client, m.seq)
    fx.append(ev.RequestTransact(m.req, tx, s.principal, submission))
    return evolve(s, pending_tx=s.pending_tx | {m.req})


def _on_tx_accepted(s: ServerSession, e: ev.TxAccepted, fx: list) -> ServerSession:
    if e.req not in s.pending_tx:
        return s
    fx.append(_send_msg(TxOk(e.req, e.t, dict(e.tempids))))
    return evolve(s, pending_tx=s.pending_tx - {e.req})


def _on_tx_failed(s: ServerSession, e: ev.TxFailed, fx: list) -> ServerSession:
    if e.req not in s.pending_tx:
        return s
    fx.append(_send_msg(TxRejected(e.req, e.code, e.message)))
    return evolve(s, pending_tx=s.pending_tx - {e.req})


def _on_scopes_decided(s: ServerSession, e: ev.ScopesDecided, fx: list) -> ServerSession:
    """The answer to a scopes change: refused at once; accepted in order after the deltas already
    queued (its datoms are computed at ``cursor_t``: the client applies them after those). Until a
    later ``ack`` proves it applied, a bootstrap sends it again, without datoms, before the snapshot
    (taken under the new scopes)."""
    if e.code is not None or s.phase != LIVE or e.t != s.cursor_t:
        fx.append(_send_msg(ScopesRejected(e.req, e.code or "sync/retry",
                                           e.message or "the session is not live: send the scopes again")))
        return s
    s = evolve(s, scopes_sent=(*s.scopes_sent, (e.req, e.t)))
    return _flush(_append(s, e.t, encode(ScopesOk(e.req, e.t, e.datoms)), fx), fx)


def _on_committed(s: ServerSession, e: ev.TxCommitted, fx: list) -> ServerSession:
    d = e.delta
    t = d.t
    server_t = t if t > s.server_t else s.server_t
    if s.phase != LIVE or t <= s.cursor_t:
        return s if server_t == s.server_t else evolve(s, server_t=server_t)
    if t != s.cursor_t + 1:
        return _catch_up(evolve(s, server_t=server_t), fx)
    data = _for_client(s, d, e.data)
    cfg, n = s.config, len(data)
    inflight, nbytes = s.inflight, s.inflight_bytes
    if (not s.queue and len(inflight) < cfg.window and nbytes < cfg.window_bytes
            and len(inflight) < cfg.max_buffered and nbytes + n <= cfg.max_buffered_bytes):
        # the common case, in one step: the window has room, so the delta goes straight out
        fx.append(ev.Send(data))
        return evolve(s, server_t=server_t, cursor_t=t, inflight=(*inflight, (t, n)), inflight_bytes=nbytes + n)
    if server_t != s.server_t:
        s = evolve(s, server_t=server_t)
    return _flush(_append(s, t, data, fx), fx)


def _on_committed_batch(s: ServerSession, e: ev.TxCommittedBatch, fx: list) -> ServerSession:
    commits = e.commits
    last_t = commits[-1].delta.t
    if s.phase == LIVE and commits[0].delta.t == s.cursor_t + 1 and last_t == s.cursor_t + len(commits):
        # the common case: the next deltas, in order; queued in one step unless that is too far behind
        added = [(c.delta.t, _for_client(s, c.delta, c.data)) for c in commits]
        nbytes = sum(len(d) for _, d in added)
        cfg = s.config
        if (s.buffered + len(added) <= cfg.max_buffered
                and s.queue_bytes + s.inflight_bytes + nbytes <= cfg.max_buffered_bytes):
            s = evolve(s, server_t=max(s.server_t, last_t), cursor_t=last_t, queue=(*s.queue, *added),
                       queue_bytes=s.queue_bytes + nbytes)
            return _flush(s, fx)
    for c in commits:  # a gap or too far behind: one after another, as if each came alone
        s = _on_committed(s, c, fx)
    return s


def _on_log_read(s: ServerSession, e: ev.LogRead, fx: list) -> ServerSession:
    if s.phase != CATCHING_UP or e.seq != s.awaiting:
        return s
    if e.deltas is None:
        return _resync(s, "the log cannot catch you up", fx)
    for d, data in e.deltas:
        if d.t <= s.cursor_t:
            continue
        if d.t != s.cursor_t + 1:
            return _resync(s, f"the log skipped from t={s.cursor_t} to t={d.t}", fx)
        s = _append(s, d.t, _for_client(s, d, data), fx)
        if s.phase != CATCHING_UP:
            return s
    return _catch_up(evolve(s, awaiting=None), fx)


def _on_snapshot(s: ServerSession, e: ev.SnapshotReady, fx: list) -> ServerSession:
    if s.phase != BOOTSTRAPPING or e.seq != s.awaiting:
        return s
    fx.append(ev.SendStream(e.messages))
    s = evolve(_reset_to(s, e.t), awaiting=None, server_t=max(s.server_t, e.t))
    return _catch_up(s, fx)


_HANDLERS: dict[type, Callable[[ServerSession, Any, list], ServerSession]] = {
    ev.Opened: _on_opened,
    ev.Timer: _on_timer,
    ev.Closed: _on_closed,
    ev.Malformed: _on_malformed,
    ev.Received: _on_received,
    ev.AuthDecision: _on_auth,
    ev.TxAccepted: _on_tx_accepted,
    ev.TxFailed: _on_tx_failed,
    ev.TxCommitted: _on_committed,
    ev.TxCommittedBatch: _on_committed_batch,
    ev.LogRead: _on_log_read,
    ev.SnapshotReady: _on_snapshot,
    ev.ScopesDecided: _on_scopes_decided,
}

__all__ = [
    "ATTACHED",
    "AUTHORIZING",
    "BOOTSTRAPPING",
    "CATCHING_UP",
    "CLOSED",
    "HANDSHAKE",
    "LIVE",
    "ServerConfig",
    "ServerSession",
    "new_server_session",
    "server_step",
]
