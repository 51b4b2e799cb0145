"""Schema as data: normalizing a schema map and deriving the attribute property sets indexes use.

A schema maps attribute names to property maps (``{"db/cardinality": kw("db.cardinality/many")}``).
Property values may be given as ``Keyword`` or as plain strings; ``normalize_schema`` makes them
keywords. ``Props`` is the reverse view the engine asks on every datom: which attributes are
many-valued, refs, unique, indexed, components, tuples.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .errors import SchemaError
from .values import Keyword, kw

CARDINALITY_ONE = kw("db.cardinality/one")
CARDINALITY_MANY = kw("db.cardinality/many")
TYPE_REF = kw("db.type/ref")
TYPE_TUPLE = kw("db.type/tuple")
UNIQUE_IDENTITY = kw("db.unique/identity")
UNIQUE_VALUE = kw("db.unique/value")

KEYWORD_PROPS = frozenset({"db/cardinality", "db/valueType", "db/unique", "db/tupleType"})

IMPLICIT_SCHEMA: dict[str, dict[str, Any]] = {"db/ident": {"db/unique": UNIQUE_IDENTITY}}
"""DataScript's implicit schema: idents are unique identities, so keywords resolve as entity ids."""


def _keywordize(v: Any) -> Any:
    if isinstance(v, str):
        return kw(v)
    return v


def normalize_schema(schema: Mapping[str, Mapping[str, Any]] | None) -> dict[str, dict[str, Any]]:
    """A copy of ``schema`` with keyword-valued properties as ``Keyword`` and attribute names as str."""
    out: dict[str, dict[str, Any]] = {}
    for attr, props in (schema or {}).items():
        if isinstance(attr, Keyword):
            attr = attr.name
        if not isinstance(attr, str):
            raise SchemaError("schema/validation", f"Bad attribute name {attr!r}: expected a string")
        if not isinstance(props, Mapping):
            raise SchemaError("schema/validation", f"Bad attribute specification for {attr}: expected a map")
        norm: dict[str, Any] = {}
        for k, v in props.items():
            k = k.name if isinstance(k, Keyword) else k
            if k in KEYWORD_PROPS:
                v = _keywordize(v)
            elif k == "db/tupleAttrs" and isinstance(v, list | tuple):
                v = tuple(x.name if isinstance(x, Keyword) else x for x in v)
            elif k == "db/tupleTypes" and isinstance(v, list | tuple):
                v = tuple(_keywordize(x) for x in v)
            norm[k] = v
        out[attr] = norm
    return out


def validate_datascript_schema(schema: Mapping[str, Mapping[str, Any]]) -> None:
    """Raise ``SchemaError`` (code ``schema/validation``) where DataScript's ``empty-db`` would."""

    def bad_value(attr: str, key: str, value: Any, expected: str) -> SchemaError:
        return SchemaError(
            "schema/validation",
            f"Bad attribute specification for {{{attr} {{{key} {value}}}}}, expected one of {expected}",
            {"attribute": attr, "key": key, "value": value},
        )

    for attr, props in schema.items():
        comp = props.get("db/isComponent")
        if comp is not None and comp is not True and comp is not False:
            raise bad_value(attr, "db/isComponent", comp, "#{true false}")
        if comp and props.get("db/valueType") != TYPE_REF:
            raise SchemaError(
                "schema/validation",
                f"Bad attribute specification for {attr}: {{:db/isComponent true}} should also have "
                "{:db/valueType :db.type/ref}",
                {"attribute": attr, "key": "db/isComponent"},
            )
        checks = (
            ("db/unique", (UNIQUE_VALUE, UNIQUE_IDENTITY), "#{:db.unique/value :db.unique/identity}"),
            ("db/valueType", (TYPE_REF, TYPE_TUPLE), "#{:db.type/ref :db.type/tuple}"),
            ("db/cardinality", (CARDINALITY_ONE, CARDINALITY_MANY), "#{:db.cardinality/one :db.cardinality/many}"),
        )
        for key, allowed, expected in checks:
            v = props.get(key)
            if v is not None and v not in allowed:
                raise bad_value(attr, key, v, expected)
        tuple_keys = [k for k in ("db/tupleAttrs", "db/tupleTypes", "db/tupleType") if k in props]
        if props.get("db/valueType") == TYPE_TUPLE and not tuple_keys:
            raise SchemaError(
                "schema/validation",
                f"Bad attribute specification for {attr}: {{:db/valueType :db.type/tuple}} should also "
                "have :db/tupleAttrs, :db/tupleTypes or :db/tupleType",
                {"attribute": attr, "key": "db/valueType"},
            )
        if len(tuple_keys) > 1:
            raise SchemaError(
                "schema/validation",
                f"Bad attribute specification for {attr}: only one of :db/tupleAttrs, :db/tupleTypes or "
                ":db/tupleType is allowed",
                {"attribute": attr, "key": tuple_keys[1]},
            )
        if "db/tupleTypes" in props:
            types = props["db/tupleTypes"]
            if not isinstance(types, list | tuple) or len(types) < 2 or not all(
                isinstance(t, Keyword) for t in types
            ):
                raise SchemaError(
                    "schema/validation",
                    f"Bad attribute specification for {attr}: :db/tupleTypes must be a sequence of at least "
                    f"2 keywords, got {types!r}",
                    {"attribute": attr, "key": "db/tupleTypes"},
                )
        if "db/tupleType" in props and not isinstance(props["db/tupleType"], Keyword):
            raise SchemaError(
                "schema/validation",
                f"Bad attribute specification for {attr}: :db/tupleType must be a keyword, "
                f"got {props['db/tupleType']!r}",
                {"attribute": attr, "key": "db/tupleType"},
            )
        if "db/tupleAttrs" in props:
            data = {"attribute": attr, "key": "db/tupleAttrs"}
            if props.get("db/cardinality") == CARDINALITY_MANY:
                raise SchemaError("schema/validation", f"{attr} has :db/tupleAttrs, must be :db.cardinality/one", data)
            attrs = props["db/tupleAttrs"]
            if not isinstance(attrs, list | tuple):
                raise SchemaError(
                    "schema/validation", f"{attr} :db/tupleAttrs must be a sequential collection, got: {attrs}", data
                )
            if not attrs:
                raise SchemaError("schema/validation", f"{attr} :db/tupleAttrs can't be empty", data)
            for a in attrs:
                if "db/tupleAttrs" in schema.get(a, {}):
                    raise SchemaError(
                        "schema/validation", f"{attr} :db/tupleAttrs can't depend on another tuple attribute: {a}", data
                    )
                if schema.get(a, {}).get("db/cardinality") == CARDINALITY_MANY:
                    raise SchemaError(
                        "schema/validation",
                        f"{attr} :db/tupleAttrs can't depend on :db.cardinality/many attribute: {a}",
                        data,
                    )


class Props:
    """Attribute property sets derived from a schema (DataScript's ``rschema``).

    ``indexed`` is what goes into AVET: unique, ``db/index``, ref and tuple attributes.
    ``attr_tuples`` maps a source attribute to ``{tuple_attr: position}``.
    ``by_value`` (the DataScript flavor) reads reference, cardinality and uniqueness from property
    values whatever their key, as DataScript does: ``{"db/type": kw("db.type/ref")}`` makes a ref.
    """

    __slots__ = (
        "attr_tuples",
        "component",
        "identity",
        "indexed",
        "many",
        "ref",
        "tuple",
        "tuple_attrs",
        "unique",
        "unique_value",
    )

    def __init__(self, schema: Mapping[str, Mapping[str, Any]], by_value: bool = False):
        many, ref, unique, identity, unique_value = set(), set(), set(), set(), set()
        indexed, component, tuples = set(), set(), set()
        attr_tuples: dict[str, dict[str, int]] = {}
        tuple_attrs: dict[str, tuple[str, ...]] = {}
        for attr, props in schema.items():
            if by_value:
                values = {v for v in props.values() if isinstance(v, Keyword)}
                card, vtype = (CARDINALITY_MANY if CARDINALITY_MANY in values else None), (
                    TYPE_REF if TYPE_REF in values else None)
                u = UNIQUE_IDENTITY if UNIQUE_IDENTITY in values else UNIQUE_VALUE if UNIQUE_VALUE in values else None
            else:
                card, vtype, u = props.get("db/cardinality"), props.get("db/valueType"), props.get("db/unique")
            if card == CARDINALITY_MANY:
                many.add(attr)
            if vtype == TYPE_REF:
                ref.add(attr)
                indexed.add(attr)
            if u == UNIQUE_IDENTITY:
                unique.add(attr)
                identity.add(attr)
                indexed.add(attr)
            elif u == UNIQUE_VALUE:
                unique.add(attr)
                unique_value.add(attr)
                indexed.add(attr)
            if props.get("db/isComponent") is True:
                component.add(attr)
            if props.get("db/index") is True:
                indexed.add(attr)
            if "db/tupleAttrs" in props:
                tuples.add(attr)
                indexed.add(attr)
                tuple_attrs[attr] = tuple(props["db/tupleAttrs"])
                for i, src in enumerate(props["db/tupleAttrs"]):
                    attr_tuples.setdefault(src, {})[attr] = i
        self.many = frozenset(many)
        self.ref = frozenset(ref)
        self.unique = frozenset(unique)
        self.identity = frozenset(identity)
        self.unique_value = frozenset(unique_value)
        self.indexed = frozenset(indexed)
        self.component = frozenset(component)
        self.tuple = frozenset(tuples)
        self.attr_tuples = attr_tuples
        self.tuple_attrs = tuple_attrs


def reverse_attr(attr: str) -> str:
    """``"person/_friends"`` <-> ``"person/friends"``, ``"_parent"`` <-> ``"parent"``."""
    slash = attr.rfind("/")
    ns, name = (attr[:slash + 1], attr[slash + 1:]) if slash >= 0 else ("", attr)
    return ns + (name[1:] if name.startswith("_") else "_" + name)


def is_reverse_attr(attr: str) -> bool:
    """True for reverse-ref names such as ``"person/_friends"``."""
    slash = attr.rfind("/")
    return attr[slash + 1:slash + 2] == "_"


def datascript_schema(schema: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """A Datomic-style schema map as DataScript accepts it: DataScript types only refs and tuples,
    so other ``db/valueType``s (and Datomic-only properties) are dropped; the rest is kept."""
    keep = {"db/cardinality", "db/unique", "db/isComponent", "db/index", "db/tupleAttrs", "db/doc"}
    out: dict[str, dict[str, Any]] = {}
    for attr, props in normalize_schema(schema).items():
        p = {k: v for k, v in props.items() if k in keep}
        if props.get("db/valueType") in (TYPE_REF, TYPE_TUPLE):
            p["db/valueType"] = props["db/valueType"]
        if p.get("db/valueType") == TYPE_TUPLE and "db/tupleAttrs" not in p:
            del p["db/valueType"]
        out[attr] = p
    return out
