"""TARGET: the database a command works on — a server URL, a store file or a PostgreSQL store.

* A **store file** (``./datsync.sqlite``): ``SqliteStore(path)`` + ``Connection.recover`` give the server's
  database value (Datomic flavor). Reads need nothing more. Writes run the connection's writer in a
  trio loop on a helper thread, so every transaction is made durable exactly as the server does it.
  A store a server is serving is refused for writes (the server holds its lock; write through the
  server's URL instead). Reading a missing store is an error; writing one creates it.
* A **PostgreSQL store** (``postgresql://host:port/db``): the same, on the shared store. Writes are
  allowed while servers serve it: the command is one more process appending to the shared log, and
  the servers stream its transactions to their replicas.
* A **server URL** (``ws://host:port/``): a Python replica (``datsync.shell.client.connect``)
  bootstraps from the server; reads run locally on the replica (DataScript flavor, same datoms and
  ids as the server's); writes go to the server, which acknowledges them once they are durable.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import re
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from ._errors import CliError
from ._progress import Progress

URL = re.compile(r"^(wss?|https?)://", re.IGNORECASE)


class Committed(NamedTuple):
    """What a write returns, for either kind of target."""

    t: int
    tx: int
    tempids: dict


def is_url(target: str) -> bool:
    return bool(URL.match(target))


def store_in_use(path: str | Path) -> bool:
    """Is a running server serving the store file at ``path``? (The server's own check; False where
    this datsync has no server, and for a PostgreSQL store, which many processes may write.)"""
    from ..store import is_store_url

    if is_store_url(path):
        return False
    try:
        from datsync.shell.server import store_in_use as in_use
    except ImportError:
        return False
    return bool(in_use(path))


def _refuse_if_served(path: str | Path) -> None:
    if store_in_use(path):
        raise CliError("store/in-use", f"{path} is being served by a running datsync server; "
                       "write through the server's URL (ws://HOST:PORT/) instead, or stop the server")


def _clean_tempids(tempids: Any) -> dict:
    return {k: v for k, v in dict(tempids or {}).items() if k not in ("db/current-tx", "datomic.tx")}


class StoreTarget:
    """A store file or a PostgreSQL store. ``db`` is the current database value (Datomic flavor)."""

    kind = "store"

    def __init__(self, path: str, *, write: bool):
        from ..connection import Connection
        from ..store import StoreError, is_store_url, open_store

        self.path: str | Path = path if is_store_url(path) else Path(path)
        self.name = str(path)
        if isinstance(self.path, Path):  # a file (a database server has nothing to check here)
            if self.path.is_dir():
                raise CliError("store/not-a-file", f"{path} is a directory, not a store file")
            if not write and not self.path.exists():
                raise CliError("store/not-found", f"no store file at {path} (a URL must start with ws://)")
            if write:
                _refuse_if_served(self.path)
        try:
            self.store = open_store(self.path)
        except StoreError as e:
            raise CliError(e.code, e.message) from None
        except OSError as e:
            raise CliError("io/error", f"cannot open store {path}: {e}") from None
        self.name = self.store.location  # without a password
        try:
            self.conn = Connection.recover(self.store)
        except BaseException:
            self.store.close()
            raise
        self._token: Any = None
        self._thread: threading.Thread | None = None
        self._cancel: Any = None
        self._failure: BaseException | None = None

    @property
    def db(self) -> Any:
        return self.conn.db

    @property
    def aliases(self) -> Mapping[str, str] | None:
        """The old names of renamed attributes, each -> its current name (``None``: those ``db``
        resolves itself)."""
        return None

    @property
    def t(self) -> int:
        return self.conn.t

    @property
    def db_id(self) -> str:
        return self.store.db_id

    def _start_writer(self) -> None:
        import trio

        _refuse_if_served(self.path)
        ready = threading.Event()

        def run() -> None:
            async def main() -> None:
                async with trio.open_nursery() as nursery:
                    await nursery.start(self.conn.run_writer)
                    self._cancel = nursery.cancel_scope
                    self._token = trio.lowlevel.current_trio_token()
                    ready.set()
                    await trio.sleep_forever()

            try:
                trio.run(main)
            except BaseException as e:
                self._failure = e
            finally:
                ready.set()

        self._thread = threading.Thread(target=run, name="datsync-writer", daemon=True)
        self._thread.start()
        ready.wait()
        if self._token is None:
            raise CliError("store/writer", f"the store writer did not start: {self._failure!r}")

    def transact(self, tx_data: Any) -> Committed:
        """Transact and wait until durable; raises the core's ``TxError`` on rejection."""
        import trio

        if self._thread is None:
            self._start_writer()
        from datsync.core.history import basis_t

        report = trio.from_thread.run(self.conn.transact, tx_data, trio_token=self._token)
        tx = report.tempids.get("db/current-tx", report.db_after.max_tx)
        return Committed(basis_t(report.db_after), tx, _clean_tempids(report.tempids))

    def wait_for_t(self, t: int) -> None:
        """``db`` reflects ``t`` as soon as ``transact`` returns."""

    def checkpoint(self) -> None:
        """Write a checkpoint, so that the next start-up replays no log."""
        from datsync.core.history import basis_t

        from ..connection import encode_events

        db = self.conn.db
        self.store.write_checkpoint(basis_t(db), encode_events(db))

    def stats(self) -> dict:
        return self.store.stats()

    def close(self) -> None:
        if self._thread is not None:
            import trio

            with contextlib.suppress(trio.RunFinishedError):
                trio.from_thread.run_sync(self._cancel.cancel, trio_token=self._token)
            self._thread.join()
            self._thread = None
        self.store.close()


class UrlTarget:
    """A server, through a Python replica: ``db`` is the replica's database (DataScript flavor)."""

    kind = "url"

    def __init__(self, url: str, *, token: str | None, timeout: float, show_progress: bool, ca: str | None = None):
        try:
            from datsync.shell.client import connect
        except ImportError as e:
            raise CliError("client/unavailable",
                           f"this datsync cannot connect to servers yet (datsync.shell.client: {e})") from None
        self.name = url
        self.timeout = timeout
        quiet = logging.getLogger("datsync")
        if not quiet.handlers:  # the client's reconnect warnings: our error line says what happened
            quiet.addHandler(logging.NullHandler())
        kwargs: dict[str, Any] = {"token": token, "timeout": timeout, **({"ca": ca} if ca else {})}
        with Progress(f"bootstrap {url}", unit="datoms", show=show_progress) as bar:
            hook = _progress_parameter(connect)
            if hook:
                kwargs[hook] = lambda done, total=None: bar.update(done, total)
            else:
                bar.spin()
            try:
                try:
                    self.rep = connect(url, **kwargs)
                except TypeError as e:  # a client without the progress option
                    if not hook or hook not in str(e):
                        raise
                    del kwargs[hook]
                    bar.spin()
                    self.rep = connect(url, **kwargs)
            except Exception as e:
                from datsync.core.errors import DatsyncError

                if isinstance(e, DatsyncError | CliError):
                    raise
                code = getattr(e, "code", None)
                why = str(getattr(e, "message", None) or e or type(e).__name__)
                raise CliError(code if isinstance(code, str) else "connect/failed",
                               why if url in why else f"cannot connect to {url}: {why}") from None
            bar.update(_size(self.rep.db))

    @property
    def db(self) -> Any:
        return self.rep.db

    @property
    def aliases(self) -> Mapping[str, str] | None:
        """The old names of renamed attributes the server still resolves, each -> its current name
        (the replica's: its database holds only the current names)."""
        return self.rep.replica.aliases

    @property
    def t(self) -> int:
        return self.rep.t

    @property
    def db_id(self) -> str | None:
        return getattr(self.rep, "db_id", None)

    def transact(self, tx_data: Any) -> Committed:
        """Send to the server and wait for its acknowledgement; raises the server's ``TxError``."""
        try:
            r = self.rep.transact(tx_data, timeout=self.timeout)
        except TimeoutError:
            raise CliError("sync/tx-unknown", f"no answer from {self.name} within {self.timeout:g}s: the "
                           "transaction may or may not have committed (look for its effects; raise --timeout "
                           "for big transactions)") from None
        return Committed(r.t, r.tx, _clean_tempids(r.tempids))

    def wait_for_t(self, t: int) -> None:
        """Wait until the replica's ``db`` reflects ``t`` (its own writes come back as deltas)."""
        if self.rep.t < t:
            self.rep.wait_for_t(t, timeout=self.timeout)

    def checkpoint(self) -> None:
        """The server decides when to checkpoint."""

    def close(self) -> None:
        self.rep.close()


def _progress_parameter(connect: Any) -> str | None:
    """The name of ``connect``'s progress-callback parameter, if it has one."""
    try:
        params = inspect.signature(connect).parameters
    except (TypeError, ValueError):
        return None
    for name in ("on_progress", "progress"):
        if name in params:
            return name
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return "on_progress"  # the client's documented option, passed through **options
    return None


def _size(db: Any) -> int:
    try:
        return len(db)
    except TypeError:
        return 0


def open_target(target: str, *, write: bool = False, token: str | None = None, timeout: float = 10.0,
                show_progress: bool = False, ca: str | None = None) -> StoreTarget | UrlTarget:
    """The target named ``target``: a URL (``ws://``, ``wss://``; ``http(s)://`` is taken as the same
    server) or a store file path."""
    if is_url(target):
        token = token if token is not None else os.environ.get("DATSYNC_TOKEN") or None
        target = re.sub(r"^http", "ws", target, flags=re.IGNORECASE)
        ca = ca if ca is not None else os.environ.get("DATSYNC_CA") or None
        return UrlTarget(target, token=token, timeout=timeout, show_progress=show_progress, ca=ca)
    return StoreTarget(target, write=write)


TARGET_HELP = ("a server URL (ws://HOST:PORT/), a store file (e.g. ./datsync.sqlite) or a PostgreSQL store "
               "(postgresql://HOST:PORT/DB)")


def add_connection_options(parser: Any) -> None:
    """``--token``, ``--ca``, ``--timeout`` (URL targets) and ``--progress``/``--no-progress``."""
    import argparse

    group = parser.add_argument_group("server URL targets")
    group.add_argument("--token", default=None,
                       help="credentials for the server's handshake (default: $DATSYNC_TOKEN; without one a "
                            "server accepts loopback clients only)")
    group.add_argument("--ca", default=None, metavar="PEM",
                       help="the CA certificates to trust for wss:// (default: $DATSYNC_CA, else the system's)")
    group.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS",
                       help="give up connecting, or waiting for an acknowledgement, after SECONDS (default 10)")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="progress bar on stderr (default: only when stderr is a terminal)")


def target_from_args(args: Any, *, write: bool = False) -> StoreTarget | UrlTarget:
    from ._progress import enabled

    return open_target(args.target, write=write, token=args.token, timeout=args.timeout,
                       show_progress=enabled(args.progress), ca=getattr(args, "ca", None))
