"""Entry points: ``serve`` (async: builds and runs a ``SyncServer``), ``run_server`` (blocking, for
``datsync serve``: logs, the banner, exit codes) and ``tls_context`` (the server's TLS from PEM files)."""

from __future__ import annotations

import gc
import ssl
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

from datsync.core import TxError
from datsync.core.sync import DEFAULT_MAX_SIZE, ServerConfig

from ..access import Access
from ..jwt_auth import JwtAuth
from ..limits import Limits
from ..store import StoreError, is_store_url
from .lock import StoreInUse
from .logs import configure_logging
from .sync_server import SyncServer

DEFAULT_PORT = 8765


def tls_context(cert: str | Path | None, key: str | Path | None) -> ssl.SSLContext | None:
    """The server's TLS context from PEM files (None without a certificate); ``ValueError`` when only
    one is given, ``ssl.SSLError``/``OSError`` when they cannot be loaded."""
    if cert is None and key is None:
        return None
    if cert is None:
        raise ValueError("--tls-key needs --tls-cert")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(cert), None if key is None else str(key))
    return ctx


async def serve(
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    store_path: str | Path = "./datsync.sqlite",
    schema_file: str | Path | None = None,
    token: str | None = None,
    *,
    checkpoint_every: int = 1000,
    checkpoint_growth: float = 0.5,
    max_message_size: int = DEFAULT_MAX_SIZE,
    config: ServerConfig | None = None,
    handle_signals: bool = True,
    shutdown_timeout: float = 10.0,
    listen_buffer: int = 10_000,
    static_dir: str | Path | None = None,
    banner: Callable[[str], None] | None = None,
    limits: Limits | None = None,
    tls_cert: str | Path | None = None,
    tls_key: str | Path | None = None,
    jwt: JwtAuth | None = None,
    access: Access | None = None,
    own_process: bool = False,
    task_status: trio.TaskStatus = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the store at ``store_path`` (a file, or a ``postgresql://`` URL) to replicas over WebSocket
    until cancelled or shut down (SIGINT/SIGTERM when ``handle_signals``; or ``await server.shutdown()``).

    ``port=0`` picks a free port; ``task_status.started(server)`` hands over the running
    ``SyncServer`` (``server.url``, ``server.port``, ``await server.health()``). ``token``: the
    credential every hello must carry; None accepts loopback clients only. ``schema_file``: an EDN
    schema installed on start unless already installed. ``static_dir``: an application's files, served
    over HTTP at ``/`` (the browser client is always at ``/datsync/client.js``). ``config``: the sessions' bounds
    (``ServerConfig``; its ``db_id`` is the store's). ``max_message_size``: the largest message
    decoded (bigger: a ``protocol/too-large`` error); the WebSocket closes the connection (1009)
    above twice that. ``limits``: connections in all and per address, message rate, idle sessions
    (``Limits``). ``tls_cert``/``tls_key``: PEM files; the server then speaks TLS only (``wss://``,
    ``https://``). ``jwt``: accept bearer JWTs (``JwtAuth``) as well as, or instead of, ``token``.
    ``access``: tokens (token -> principal) and the policy (docs/security.md). A checkpoint is
    written ``checkpoint_every`` transactions after the last at the least, once the log after it holds
    ``checkpoint_growth`` times the events it holds. ``own_process``: the server is the process's only
    work (``datsync serve``): the collector is tuned for it (``tune_collector``) and the database
    recovered at start-up is frozen out of its reach (``gc.freeze``; full collections then scan only
    what came later). Raises ``StoreInUse`` if another process serves the store."""
    if own_process:
        tune_collector()
    server = SyncServer(
        store_path if is_store_url(store_path) else Path(store_path), host=host, port=port,
        schema_file=schema_file, static_dir=static_dir, token=token,
        checkpoint_every=max(1, checkpoint_every), checkpoint_growth=max(0.0, checkpoint_growth),
        max_message_size=max_message_size,
        config=config or ServerConfig(), handle_signals=handle_signals, shutdown_timeout=shutdown_timeout,
        listen_buffer=listen_buffer, banner=banner, limits=limits, tls=tls_context(tls_cert, tls_key), jwt=jwt,
        access=access, freeze_recovered=own_process,
    )
    await server.run(task_status=task_status)


YOUNG_COLLECTION_THRESHOLD = 10_000
"""Allocations between collections of the youngest generation in a ``datsync serve`` process (Python's
default: 700). Each transaction allocates new index leaves (lists of 256 keys) that a young collection
traverses; at 700 the collector took ~12% of the server's CPU under write load, at 10,000 ~2%."""


def tune_collector() -> None:
    """Tune the garbage collector for a process that holds one large, long-lived database (the
    server's own process): collect the youngest generation less often."""
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, older, oldest)


def run_server(
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    store_path: str | Path = "./datsync.sqlite",
    schema_file: str | Path | None = None,
    token: str | None = None,
    *,
    log_level: str = "info",
    log_format: str = "text",
    **options: Any,
) -> int:
    """``datsync serve``: configure logs, print the bound URL as the first stdout line, serve until
    SIGINT/SIGTERM; the process exit code (0 after a graceful shutdown)."""
    configure_logging(log_level, log_format)

    def banner(line: str) -> None:
        print(line, flush=True)

    try:
        try:
            trio.run(lambda: serve(host, port, store_path, schema_file, token, banner=banner, own_process=True,
                                   **options))
        except BaseExceptionGroup as group:
            raise _sole(group) from None
    except StoreInUse as e:
        print(f"datsync serve: store/in-use: {e}", file=sys.stderr)
        return 2
    except StoreError as e:
        print(f"datsync serve: {e.code}: {e.message}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"datsync serve: cannot listen on {host}:{port}: {e.strerror or e}", file=sys.stderr)
        return 2
    except (ValueError, TxError) as e:  # the schema file
        print(f"datsync serve: {schema_file}: {getattr(e, 'code', 'schema')}: {e}", file=sys.stderr)
        return 2
    return 0


def _sole(e: BaseException) -> BaseException:
    """The one exception inside nested single-member exception groups (else the group itself)."""
    while isinstance(e, BaseExceptionGroup) and len(e.exceptions) == 1:
        e = e.exceptions[0]
    return e

