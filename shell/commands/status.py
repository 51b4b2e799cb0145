"""``datsync status TARGET``: where a database is (t, identity, size)."""

from __future__ import annotations

import argparse
import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from ._edn import emit, to_edn
from ._errors import CliError
from ._target import TARGET_HELP, add_connection_options, is_url, store_in_use, target_from_args

NAME = "status"
HELP = "show a database's t, identity and size (a store file, or a server's health)"
DESCRIPTION = """\
Print TARGET's status as an EDN map.

For a store file (read while a server serves it, too):
  {:target "db.sqlite", :t 3, :db-id "5f0c...", :datoms 11, :attributes 4, :in-use false,
   :store {:log-entries 3, :last-t 3, :checkpoint-t 0, :file-bytes 32768}}
:t is the basis t of the newest durable transaction, :db-id the database's identity (replicas of
another database must bootstrap rather than resume), :datoms the current datoms (built-ins
included), :in-use whether a running server holds the store.

For a server URL the server's health endpoint is asked (GET http://HOST:PORT/health, JSON): its
fields print as keywords (underscores become dashes), with :target. If the server has no health
endpoint, a replica bootstraps and reports :t, :db-id and :datoms instead.
"""
EPILOG = """\
examples:
  datsync status db.sqlite
  datsync status ws://127.0.0.1:8080/
"""


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", metavar="TARGET", help=TARGET_HELP)
    add_connection_options(p)


def _kw(name: str) -> Any:
    from datsync.core import kw

    return kw(name)


def edn_keys(x: Any) -> Any:
    """JSON data for EDN: string keys become keywords (``db_id`` -> ``:db-id``)."""
    if isinstance(x, dict):
        return {(_kw(str(k).replace("_", "-")) if _keyable(k) else k): edn_keys(v) for k, v in x.items()}
    if isinstance(x, list):
        return [edn_keys(v) for v in x]
    return x


def _keyable(k: Any) -> bool:
    return isinstance(k, str) and bool(k) and " " not in k and not k[0].isdigit()


def health_url(url: str) -> str:
    """``ws://host:port/anything`` -> ``http://host:port/health`` (``wss`` -> ``https``)."""
    parts = urllib.parse.urlsplit(url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme.lower(), parts.scheme.lower())
    return urllib.parse.urlunsplit((scheme, parts.netloc, "/health", "", ""))


def fetch_health(url: str, token: str | None, timeout: float, ca: str | None = None) -> dict:
    """The server's health JSON; ``LookupError`` if it has no health endpoint, ``OSError`` if unreachable."""
    request = urllib.request.Request(health_url(url), headers={"Accept": "application/json"})
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        context = ssl.create_default_context(cafile=ca) if ca else None
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            body = response.read()
    except urllib.error.HTTPError as e:
        if e.code in (401, 403):
            raise CliError("auth/refused", f"the server refused the credentials ({e.code} {e.reason})") from None
        raise LookupError(f"{e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        reason = e.reason
        raise OSError(f"cannot reach {health_url(url)}: {reason}") from None
    try:
        data = json.loads(body)
    except ValueError:
        raise LookupError("the health endpoint did not answer JSON") from None
    if not isinstance(data, dict):
        data = {"health": data}
    return data


def _store_status(args: argparse.Namespace) -> dict:
    from datsync.core import datoms
    from datsync.core.datomic import BOOTSTRAP_MAX_EID

    target = target_from_args(args)
    try:
        db = target.db
        attributes = sum(1 for d in datoms(db, "aevt", "db/valueType") if d.e > BOOTSTRAP_MAX_EID)
        return {
            _kw("target"): target.name,
            _kw("t"): target.t,
            _kw("db-id"): target.db_id,
            _kw("datoms"): len(db),
            _kw("attributes"): attributes,
            _kw("in-use"): store_in_use(target.path),
            _kw("store"): edn_keys(target.stats()),
        }
    finally:
        target.close()


def _url_status(args: argparse.Namespace) -> dict:
    import os

    token = args.token if args.token is not None else os.environ.get("DATSYNC_TOKEN") or None
    try:
        health = fetch_health(args.target, token, args.timeout, args.ca or os.environ.get("DATSYNC_CA") or None)
        return {_kw("target"): args.target, **edn_keys(health)}
    except LookupError as e:
        missing = str(e)
    except TimeoutError:
        raise CliError("io/timeout", f"{health_url(args.target)} did not answer in {args.timeout:g}s") from None
    target = target_from_args(args)  # no health endpoint: ask a replica
    try:
        return {_kw("target"): args.target, _kw("t"): target.t, _kw("db-id"): target.db_id,
                _kw("datoms"): len(target.db), _kw("health"): f"unavailable ({missing})"}
    finally:
        target.close()


def run(args: argparse.Namespace) -> int:
    emit(to_edn(_url_status(args) if is_url(args.target) else _store_status(args)))
    return 0
