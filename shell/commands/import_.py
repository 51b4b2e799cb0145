"""``datsync import TARGET FILE.edn``: schema, datoms and transactions from an EDN file, in batches."""

from __future__ import annotations

import argparse
import sys
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from ._edn import TxConverter, eid, emit, preview, read_file, to_edn
from ._errors import REFUSED, CliError
from ._progress import Progress, enabled
from ._target import TARGET_HELP, add_connection_options, target_from_args

NAME = "import"
HELP = "load schema, datoms and transactions from an EDN file (the output of export)"
DESCRIPTION = """\
Load FILE.edn ('-' for stdin) into TARGET. The file holds one EDN map with any of:

  {:schema  {:person/name    {:db/valueType :db.type/string :db/cardinality :db.cardinality/one
                              :db/unique :db.unique/identity}
             :person/friends {:db/valueType :db.type/ref :db/cardinality :db.cardinality/many}}
   :datoms  [[1 :person/name "Ivan"]
             [2 :person/name "Petr"]
             [2 :person/friends 1]]
   :tx-data [[{:person/name "Oleg" :person/friends [[:person/name "Ivan"]]}]
             [[:db/add [:person/name "Ivan"] :person/age 32]]]}

applied in this order:

:schema   attribute -> properties, as in docs/examples/people.edn (or a vector of attribute maps
          with :db/ident, Datomic's schema form), installed in one transaction. Attributes that
          already exist with the same properties are left alone.
:datoms   [entity attribute value] rows (a 4th tx element and a 5th 'added' true, as `datsync db`
          prints rows, are accepted and ignored), loaded in bulk, in batches of --batch-size datoms,
          each batch one transaction. An entity written as a number or a string is an id local to
          the file: every distinct one becomes a new entity in TARGET (a tempid), and the same id
          means the same entity in every batch, and in the value of a ref attribute (that is how
          datoms refer to each other). Unique identity attributes upsert, so rows about an entity
          TARGET already has merge into it. An entity written as a lookup ref [:person/name "Ivan"]
          or an ident :person/name is an existing entity of TARGET (or one this file's schema
          creates). A ref to a file id that no row describes is an error before anything is written.
:tx-data  a vector of transactions (each a vector of tx forms, as `datsync transact` takes them),
          committed one after another.

A progress bar shows on stderr (when it is a terminal, or with --progress). At the end an EDN map
summarizes what was done: {:t 7, :attributes 4, :datoms 11, :entities 3, :batches 1,
:transactions 2} (attributes installed or altered; entities the file's ids resolved to). Every
batch is durable when acknowledged; if one is refused (exit status 1) the ones before it stay
committed and the message says how far the import got.

A store file that a server is serving is refused: import through the server's URL instead.
"""
EPILOG = """\
examples:
  datsync import db.sqlite docs/examples/people.edn          # creates db.sqlite if missing
  datsync import db.sqlite dump.edn --batch-size 10000 --progress
  datsync import ws://127.0.0.1:8080/ dump.edn --id-map ids.edn   # ids.edn: {file-id new-id ...}
  datsync export old.sqlite | datsync import new.sqlite -
"""

KEYS = ("schema", "datoms", "tx-data")


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", metavar="TARGET", help=TARGET_HELP)
    p.add_argument("file", metavar="FILE.edn", help="{:schema {...} :datoms [[e a v] ...] :tx-data [[...] ...]} "
                   "('-' for stdin)")
    p.add_argument("--batch-size", type=int, default=2000, metavar="N",
                   help="datoms per transaction when loading :datoms (default 2000)")
    p.add_argument("--id-map", metavar="FILE", help="write the ids the file's entities got, {file-id id ...}, to FILE")
    add_connection_options(p)


class Spec(NamedTuple):
    """A parsed import file: attribute maps (EDN spelling), datom rows ``(e, a, v)``, transactions."""

    schema: list[dict]
    datoms: list[tuple[Any, str, Any]]
    txs: list[list]


def _kw(name: str) -> Any:
    from datsync.core import kw

    return kw(name)


def read_spec(data: Any, source: str) -> Spec:
    """Check the shape of an import file and split it."""
    from datsync.core import Keyword

    if not isinstance(data, dict):
        raise CliError("edn/shape", f"{source} must hold a map {{:schema {{...}} :datoms [...] :tx-data [...]}}, "
                       f"got {preview(data)}")
    unknown = [k for k in data if not (isinstance(k, Keyword) and k.name in KEYS)]
    if unknown:
        raise CliError("edn/shape", f"{source}: unknown key {preview(unknown[0])}; expected :schema, :datoms "
                       "and :tx-data")
    schema = _schema_forms(data.get(_kw("schema")) or {}, source)
    rows = [_row(r, i, source) for i, r in enumerate(_vector(data.get(_kw("datoms")) or [], ":datoms", source))]
    txs = _vector(data.get(_kw("tx-data")) or [], ":tx-data", source)
    for i, tx in enumerate(txs):
        if not isinstance(tx, list):
            raise CliError("edn/shape", f"{source}: :tx-data transaction {i} must be a vector of tx forms, "
                           f"got {preview(tx)}")
    return Spec(schema, rows, txs)


def _vector(x: Any, key: str, source: str) -> list:
    if not isinstance(x, list):
        raise CliError("edn/shape", f"{source}: {key} must be a vector, got {preview(x)}")
    return x


def _schema_forms(schema: Any, source: str) -> list[dict]:
    from datsync.core import Keyword

    ident = _kw("db/ident")
    if isinstance(schema, dict):
        forms = []
        for attr, props in schema.items():
            if not isinstance(attr, Keyword) or not isinstance(props, dict):
                raise CliError("edn/shape", f"{source}: :schema maps attribute keywords to property maps, got "
                               f"{preview(attr)} {preview(props)}")
            forms.append({ident: attr, **props})
        return forms
    if isinstance(schema, list) and all(isinstance(m, dict) and isinstance(m.get(ident), Keyword) for m in schema):
        return list(schema)
    raise CliError("edn/shape", f"{source}: :schema must be a map {{:attr {{:db/valueType ...}}}} or a vector of "
                   f"attribute maps with :db/ident, got {preview(schema)}")


def _row(r: Any, i: int, source: str) -> tuple[Any, str, Any]:
    from datsync.core import Keyword

    if not isinstance(r, list | tuple) or not 3 <= len(r) <= 5:
        raise CliError("edn/shape", f"{source}: :datoms row {i} must be [entity attribute value], got {preview(r)}")
    e, a, v = r[0], r[1], r[2]
    if len(r) == 5 and r[4] is not True:
        raise CliError("edn/shape", f"{source}: :datoms row {i} is a retraction; only current datoms load: "
                       f"{preview(r)}")
    if isinstance(a, Keyword):
        a = a.name
    if not isinstance(a, str):
        raise CliError("edn/shape", f"{source}: :datoms row {i}: the attribute must be a keyword, got {preview(r)}")
    if not (_file_id(e) is not None or isinstance(e, Keyword) or (isinstance(e, list) and len(e) == 2)):
        raise CliError("edn/shape", f"{source}: :datoms row {i}: the entity must be a number or string (an id in "
                       f"this file), a lookup ref or an ident, got {preview(r)}")
    return (e, a, v)


def _file_id(x: Any) -> tuple[str, Any] | None:
    """The key of a file-local entity id (an int or a str), or None."""
    if type(x) is int:
        return ("i", x)
    if type(x) is str:
        return ("s", x)
    return None


def _tempid(fid: tuple[str, Any]) -> str:
    return f"import/{fid[0]}{fid[1]}"


class DatomPlan:
    """Cuts datom rows into transactions of about ``batch_size`` datoms, each valid on its own.

    File ids become tempids in the batch that first mentions them in entity position and their new
    ids afterwards (``committed``). A row whose ref value is a file id that is neither known yet nor
    created in the same batch waits for the batch that creates it (Datomic refuses a tempid used
    only as a value); rows still waiting when the file is exhausted (ids that are only ever
    mentioned by waiting rows) go together in one last batch.
    """

    def __init__(self, rows: Iterable[tuple[Any, str, Any]], refs: set[str], batch_size: int):
        groups: dict[Any, list] = {}
        for r in rows:
            groups.setdefault(_file_id(r[0]) or ("x", preview(r[0])), []).append(r)
        self.pending: deque = deque(r for g in groups.values() for r in g)
        self.refs = refs
        self.batch_size = max(1, batch_size)
        self.ids: dict[tuple[str, Any], int] = {}
        self.waiting: dict[tuple[str, Any], list] = {}
        self.created: set[tuple[str, Any]] = set()

    def dangling(self) -> list[tuple[Any, str, Any]]:
        """Rows whose ref value is a file id no row has in entity position."""
        entities = {_file_id(r[0]) for r in self.pending}
        return [r for r in self.pending if self._target(r) is not None and self._target(r) not in entities]

    def _target(self, r: tuple[Any, str, Any]) -> tuple[str, Any] | None:
        return _file_id(r[2]) if r[1] in self.refs else None

    def next_batch(self) -> list[tuple[Any, str, Any]] | None:
        """The rows of the next transaction, or None when every row has been handed out."""
        while self.pending:
            batch = [self.pending.popleft() for _ in range(min(self.batch_size, len(self.pending)))]
            batch = self._defer(batch)
            if batch:
                return self._release(batch)
        if self.waiting:
            batch = [r for rs in self.waiting.values() for r in rs]
            self.waiting.clear()
            self.created = {f for r in batch if (f := _file_id(r[0])) is not None and f not in self.ids}
            return batch
        return None

    def _defer(self, batch: list) -> list:
        while True:
            created = {_file_id(r[0]) for r in batch} - {None}
            keep = []
            deferred = False
            for r in batch:
                t = self._target(r)
                if t is not None and t not in self.ids and t not in created:
                    self.waiting.setdefault(t, []).append(r)
                    deferred = True
                else:
                    keep.append(r)
            batch = keep
            if not deferred:
                return batch

    def _release(self, batch: list) -> list:
        created = {f for r in batch if (f := _file_id(r[0])) is not None and f not in self.ids}
        frontier = [f for f in created if f in self.waiting]
        while frontier:
            for r in self.waiting.pop(frontier.pop(), []):
                batch.append(r)
                f = _file_id(r[0])
                if f is not None and f not in self.ids and f not in created:
                    created.add(f)
                    if f in self.waiting:
                        frontier.append(f)
        self.created = created
        return batch

    def tx(self, batch: list, conv: TxConverter) -> list:
        """The batch as tx data: ``db/add`` forms with tempids or known ids for file ids."""
        out = []
        for e, a, v in batch:
            fe = _file_id(e)
            e2 = self._ref(fe) if fe is not None else eid(e, conv.schema)
            fv = _file_id(v) if a in self.refs else None
            if fv is not None:
                v2 = self._ref(fv)
            else:
                ref, _, tup = conv.attr_kind(a)
                v2 = conv.value(a, v, ref=ref, tup=tup)
            out.append(["db/add", e2, a, v2])
        return out

    def _ref(self, fid: tuple[str, Any]) -> Any:
        known = self.ids.get(fid)
        return known if known is not None else _tempid(fid)

    def committed(self, tempids: Mapping[Any, Any]) -> None:
        """Record the ids the last batch's new entities got."""
        for f in self.created:
            new = tempids.get(_tempid(f))
            if new is None:
                raise CliError("import/unresolved", f"the server did not report an id for entity {preview(f[1])}")
            self.ids[f] = new
        self.created = set()


def schema_changes(db: Any, forms: list[dict], aliases: Mapping[str, str] | None = None) -> list[dict]:
    """The attribute maps of ``forms`` that ``db`` (with its renamed attributes' ``aliases``) does not
    hold as they are (new or altered)."""
    from datsync.core import Keyword

    from .export import installed_schema

    every = installed_schema(db, aliases)[2]
    keyword_props = ("db/valueType", "db/cardinality", "db/unique", "db/tupleType")

    def norm(k: str, v: Any) -> Any:
        if k == "db/tupleAttrs" and isinstance(v, list | tuple):
            return tuple(x.name if isinstance(x, Keyword) else x for x in v)
        if isinstance(v, list | tuple):
            return tuple(_kw(x) if isinstance(x, str) else x for x in v)
        return _kw(v) if isinstance(v, str) and k in keyword_props else v

    out = []
    for m in forms:
        have = every.get(m[_kw("db/ident")].name)
        want = {k: norm(k, v) for k, v in ((_name(k), v) for k, v in m.items()) if k != "db/ident" and v is not False}
        if have is None or {k: norm(k, v) for k, v in have.items()} != want:
            out.append(m)
    return out


def _name(k: Any) -> Any:
    from datsync.core import Keyword

    return k.name if isinstance(k, Keyword) else k


def _ref_attrs(schema: Mapping[str, Mapping[str, Any]], forms: list[dict]) -> set[str]:
    ref = _kw("db.type/ref")
    refs = {a for a, p in schema.items() if p.get("db/valueType") == ref}
    for m in forms:
        name = m[_kw("db/ident")].name
        vt = m.get(_kw("db/valueType"))
        if vt == ref or vt == "db.type/ref":
            refs.add(name)
        elif vt is not None:
            refs.discard(name)
    return refs


def run(args: argparse.Namespace) -> int:
    from datsync.core.errors import DatsyncError

    spec = read_spec(read_file(args.file, "FILE"), args.file)
    show = enabled(args.progress)
    target = target_from_args(args, write=True)
    summary = {"t": target.t, "attributes": 0, "datoms": 0, "entities": 0, "batches": 0, "transactions": 0}
    step = "schema"
    try:
        plan = DatomPlan(spec.datoms, _ref_attrs(target.db.schema, spec.schema), args.batch_size)
        dangling = plan.dangling()
        if dangling:
            raise CliError("import/dangling-ref", f"{len(dangling)} :datoms rows refer to entities no row describes, "
                           f"e.g. {preview(list(dangling[0]))}")
        changes = schema_changes(target.db, spec.schema, target.aliases)
        if changes:
            c = target.transact(TxConverter(target.db.schema).tx(changes))
            target.wait_for_t(c.t)
            summary.update(t=c.t, attributes=len(changes))
        if spec.datoms:
            with Progress("import datoms", total=len(spec.datoms), unit="datoms", show=show) as bar:
                while (batch := plan.next_batch()) is not None:
                    step = f"datoms batch {summary['batches']} ({summary['datoms']} datoms loaded before it)"
                    c = target.transact(plan.tx(batch, TxConverter(target.db.schema)))
                    plan.committed(c.tempids)
                    summary["batches"] += 1
                    summary["datoms"] += len(batch)
                    summary["t"] = c.t
                    bar.update(summary["datoms"])
                target.wait_for_t(summary["t"])
            summary["entities"] = len(plan.ids)
        if spec.txs:
            with Progress("import tx-data", total=len(spec.txs), unit="transactions", show=show) as bar:
                for i, tx in enumerate(spec.txs):
                    step = f":tx-data transaction {i}"
                    c = target.transact(TxConverter(target.db.schema).tx(tx, f"transaction {i}"))
                    target.wait_for_t(c.t)
                    summary["transactions"] += 1
                    summary["t"] = c.t
                    bar.advance()
        if spec.datoms or spec.txs:
            target.checkpoint()
    except DatsyncError as e:
        from datsync.core.edn import EdnError

        if isinstance(e, EdnError):
            raise
        done = ", ".join(f"{v} {k}" for k, v in summary.items() if k != "t" and v) or "nothing"
        raise CliError(e.code, f"{step} failed: {e.message} (committed before it: {done})", REFUSED) from None
    finally:
        target.close()
    if args.id_map:
        from pathlib import Path

        try:
            Path(args.id_map).write_text(to_edn({f[1]: new for f, new in plan.ids.items()}) + "\n")
        except OSError as e:
            print(f"datsync import: io/unwritable: cannot write {args.id_map}: {e}", file=sys.stderr)
            return 2
    emit(to_edn({_kw(k): v for k, v in summary.items()}))
    return 0
