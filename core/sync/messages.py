"""The protocol's messages as values (one frozen dataclass per message type).

Client to server: ``Hello``, ``Sync``, ``Submit``, ``Ack``, ``Scopes``; server to client: ``Welcome``,
``Delta``, ``SnapshotBegin``/``SnapshotChunk``/``SnapshotEnd``, ``Resync``, ``TxOk``, ``TxRejected``,
``ScopesOk``, ``ScopesRejected``; both
ways: ``Ping``, ``Pong``, ``Error``. ``TYPE`` is the message's ``type`` on the wire; docs/protocol.md
describes each field and when it is sent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from .delta import Delta
from .snapshot import SnapshotBegin, SnapshotChunk, SnapshotEnd

PROTOCOL_VERSION = 2
"""The version every message carries (``v`` on the wire). Version 2 added exactly-once submission
(``Hello.client``, ``Submit.client``/``seq``, ``Delta.origin``)."""

MAX_CLIENT_ID = 128
"""Longest client id accepted (characters)."""

Req = int | str
"""A client-chosen request id (echoed in the answer)."""


@dataclass(frozen=True, slots=True)
class Hello:
    """Client -> server, first message: who I am and where my replica is (``t`` None: no replica).
    ``credentials`` are JSON data and a secret: never shown in a repr. ``client`` is the client's id
    (stable across restarts): deltas of its own submissions come with their ``origin``. ``batch``: the
    client reads ``deltas`` messages (several deltas in one), so a replica behind catches up faster."""

    TYPE: ClassVar[str] = "hello"

    credentials: Any = field(default=None, repr=False)
    t: int | None = None
    db_id: str | None = None
    client: str | None = None
    batch: bool = False


@dataclass(frozen=True, slots=True)
class Deltas:
    """Server -> client, to a client whose hello said ``batch``: consecutive deltas in one message,
    when several go out at once (a replica that was behind): one frame and one decode for all of them."""

    TYPE: ClassVar[str] = "deltas"

    deltas: tuple[Delta, ...]


@dataclass(frozen=True, slots=True)
class Welcome:
    """Server -> client, answer to an accepted ``Hello``: the server's database id and ``t``, whether
    the client resumes from its ``t`` (``mode="resume"``: deltas follow) or bootstraps
    (``"bootstrap"``: a snapshot follows), and how often to acknowledge applied deltas."""

    TYPE: ClassVar[str] = "welcome"

    db_id: str
    t: int
    mode: str
    ack_every: int


@dataclass(frozen=True, slots=True)
class Sync:
    """Client -> server: bring me up to date from ``t`` (after a gap or a broken snapshot);
    ``t`` None asks for a new snapshot."""

    TYPE: ClassVar[str] = "sync"

    t: int | None = None


@dataclass(frozen=True, slots=True)
class Ack:
    """Client -> server: every delta up to ``t`` is applied (frees the server's send window)."""

    TYPE: ClassVar[str] = "ack"

    t: int


@dataclass(frozen=True, slots=True)
class Submit:
    """Client -> server: transact ``tx_data`` (server ids, the client's own tempids). ``client`` and
    ``seq`` name the submission for good: the server commits it at most once and answers a
    resubmission with the original answer (without them it cannot recognise one)."""

    TYPE: ClassVar[str] = "submit"

    req: Req
    tx_data: list
    client: str | None = None
    seq: int | None = None


@dataclass(frozen=True, slots=True)
class TxOk:
    """Server -> client: request ``req`` committed as transaction ``t``; ``tempids`` maps the
    client's tempids to server entity ids (the client session maps them to local ids)."""

    TYPE: ClassVar[str] = "tx-ok"

    req: Req
    t: int
    tempids: dict


@dataclass(frozen=True, slots=True)
class TxRejected:
    """Server -> client: request ``req`` was not committed: the ``TxError`` code and message."""

    TYPE: ClassVar[str] = "tx-rejected"

    req: Req
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Scopes:
    """Client -> server, under a policy: hold these scopes from now on (the full list, each
    ``(name, args)``), instead of those subscribed so far."""

    TYPE: ClassVar[str] = "scopes"

    req: Req
    scopes: tuple[tuple[str, tuple], ...]


@dataclass(frozen=True, slots=True)
class ScopesOk:
    """Server -> client: request ``req``'s scopes are the session's now; ``datoms`` (``(e, a, v,
    added)``) bring the replica from the old scopes to the new ones at ``t``, which does not move."""

    TYPE: ClassVar[str] = "scopes-ok"

    req: Req
    t: int
    datoms: tuple


@dataclass(frozen=True, slots=True)
class ScopesRejected:
    """Server -> client: request ``req``'s scopes were refused (an unknown scope, wrong arguments, no
    policy): the code and message; the session keeps its scopes."""

    TYPE: ClassVar[str] = "scopes-rejected"

    req: Req
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Resync:
    """Server -> client: you fell too far behind (or the log cannot catch you up); a snapshot follows."""

    TYPE: ClassVar[str] = "resync"

    reason: str
    t: int


@dataclass(frozen=True, slots=True)
class Ping:
    """Either way: are you there? Answered by ``Pong`` with the same ``n``. The server's pings carry
    the ``t`` of the last delta it sent, so a client that lost one notices even when idle."""

    TYPE: ClassVar[str] = "ping"

    n: int
    t: int | None = None


@dataclass(frozen=True, slots=True)
class Pong:
    """Either way: the answer to ``Ping(n)``."""

    TYPE: ClassVar[str] = "pong"

    n: int


@dataclass(frozen=True, slots=True)
class Error:
    """Either way: the last message (or the connection) had a problem: a code and a message."""

    TYPE: ClassVar[str] = "error"

    code: str
    message: str


Message = (
    Hello | Welcome | Sync | Ack | Submit | TxOk | TxRejected | Resync | Ping | Pong | Error | Delta | Deltas
    | SnapshotBegin | SnapshotChunk | SnapshotEnd | Scopes | ScopesOk | ScopesRejected
)

MESSAGE_TYPES: dict[str, type] = {
    cls.TYPE: cls
    for cls in (
        Hello, Welcome, Sync, Ack, Submit, TxOk, TxRejected, Resync, Ping, Pong, Error, Delta, Deltas,
        SnapshotBegin, SnapshotChunk, SnapshotEnd, Scopes, ScopesOk, ScopesRejected,
    )
}
"""Wire ``type`` -> message class."""

CLIENT_MESSAGES = frozenset({"hello", "sync", "ack", "submit", "scopes", "ping", "pong", "error"})
SERVER_MESSAGES = frozenset(MESSAGE_TYPES) - {"hello", "sync", "ack", "submit", "scopes"}


__all__ = [
    "CLIENT_MESSAGES",
    "MAX_CLIENT_ID",
    "MESSAGE_TYPES",
    "PROTOCOL_VERSION",
    "SERVER_MESSAGES",
    "Ack",
    "Delta",
    "Deltas",
    "Error",
    "Hello",
    "Message",
    "Ping",
    "Pong",
    "Req",
    "Resync",
    "Scopes",
    "ScopesOk",
    "ScopesRejected",
    "SnapshotBegin",
    "SnapshotChunk",
    "SnapshotEnd",
    "Submit",
    "Sync",
    "TxOk",
    "TxRejected",
    "Welcome",
]
