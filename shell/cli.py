"""The ``datsync`` command line.

    datsync db FILE.edn [--flavor F] [--datoms INDEX [COMPONENT ...]] [--pull PATTERN EID] [--entity EID]
    datsync bench [NAMES ...] [--samples N] [--no-datascript]

``db`` loads an EDN database file (``{:schema {...} :tx-data [[tx ...] ...]}``), applies every
transaction with the pure core and answers reads as EDN; ``bench`` runs DataScript's benchmark
suite on our engine and on DataScript side by side.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

EXAMPLES = """examples:
  datsync db docs/examples/people.edn                       # every datom after the transactions
  datsync db docs/examples/people.edn --pull '[* {:person/friends [:person/name]}]' '[:person/name "Ivan"]'
  datsync db docs/examples/people.edn --datoms avet person/age
  datsync db docs/examples/people.edn --flavor datomic --entity '[:person/name "Ivan"]'
  datsync bench add-5 pull-many --samples 3
"""


def _db_command(args: argparse.Namespace) -> int:
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

            print(write_edn(_keywordize(pull(db, args.pull[0], _names(read_edn(args.pull[1]))))))
        elif args.entity:
            from datsync.core.entity import entity, touch

            e = entity(db, _names(read_edn(args.entity)))
            print(write_edn(None if e is None else _keywordize({"db/id": e.id, **dict(touch(e).items())})))
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


def _keywordize(x: Any) -> Any:
    """Pull and entity results for EDN output: attribute-name keys become keywords."""
    from datsync.core import Entity

    if isinstance(x, dict):
        return {(_kw(k) if isinstance(k, str) else k): _keywordize(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_keywordize(v) for v in x]
    if isinstance(x, Entity):
        return {_kw("db/id"): x.id}
    if isinstance(x, frozenset | set) and any(isinstance(v, Entity) for v in x):
        return [_keywordize(v) for v in sorted(x, key=lambda v: getattr(v, "id", 0))]
    return x


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


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``datsync`` command."""
    parser = argparse.ArgumentParser(
        prog="datsync", description=__doc__, epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_db = sub.add_parser("db", help="load an EDN database file and answer reads", epilog=EXAMPLES,
                          formatter_class=argparse.RawDescriptionHelpFormatter)
    p_db.add_argument("file", help="EDN file: {:schema {attr {...}} :tx-data [[tx-form ...] ...]}")
    p_db.add_argument("--flavor", choices=["datascript", "datomic"], default="datascript")
    reads = p_db.add_mutually_exclusive_group()
    reads.add_argument("--datoms", nargs="+", metavar="ARG", help="INDEX [COMPONENT ...] (components as EDN)")
    reads.add_argument("--pull", nargs=2, metavar=("PATTERN", "EID"), help="pull PATTERN (EDN) from EID (EDN)")
    reads.add_argument("--entity", metavar="EID", help="every attribute of one entity")
    sub.add_parser("bench", help="run the benchmark suite against DataScript", add_help=False)
    args, rest = parser.parse_known_args(argv)
    if args.command == "bench":
        from .bench import main as bench_main

        return bench_main(rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    return _db_command(args)


if __name__ == "__main__":
    sys.exit(main())
