"""The replica's schema, derived from the server's schema entities, and schema changes as data.

The server's schema is Datomic's: attribute entities with ``db/ident``, ``db/valueType``,
``db/cardinality`` ... whose map form is ``DB.schema`` (attribute name -> property map with
``Keyword`` values). A replica keeps that map (``Replica.server_schema``) and derives its
DataScript-flavored schema from it with ``replica_schema``: DataScript types only refs and tuples,
so other value types are dropped (values keep their server types exactly; DataScript does not
type-check). Everything else that shapes indexes (cardinality, uniqueness, ``db/index``,
components, composite tuples) carries over.

A transaction that touches schema datoms changes ``DB.schema``; ``schema_delta`` reports the
change as data (the new property map of every attribute whose definition changed, and attribute
renames), small enough to travel inside a delta, and ``apply_schema_delta`` replays it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from ..datomic import SCHEMA_ATTRS, derive_attr_props
from ..db import DB
from ..schema import TYPE_REF, TYPE_TUPLE, datascript_schema
from ..values import Keyword, OrderedTuple

ServerSchema = Mapping[str, Mapping[str, Any]]
"""A Datomic-flavored ``DB.schema``: attribute name -> property map."""

Aliases = Mapping[str, str]
"""The old names of renamed attributes that the server still resolves -> the attribute's current name."""

_ATTR_PROPS = SCHEMA_ATTRS - {"db/ident", "db/doc"}


def replica_schema(server_schema: ServerSchema) -> dict[str, dict[str, Any]]:
    """The DataScript-flavored schema a replica of a server with ``server_schema`` uses."""
    return datascript_schema(server_schema)


def _plain(v: Any) -> Any:
    if type(v) is OrderedTuple:
        return tuple(_plain(x) for x in v)
    return v


def ident_aliases(db: DB) -> dict[str, str]:
    """The old attribute names a Datomic-flavored ``db`` still resolves, each -> its attribute's
    current name (empty for a DataScript-flavored one)."""
    idents, schema = db.idents, db.schema
    out: dict[str, str] = {}
    for k, e in idents.items():
        if type(k) is Keyword and k.name not in schema:
            cur = idents.get(e)
            if type(cur) is Keyword and cur.name in schema:
                out[k.name] = cur.name
    return out


def resolve_attr(server_schema: ServerSchema, aliases: Aliases, name: Any) -> Any:
    """The attribute the server resolves the attribute name ``name`` to: ``name`` itself when it is a
    current attribute, else the current name of the renamed attribute it is an old name of, else
    ``name`` unchanged (the server will refuse it)."""
    if name in server_schema or not aliases:
        return name
    return aliases.get(name, name)


def server_schema_from_datoms(datoms: Iterable[tuple], aliases: Aliases | None = None) -> dict[str, dict[str, Any]]:
    """The server's ``DB.schema`` derived from its schema datoms ``(e, a, v, ...)`` (server eids; other
    datoms are ignored) and its ``aliases`` (a composite's ``db/tupleAttrs`` datoms keep the names its
    members had when it was installed): what a replica bootstrapping from a snapshot learns its
    schema from. Raises ``TxError`` where an attribute definition is inconsistent."""
    aliases = aliases or {}
    vals: dict[int, dict[str, Any]] = {}
    idents: dict[Any, Any] = {}
    for d in datoms:
        a = d[1]
        if a in SCHEMA_ATTRS:
            e, v = d[0], _plain(d[2])
            vals.setdefault(e, {})[a] = v
            if a == "db/ident":
                idents[e] = v
                idents[v] = e
    schema: dict[str, dict[str, Any]] = {}
    # composites last: their members must be known first
    for e in sorted(vals, key=lambda e: ("db/tupleAttrs" in vals[e], e)):
        entity = vals[e]
        k = entity.get("db/ident")
        if not isinstance(k, Keyword) or not any(a in entity for a in _ATTR_PROPS):
            continue
        members = entity.get("db/tupleAttrs")
        if members is None:
            schema[k.name] = derive_attr_props(entity, idents, schema)
            continue
        # the members as the server names them now, without re-validating what the server accepted
        props = derive_attr_props({a: v for a, v in entity.items() if a != "db/tupleAttrs"}, idents, schema)
        names = []
        for x in members:
            cur = idents.get(idents.get(x))
            name = cur.name if isinstance(cur, Keyword) else getattr(x, "name", x)
            names.append(aliases.get(name, name))
        props["db/tupleAttrs"] = tuple(names)
        schema[k.name] = props
    return schema


class SchemaDelta(NamedTuple):
    """What one transaction did to the server's schema: ``renames`` as ``(old, new)`` attribute names
    (applied first), then ``changes``: attribute name -> its whole new property map (None: no longer
    an attribute). Empty when the transaction did not touch the schema."""

    changes: Mapping[str, Mapping[str, Any] | None] = {}
    renames: tuple[tuple[str, str], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.changes) or bool(self.renames)


NO_SCHEMA_CHANGE = SchemaDelta({}, ())


def schema_delta(db_before: DB, db_after: DB) -> SchemaDelta:
    """The schema change between two Datomic-flavored database values (cheap when there is none:
    ``transact`` keeps the same schema object when a transaction does not touch schema datoms)."""
    before, after = db_before.schema, db_after.schema
    if before is after:
        return NO_SCHEMA_CHANGE
    ib, ia = db_before.idents, db_after.idents
    renames: list[tuple[str, str]] = []
    for name in before:
        e = ib.get(Keyword(name))
        cur = ia.get(e) if e is not None else None
        if isinstance(cur, Keyword) and cur.name != name and cur.name in after:
            renames.append((name, cur.name))
    renamed = dict(renames)
    changes: dict[str, Any] = {}
    for name, props in after.items():
        old = before.get(name)
        src = next((o for o, n in renames if n == name), None)
        if src is not None:
            old = before.get(src)
        if old != props:
            changes[name] = dict(props)
    for name in before:
        if name not in after and name not in renamed:
            changes[name] = None
    return SchemaDelta(changes, tuple(renames))


def apply_schema_delta(server_schema: ServerSchema, delta: SchemaDelta) -> dict[str, dict[str, Any]]:
    """``server_schema`` after ``delta`` (a new map; the old one is not changed)."""
    out = dict(server_schema)
    renames = dict(delta.renames)
    if renames:
        moved = {new: out.pop(old) for old, new in delta.renames if old in out}
        out.update(moved)
        for name, props in out.items():
            ta = props.get("db/tupleAttrs")
            if ta and any(x in renames for x in ta):
                out[name] = {**props, "db/tupleAttrs": tuple(renames.get(x, x) for x in ta)}
    for name, props in delta.changes.items():
        if props is None:
            out.pop(name, None)
        else:
            out[name] = dict(props)
    return out


def apply_aliases(aliases: Aliases, delta: SchemaDelta, server_schema: ServerSchema) -> Aliases:
    """``aliases`` after the schema change ``delta`` (``server_schema``: the schema after it): each
    renamed attribute answers to its old name too; names that became attributes of their own, or
    whose attribute is gone, stop being aliases."""
    if not delta.renames and not aliases:
        return aliases
    renames = dict(delta.renames)
    out = {old: renames.get(cur, cur) for old, cur in aliases.items()}
    out.update(renames)
    return {old: cur for old, cur in out.items() if old not in server_schema and cur in server_schema}


class RefInfo(NamedTuple):
    """Where a schema puts entity ids inside values: ``ref`` attributes hold one, and ``tuples`` maps
    a tuple attribute to the positions of its ref elements (``None``: every element is a ref)."""

    ref: frozenset[str]
    tuples: Mapping[str, tuple[int, ...] | None]

    def holds_ids(self, attr: str) -> bool:
        """True when values of ``attr`` contain entity ids."""
        return attr in self.ref or attr in self.tuples


def ref_info(server_schema: ServerSchema) -> RefInfo:
    """The ``RefInfo`` of a server schema (refs, ``db/tupleType :db.type/ref``, ``db/tupleTypes``
    with refs, composite tuples over ref attributes)."""
    ref = frozenset(a for a, p in server_schema.items() if p.get("db/valueType") == TYPE_REF)
    tuples: dict[str, tuple[int, ...] | None] = {}
    for a, p in server_schema.items():
        if p.get("db/valueType") != TYPE_TUPLE:
            continue
        if p.get("db/tupleType") == TYPE_REF:
            tuples[a] = None
        elif "db/tupleTypes" in p:
            pos = tuple(i for i, t in enumerate(p["db/tupleTypes"]) if t == TYPE_REF)
            if pos:
                tuples[a] = pos
        elif "db/tupleAttrs" in p:
            pos = tuple(i for i, m in enumerate(p["db/tupleAttrs"]) if m in ref)
            if pos:
                tuples[a] = pos
    return RefInfo(ref, tuples)


__all__ = [
    "NO_SCHEMA_CHANGE",
    "Aliases",
    "RefInfo",
    "SchemaDelta",
    "ServerSchema",
    "apply_aliases",
    "apply_schema_delta",
    "ident_aliases",
    "ref_info",
    "replica_schema",
    "resolve_attr",
    "schema_delta",
    "server_schema_from_datoms",
]
