"""``--as-of T``, ``--since T``, ``--history``: time views of a store target's database."""

from __future__ import annotations

from typing import Any

from ._errors import CliError


def add_view_options(parser: Any) -> None:
    group = parser.add_argument_group("time views (store targets: the server's database keeps history)")
    group.add_argument("--as-of", type=int, metavar="T", help="the database as of basis t T")
    group.add_argument("--since", type=int, metavar="T", help="only what was asserted after t T")
    group.add_argument("--history", action="store_true", help="every assertion and retraction ever made")


def check_views(args: Any) -> None:
    """Refuse time views for a URL target before connecting."""
    from ._target import is_url

    if _wanted(args) and is_url(args.target):
        raise CliError("usage/time-view", "--as-of, --since and --history need a store file: replicas "
                       "(URL targets) keep the current database only")


def _wanted(args: Any) -> bool:
    return args.as_of is not None or args.since is not None or args.history


def view(db: Any, args: Any) -> Any:
    """``db`` seen through the time views ``args`` ask for."""
    from datsync.core import as_of, history, since

    if not _wanted(args):
        return db
    if args.as_of is not None:
        db = as_of(db, args.as_of)
    if args.since is not None:
        db = since(db, args.since)
    if args.history:
        db = history(db)
    return db
