"""``datsync copy SRC DST``: copy a store between SQLite and PostgreSQL, then verify the logs."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._edn import emit, to_edn
from ._errors import CliError
from ._progress import Progress, enabled
from ._target import store_in_use

NAME = "copy"
HELP = "copy a store (SQLite file or PostgreSQL URL) into an empty one, and verify the copy"
DESCRIPTION = """\
Copy the database in store SRC into the empty store DST: its identity (db-id), its whole
transaction log, the remembered submissions and the latest checkpoint. Either may be a SQLite file
or a PostgreSQL URL (postgresql://HOST:PORT/DB), so this moves a database from one engine to the
other. Replicas of SRC resume against DST (same db-id and log) without a bootstrap.

SRC may be in use (the log up to its t when the copy starts is copied); DST must be empty and not
served (a missing file is created; a PostgreSQL database gets its tables). After copying, both logs
are read back and compared entry by entry; a difference is an error (store/copy-differs). Prints
{:copied N, :t T, :db-id "...", :verified true}. Progress goes to stderr.
"""
EPILOG = """\
examples:
  datsync copy prod.sqlite postgresql://db.internal:5432/datsync     # move to PostgreSQL
  datsync copy postgresql://db.internal:5432/datsync backup.sqlite   # and back, e.g. as a backup
"""


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", metavar="SRC", help="the store to copy: a store file or a postgresql:// URL")
    p.add_argument("dst", metavar="DST", help="an empty store: a new store file or a postgresql:// URL")
    p.add_argument("--batch", type=int, default=1000, metavar="N", help="log entries per commit (default 1000)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="show a progress bar on stderr (default: when stderr is a terminal)")


def run(args: argparse.Namespace) -> int:
    from datsync.core import kw

    from ..store import copy_store, is_store_url, open_store

    if not is_store_url(args.src) and not Path(args.src).is_file():
        raise CliError("store/not-found", f"no store file at {args.src}")
    if not is_store_url(args.dst) and store_in_use(args.dst):
        raise CliError("store/in-use", f"{args.dst} is being served by a running datsync server")
    src = open_store(args.src)
    try:
        dst = open_store(args.dst)
        try:
            with Progress("copy", src.last_t(), unit="transactions", show=enabled(args.progress)) as bar:
                t = copy_store(src, dst, batch=max(1, args.batch), on_progress=lambda n, total: bar.update(n, total))
            emit(to_edn({kw("copied"): t, kw("t"): t, kw("db-id"): dst.db_id, kw("verified"): True}))
        finally:
            dst.close()
    finally:
        src.close()
    return 0
