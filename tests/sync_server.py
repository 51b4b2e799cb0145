"""Helpers for end-to-end tests: `datsync serve` as a real process on 127.0.0.1, raw WebSocket peers."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import trio
import trio_websocket

from datsync.core.sync import PROTOCOL_VERSION
from datsync.shell.store import is_store_url

ROOT = Path(__file__).resolve().parents[1]

SCHEMA_EDN = """\
{:person/name {:db/valueType :db.type/string :db/cardinality :db.cardinality/one :db/unique :db.unique/identity}
 :person/n    {:db/valueType :db.type/long :db/cardinality :db.cardinality/one}}
"""

FAST_RECONNECT = {"backoff": (0.02, 0.2)}
"""Replica options for tests: reconnect quickly."""


class ServerProcess:
    """``python -m datsync.shell serve --port P --store STORE ARGS...``; ``url`` from its first stdout line.
    ``store`` is a file or a ``postgresql://`` URL (then ``log`` is needed: where stderr goes)."""

    def __init__(self, store: Path | str, *args: str, port: int = 0, log: Path | None = None):
        self.store = store if is_store_url(store) else Path(store)
        self.args = [str(a) for a in args]
        self.port = port
        if log is None:
            assert isinstance(self.store, Path), "a server on a database URL needs a log file"
            log = self.store.with_suffix(".log")
        self.log = log
        self.proc: subprocess.Popen | None = None
        self.banner = ""
        self.url = ""

    def start(self, timeout: float = 20.0) -> ServerProcess:
        cmd = [sys.executable, "-m", "datsync.shell", "serve", "--port", str(self.port), "--store", str(self.store),
               *self.args]
        env = {k: v for k, v in os.environ.items() if k != "DATSYNC_TOKEN"}
        with open(self.log, "ab") as err:
            self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, cwd=ROOT, env=env, text=True)
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        if not line or not line[0].startswith("datsync serving "):
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError(f"server did not start: {line!r}\n{self.log_text()}")
        self.banner = line[0].strip()
        self.url = self.banner.split()[2]
        self.port = int(self.url.rsplit(":", 1)[1].strip("/"))
        return self

    @property
    def http(self) -> str:
        return self.url.replace("ws://", "http://")

    def field(self, name: str) -> str:
        """A ``name=value`` field of the banner."""
        return next(w.split("=", 1)[1] for w in self.banner.split() if w.startswith(name + "="))

    def get(self, path: str = "/health", token: str | None = None) -> tuple[int, Any]:
        request = urllib.request.Request(self.http.rstrip("/") + path)
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                body = response.read()
                status = response.status
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()
        return status, json.loads(body) if body.startswith(b"{") else body.decode()

    def health(self) -> dict:
        status, body = self.get("/health")
        assert status == 200, body
        return body

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        """Signal the server and wait for it to exit; its exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        """``kill -9``."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def log_text(self) -> str:
        try:
            return self.log.read_text()
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class Servers:
    """Starts servers for a test and makes sure none outlives it."""

    def __init__(self, tmp_path: Path):
        self.tmp_path = tmp_path
        self.started: list[ServerProcess] = []
        self.schema = tmp_path / "schema.edn"
        self.schema.write_text(SCHEMA_EDN)

    def start(self, store: str = "db.sqlite", *args: str, port: int = 0, schema: bool = True) -> ServerProcess:
        """A server on ``store``: a file name in the test's directory, or a ``postgresql://`` URL."""
        extra = ["--schema", str(self.schema)] if schema else []
        if is_store_url(store):
            log = self.tmp_path / f"server-{len(self.started)}.log"
            server = ServerProcess(store, *extra, *args, port=port, log=log)
        else:
            server = ServerProcess(self.tmp_path / store, *extra, *args, port=port)
        self.started.append(server)
        return server.start()

    def close(self) -> None:
        for s in self.started:
            if s.alive():
                s.kill()


def raw_http(port: int, data: bytes) -> bytes:
    """What the server at ``port`` answers ``data``, until it closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


def wait_until(predicate: Any, timeout: float = 10.0, interval: float = 0.02) -> Any:
    """Poll ``predicate`` (a condition in another process, with no event to await) until truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


async def write_concurrently(replicas: dict[str, Any], writers: int, n: int) -> None:
    """``writers`` tasks per replica (keyed by a tag), each transacting ``n`` new people in turn."""
    async with trio.open_nursery() as nursery:
        for tag, rep in replicas.items():
            for k in range(writers):
                async def write(rep: Any = rep, tag: str = tag, k: int = k) -> None:
                    for i in range(n):
                        await rep.transact([{"person/name": f"{tag}{k}-{i}", "person/n": i}])
                nursery.start_soon(write)


# ------------------------------------------------------------------------------------------------
# Raw protocol peers


def msg(type_: str, **fields: Any) -> str:
    return json.dumps({"v": PROTOCOL_VERSION, "type": type_, **fields})


HELLO = msg("hello", credentials=None, t=None, db_id=None)


async def next_message(ws: trio_websocket.WebSocketConnection, timeout: float = 10.0) -> dict:
    with trio.fail_after(timeout):
        data = await ws.get_message()
    return json.loads(data)


async def expect(ws: trio_websocket.WebSocketConnection, type_: str, timeout: float = 10.0, **fields: Any) -> dict:
    """Read messages until one of ``type_`` with ``fields``; return it (others are skipped)."""
    with trio.fail_after(timeout):
        while True:
            m = json.loads(await ws.get_message())
            if m.get("type") == type_ and all(m.get(k) == v for k, v in fields.items()):
                return m


async def bootstrap_raw(ws: trio_websocket.WebSocketConnection, hello: str = HELLO) -> dict:
    """Say hello and read the welcome and the snapshot; the welcome."""
    await ws.send_message(hello)
    welcome = await expect(ws, "welcome")
    await expect(ws, "snapshot-end")
    return welcome


class TcpProxy:
    """A TCP relay on 127.0.0.1 to ``host:port`` that a test can cut (every connection closed, new
    ones refused) and restore on the same port: a database server going away and coming back."""

    def __init__(self, host: str, port: int):
        self.target = (host, port)
        self.port = 0
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> TcpProxy:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
                upstream = socket.create_connection(self.target)
            except OSError:
                return
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        """Close the listener and every relayed connection."""
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread (close alone does not)
            self._listener.close()
            self._listener = None
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def restore(self) -> None:
        """Accept connections again, on the same port."""
        self.start()


def run_server_blocks(doc: str, url: str) -> int:
    """Run the ```python-server blocks of ``docs/<doc>`` (examples that need a running server, written
    for ws://127.0.0.1:8765/) in order against ``url``; how many there were."""
    blocks = re.findall(r"^```python-server\n(.*?)^```", (ROOT / "docs" / doc).read_text(), re.S | re.M)
    namespace: dict = {}
    for i, block in enumerate(blocks):
        exec(compile(block.replace("ws://127.0.0.1:8765/", url), f"{doc}[server block {i}]", "exec"), namespace)
    return len(blocks)
