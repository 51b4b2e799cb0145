"""``datsync serve``: the sync server as a command (the shell's command protocol: ``NAME``, ``HELP``,
``DESCRIPTION``, ``EPILOG``, ``configure(parser)``, ``run(args) -> int``). The server itself is
``datsync.shell.server``; this module only parses arguments, so ``datsync --help`` stays fast."""

from __future__ import annotations

import argparse
import os
import ssl
import sys

NAME = "serve"
HELP = "serve a store to replicas over WebSocket (with GET /health on the same port)"
DESCRIPTION = """\
Serve the database in a store to replicas over WebSocket (the sync protocol, docs/protocol.md).

The first line on stdout is the bound URL, e.g.
  datsync serving ws://127.0.0.1:8765/ store=./datsync.sqlite t=42 health=http://127.0.0.1:8765/health
then logs go to stderr. A transaction is acknowledged once it is on disk (SQLite WAL, group commit);
checkpoints (every --checkpoint-every transactions at the least, once the log after the last one
holds --checkpoint-growth times its events) keep start-up short. The server holds an
exclusive lock on STORE.lock while it runs: one server per store file. A PostgreSQL store
(--store postgresql://HOST:PORT/DB) may be served by several processes at once, on several
machines: any of them accepts writes, each streams every commit to its own replicas, and replicas
given several URLs fail over between them (docs/operations.md).

Credentials: every replica's hello must carry --token (or the token in --token-file, or
$DATSYNC_TOKEN); without a token only loopback clients (127.0.0.0/8, ::1) are accepted.

HTTP on the same port: GET /health (JSON: t, db_id, sessions, store stats, uptime, counters);
GET /status adds every session (same credentials rule: Authorization: Bearer TOKEN); the browser
client at /datsync/client.js (docs/browser.md); with --static DIR, the files of DIR at /.

SIGINT/SIGTERM shut down gracefully: no new connections, in-flight commits finish and are answered,
replicas are closed with going-away (1001) and reconnect elsewhere or later, a checkpoint is
written, the store is closed. A second signal stops at once (the log is durable either way).
See docs/operations.md.
"""
EPILOG = """\
examples:
  datsync serve                                          # ws://127.0.0.1:8765/, store ./datsync.sqlite
  datsync serve --store db.sqlite --schema docs/examples/people.edn --port 0
  datsync serve --store postgresql://datsync@db:5432/app --port 8765     # one of several processes
  datsync serve --host 0.0.0.0 --token-file /etc/datsync/token --tls-cert cert.pem --tls-key key.pem
  datsync serve --host 0.0.0.0 --jwt-public-key issuer.pem --jwt-audience datsync --insecure  # behind a TLS proxy
  datsync serve --schema docs/examples/todo/schema.edn --static docs/examples/todo   # open http://127.0.0.1:8765/
  curl http://127.0.0.1:8765/health
"""


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765; 0: any free port)")
    p.add_argument("--store", default="./datsync.sqlite", metavar="PATH|URL",
                   help="the store file, created if missing (default ./datsync.sqlite), or a PostgreSQL "
                        "database URL (postgresql://HOST:PORT/DB) that several servers may share")
    p.add_argument("--schema", metavar="FILE.edn",
                   help="EDN schema installed on start unless already installed: {:attr {props}} (a file "
                        "with a :schema key works) or [{:db/ident :attr ...} ...]")
    creds = p.add_mutually_exclusive_group()
    creds.add_argument("--token", help="the token every replica must present (default: $DATSYNC_TOKEN; "
                                       "none: loopback clients only)")
    creds.add_argument("--token-file", metavar="PATH", help="read the token from a file")
    jwt = p.add_argument_group("JWT bearer tokens (instead of, or besides, --token)")
    keys = jwt.add_mutually_exclusive_group()
    keys.add_argument("--jwt-secret-file", metavar="PATH", help="verify HS256 tokens with the secret in PATH")
    keys.add_argument("--jwt-public-key", metavar="PEM", help="verify RS256 tokens with this public key")
    jwt.add_argument("--jwt-audience", metavar="AUD", help="require this aud claim")
    jwt.add_argument("--jwt-issuer", metavar="ISS", help="require this iss claim")
    tls = p.add_argument_group("TLS (wss:// and https://)")
    tls.add_argument("--tls-cert", metavar="PEM", help="the server's certificate chain")
    tls.add_argument("--tls-key", metavar="PEM", help="its private key (if not in --tls-cert)")
    tls.add_argument("--insecure", action="store_true",
                     help="listen beyond loopback without TLS (e.g. behind a TLS-terminating proxy)")
    p.add_argument("--tokens", metavar="FILE.edn",
                   help="EDN map token -> principal ({\"s3cret\" {:user/id \"alice\"}}): each replica's principal "
                        "comes from its token (beside --token; see docs/security.md)")
    p.add_argument("--policy", metavar="FILE.edn",
                   help="read and write rules and scopes (docs/security.md); a policy that does not check "
                        "is refused at start-up. Without one every replica sees everything")
    p.add_argument("--static", metavar="DIR",
                   help="serve the files of DIR over HTTP at / (a web application; the browser client is "
                        "always at /datsync/client.js)")
    p.add_argument("--checkpoint-every", type=int, default=1000, metavar="N",
                   help="transactions at the least between checkpoints (default 1000)")
    p.add_argument("--checkpoint-growth", type=float, default=0.5, metavar="F",
                   help="write a checkpoint once the log after the last one holds F times the events it holds "
                        "(default 0.5: checkpoints cost a bounded multiple of what is written, start-up replays "
                        "at most about half a checkpoint's worth from the log; 0: every --checkpoint-every)")
    p.add_argument("--max-message-size", type=int, default=16 << 20, metavar="BYTES",
                   help="largest message accepted (default 16 MiB; bigger: an error; the WebSocket is closed "
                        "above twice that)")
    p.add_argument("--max-buffered", type=int, default=1024, metavar="N",
                   help="deltas held for one replica before it must resync (default 1024)")
    p.add_argument("--window", type=int, default=64, metavar="N",
                   help="deltas in flight to one replica without an ack (default 64)")
    p.add_argument("--heartbeat-interval", type=float, default=10.0, metavar="S",
                   help="ping an idle replica every S seconds (default 10)")
    p.add_argument("--heartbeat-timeout", type=float, default=30.0, metavar="S",
                   help="close a replica not heard from in S seconds (default 30)")
    lim = p.add_argument_group("limits (each refusal is logged, counted in /health and says why to the client)")
    lim.add_argument("--max-connections", type=int, default=1024, metavar="N",
                     help="open connections in all (default 1024; beyond: HTTP 503)")
    lim.add_argument("--max-connections-per-address", type=int, default=256, metavar="N",
                     help="open connections from one address (default 256; beyond: HTTP 503)")
    lim.add_argument("--max-message-rate", type=float, default=2000.0, metavar="N",
                     help="messages per second one session may send on average (default 2000; beyond its "
                          "burst: closed, 1008 limit/rate)")
    lim.add_argument("--message-burst", type=int, default=None, metavar="N",
                     help="messages one session may send at once (default twice the rate)")
    lim.add_argument("--idle-timeout", type=float, default=None, metavar="S",
                     help="close a session that sends nothing but pings and pongs for S seconds (1001 limit/idle; "
                          "default: never, a replica of a quiet database is idle)")
    lim.add_argument("--send-timeout", type=float, default=30.0, metavar="S",
                     help="cut off a client whose socket takes none of the bytes waiting for it for S seconds "
                          "(1013 server/too-slow; default 30): a client that keeps reading is never cut off")
    lim.add_argument("--handshake-timeout", type=float, default=None, metavar="S",
                     help="longest wait for a connection's request and hello (default 10, or the heartbeat "
                          "timeout if shorter)")
    lim.add_argument("--max-pending-tx", type=int, default=64, metavar="N",
                     help="submissions one session may have pending (default 64; beyond: tx-rejected "
                          "sync/overloaded)")
    p.add_argument("--shutdown-timeout", type=float, default=10.0, metavar="S",
                   help="longest graceful shutdown before what is left is cut off (default 10)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument("--log-format", default="text", choices=["text", "json"], help="logs on stderr (default text)")


def run(args: argparse.Namespace) -> int:
    from datsync.core.sync import ServerConfig

    from .limits import Limits
    from .server import read_token_file, run_server, tls_context

    if args.static is not None and not os.path.isdir(args.static):
        print(f"datsync serve: --static {args.static}: not a directory", file=sys.stderr)
        return 2
    token = args.token
    if args.token_file:
        try:
            token = read_token_file(args.token_file)
        except (OSError, ValueError) as e:
            print(f"datsync serve: --token-file: {e}", file=sys.stderr)
            return 2
    elif token is None:
        token = os.environ.get("DATSYNC_TOKEN") or None
    jwt = None
    if args.jwt_secret_file or args.jwt_public_key:
        from .jwt_auth import JwtAuth

        try:
            jwt = JwtAuth.from_files(secret_file=args.jwt_secret_file, public_key_file=args.jwt_public_key,
                                     audience=args.jwt_audience, issuer=args.jwt_issuer)
        except (OSError, ValueError) as e:
            print(f"datsync serve: JWT: {e}", file=sys.stderr)
            return 2
    try:
        tls_context(args.tls_cert, args.tls_key)
    except (OSError, ValueError, ssl.SSLError) as e:
        print(f"datsync serve: --tls-cert/--tls-key: {e}", file=sys.stderr)
        return 2
    refusal = exposure_refusal(args.host, token is not None or jwt is not None or args.tokens is not None,
                               args.tls_cert is not None, args.insecure)
    if refusal:
        print(f"datsync serve: {refusal}", file=sys.stderr)
        return 2
    if min(args.max_connections, args.max_connections_per_address, args.max_pending_tx) < 1 \
            or args.max_message_rate <= 0 or (args.message_burst is not None and args.message_burst < 1) \
            or (args.idle_timeout is not None and args.idle_timeout <= 0) or args.send_timeout <= 0 \
            or (args.handshake_timeout is not None and args.handshake_timeout <= 0):
        print("datsync serve: limits must be positive", file=sys.stderr)
        return 2
    if args.window < 1 or args.max_buffered < args.window or args.heartbeat_interval <= 0:
        print("datsync serve: need --window >= 1, --max-buffered >= --window, --heartbeat-interval > 0",
              file=sys.stderr)
        return 2
    access = None
    if args.tokens or args.policy:
        from pathlib import Path

        from datsync.core.errors import DatsyncError
        from datsync.core.policy import parse_policy, parse_tokens

        from .access import Access

        parsed = {}
        for what, path, parse in (("tokens", args.tokens, parse_tokens), ("policy", args.policy, parse_policy)):
            try:
                parsed[what] = parse(Path(path).read_text()) if path else None
            except OSError as e:
                print(f"datsync serve: --{what} {path}: {e.strerror or e}", file=sys.stderr)
                return 2
            except DatsyncError as e:
                print(f"datsync serve: {path}: {e.code}: {e.message}", file=sys.stderr)
                return 2
        access = Access(parsed["tokens"], parsed["policy"])
    config = ServerConfig(
        window=args.window, max_buffered=args.max_buffered, heartbeat_interval=args.heartbeat_interval,
        heartbeat_timeout=args.heartbeat_timeout, max_pending_tx=args.max_pending_tx,
        handshake_timeout=args.handshake_timeout or min(10.0, args.heartbeat_timeout),
    )
    limits = Limits(
        max_connections=args.max_connections, max_connections_per_address=args.max_connections_per_address,
        max_message_rate=args.max_message_rate, idle_timeout=args.idle_timeout, send_timeout=args.send_timeout,
        message_burst=args.message_burst or max(1, int(2 * args.max_message_rate)),
    )
    return run_server(
        args.host, args.port, args.store, args.schema, token, log_level=args.log_level, log_format=args.log_format,
        checkpoint_every=args.checkpoint_every, checkpoint_growth=args.checkpoint_growth,
        max_message_size=args.max_message_size, config=config,
        shutdown_timeout=args.shutdown_timeout, static_dir=args.static, limits=limits,
        tls_cert=args.tls_cert, tls_key=args.tls_key, jwt=jwt, access=access,
    )


def exposure_refusal(host: str, authenticated: bool, tls: bool, insecure: bool) -> str | None:
    """Why serving on ``host`` as configured is refused (None: it is not): beyond loopback the server
    needs authentication, and TLS unless ``insecure`` (a TLS-terminating proxy in front, say)."""
    from .server import is_loopback

    if host == "localhost" or is_loopback(host):
        return None
    if not authenticated:
        return (f"refusing to listen on {host} without authentication: give --token, --token-file, "
                "--jwt-secret-file or --jwt-public-key (or listen on 127.0.0.1)")
    if not tls and not insecure:
        return (f"refusing to listen on {host} without TLS: give --tls-cert and --tls-key, or --insecure "
                "when a TLS-terminating proxy is in front")
    return None
