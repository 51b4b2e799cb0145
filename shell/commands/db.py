"""``datsync db FILE.edn``: load an EDN database file with the pure core and answer one read."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ._edn import keywordize

NAME = "db"
HELP = "load an EDN database file in memory and answer a read (no store, no server)"
DESCRIPTION = """\
Load FILE.edn — a map with :schema (attribute -> properties, Datomic style) and :tx-data (a vector
of transactions) — apply every transaction with the pure core, in memory, and answer one read as
EDN: every datom (default), one index (--datoms), a pull (--pull) or an entity (--entity). Nothing
is stored: to keep a database, `datsync import` the same file into a store.

With --flavor datascript (the default) the schema is given to the database as DataScript takes it
(value types other than ref and tuple are dropped); with --flavor datomic it is installed as
attribute entities and every value is type-checked.
"""
EPILOG = """\
examples:
  datsync db docs/examples/people.edn                       # every datom after the transactions
  datsync db docs/examples/people.edn --pull '[* {:person/friends [:person/name]}]' '[:person/name "Ivan"]'
  datsync db docs/examples/people.edn --datoms avet person/age
  datsync db docs/examples/people.edn --flavor datomic --entity '[:person/name "Ivan"]'
"""


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="EDN file: {:schema {attr {...}} :tx-data [[tx-form ...] ...]}")
    p.add_argument("--flavor", choices=["datascript", "datomic"], default="datascript")
    reads = p.add_mutually_exclusive_group()
    reads.add_argument("--datoms", nargs="+", metavar="ARG", help="INDEX [COMPONENT ...] (components as EDN)")
    reads.add_argument("--pull", nargs=2, metavar=("PATTERN", "EID"), help="pull PATTERN (EDN) from EID (EDN)")
    reads.add_argument("--entity", metavar="EID", help="every attribute of one entity")


def run(args: argparse.Namespace) -> int:
    from datsync.core import datoms, empty_db, transact
    from datsync.core.edn import EdnError, read_edn, write_edn
    from datsync.core.errors import DatsyncError
    from datsync.core.schema import datascript_schema

    try:
        spec = read_edn(Path(args.file).read_text())
    except (OSError, EdnError) as e:
        print(f"datsync db: cannot read {args.file}: {e}", file=sys.stderr)
        return 2
    if not isinstance(spec, dict):
        print(f"datsync db: {args.file} must hold a map {{:schema {{...}} :tx-data [[...] ...]}}", file=sys.stderr)
        return 2
    schema = _names(spec.get(_kw("schema")) or {})
    txs = _names(spec.get(_kw("tx-data")) or [])
    step = "schema"
    try:
        if args.flavor == "datascript":
            db = empty_db(datascript_schema(schema))
        else:
            db = empty_db(None, flavor="datomic")
            if schema:
                db = transact(db, [{"db/ident": _kw(a), **p} for a, p in schema.items()]).db_after
        for i, tx in enumerate(txs):
            step = f"transaction {i}"
            db = transact(db, tx).db_after
    except DatsyncError as e:
        print(f"datsync db: {step} failed: {e.code}: {e.message}", file=sys.stderr)
        return 1
    try:
        if args.pull:
            from datsync.core.pull import pull

            print(write_edn(keywordize(pull(db, args.pull[0], _names(read_edn(args.pull[1]))))))
        elif args.entity:
            from datsync.core.entity import entity, touch

            e = entity(db, _names(read_edn(args.entity)))
            print(write_edn(None if e is None else keywordize({"db/id": e.id, **dict(touch(e).items())})))
        else:
            index, *components = args.datoms or ["eavt"]
            attr_pos = 0 if index in ("aevt", "avet") else 1
            comps = [_names(read_edn(c)) for c in components]
            if len(comps) > attr_pos and hasattr(comps[attr_pos], "name"):
                comps[attr_pos] = comps[attr_pos].name
            for d in datoms(db, index, *comps):
                print(write_edn([d.e, _kw(d.a), d.v, d.tx]))
    except (DatsyncError, EdnError) as e:
        print(f"datsync db: {getattr(e, 'code', 'edn/parse-error')}: {e}", file=sys.stderr)
        return 1
    return 0


def _kw(name: str) -> Any:
    from datsync.core import kw

    return kw(name)


def _names(x: Any) -> Any:
    """EDN data with keywords in attribute and op positions turned into our str spelling."""
    from datsync.core import Keyword

    if isinstance(x, dict):
        return {(k.name if isinstance(k, Keyword) else k): _names(v) for k, v in x.items()}
    if isinstance(x, list):
        out = [_names(v) for v in x]
        if out and isinstance(x[0], Keyword) and x[0].ns in ("db", "db.fn"):
            out[0] = x[0].name
            if len(out) > 2 and isinstance(x[2], Keyword):
                out[2] = x[2].name
        elif len(x) == 2 and isinstance(x[0], Keyword):
            return (x[0].name, _names(x[1]))
        return out
    return x
