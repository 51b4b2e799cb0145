"""The fuzz targets: one function of bytes per parser or state machine that reads untrusted input.

Each target lists the error types its documentation promises (``allowed``); any other exception is a
crash. Some targets also check a property of what they accept (the codec re-encodes what it decoded;
EDN reads back what it wrote; the server can send every delta of what it committed).
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import h11

from datsync.core import QueryError, TxError, empty_db, kw, transact
from datsync.core.edn import EdnError, read_edn_all, write_edn
from datsync.core.history import basis_t
from datsync.core.pull import parse_pull_pattern
from datsync.core.query.parser import parse_query
from datsync.core.sync import (
    AuthDecision,
    Authorize,
    Close,
    LogRead,
    Opened,
    ProtocolError,
    RequestLogRead,
    RequestSnapshot,
    RequestTransact,
    Send,
    SendStream,
    ServerConfig,
    SnapshotReady,
    Submit,
    Timer,
    TxAccepted,
    TxCommitted,
    TxFailed,
    answer_tempids,
    decode,
    delta_from_report,
    encode,
    encode_snapshot,
    new_server_session,
    receive,
    server_step,
    validate_wire_tx,
)
from datsync.shell.server.http import BadRequest, http_connection, read_request, response
from datsync.shell.websocket import CloseReceived, FrameReader, Violation


class FuzzFailure(AssertionError):
    """A target's property does not hold for an input (as much a crash as an undocumented error)."""


@dataclass(frozen=True)
class Target:
    """A fuzz target: ``run(data)`` may raise only ``allowed`` errors; ``tokens`` guide mutations."""

    name: str
    run: Callable[[bytes], None]
    allowed: tuple[type[BaseException], ...]
    tokens: tuple[bytes, ...]
    doc: str


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def _sendable(m: Any) -> bytes:
    """``encode(m)``; what was read from the wire or committed must be sendable: failing is a crash."""
    try:
        return encode(m)
    except ProtocolError as e:
        raise FuzzFailure(f"cannot encode {type(m).__name__}: {e}") from None


# -- the codec ---------------------------------------------------------------------------------------


def codec_decode(data: bytes) -> None:
    """``decode`` raises only ``ProtocolError``; what it accepts encodes and decodes back to itself."""
    m = decode(data)
    wire = _sendable(m)
    back = decode(wire)
    if not (back == m or encode(back) == wire):  # NaN is not equal to itself, its encoding is
        raise FuzzFailure(f"decode(encode(m)) != m for {m!r:.200}")


# -- EDN ---------------------------------------------------------------------------------------------


def edn_reader(data: bytes) -> None:
    """``read_edn_all`` raises only ``EdnError``; what it reads writes and reads back to the same value."""
    values = read_edn_all(_text(data))
    for v in values:
        text = write_edn(v)
        back = read_edn_all(text)
        if len(back) != 1 or not (back[0] == v or write_edn(back[0]) == text):
            raise FuzzFailure(f"read_edn(write_edn(v)) != v for {text[:200]!r}")


# -- query and pull ----------------------------------------------------------------------------------

SCHEMA = {
    "person/name": {"db/valueType": kw("db.type/string"), "db/cardinality": kw("db.cardinality/one"),
                    "db/unique": kw("db.unique/identity")},
    "person/age": {"db/valueType": kw("db.type/long"), "db/cardinality": kw("db.cardinality/one"),
                   "db/index": True},
    "person/friends": {"db/valueType": kw("db.type/ref"), "db/cardinality": kw("db.cardinality/many")},
    "person/aliases": {"db/valueType": kw("db.type/string"), "db/cardinality": kw("db.cardinality/many")},
    "person/address": {"db/valueType": kw("db.type/ref"), "db/cardinality": kw("db.cardinality/one"),
                       "db/isComponent": True},
    "address/city": {"db/valueType": kw("db.type/string"), "db/cardinality": kw("db.cardinality/one")},
    "person/born": {"db/valueType": kw("db.type/instant"), "db/cardinality": kw("db.cardinality/one")},
    "person/id": {"db/valueType": kw("db.type/uuid"), "db/cardinality": kw("db.cardinality/one"),
                  "db/unique": kw("db.unique/value")},
    "person/score": {"db/valueType": kw("db.type/double"), "db/cardinality": kw("db.cardinality/one")},
}
"""The schema the pull parser, the wire transactions and the server session are fuzzed against."""

T0 = _dt.datetime(2024, 1, 1, tzinfo=_dt.UTC)
_BASE = transact(empty_db(SCHEMA, flavor="datomic"), [
    {"db/id": "ivan", "person/name": "Ivan", "person/age": 31, "person/aliases": ["Vanya"],
     "person/address": {"address/city": "Moscow"}},
    {"person/name": "Petr", "person/age": 27, "person/friends": ["ivan"]},
], instant=T0).db_after


def query_parser(data: bytes) -> None:
    """``parse_query`` raises only ``QueryError``."""
    parse_query(_text(data))


def pull_parser(data: bytes) -> None:
    """``parse_pull_pattern`` raises only ``QueryError``."""
    parse_pull_pattern(_BASE, _text(data))


# -- wire transactions -------------------------------------------------------------------------------


def wire_tx(data: bytes) -> None:
    """A submit off the wire: decoded (``ProtocolError``), validated (``TxError``), transacted on a
    Datomic-flavored database (``TxError``); the delta of what commits can be sent to every replica."""
    m = decode(data)
    if type(m) is not Submit:
        return
    report = transact(_BASE, validate_wire_tx(m.tx_data), instant=T0)
    _sendable(delta_from_report(report))


# -- a server session --------------------------------------------------------------------------------

_SESSION_CONFIG = ServerConfig(db_id="fuzz", window=4, max_buffered=8, chunk_size=3, heartbeat_interval=1.0,
                               heartbeat_timeout=3.0, handshake_timeout=2.0, max_pending_tx=3, max_errors=4)


class _Server:
    """A server session and the effects it asks for, carried out in memory (the shell's job)."""

    def __init__(self) -> None:
        self.db = _BASE
        self.log: dict[int, tuple[Any, bytes]] = {}
        self.session = new_server_session(_SESSION_CONFIG, basis_t(_BASE))
        self.now = 0.0

    def feed(self, event: Any) -> None:
        todo = [event]
        while todo and self.session.phase != "closed":
            self.session, effects = server_step(self.session, todo.pop(0))
            for f in effects:
                todo.extend(self.perform(f))

    def perform(self, f: Any) -> list:
        t = type(f)
        if t is Send:
            if type(f.data) is not bytes:
                raise FuzzFailure(f"Send of {type(f.data).__name__}")
            return []
        if t is SendStream:
            for data in f.messages:
                decode(data)
            return []
        if t is Authorize:
            return [AuthDecision({"auth": "fuzz"} if f.credentials != "deny" else None)]
        if t is RequestSnapshot:
            snap_t, messages = encode_snapshot(self.db, f.chunk_size, db_id="fuzz")
            return [SnapshotReady(f.seq, snap_t, messages)]
        if t is RequestLogRead:
            deltas = tuple(self.log[i][0] for i in range(f.from_t + 1, f.to_t + 1) if i in self.log)
            return [LogRead(f.seq, f.from_t, deltas if len(deltas) == f.to_t - f.from_t else None)]
        if t is RequestTransact:
            try:
                report = transact(self.db, f.tx_data, instant=T0)
            except TxError as e:
                return [TxFailed(f.req, e.code, e.message)]
            self.db = report.db_after
            d = delta_from_report(report)
            self.log[d.t] = (d, _sendable(d))
            return [TxCommitted(d, self.log[d.t][1]), TxAccepted(f.req, d.t, answer_tempids(report))]
        if t is Close:
            return []
        return []  # SetTimer: the fuzz input's blank lines fire timers


def server_session(data: bytes) -> None:
    """A server session fed arbitrary frames (one per line; an empty line advances the clock and
    fires the timer): ``server_step`` never raises, every effect can be carried out."""
    srv = _Server()
    srv.feed(Opened(0.0))
    for frame in data.split(b"\n")[:200]:
        if frame:
            srv.feed(receive(frame))
        else:
            srv.now += 1.5
            srv.feed(Timer(srv.now))


# -- HTTP on the WebSocket port ---------------------------------------------------------------------


class _Pieces:
    """A peer's bytes as a socket hands them over: in pieces of varying sizes, then the end of the stream."""

    SIZES = (1, 7, 4096, 2, 300)

    def __init__(self, data: bytes):
        self.data = data
        self.at = 0
        self.calls = 0

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        n = min(max_bytes or 65536, self.SIZES[self.calls % len(self.SIZES)])
        self.calls += 1
        piece = self.data[self.at:self.at + n]
        self.at += len(piece)
        return piece


def _answerable(http: Any, status: int, head_only: bool) -> None:
    """What the server answers on ``http`` can be written: a failure to write would end the server."""
    try:
        response(http, status, "an answer", head_only=head_only)
    except Exception as e:
        raise FuzzFailure(f"cannot answer {status} (head_only={head_only}): {e!r}") from None


def http_head(data: bytes) -> None:
    """The server reading ``data`` as a request head (in pieces, then the end of the stream): it never
    raises, keeps the bytes as they came (an upgrade replays them), and can answer whatever it read,
    and a peer that stops half-way (the answer to a timeout)."""
    http = http_connection()
    reading = read_request(_Pieces(data), http)
    try:
        reading.send(None)
    except StopIteration as done:
        buf, request = done.value
    else:
        reading.close()
        raise FuzzFailure("read_request awaited something other than its stream")
    if not data.startswith(buf):
        raise FuzzFailure("the bytes read are not the bytes sent")
    if request is None:
        if buf:
            raise FuzzFailure("bytes were read and neither parsed nor refused")
    elif type(request) is BadRequest:
        if request.status not in (400, 431):
            raise FuzzFailure(f"a bad request answered {request.status}")
        _answerable(http, request.status, False)
    elif not request.is_upgrade:
        head_only = request.method == "HEAD"
        for status in (200, 401, 404) if request.method in ("GET", "HEAD") else (405,):
            again = http_connection()
            again.receive_data(buf)
            again.next_event()
            _answerable(again, status, head_only)
    cut = http_connection()  # the peer stops half-way: the handshake timeout answers 408
    cut.receive_data(data[:len(data) // 2])
    try:
        if cut.next_event() is h11.NEED_DATA:
            _answerable(cut, 408, False)
    except h11.RemoteProtocolError:
        _answerable(cut, 400, False)


WS_MAX_MESSAGE = 1024
"""The message size bound of the ``ws-frames`` target: small, so that inputs reach it."""


def ws_frames(data: bytes) -> None:
    """A replica reading ``data`` as its server's frames: it never raises, the events do not depend on
    how the network cut the bytes (whole, in a socket's pieces, a byte at a time), nothing follows a
    close or a violation, and no message is above the bound; a server reading them as a client's
    frames (masked) never raises either."""
    whole = FrameReader(WS_MAX_MESSAGE).feed(data)
    for size in (*_Pieces.SIZES, 1):
        reader = FrameReader(WS_MAX_MESSAGE)
        cut: list = []
        step = (size,) if size == 1 else _Pieces.SIZES
        at = k = 0
        while at < len(data):
            n = step[k % len(step)]
            cut += reader.feed(data[at:at + n])
            at, k = at + n, k + 1
        if cut != whole:
            raise FuzzFailure(f"the frames read depend on how the bytes were cut ({size}): {cut!r} != {whole!r}")
    for i, event in enumerate(whole):
        if type(event) in (CloseReceived, Violation) and i != len(whole) - 1:
            raise FuzzFailure(f"{event!r} is followed by more events")
        if type(event) in (bytes, str) and len(event) > WS_MAX_MESSAGE:
            raise FuzzFailure(f"a message of {len(event)} above the bound of {WS_MAX_MESSAGE}")
    FrameReader(WS_MAX_MESSAGE, masked=True).feed(data)


# -- the table ---------------------------------------------------------------------------------------

_JSON_TOKENS = (b'{"v":2,"type":"', b'"client":"c","seq":',
                b'"}', b'":', b'",', b"[", b"]", b"{", b"}", b",", b"null", b"true", b"-0",
                b"1e999", b"9007199254740993", b'"\\ud800"', b'"~t', b'"~u', b'"~n', b'"~d', b'"~f', b'"~m', b'"~b',
                b'"~:', b'"~$', b'"~~', b'["~#t",', b'["~#s",', b'["~#m",', b'"credentials":', b'"req":', b'"tx":',
                b'"t":', b'"datoms":', b'"db/add"', b'"db/retract"', b'"db/cas"', b'"db/retractEntity"',
                b'"db.fn/retractAttribute"', b'"db/id"', b'"person/name"', b'"person/friends"', b'"person/age"',
                b'"person/address"')
_EDN_TOKENS = (b"[", b"]", b"(", b")", b"{", b"}", b"#{", b"#_", b"#inst ", b"#uuid ", b'"', b"\\u", b"\\newline",
               b"##NaN", b"##Inf", b"42N", b"1.5M", b"1e999", b"-0.0", b":db/id", b":person/name", b"?e", b"$",
               b"_", b"...", b"*", b";", b",", b"nil", b"true", b"#db/id", b"/", b"'", b"^", b"#", b"\\")
_QUERY_TOKENS = (*_EDN_TOKENS, b":find", b":where", b":in", b":with", b":keys", b":strs", b":syms", b"%", b"not",
                 b"not-join", b"or", b"or-join", b"and", b"pull", b"count", b"(max 3 ?x)", b"ground", b"get-else",
                 b"missing?", b"[?e ?a ?v]", b"[(> ?a 1)]", b"(rule ?x)", b"[[?x]]", b"[?x ...]", b".")
_HTTP_TOKENS = (b"GET ", b"HEAD ", b"POST ", b"CONNECT ", b"OPTIONS * ", b" HTTP/1.1\r\n", b" HTTP/1.0\r\n",
                b" HTTP/2\r\n", b"/health", b"/status", b"/datsync/client.js", b"?x=1", b"Host: x\r\n",
                b"Upgrade: websocket\r\n", b"Connection: Upgrade\r\n", b"Connection: close\r\n",
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", b"Sec-WebSocket-Version: 13\r\n",
                b"Authorization: Bearer t\r\n", b"Content-Length: 5\r\n", b"Content-Length: -1\r\n",
                b"Transfer-Encoding: chunked\r\n", b"Expect: 100-continue\r\n", b"\r\n", b"\r\n\r\n", b"\n",
                b":", b" ", b"\t", b"\x00", b"\xff", b"\x16\x03\x01")
_WS_TOKENS = (b"\x82", b"\x81", b"\x02", b"\x00", b"\x80", b"\x88", b"\x89", b"\x8a", b"\x8b", b"\xc2", b"\x7e",
              b"\x7f", b"\x7d", b"\x04\x00", b"\xff\xff", b"\x00\x00\x00\x00\x00\x01\x00\x00", b"\x03\xe8",
              b"\x03\xe9", b"\x03\xed", b"\x0f\xa0", b"\xc3\xa9", b"\xff", b'{"v":2,"type":"delta"}')
_PULL_TOKENS = (*_EDN_TOKENS, b":person/friends", b":person/_friends", b":person/address", b":person/age",
                b"{:person/friends ...}", b":limit", b":default", b":as", b":xform", b"(limit", b"*", b"(default",
                b"[:person/name :as", b":db/id", b"{:person/friends 3}")

TARGETS: dict[str, Target] = {t.name: t for t in (
    Target("codec", codec_decode, (ProtocolError,), _JSON_TOKENS,
           "the wire codec's decode (bytes -> message)"),
    Target("edn", edn_reader, (EdnError,), _EDN_TOKENS, "the EDN reader (and writer round trip)"),
    Target("query", query_parser, (QueryError,), _QUERY_TOKENS, "the Datalog query parser"),
    Target("pull", pull_parser, (QueryError,), _PULL_TOKENS, "the pull pattern parser"),
    Target("wire-tx", wire_tx, (ProtocolError, TxError), _JSON_TOKENS,
           "a submit's transaction: decode, validate, transact, encode the delta"),
    Target("session", server_session, (), (*_JSON_TOKENS, b"\n", b"\n\n"),
           "a server session fed arbitrary frames"),
    Target("http", http_head, (), _HTTP_TOKENS, "HTTP on the WebSocket port: a request head read and answered"),
    Target("ws-frames", ws_frames, (), _WS_TOKENS, "a replica reading its server's WebSocket frames"),
)}
"""Every fuzz target by name."""
