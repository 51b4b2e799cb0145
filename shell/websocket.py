"""WebSocket framing (RFC 6455) without I/O: frames written for either side, and a frame reader that
turns bytes, however they were cut by the network, into whole messages and control frames.

Both ends of datsync use it: the server frames a shared delta once and writes it to every socket
(``frame(OP_BINARY, payload)``, unmasked); a Python replica reads its server's frames where they are
read (``FrameReader``, no task per message) and masks what it sends with a key it is given (the caller
draws it from ``os.urandom``: masking keys must be unpredictable). No extension is negotiated, so a
data frame is its payload behind a header.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from dataclasses import dataclass

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA
_OPCODES = frozenset({OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG})

CLOSE_NORMAL = 1000
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_NO_STATUS = 1005
CLOSE_ABNORMAL = 1006
CLOSE_INVALID_DATA = 1007
CLOSE_TOO_BIG = 1009

CLOSE_NAMES = {1000: "NORMAL_CLOSURE", 1001: "GOING_AWAY", 1002: "PROTOCOL_ERROR", 1003: "UNSUPPORTED_DATA",
               1005: "NO_STATUS_RCVD", 1006: "ABNORMAL_CLOSURE", 1007: "INVALID_FRAME_PAYLOAD_DATA",
               1008: "POLICY_VIOLATION", 1009: "MESSAGE_TOO_BIG", 1010: "MANDATORY_EXT", 1011: "INTERNAL_ERROR",
               1012: "SERVICE_RESTART", 1013: "TRY_AGAIN_LATER", 1015: "TLS_HANDSHAKE_FAILED"}
"""RFC 6455 7.4.1's close codes by the names trio-websocket and wsproto give them."""

_WEBSOCKET_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def mask(payload: bytes, key: bytes) -> bytes:
    """``payload`` XORed with the 4-byte ``key`` repeated (RFC 6455 5.3): masks and unmasks alike."""
    n = len(payload)
    if not n:
        return b""
    repeated = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(repeated, "little")).to_bytes(n, "little")


def frame(opcode: int, payload: bytes, key: bytes | None = None) -> bytes:
    """``payload`` as one final frame of ``opcode``: unmasked (what a server sends, so the same bytes
    can go to every connection) or masked with the 4-byte ``key`` (what a client must send)."""
    n = len(payload)
    b0 = 0x80 | opcode
    masked = 0 if key is None else 0x80
    if n < 126:
        head = bytes((b0, masked | n))
    elif n < 1 << 16:
        head = struct.pack("!BBH", b0, masked | 126, n)
    else:
        head = struct.pack("!BBQ", b0, masked | 127, n)
    if key is None:
        return head + payload
    return head + key + mask(payload, key)


def close_reason(reason: str) -> str:
    """``reason`` cut to fit a WebSocket close frame (123 bytes of UTF-8)."""
    data = reason.encode("utf-8")
    return reason if len(data) <= 123 else data[:120].decode("utf-8", "ignore") + "..."


def close_frame(code: int, reason: str = "", key: bytes | None = None) -> bytes:
    """A close frame with ``code`` and ``reason`` (cut to fit)."""
    return frame(OP_CLOSE, code.to_bytes(2, "big") + close_reason(reason).encode("utf-8"), key)


def close_name(code: int) -> str:
    """The RFC's name of a close code (``GOING_AWAY`` for 1001), or ``""`` for an unnamed one."""
    return CLOSE_NAMES.get(code, "")


def handshake_key(nonce: bytes) -> str:
    """A client's ``Sec-WebSocket-Key`` from 16 random bytes."""
    return base64.b64encode(nonce).decode("ascii")


def handshake_accept(key: str) -> str:
    """The ``Sec-WebSocket-Accept`` a server answers to the client's ``key``."""
    return base64.b64encode(hashlib.sha1(key.encode("ascii") + _WEBSOCKET_GUID).digest()).decode("ascii")


class WebSocketClosed(ConnectionError):
    """The connection is closed: the close ``code`` and ``reason`` (1006 when it was lost without one)."""

    def __init__(self, code: int, reason: str = ""):
        super().__init__(f"WebSocket closed: {code} {reason or close_name(code)}")
        self.code = code
        self.reason = reason

    @property
    def why(self) -> str:
        """``"1001 server/shutdown"``: the code and the reason, or the code's name when there is none."""
        return f"{self.code} {self.reason or close_name(self.code)}"


@dataclass(frozen=True)
class Ping:
    """A ping frame: answer it with a pong carrying ``payload``."""

    payload: bytes


@dataclass(frozen=True)
class Pong:
    """A pong frame."""

    payload: bytes


@dataclass(frozen=True)
class CloseReceived:
    """The peer's close frame: its ``code`` (1005 when it gave none) and ``reason``."""

    code: int
    reason: str


@dataclass(frozen=True)
class Violation:
    """Bytes that break the framing rules (or the message size bound): close with ``code`` saying ``reason``."""

    code: int
    reason: str


FrameEvent = bytes | str | Ping | Pong | CloseReceived | Violation
"""What ``FrameReader.feed`` returns: a whole message (``bytes`` binary, ``str`` text) or a control event."""


_HEAD_SIZES = {126: 4, 127: 10}
"""A frame header's size by its 7-bit length field, where a longer length follows (else 2)."""


def _valid_close_code(code: int) -> bool:
    """Whether a peer may send ``code`` in a close frame (RFC 6455 7.4)."""
    return (1000 <= code <= 1014 and code not in (1004, CLOSE_NO_STATUS, CLOSE_ABNORMAL)) or 3000 <= code <= 4999


class FrameReader:
    """One direction of a connection, read: ``feed(bytes)`` returns the messages and control frames
    completed by those bytes. ``masked``: the frames are a client's (they must be masked; a server's
    must not be). A message (all its fragments) above ``max_message_size`` bytes is a ``Violation``
    (1009) as soon as its header says so, before its payload is kept. After a ``CloseReceived`` or a
    ``Violation`` nothing more is read."""

    def __init__(self, max_message_size: int, *, masked: bool = False):
        self.max_message_size = max_message_size
        self.masked = masked
        self.done = False
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._need = 2
        self._fragments: list[bytes] = []
        self._fragments_size = 0
        self._fragments_opcode: int | None = None

    def feed(self, data: bytes) -> list[FrameEvent]:
        """The messages and control frames that ``data`` completes, in order."""
        if self.done or not data:
            return []
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered < self._need:
            return []
        buf = self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)
        out: list[FrameEvent] = []
        pos = self._parse(buf, out)
        rest = len(buf) - pos
        self._chunks = [buf[pos:]] if rest and not self.done else []
        self._buffered = rest
        return out

    def _parse(self, buf: bytes, out: list[FrameEvent]) -> int:
        """Read the whole frames at the start of ``buf`` into ``out``; the offset of the first byte not read."""
        pos, end = 0, len(buf)
        while not self.done:
            if end - pos < 2:
                self._need = 2
                return pos
            b0, b1 = buf[pos], buf[pos + 1]
            opcode, length = b0 & 0x0F, b1 & 0x7F
            head = _HEAD_SIZES.get(length, 2)
            if end - pos < head:
                self._need = head
                return pos
            if head > 2:  # a 16- or 64-bit length follows
                length = int.from_bytes(buf[pos + 2:pos + head], "big")
            problem = self._check_header(b0, b1, opcode, length)
            if problem is not None:
                self.done = True
                out.append(problem)
                return pos
            if self.masked:
                head += 4
            if end - pos < head + length:
                self._need = head + length
                return pos
            payload = buf[pos + head:pos + head + length]
            if self.masked:
                payload = mask(payload, buf[pos + head - 4:pos + head])
            pos += head + length
            self._frame(b0 & 0x80, opcode, payload, out)
        return pos

    def _check_header(self, b0: int, b1: int, opcode: int, length: int) -> Violation | None:
        """Why a frame with this header may not be read, or None."""
        if b0 & 0x70:
            return Violation(CLOSE_PROTOCOL_ERROR, "reserved bits set: no extension was negotiated")
        if opcode not in _OPCODES:
            return Violation(CLOSE_PROTOCOL_ERROR, f"unknown opcode {opcode:#x}")
        if bool(b1 & 0x80) != self.masked:
            return Violation(CLOSE_PROTOCOL_ERROR, "a client's frames must be masked" if self.masked
                             else "a server's frames must not be masked")
        if opcode >= OP_CLOSE:
            if not b0 & 0x80 or length > 125:
                return Violation(CLOSE_PROTOCOL_ERROR, "a control frame must be final and at most 125 bytes")
            return None
        if (opcode == OP_CONTINUATION) != (self._fragments_opcode is not None):
            return Violation(CLOSE_PROTOCOL_ERROR, "a continuation frame outside a fragmented message"
                             if opcode == OP_CONTINUATION else "a new message inside a fragmented one")
        if self._fragments_size + length > self.max_message_size:
            return Violation(CLOSE_TOO_BIG, f"Exceeded maximum message size: {self.max_message_size} bytes")
        return None

    def _frame(self, fin: int, opcode: int, payload: bytes, out: list[FrameEvent]) -> None:
        if opcode >= OP_CLOSE:
            out.append(self._control(opcode, payload))
            return
        if opcode != OP_CONTINUATION:
            if fin:
                out.append(self._message(opcode, payload))
                return
            self._fragments_opcode = opcode
        self._fragments.append(payload)
        self._fragments_size += len(payload)
        if fin:
            whole = b"".join(self._fragments)
            opcode = self._fragments_opcode  # type: ignore[assignment]
            self._fragments, self._fragments_size, self._fragments_opcode = [], 0, None
            out.append(self._message(opcode, whole))

    def _message(self, opcode: int, payload: bytes) -> FrameEvent:
        if opcode == OP_BINARY:
            return payload
        try:
            return payload.decode("utf-8")
        except UnicodeDecodeError:
            self.done = True
            return Violation(CLOSE_INVALID_DATA, "a text message that is not UTF-8")

    def _control(self, opcode: int, payload: bytes) -> FrameEvent:
        if opcode == OP_PING:
            return Ping(payload)
        if opcode == OP_PONG:
            return Pong(payload)
        self.done = True
        if not payload:
            return CloseReceived(CLOSE_NO_STATUS, "")
        code = int.from_bytes(payload[:2], "big")
        if len(payload) == 1 or not _valid_close_code(code):
            return Violation(CLOSE_PROTOCOL_ERROR, "a close frame with an invalid code")
        try:
            return CloseReceived(code, payload[2:].decode("utf-8"))
        except UnicodeDecodeError:
            return Violation(CLOSE_INVALID_DATA, "a close reason that is not UTF-8")
