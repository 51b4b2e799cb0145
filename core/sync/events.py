"""Events the shell feeds the protocol state machines, and effects they ask the shell to carry out.

Both sessions are ``step(state, event) -> (state, effects)``. Times come in with events (``now``,
seconds on any monotonic clock); the sessions never read a clock, do I/O or draw random numbers.

Events for both sides: ``Opened`` (transport up), ``Received`` (a decoded message), ``Malformed``
(bytes that did not decode: the ``ProtocolError``'s code and message), ``Closed`` (transport gone),
``Timer`` (a timer the session set fired). Client only: ``SubmitTx`` (the application transacts),
``ChangeScopes``. Server only: ``AuthDecision``, ``TxCommitted``, ``LogRead``, ``SnapshotReady``,
``TxAccepted``, ``TxFailed``, ``ScopesDecided``.

Effects: ``Send`` (bytes, with the message they encode), ``SendStream`` (an iterable of encoded
messages to send in order: a snapshot streamed lazily), ``Close``, ``SetTimer``, ``Notify``
(client: tell the application), and the server's requests to the shell: ``Authorize``,
``RequestLogRead``, ``RequestSnapshot``, ``RequestTransact``, ``RequestScopes``. The shell performs effects in order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .delta import Delta

# ------------------------------------------------------------------------------------------------
# Events


@dataclass(frozen=True, slots=True)
class Opened:
    """The transport is up (client: connected; server: accepted)."""

    now: float


@dataclass(frozen=True, slots=True)
class Received:
    """A message arrived (decoded by ``codec.decode``)."""

    message: Any


@dataclass(frozen=True, slots=True)
class Malformed:
    """Bytes arrived that ``codec.decode`` refused: the ``ProtocolError``'s code and message, and
    ``reply``: the bytes to answer with when the peer speaks another protocol version (encoded in
    its version, so it can read why it is refused)."""

    code: str
    message: str
    reply: bytes | None = None


@dataclass(frozen=True, slots=True)
class Closed:
    """The transport closed (either side, or the network)."""

    reason: str = ""


@dataclass(frozen=True, slots=True)
class Timer:
    """The timer the session asked for (``SetTimer``) fired at ``now``."""

    now: float


@dataclass(frozen=True, slots=True)
class SubmitTx:
    """Client: the application transacts ``tx_data`` (local ids) under request id ``req``."""

    req: Any
    tx_data: Any


@dataclass(frozen=True, slots=True)
class ChangeScopes:
    """Client: the application subscribes to ``scopes`` (the full list of ``(name, args)``) instead,
    under request id ``req``."""

    req: Any
    scopes: tuple


@dataclass(frozen=True, slots=True)
class ScopesDecided:
    """Server: the answer to ``RequestScopes(req)``: the datoms (``(e, a, v, added)``) that bring the
    client from its old scopes to the new ones at ``t`` (the session's ``cursor_t``), or the refusal's
    ``code`` and ``message``."""

    req: Any
    t: int = 0
    datoms: tuple = ()
    code: str | None = None
    message: str = ""


@dataclass(frozen=True, slots=True)
class AuthDecision:
    """Server: the shell's answer to ``Authorize``: a principal (anything truthy) or None/False, and
    for a refusal the ``reason`` the client is told (never quoting its credentials)."""

    principal: Any
    reason: str = "not authorized"


@dataclass(frozen=True, slots=True)
class TxCommitted:
    """Server: a transaction committed; ``data`` is ``codec.encode(delta)``, encoded once for all
    sessions (None: the session encodes it)."""

    delta: Delta
    data: bytes | None = None


@dataclass(frozen=True, slots=True)
class TxCommittedBatch:
    """Server: transactions committed together (one group commit), in ``t`` order: each is queued
    as if it came alone, and what the send window lets go out leaves together (one ``deltas``
    message to a client that reads them)."""

    commits: tuple[TxCommitted, ...]


@dataclass(frozen=True, slots=True)
class LogRead:
    """Server: the answer to ``RequestLogRead(seq, from_t, to_t)``: the deltas after ``from_t`` in order,
    as ``(delta, encoded bytes or None)``; ``deltas`` None when the log cannot serve the range."""

    seq: int
    from_t: int
    deltas: tuple[tuple[Delta, bytes | None], ...] | None


@dataclass(frozen=True, slots=True)
class SnapshotReady:
    """Server: the answer to ``RequestSnapshot(seq)``: the snapshot's ``t`` and its encoded messages
    (``snapshot-begin``, chunks, ``snapshot-end``), possibly a lazy iterable."""

    seq: int
    t: int
    messages: Iterable[bytes]


@dataclass(frozen=True, slots=True)
class TxAccepted:
    """Server: request ``req`` committed as ``t``; ``tempids`` from ``writes.answer_tempids``."""

    req: Any
    t: int
    tempids: Mapping[Any, int]


@dataclass(frozen=True, slots=True)
class TxFailed:
    """Server: request ``req`` was rejected (a ``TxError``'s code and message)."""

    req: Any
    code: str
    message: str


Event = (
    Opened | Received | Malformed | Closed | Timer | SubmitTx | AuthDecision | TxCommitted | LogRead
    | SnapshotReady | TxAccepted | TxFailed | ChangeScopes | ScopesDecided
)

# ------------------------------------------------------------------------------------------------
# Effects


@dataclass(frozen=True, slots=True)
class Send:
    """Send ``data`` (the encoding of ``message``; ``message`` may be None for pre-encoded deltas)."""

    data: bytes
    message: Any = None


@dataclass(frozen=True, slots=True)
class SendStream:
    """Send every item of ``messages`` (encoded messages) in order, before any later effect."""

    messages: Iterable[bytes]


@dataclass(frozen=True, slots=True)
class Close:
    """Close the transport, saying why (``code`` a protocol error code or ``"normal"``)."""

    code: str
    reason: str


@dataclass(frozen=True, slots=True)
class SetTimer:
    """Feed ``Timer(now)`` to the session at time ``at`` (replaces any earlier timer)."""

    at: float


@dataclass(frozen=True, slots=True)
class Notify:
    """Client: tell the application. ``kind`` is one of ``connected``, ``synced``, ``delta``,
    ``tx-queued`` (a submission queued and applied on the view: ``req``, ``seq``, provisional
    ``tempids``, ``conflict``), ``tx-ok``, ``tx-rejected``, ``tx-unknown`` (only without a client id),
    ``resync``, ``error``, ``closed``; ``data`` has the details (docs/sync.md)."""

    kind: str
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Authorize:
    """Server: decide whether ``credentials`` may connect; answer with ``AuthDecision``. The
    credentials are a secret: never shown in a repr."""

    credentials: Any = field(repr=False)


@dataclass(frozen=True, slots=True)
class RequestLogRead:
    """Server: read the deltas with ``from_t < t <= to_t`` from the log; answer with ``LogRead(seq, ...)``."""

    seq: int
    from_t: int
    to_t: int


@dataclass(frozen=True, slots=True)
class RequestSnapshot:
    """Server: take a snapshot of the current database in chunks of ``chunk_size`` datoms; answer with
    ``SnapshotReady(seq, ...)``."""

    seq: int
    chunk_size: int


@dataclass(frozen=True, slots=True)
class RequestTransact:
    """Server: transact ``tx_data`` (validated data forms, server ids) for ``principal``, with the
    instant of the shell's clock; answer with ``TxAccepted`` or ``TxFailed``. ``submission`` is the
    ``(client, seq)`` to commit it under at most once (None: no exactly-once)."""

    req: Any
    tx_data: list
    principal: Any
    submission: tuple[str, int] | None = None


@dataclass(frozen=True, slots=True)
class RequestScopes:
    """Server: the client asks to hold ``scopes`` instead (``(name, args)`` each); answer with
    ``ScopesDecided(req, ...)``."""

    req: Any
    scopes: tuple


Effect = (
    Send | SendStream | Close | SetTimer | Notify | Authorize | RequestLogRead | RequestSnapshot | RequestTransact
    | RequestScopes
)

__all__ = [
    "AuthDecision",
    "Authorize",
    "ChangeScopes",
    "Close",
    "Closed",
    "Effect",
    "Event",
    "LogRead",
    "Malformed",
    "Notify",
    "Opened",
    "Received",
    "RequestLogRead",
    "RequestScopes",
    "RequestSnapshot",
    "RequestTransact",
    "ScopesDecided",
    "Send",
    "SendStream",
    "SetTimer",
    "SnapshotReady",
    "SubmitTx",
    "Timer",
    "TxAccepted",
    "TxCommitted",
    "TxFailed",
]
