"""``datsync export TARGET [--out FILE]``: the whole database as an EDN file ``datsync import`` reads."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, TextIO

from ._edn import to_edn
from ._errors import CliError
from ._target import TARGET_HELP, add_connection_options, target_from_args

NAME = "export"
HELP = "write the schema and every datom as EDN (the input of import)"
DESCRIPTION = """\
Write TARGET's current database as one EDN map, to stdout or --out FILE:

  ;; datsync export of db.sqlite: t=3, db-id 5f0c..., 4 attributes, 11 datoms
  {:schema {:person/name {:db/valueType :db.type/string, :db/cardinality :db.cardinality/one,
                          :db/unique :db.unique/identity}
            ...}
   :datoms [[105 :person/name "Ivan"]
            [105 :person/friends 106]
            ...]}

:schema holds every user attribute (from its attribute entity: value type, cardinality, unique,
index, component, doc, tuple types); :datoms every current datom of every user entity, one
[entity attribute value] per line in entity order. Entity ids are the database's own; refs to
attributes and to built-in entities are written as their idents (:person/name). Left out: the
built-in entities, transaction entities (db/txInstant and transaction metadata), values of
composite tuple attributes (they are recomputed from their parts), and history (retracted values).
Bytes values are written as #datsync/bytes "BASE64".

`datsync import` reads this file back: the entity ids become new ids in the target, so importing an
export into an empty store reproduces the same data (same attributes, values and references).
"""
EPILOG = """\
examples:
  datsync export db.sqlite --out backup.edn
  datsync export ws://127.0.0.1:8080/ > snapshot.edn
  datsync export old.sqlite --out dump.edn && datsync import new.sqlite dump.edn   # copy a database
"""


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", metavar="TARGET", help=TARGET_HELP)
    p.add_argument("--out", "-o", metavar="FILE", help="write to FILE (replaced whole, atomically) "
                   "instead of stdout")
    add_connection_options(p)


def installed_schema(db: Any, aliases: Mapping[str, str] | None = None
                     ) -> tuple[dict[str, dict[str, Any]], dict[Any, int], dict[str, dict[str, Any]]]:
    """``(user attributes, ident -> eid, every attribute)`` of ``db`` from its attribute entities (so
    a replica's DataScript schema, which drops value types, does not matter); user attributes in the
    order they were installed. ``aliases`` (old attribute name -> current; a replica's own, by
    default those ``db`` resolves) name a composite's renamed members as they are named now."""
    from datsync.core import datoms
    from datsync.core.datomic import BOOTSTRAP_MAX_EID, SCHEMA_ATTRS
    from datsync.core.sync.schema import ident_aliases, server_schema_from_datoms

    eid_of = {d.v: d.e for d in datoms(db, "aevt", "db/ident")}
    schema_datoms = [d for a in sorted(SCHEMA_ATTRS) for d in datoms(db, "aevt", a)]
    every = server_schema_from_datoms(schema_datoms, ident_aliases(db) if aliases is None else aliases)
    user = sorted((eid_of[_kw(a)], a) for a in every if eid_of.get(_kw(a), 0) > BOOTSTRAP_MAX_EID)
    return {a: every[a] for _, a in user}, eid_of, every


def export_data(db: Any, aliases: Mapping[str, str] | None = None
                ) -> tuple[dict[str, dict[str, Any]], list[tuple[Any, str, Any]]]:
    """``(schema, rows)`` of ``db`` (either flavor, a replica included, with its ``aliases``): the
    user attributes as ``{name: props}`` in the order they were installed, and the user datoms as
    ``(e, a, v)`` rows in EAVT order, with attribute and built-in entities named by their idents."""
    from datsync.core import TX0, datoms
    from datsync.core.datomic import BOOTSTRAP_MAX_EID, SCHEMA_ATTRS

    schema, eid_of, all_attrs = installed_schema(db, aliases)
    ident_of = {e: v for v, e in eid_of.items()}
    attr_eids = {eid_of[_kw(a)] for a in schema}
    refs = {a for a, p in all_attrs.items() if p.get("db/valueType") == _kw("db.type/ref")}
    composites = {a for a, p in all_attrs.items() if "db/tupleAttrs" in p}

    def named(e: Any) -> Any:
        if type(e) is int and (e <= BOOTSTRAP_MAX_EID or e in attr_eids) and e in ident_of:
            return ident_of[e]
        return e

    rows: list[tuple[Any, str, Any]] = []
    for d in datoms(db, "eavt"):
        e, a, v = d.e, d.a, d.v
        if e <= BOOTSTRAP_MAX_EID or e >= TX0 or a in composites:
            continue
        if e in attr_eids and a in SCHEMA_ATTRS:
            continue
        rows.append((named(e), a, named(v) if a in refs else _plain(v)))
    return schema, rows


def _plain(v: Any) -> Any:
    if isinstance(v, tuple) and type(v) is not tuple:
        return tuple(_plain(x) for x in v)
    return v


def _kw(name: str) -> Any:
    from datsync.core import kw

    return kw(name)


def schema_edn(props: dict[str, Any]) -> str:
    """An attribute's property map as EDN: keyword keys, vectors for tuple properties."""
    out: dict[Any, Any] = {}
    for k, v in props.items():
        if isinstance(v, tuple):
            v = [_kw(x) if isinstance(x, str) else x for x in v]
        out[_kw(k)] = v
    return to_edn(out)


def write_export(out: TextIO, schema: dict[str, dict[str, Any]], rows: list[tuple[Any, str, Any]],
                 header: str) -> None:
    out.write(f";; {header}\n")
    entries = [f"{to_edn(_kw(a))} {schema_edn(p)}" for a, p in schema.items()]
    out.write("{:schema {" + "\n          ".join(entries) + "}\n")
    out.write(" :datoms [")
    first = True
    for line in _row_lines(rows):
        out.write(line if first else "\n          " + line)
        first = False
    out.write("]}\n")


def _row_lines(rows: list[tuple[Any, str, Any]]) -> Iterator[str]:
    kws: dict[str, str] = {}
    for e, a, v in rows:
        at = kws.get(a)
        if at is None:
            at = kws[a] = to_edn(_kw(a))
        yield f"[{to_edn(e)} {at} {to_edn(v)}]"


def run(args: argparse.Namespace) -> int:
    target = target_from_args(args)
    try:
        schema, rows = export_data(target.db, target.aliases)
        header = (f"datsync export of {target.name}: t={target.t}, db-id {target.db_id or '?'}, "
                  f"{len(schema)} attributes, {len(rows)} datoms")
    finally:
        target.close()
    if not args.out or args.out == "-":
        write_export(sys.stdout, schema, rows, header)
        return 0
    dest = Path(args.out)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent if str(dest.parent) else ".")
    except OSError as e:
        raise CliError("io/unwritable", f"cannot write {dest}: {e}") from None
    try:
        with os.fdopen(fd, "w") as f:
            write_export(f, schema, rows, header)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    print(f"datsync export: {len(schema)} attributes, {len(rows)} datoms -> {dest}", file=sys.stderr)
    return 0
