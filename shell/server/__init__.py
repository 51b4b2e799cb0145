"""The sync server: the Connection (the one reference to the server database) and WebSocket sessions
driving the core's ``ServerSession`` state machines, on trio.

One nursery owns everything::

    root nursery
      conn.run_writer                    the only task that changes the database (group commit)
      fan-out                            conn.listen() -> TxCommitted(delta, bytes) to every session
      conn.follow                        a shared store: other processes' commits into conn (LISTEN)
      connections nursery                one task group per TCP connection:
        HTTP head (h11)                  GET /health, GET /status, static files, or a WebSocket upgrade
        session reader                   bytes -> receive() -> server_step
        session writer                   the outbound queue drained to the socket (frames written
                                         directly: a shared delta is framed once for everyone)
        send watch                       cuts off a client whose socket takes no bytes for a while
        session timer                    SetTimer -> Timer
        log reads                        RequestLogRead -> LogRead (memory, else the store in a thread)
      transactions                       RequestTransact -> conn.transact -> TxAccepted / TxFailed
      checkpoints, signals

The sessions bound their own buffers (queue + window) and resync a client that falls too far behind;
the shell adds the last bounds: an outbound queue per connection that is drained to the socket,
several messages to one write when they wait; while it holds more than its high-water mark the
session reads no further messages from that client (so answers and pongs, which the client causes,
stay bounded); a client whose socket takes no bytes for ``Limits.send_timeout`` while some wait is
not reading and is cut off (1013), as is one resynced repeatedly without an ``ack``. "Not reading"
is what the socket says, never how long the queue is: a client that keeps reading, however loaded,
is never cut off. Every effect is carried out without awaiting anything but its own connection, so
a slow or broken client never stalls the others.

Entry points: ``serve(...)`` (async; ``task_status.started(server)`` gives the running
``SyncServer``), ``run_server(...)`` (blocking, for the CLI: logs, exit codes) and
``store_in_use(path)``. docs/operations.md describes running it.

The files, one concern each::

    run.py           serve, run_server, tls_context: the entry points
    sync_server.py   SyncServer: the connection, fan-out, checkpoints, listeners, each TCP connection, health
    session.py       one WebSocket session: its state machine's effects, reader, writer, bounds
    frames.py        WebSocket frames written directly (a shared delta framed once), close codes
    ws.py            the server's side of a WebSocket: the handshake answered, frames read and written, closing
    http.py          HTTP on the WebSocket port, parsed by h11: health, status, static files, the upgrade
    stream.py        a connection's bytes: what was read put back, how long a write has waited
    auth.py          loopback, token and JWT authorization
    lock.py          the store lock (one server process per store file)
    readers.py       store reads in worker threads
    schema_file.py   EDN schema files installed on start
    logs.py          the server's logger, text and JSON log lines
"""

from __future__ import annotations

from .auth import _bearer as _bearer
from .auth import authorize, credential_token, is_loopback, read_token_file
from .frames import WS_CLOSE_CODES, ws_frame
from .http import MAX_HTTP_HEAD
from .lock import StoreInUse, StoreLock, lock_path, store_in_use
from .logs import JsonFormatter, TextFormatter, configure_logging
from .readers import Readers
from .run import DEFAULT_PORT, run_server, serve, tls_context
from .schema_file import schema_is_installed, schema_tx_from_edn
from .sync_server import SyncServer

__all__ = [
    "DEFAULT_PORT",
    "MAX_HTTP_HEAD",
    "WS_CLOSE_CODES",
    "JsonFormatter",
    "Readers",
    "StoreInUse",
    "StoreLock",
    "SyncServer",
    "TextFormatter",
    "authorize",
    "configure_logging",
    "credential_token",
    "is_loopback",
    "lock_path",
    "read_token_file",
    "run_server",
    "schema_is_installed",
    "schema_tx_from_edn",
    "serve",
    "store_in_use",
    "tls_context",
    "ws_frame",
]
