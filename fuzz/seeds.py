"""Seed corpora from the test suite: run the tests that exercise each target and record what they feed
it (the codec's ``decode``, the EDN reader, the query and pull parsers, ``validate_wire_tx``, the
messages a server session receives), then write one file per distinct input to ``fuzz/corpus/<target>/``.

``python -m fuzz seed`` rebuilds the corpora; they are committed, so a fuzz run needs no test run.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import shutil
import sys
from collections import defaultdict
from typing import Any

from datsync.core.sync.events import Received
from datsync.core.sync.messages import CLIENT_MESSAGES, Hello, Submit

from .harness import CORPUS, MAX_LEN, ROOT

# by module path: some module names are shadowed by the function of the same name in the package
_edn = importlib.import_module("datsync.core.edn")
_pull = importlib.import_module("datsync.core.pull")
_qparser = importlib.import_module("datsync.core.query.parser")
_codec = importlib.import_module("datsync.core.sync.codec")
_server = importlib.import_module("datsync.core.sync.server")
_writes = importlib.import_module("datsync.core.sync.writes")

TESTS = ["tests/test_sync_codec.py", "tests/test_edn.py", "tests/test_query.py", "tests/test_pull.py",
         "tests/test_sync_writes.py", "tests/test_sync_sessions.py", "tests/test_entity.py",
         "properties/test_sync_properties.py"]
"""The tests whose inputs seed the corpora."""

HTTP_SEEDS = (
    b"GET /health HTTP/1.1\r\nHost: 127.0.0.1:8765\r\nUser-Agent: Python-urllib/3.11\r\nConnection: close\r\n\r\n",
    b"HEAD /health HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /status HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer secret\r\n\r\n",
    b"GET /datsync/client.js HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n",
    b"GET /%2e%2e/secret.txt?x=1 HTTP/1.0\r\n\r\n",
    b"POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
    b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n\x82\x80abcd",
    b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    b"GET / HTTP/1.1\r\nUpgrade: websocket\r\n",
    b"\x16\x03\x01 not http at all\r\n\r\n",
    b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 40 + b"\r\n",
)
"""Request heads the server's HTTP layer reads (the test suite sends them from other processes)."""

def _ws_frame_seeds() -> tuple[bytes, ...]:
    """Server frames a replica reads: messages of each length form, fragments with control frames
    between them, pings, closes, and frames that break the rules."""
    from datsync.shell.websocket import OP_BINARY, OP_CONTINUATION, OP_PING, OP_PONG, OP_TEXT, close_frame, frame

    def not_final(f: bytes) -> bytes:
        return bytes((f[0] & 0x7F,)) + f[1:]

    delta = b'{"v":2,"type":"delta","t":2,"tx":536870914,"datoms":[]}'
    return (
        frame(OP_BINARY, delta),
        frame(OP_BINARY, delta) + frame(OP_BINARY, b"x" * 200) + frame(OP_TEXT, "h\u00e9llo".encode()),
        frame(OP_BINARY, b"y" * 1000) + frame(OP_BINARY, b"z" * 1100),
        not_final(frame(OP_TEXT, b"ab")) + frame(OP_PING, b"p") + not_final(frame(OP_CONTINUATION, b"cd"))
        + frame(OP_PONG, b"") + frame(OP_CONTINUATION, b"ef"),
        frame(OP_PING, b"are you there") + close_frame(1001, "server/shutdown"),
        frame(OP_BINARY, delta) + close_frame(1000) + frame(OP_BINARY, b"after"),
        frame(OP_BINARY, b"m", b"\x01\x02\x03\x04"),
        frame(OP_CONTINUATION, b"nothing to continue"),
        bytes((0xC2, 3)) + b"rsv",
        frame(OP_TEXT, b"\xff\xfe"),
        bytes((0x82, 127)) + (1 << 40).to_bytes(8, "big"),
    )


WS_FRAME_SEEDS = _ws_frame_seeds()
"""Frames a replica reads from its server (the test suite's are made in its own process)."""

MAX_SEEDS = 400
"""Most seeds kept per target (a stable choice among the distinct inputs)."""

MAX_FRAMES = 40
"""Most frames in one session seed."""


def _edn_text(x: Any) -> bytes | None:
    if isinstance(x, str):
        return x.encode("utf-8", "surrogatepass")
    try:
        return _edn.write_edn(x).encode("utf-8", "surrogatepass")
    except Exception:
        return None


class Recorder:
    """A profile hook that records the inputs of the watched functions, and a pytest plugin that
    groups a test's session frames into one seed."""

    def __init__(self) -> None:
        self.seeds: dict[str, set[bytes]] = defaultdict(set)
        self.frames: list[bytes] = []
        self.watch = {
            _codec.decode.__code__: self._codec,
            _edn._parse.__code__: lambda f: self._add("edn", _edn_text(f.f_locals.get("text"))),
            _qparser.parse_query.__code__: lambda f: self._add("query", _edn_text(f.f_locals.get("query"))),
            _pull.parse_pull_pattern.__code__: lambda f: self._add("pull", _edn_text(f.f_locals.get("pattern"))),
            _pull._read.__code__: lambda f: self._add("pull", _edn_text(f.f_locals.get("text"))),
            _writes.validate_wire_tx.__code__: self._wire_tx,
            _server.server_step.__code__: self._session,
        }

    def _add(self, target: str, data: bytes | None) -> None:
        if data is not None and len(data) <= MAX_LEN:
            self.seeds[target].add(data)

    def _codec(self, frame: Any) -> None:
        data = frame.f_locals.get("data")
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogatepass")
        if isinstance(data, bytes | bytearray):
            self._add("codec", bytes(data))

    def _wire_tx(self, frame: Any) -> None:
        with contextlib.suppress(Exception):
            self._add("wire-tx", _codec.encode(Submit(1, list(frame.f_locals.get("tx_data")))))

    def _session(self, frame: Any) -> None:
        event = frame.f_locals.get("event")
        if type(event) is Received and event.message.TYPE in CLIENT_MESSAGES and len(self.frames) < MAX_FRAMES:
            with contextlib.suppress(Exception):
                self.frames.append(_codec.encode(event.message))

    def profile(self, frame: Any, event: str, arg: Any) -> None:
        if event == "call":
            f = self.watch.get(frame.f_code)
            if f is not None:
                f(frame)

    # pytest hooks
    def pytest_runtest_setup(self, item: Any) -> None:
        self.frames = []

    def pytest_runtest_teardown(self, item: Any) -> None:
        if self.frames:
            self._add("session", b"\n".join(self.frames))


def _choose(seeds: set[bytes]) -> list[bytes]:
    by_hash = sorted(seeds, key=lambda d: hashlib.sha1(d).digest())
    return by_hash[:MAX_SEEDS]


def build(tests: list[str] = TESTS) -> dict[str, int]:
    """Run ``tests`` recording the targets' inputs; write the corpora; the number of seeds per target."""
    import pytest

    rec = Recorder()
    sys.setprofile(rec.profile)
    try:
        pytest.main(["-q", "-x", "-p", "no:cacheprovider", "-m", "not slow", *[str(ROOT / t) for t in tests]],
                    plugins=[rec])
    finally:
        sys.setprofile(None)
    # every wire transaction is also a session input after a hello
    hello = _codec.encode(Hello())
    for tx in list(rec.seeds["wire-tx"])[:100]:
        rec._add("session", hello + b"\n" + tx)
    for data in HTTP_SEEDS:
        rec._add("http", data)
    for data in WS_FRAME_SEEDS:
        rec._add("ws-frames", data)
    counts = {}
    for target, seeds in sorted(rec.seeds.items()):
        d = CORPUS / target
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        chosen = _choose(seeds)
        for data in chosen:
            (d / hashlib.sha1(data).hexdigest()[:16]).write_bytes(data)
        counts[target] = len(chosen)
    return counts
