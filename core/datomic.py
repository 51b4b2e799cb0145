"""The Datomic flavor: schema as data, typed values, whole-transaction resolution, history.

A Datomic-flavored database is the same ``DB`` value as the DataScript flavor (``flavor="datomic"``),
with these differences:

* **Schema is data.** Attributes are entities with ``db/ident``, ``db/valueType`` and
  ``db/cardinality`` (plus optional ``db/unique``, ``db/index``, ``db/isComponent``, ``db/noHistory``,
  ``db/fulltext``, ``db/doc``, ``db/tupleAttrs``, ``db/tupleType``, ``db/tupleTypes``), installed by
  transactions. ``db.schema`` is derived from them and has the DataScript flavor's shape (attribute
  name -> property map with ``Keyword`` values), so ``core.schema.Props`` works unchanged.
  ``db/valueType``, ``db/cardinality`` and ``db/unique`` are refs to ident entities, as in Datomic.
* **Idents.** ``db.idents`` is one dict used in both directions: ``Keyword -> eid`` (current idents
  *and* the old names of renamed entities, which keep resolving, as in Datomic) and ``eid -> Keyword``
  (the current ident only).
* **Bootstrap.** ``empty_datomic_db`` holds the built-in attributes and enums (``db.type/*``,
  ``db.cardinality/*``, ``db.unique/*``, ``db.part/*``) at small fixed eids (1..``BOOTSTRAP_MAX_EID``),
  asserted at tx ``TX0`` (t = 0) whose ``db/txInstant`` is ``EPOCH``. User eids start above
  ``BOOTSTRAP_MAX_EID`` (eids up to it are reserved for future built-ins).
* **Transactions** (``transact_datomic``) resolve as a whole against db-before: lookup refs, idents,
  upserts and ``db/cas`` see only db-before; tempids that upsert to the same unique-identity value
  unify; conflicting datoms are ``db.error/datoms-conflict``; redundant assertions are elided; every
  transaction gets a transaction entity ``TX0 + t`` with ``db/txInstant``; history is kept in
  ``db.heavt``/``db.haevt``.
* **Values are type-checked** against the attribute's ``db/valueType`` (see ``VALUE_TYPES``).

Python value for each Datomic type: string ``str``; keyword ``Keyword``; long ``int`` in the
signed 64-bit range; bigint ``int``; double and float ``float`` (an ``int`` is converted; NaN is
refused; float is not rounded to 32 bits); boolean ``bool``; instant ``datetime`` (naive means UTC;
stored as an aware UTC datetime); uuid ``uuid.UUID``; uri ``str`` (no whitespace or control
characters; ``urllib.parse`` split/parse results are accepted and stored as their URL string);
bytes ``bytes`` (bytearray/memoryview converted); bigdec ``decimal.Decimal`` (finite; an ``int`` is
converted); ref an entity id; symbol ``Symbol``; tuple a Python ``tuple`` (lists accepted) of 2..8
elements, ``None`` allowed for a missing element.

Decisions where Datomic is silent or where this flavor deviates:

* a composite tuple (``db/tupleAttrs``) asserted directly is discarded and recomputed from its
  members (Datomic does the same); its value still serves upsert resolution when it is a unique
  identity. Composites are computed whenever a member is asserted (redundantly too) or retracted.
* adding ``db/unique`` to an attribute that already has datoms requires ``db/index true`` in an
  earlier transaction (Datomic Pro's ``db.error/unique-without-index``) and unique existing values;
  ``db/cardinality`` many -> one requires at most one value per entity.
* renaming an attribute rewrites its datoms, current and historical, to the new name (views use the
  current schema, as in Datomic); the old name keeps resolving in transactions. Built-in entities
  (eids up to ``BOOTSTRAP_MAX_EID``) cannot be altered except for ``db/doc``.
* ``db/noHistory`` is recorded in the schema but history is kept (as Datomic's memory databases do).
* nested maps need neither a unique attribute nor a component attribute (more permissive).
* installing an attribute does not assert ``db.install/attribute`` implicitly; the legacy
  ``{"db.install/_attribute": kw("db.part/db")}`` form is accepted.
* ``db.fn/call`` functions receive db-before and return tx data; there are no stored functions.

Error codes are Datomic's where Datomic has one. Codes this module invents, where Datomic's is
unknown or has no equivalent: ``db.error/invalid-cas`` (``db/cas`` on a cardinality-many
attribute), ``db.error/invalid-tx-instant`` (``db/txInstant`` asserted on another entity than the
current transaction), ``db.error/invalid-install-attribute`` (an attribute definition that is complete
but inconsistent), and DataScript's ``transact/syntax`` for malformed forms.
"""

from __future__ import annotations

import datetime as _dt
import decimal as _decimal
import math
import uuid as _uuid
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import ParseResult, SplitResult

from .db import DB, TX0, make_db
from .errors import DatsyncError, TxError
from .index import LAYOUT_MIN_KEYS, HistoryIndexes, TransientAttrIndex, TransientIndex, lay_out_by_attribute
from .schema import (
    CARDINALITY_MANY,
    CARDINALITY_ONE,
    UNIQUE_IDENTITY,
    UNIQUE_VALUE,
    Props,
    is_reverse_attr,
    reverse_attr,
)
from .transact import (
    CURRENT_TX_KEY,
    OP_CALL,
    OP_RETRACT_ATTRIBUTE,
    OPS_ADD,
    OPS_CAS,
    OPS_RETRACT,
    OPS_RETRACT_ENTITY,
    AutoTempid,
    TxReport,
    is_tx_tempid,
    op_name,
    same_value,
)
from .values import Datom, Keyword, OrderedTuple, Symbol, index_value, kw, value_rank

UTC = _dt.UTC
EPOCH = _dt.datetime(1970, 1, 1, tzinfo=UTC)
"""The ``db/txInstant`` of the bootstrap transaction ``TX0`` (t = 0)."""

BOOTSTRAP_MAX_EID = 100
"""Entity ids 1..100 are reserved for built-in idents; the first user entity gets 101."""

VALUE_TYPES = (
    "string", "keyword", "long", "bigint", "double", "float", "boolean", "instant", "uuid", "uri",
    "bytes", "bigdec", "ref", "symbol", "tuple",
)
"""The local names of the ``db.type/*`` idents."""

SCHEMA_ATTRS = frozenset({
    "db/ident", "db/valueType", "db/cardinality", "db/unique", "db/index", "db/isComponent",
    "db/noHistory", "db/fulltext", "db/doc", "db/tupleAttrs", "db/tupleType", "db/tupleTypes",
})
"""Attributes whose datoms define the schema (a transaction touching them re-derives it)."""

_BOOL_PROPS = ("db/index", "db/isComponent", "db/noHistory", "db/fulltext")
_IMMUTABLE_PROPS = ("db/valueType", "db/fulltext", "db/tupleAttrs", "db/tupleType", "db/tupleTypes")
_ATTR_PROPS = SCHEMA_ATTRS - {"db/ident", "db/doc"}
_LENIENT_KW = frozenset({"db/ident", "db/tupleType", "db/tupleTypes", "db/tupleAttrs"})
"""Keyword-valued built-in attributes that also accept a plain string (DESIGN: schema values)."""
_LENIENT_REF = frozenset({"db/valueType", "db/cardinality", "db/unique"})
"""Ref-valued built-in attributes whose string values name idents (not tempids)."""

I64_MIN = -(1 << 63)
I64_MAX = (1 << 63) - 1
TUPLE_MIN, TUPLE_MAX = 2, 8

# ------------------------------------------------------------------------------------------------
# Bootstrap

_BUILTIN_ATTRS: tuple[tuple[str, str, str, dict[str, Any]], ...] = (
    ("db/ident", "keyword", "one", {"db/unique": "identity"}),
    ("db/valueType", "ref", "one", {}),
    ("db/cardinality", "ref", "one", {}),
    ("db/unique", "ref", "one", {}),
    ("db/isComponent", "boolean", "one", {}),
    ("db/index", "boolean", "one", {}),
    ("db/noHistory", "boolean", "one", {}),
    ("db/fulltext", "boolean", "one", {}),
    ("db/doc", "string", "one", {}),
    ("db/txInstant", "instant", "one", {"db/index": True}),
    ("db/tupleAttrs", "tuple", "one", {"db/tupleType": "keyword"}),
    ("db/tupleType", "keyword", "one", {}),
    ("db/tupleTypes", "tuple", "one", {"db/tupleType": "keyword"}),
    ("db.install/attribute", "ref", "many", {}),
)
_BUILTIN_ENUMS: tuple[str, ...] = (
    "db.part/db", "db.part/user", "db.part/tx",
    *(f"db.type/{t}" for t in VALUE_TYPES),
    "db.cardinality/one", "db.cardinality/many",
    "db.unique/identity", "db.unique/value",
)
TYPE_KEYWORDS = frozenset(kw(f"db.type/{t}") for t in VALUE_TYPES)


def _bootstrap() -> tuple[list[Datom], dict[str, dict[str, Any]], dict[Any, Any]]:
    idents: dict[Any, Any] = {}
    names = [a[0] for a in _BUILTIN_ATTRS] + list(_BUILTIN_ENUMS)
    for e, name in enumerate(names, start=1):
        idents[kw(name)] = e
        idents[e] = kw(name)
    assert len(names) <= BOOTSTRAP_MAX_EID
    datoms: list[Datom] = []
    schema: dict[str, dict[str, Any]] = {}
    for name, vtype, card, extra in _BUILTIN_ATTRS:
        e = idents[kw(name)]
        props: dict[str, Any] = {
            "db/valueType": kw(f"db.type/{vtype}"),
            "db/cardinality": kw(f"db.cardinality/{card}"),
        }
        datoms.append(Datom(e, "db/ident", kw(name), TX0))
        datoms.append(Datom(e, "db/valueType", idents[kw(f"db.type/{vtype}")], TX0))
        datoms.append(Datom(e, "db/cardinality", idents[kw(f"db.cardinality/{card}")], TX0))
        if "db/unique" in extra:
            props["db/unique"] = kw(f"db.unique/{extra['db/unique']}")
            datoms.append(Datom(e, "db/unique", idents[props["db/unique"]], TX0))
        if extra.get("db/index"):
            props["db/index"] = True
            datoms.append(Datom(e, "db/index", True, TX0))
        if "db/tupleType" in extra:
            props["db/tupleType"] = kw(f"db.type/{extra['db/tupleType']}")
            datoms.append(Datom(e, "db/tupleType", props["db/tupleType"], TX0))
        schema[name] = props
    for name in _BUILTIN_ENUMS:
        datoms.append(Datom(idents[kw(name)], "db/ident", kw(name), TX0))
    datoms.append(Datom(TX0, "db/txInstant", EPOCH, TX0))
    return datoms, schema, idents


_BOOT = _bootstrap()


def empty_datomic_db(schema: Any = None) -> DB:
    """The bootstrap database (t = 0); ``schema``, if given, is installed by a first transaction.

    ``schema`` is either tx data (a list of attribute maps) or a DataScript-shaped map
    ``{"person/name": {"db/valueType": "db.type/string", "db/cardinality": "db.cardinality/one"}}``
    (property values as ``Keyword`` or plain strings); attribute definitions must be complete."""
    datoms, bschema, idents = _BOOT
    db = make_db(
        {k: dict(v) for k, v in bschema.items()},
        "datomic",
        datoms,
        max_eid=BOOTSTRAP_MAX_EID,
        max_tx=TX0,
        idents=dict(idents),
    )
    if not schema:
        return db
    return transact_datomic(db, schema_tx_data(schema), instant=EPOCH).db_after


def schema_tx_data(schema: Any) -> list:
    """Tx data installing ``schema`` (a DataScript-shaped map, or tx data passed through)."""
    if isinstance(schema, Mapping):
        out = []
        for attr, props in schema.items():
            name = attr.name if isinstance(attr, Keyword) else attr
            if not isinstance(props, Mapping):
                raise TxError("transact/syntax", f"Bad attribute specification for {name}: expected a map", {})
            out.append({"db/ident": kw(name), **props})
        return out
    return list(schema)


def ident(db: DB, eid: int) -> Keyword | None:
    """The current ident of entity ``eid`` (None if it has none)."""
    k = db.idents.get(eid)
    return k if isinstance(k, Keyword) else None


# ------------------------------------------------------------------------------------------------
# Attributes as the engine sees them


class _Attr:
    """What the transaction engine needs to know about one attribute."""

    __slots__ = (
        "coerce",
        "component",
        "composite",
        "identity",
        "indexed",
        "many",
        "name",
        "no_history",
        "ref",
        "tuple_type",
        "tuple_types",
        "unique",
        "vt",
    )

    def __init__(self, name: str, props: Mapping[str, Any], indexed: bool):
        self.name = name
        vt = props.get("db/valueType")
        self.vt = vt.local if isinstance(vt, Keyword) else None
        self.many = props.get("db/cardinality") == CARDINALITY_MANY
        self.ref = self.vt == "ref"
        u = props.get("db/unique")
        self.unique = u is not None
        self.identity = u == UNIQUE_IDENTITY
        self.component = props.get("db/isComponent") is True
        self.no_history = props.get("db/noHistory") is True
        self.indexed = indexed
        ta = props.get("db/tupleAttrs")
        self.composite = tuple(ta) if ta is not None else None
        tt = props.get("db/tupleType")
        self.tuple_type = tt.local if isinstance(tt, Keyword) else None
        tts = props.get("db/tupleTypes")
        self.tuple_types = tuple(x.local for x in tts) if tts is not None else None
        self.coerce = _SCALARS.get(self.vt) if self.vt not in ("ref", "tuple") else None

    def __repr__(self) -> str:
        return f"<attr :{self.name} {self.vt}{' many' if self.many else ''}>"


_ATTR_CACHE: OrderedDict[int, tuple[dict, dict[str, _Attr]]] = OrderedDict()


def _attrs_for(db: DB) -> dict[str, _Attr]:
    """Attribute infos of ``db.schema``, cached per schema value (schemas are shared across dbs)."""
    key = id(db.schema)
    hit = _ATTR_CACHE.get(key)
    if hit is not None and hit[0] is db.schema:
        _ATTR_CACHE.move_to_end(key)
        return hit[1]
    indexed = db.props.indexed
    attrs = {name: _Attr(name, props, name in indexed) for name, props in db.schema.items()}
    _ATTR_CACHE[key] = (db.schema, attrs)
    while len(_ATTR_CACHE) > 16:
        _ATTR_CACHE.popitem(last=False)
    return attrs


# ------------------------------------------------------------------------------------------------
# Value types

_BAD = object()


def _c_string(v: Any) -> Any:
    if type(v) is str:
        return v
    return str(v) if isinstance(v, str) else _BAD


def _c_keyword(v: Any) -> Any:
    return v if type(v) is Keyword else _BAD


def _c_long(v: Any) -> Any:
    if type(v) is int or (isinstance(v, int) and not isinstance(v, bool)):
        return int(v) if I64_MIN <= v <= I64_MAX else _BAD
    return _BAD


def _c_bigint(v: Any) -> Any:
    if isinstance(v, int) and not isinstance(v, bool):
        return int(v)
    return _BAD


def _c_double(v: Any) -> Any:
    if type(v) is float:
        return _BAD if v != v else v
    if isinstance(v, int) and not isinstance(v, bool):
        try:
            return float(v)
        except OverflowError:
            return _BAD
    if isinstance(v, float):
        return _BAD if math.isnan(v) else float(v)
    return _BAD


def _c_boolean(v: Any) -> Any:
    return v if type(v) is bool else _BAD


def normalize_instant(v: Any) -> Any:
    """An aware UTC ``datetime`` for ``v`` (naive means UTC), or ``_BAD``."""
    if not isinstance(v, _dt.datetime):
        return _BAD
    if v.tzinfo is None or v.tzinfo.utcoffset(v) is None:
        return v.replace(tzinfo=UTC)
    return v.astimezone(UTC)


def _c_uuid(v: Any) -> Any:
    return v if isinstance(v, _uuid.UUID) else _BAD


def _c_uri(v: Any) -> Any:
    if isinstance(v, ParseResult | SplitResult):
        v = v.geturl()
    if not isinstance(v, str):
        return _BAD
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in v):
        return _BAD
    return str(v)


def _c_bytes(v: Any) -> Any:
    if type(v) is bytes:
        return v
    if isinstance(v, bytes | bytearray | memoryview):
        return bytes(v)
    return _BAD


def _c_bigdec(v: Any) -> Any:
    if isinstance(v, _decimal.Decimal):
        return v if v.is_finite() else _BAD
    if isinstance(v, int) and not isinstance(v, bool):
        return _decimal.Decimal(v)
    return _BAD


def _c_symbol(v: Any) -> Any:
    return v if type(v) is Symbol else _BAD


_SCALARS = {
    "string": _c_string,
    "keyword": _c_keyword,
    "long": _c_long,
    "bigint": _c_bigint,
    "double": _c_double,
    "float": _c_double,
    "boolean": _c_boolean,
    "instant": normalize_instant,
    "uuid": _c_uuid,
    "uri": _c_uri,
    "bytes": _c_bytes,
    "bigdec": _c_bigdec,
    "symbol": _c_symbol,
}


def _plain(v: Any) -> Any:
    """An index value back in user form (``OrderedTuple`` -> ``tuple``)."""
    if type(v) is OrderedTuple:
        return tuple(_plain(x) for x in v)
    return v


# ------------------------------------------------------------------------------------------------
# Formatting for messages


def _edn(v: Any) -> str:
    if v is None:
        return "nil"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, Keyword):
        return str(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, tuple | list):
        return "[" + " ".join(_edn(x) for x in v) + "]"
    if isinstance(v, _dt.datetime):
        return f'#inst "{v.isoformat()}"'
    if isinstance(v, _uuid.UUID):
        return f'#uuid "{v}"'
    return repr(v) if not isinstance(v, int | float | Symbol) else str(v)


def _fmt_datom(e: Any, a: str, v: Any, tx: int, added: bool = True) -> str:
    return f"[{e} :{a} {_edn(v)} {tx} {'true' if added else 'false'}]"


def _not_an_entity(x: Any) -> TxError:
    return TxError("db.error/not-an-entity", f"Unable to resolve entity: {_edn(x)}", {"entity": x})


def _nil_value(form: Any) -> TxError:
    return TxError("db.error/nil-value", f"Nil is not a legal value in {form!r}", {"form": form})


# ------------------------------------------------------------------------------------------------
# The transaction


_ADD, _RETRACT, _RETRACT_ATTR, _RETRACT_ENTITY, _CAS = range(5)
_REF_TYPES = (int, str, Keyword, tuple, list, AutoTempid)


class _Tx:
    """One transaction in progress: parse, resolve tempids, compute datoms, apply."""

    def __init__(self, db: DB):
        self.db = db
        self.attrs = _attrs_for(db)
        self.idents = db.idents
        self.tx = db.max_tx + 1
        self.ops: list[list] = []
        self.tempid_order: dict[Any, None] = {}
        self.asserting: set = set()
        self.auto = 0
        self.used_tx_tempids: set = set()

    # -- resolution against db-before

    def attr(self, a: Any, form: Any) -> _Attr:
        t = type(a)
        if t is str:
            name = a[1:] if a.startswith(":") else a
        elif t is Keyword:
            name = a.name
        elif t is int and not isinstance(a, bool):
            k = self.idents.get(a)
            if not isinstance(k, Keyword):
                raise _not_an_entity(a)
            name = k.name
        else:
            raise TxError(
                "transact/syntax", f"Bad attribute {a!r} in {form!r}: expected a keyword or string",
                {"attribute": a, "form": form},
            )
        info = self.attrs.get(name)
        if info is not None:
            return info
        k = Keyword._interned.get(name)
        e = self.idents.get(k) if k is not None else None
        if e is None:
            raise TxError("db.error/not-an-entity", f"Unable to resolve entity: :{name}", {"entity": name})
        cur = self.idents.get(e)
        info = self.attrs.get(cur.name) if isinstance(cur, Keyword) else None
        if info is None:
            raise TxError("db.error/not-an-attribute", f"{_edn(k)} is not an attribute.", {"attribute": name})
        return info

    def valid_eid(self, x: int) -> int:
        if 0 < x <= self.db.max_eid or TX0 <= x <= self.db.max_tx:
            return x
        raise TxError("db.error/invalid-entity-id", f"Invalid entity id: {x}", {"entity": x})

    def seen(self, t: Any) -> Any:
        if t not in self.tempid_order:
            self.tempid_order[t] = None
        return t

    def entity(self, x: Any, form: Any) -> Any:
        """An entity position: an eid, or a tempid (kept for later resolution)."""
        t = type(x)
        if t is int:
            if x > 0:
                return self.valid_eid(x)
            if x < 0:
                return self.seen(x)
            raise TxError("db.error/invalid-entity-id", f"Invalid entity id: {x}", {"entity": x})
        if t is str:
            if is_tx_tempid(x):
                self.used_tx_tempids.add(x)
                return self.tx
            return self.seen(x)
        if t is AutoTempid:
            return self.seen(x)
        if t is Keyword:
            if is_tx_tempid(x):
                self.used_tx_tempids.add(x)
                return self.tx
            e = self.idents.get(x)
            if e is None:
                raise _not_an_entity(x)
            return e
        if t is tuple or t is list:
            return self.lookup(x, form)
        raise _not_an_entity(x)

    def lookup(self, ref: Any, form: Any) -> int:
        if len(ref) != 2:
            raise TxError("transact/syntax", f"Lookup ref should contain 2 elements: {ref!r}", {"entity": ref})
        a, v = ref
        info = self.attr(a, form)
        if not info.unique:
            raise TxError(
                "db.error/lookup-ref-attr-not-unique", f"Attribute values not unique: :{info.name}",
                {"entity": ref},
            )
        if v is None:
            raise _not_an_entity(ref)
        if info.ref:
            v = self.entity(v, form)
            if _is_temp(v):
                raise _not_an_entity(ref)
        else:
            v = self.coerce(info, v, form)
        k = self.db.avet.first((info.name, value_rank(v), index_value(v)))
        if k is None:
            raise _not_an_entity(ref)
        return k[3]

    def coerce(self, info: _Attr, v: Any, form: Any) -> Any:
        """``v`` as a stored value of the non-ref attribute ``info`` (type-checked)."""
        if v is None:
            raise _nil_value(form)
        c = info.coerce
        if c is not None:
            if type(v) is str and info.name in _LENIENT_KW:
                v = kw(v)
            out = c(v)
            if out is _BAD:
                raise self.wrong_type(info, v, form)
            return out
        if info.vt == "tuple":
            return self.coerce_tuple(info, v, form)
        raise self.wrong_type(info, v, form)

    def wrong_type(self, info: _Attr, v: Any, form: Any) -> TxError:
        return TxError(
            "db.error/wrong-type-for-attribute",
            f"Value {_edn(v)} is not a valid :{info.vt} for attribute :{info.name}",
            {"attribute": info.name, "value": v, "form": form},
        )

    def coerce_tuple(self, info: _Attr, v: Any, form: Any) -> tuple:
        if not isinstance(v, tuple | list):
            raise self.wrong_type(info, v, form)
        n = len(v)
        if info.composite is not None:
            types: list = [self.attrs.get(src) for src in info.composite]
            ok = n == len(types)
        elif info.tuple_types is not None:
            types = list(info.tuple_types)
            ok = n == len(types)
        else:
            types = [info.tuple_type] * n
            ok = TUPLE_MIN <= n <= TUPLE_MAX
        if not ok:
            raise TxError(
                "db.error/invalid-tuple-value", f"Invalid tuple value {_edn(v)} for attribute :{info.name}",
                {"attribute": info.name, "value": v, "form": form},
            )
        out = []
        for x, ty in zip(v, types):
            if x is None:
                out.append(None)
                continue
            if isinstance(ty, _Attr):
                if ty.ref:
                    y = self.entity(x, form) if not isinstance(x, int) or x > 0 else _BAD
                    y = _BAD if _is_temp(y) else y
                else:
                    y = ty.coerce(x) if ty.coerce is not None else _BAD
            elif ty == "ref":
                y = x if type(x) is int and x > 0 else (self.idents.get(x, _BAD) if type(x) is Keyword else _BAD)
            else:
                if type(x) is str and info.name in _LENIENT_KW:
                    x = kw(x)
                y = _SCALARS[ty](x) if ty in _SCALARS else _BAD
            if y is _BAD:
                raise self.wrong_type(info, v, form)
            out.append(y)
        return tuple(out)

    def ref_value(self, info: _Attr, v: Any, form: Any) -> Any:
        """``v`` in the value position of ref attribute ``info``: an eid or a tempid."""
        if v is None:
            raise _nil_value(form)
        if type(v) is str and info.name in _LENIENT_REF and not is_tx_tempid(v):
            k = Keyword._interned.get(v[1:] if v.startswith(":") else v)
            if k is None:
                raise TxError("db.error/not-an-entity", f"Unable to resolve entity: :{v}", {"entity": v})
            v = k
        if not isinstance(v, _REF_TYPES) or type(v) is bool:
            raise self.wrong_type(info, v, form)
        return self.entity(v, form)

    # -- parsing tx data into ops

    def expand(self, forms: Any) -> None:
        if forms is None:
            return
        if isinstance(forms, Mapping) or not isinstance(forms, list | tuple):
            raise TxError(
                "transact/syntax", f"Bad transaction data {forms!r}, expected a sequential collection",
                {"tx-data": forms},
            )
        for form in forms:
            if isinstance(form, Mapping):
                self.map_form(form)
            elif isinstance(form, Datom):
                self.list_form((OPS_ADD if form.added else OPS_RETRACT, form.e, form.a, form.v), form)
            elif isinstance(form, list | tuple):
                self.list_form(form, form)
            else:
                raise TxError(
                    "transact/syntax", f"Bad entity type at {form!r}, expected map or vector", {"tx-data": form}
                )

    def add(self, e: Any, info: _Attr, v: Any, form: Any) -> None:
        if info.ref:
            v = self.ref_value(info, v, form)
        else:
            v = self.coerce(info, v, form)
        if _is_temp(e):
            self.asserting.add(e)
        self.ops.append([_ADD, e, info, v, form])

    def is_lookup_ref(self, x: Any) -> bool:
        if not (isinstance(x, tuple | list) and len(x) == 2):
            return False
        a = x[0]
        name = a.name if type(a) is Keyword else a
        if type(name) is not str:
            return False
        info = self.attrs.get(name)
        return info is not None and info.unique

    def values(self, info: _Attr, vs: Any, many: bool) -> list:
        if not many:
            return [vs]
        if isinstance(vs, set | frozenset):
            return list(vs)
        if isinstance(vs, list | tuple):
            if info.ref and self.is_lookup_ref(vs):
                return [vs]
            if info.vt == "tuple" and not all(isinstance(x, list | tuple) for x in vs):
                return [vs]
            return list(vs)
        return [vs]

    def map_form(self, m: Mapping) -> Any:
        """Expand a map form (its nested maps after its own assertions); return its entity."""
        e, entity = self.map_id(m)
        if entity:
            self.map_body(e, entity, m)
        return e

    def map_id(self, m: Mapping) -> tuple[Any, dict]:
        entity = {(k.name if type(k) is Keyword else k): v for k, v in m.items()}
        raw = entity.pop("db/id", None)
        if not entity and (raw is None or (_is_temp(raw) and not is_tx_tempid(raw))):
            return raw, entity
        if raw is None:
            self.auto += 1
            return self.seen(AutoTempid(self.auto)), entity
        return self.entity(raw, m), entity

    def map_body(self, e: Any, entity: dict, m: Mapping) -> None:
        nested: list = []
        for a, vs in entity.items():
            if type(a) is str and a.startswith(":"):
                a = a[1:]
            if type(a) is str and a not in self.attrs and is_reverse_attr(a):
                straight = self.attr(reverse_attr(a), m)
                if not straight.ref:
                    raise TxError(
                        "transact/syntax",
                        f"Bad attribute {a}: reverse attribute name requires {{:db/valueType :db.type/ref}}",
                        {"attribute": a, "form": m},
                    )
                if vs is None:
                    raise _nil_value(m)
                many = not (isinstance(vs, Mapping) or self.is_lookup_ref(vs))
                for v in self.values(straight, vs, many):
                    if isinstance(v, Mapping):
                        child, body = self.map_id(v)
                        nested.append((child, body, v))
                    else:
                        child = self.ref_value(straight, v, m)
                    self.add(child, straight, e, m)
                continue
            info = self.attr(a, m)
            if vs is None:
                raise _nil_value(m)
            for v in self.values(info, vs, info.many and not isinstance(vs, Mapping)):
                if isinstance(v, Mapping):
                    if not info.ref:
                        raise self.wrong_type(info, v, m)
                    child, body = self.map_id(v)
                    nested.append((child, body, v))
                    self.add(e, info, child, m)
                else:
                    self.add(e, info, v, m)
        for child, body, v in nested:
            if body:
                self.map_body(child, body, v)

    def list_form(self, form: Any, src: Any) -> None:
        if not form:
            raise TxError("transact/syntax", f"Bad entity {form!r}: empty form", {"tx-data": form})
        op = op_name(form[0])
        if type(op) is not str:
            raise _no_data_function(form)
        n = len(form)
        if op == OPS_ADD:
            if n != 4:
                raise _arity(form, "[:db/add e a v]")
            e = self.entity(form[1], src)
            self.add(e, self.attr(form[2], src), form[3], src)
            return
        if op in (OPS_RETRACT, OP_RETRACT_ATTRIBUTE):
            if n not in (3, 4) or (op == OP_RETRACT_ATTRIBUTE and n != 3):
                raise _arity(form, "[:db/retract e a v]" if op == OPS_RETRACT else "[:db.fn/retractAttribute e a]")
            e = self.entity(form[1], src)
            info = self.attr(form[2], src)
            if n == 3 or form[3] is None:
                self.ops.append([_RETRACT_ATTR, e, info, None, src])
                return
            v = self.ref_value(info, form[3], src) if info.ref else self.coerce(info, form[3], src)
            self.ops.append([_RETRACT, e, info, v, src])
            return
        if op in OPS_RETRACT_ENTITY:
            if n != 2:
                raise _arity(form, "[:db/retractEntity e]")
            self.ops.append([_RETRACT_ENTITY, self.entity(form[1], src), None, None, src])
            return
        if op in OPS_CAS:
            if n != 5:
                raise _arity(form, "[:db/cas e a old new]")
            e = self.entity(form[1], src)
            info = self.attr(form[2], src)
            old, new = form[3], form[4]
            if new is None:
                raise _nil_value(form)
            if old is not None:
                old = self.ref_value(info, old, src) if info.ref else self.coerce(info, old, src)
                if info.ref and _is_temp(old):
                    raise _not_an_entity(form[3])
            new = self.ref_value(info, new, src) if info.ref else self.coerce(info, new, src)
            if _is_temp(e):
                self.asserting.add(e)
            self.ops.append([_CAS, e, info, (old, new), src])
            return
        if op == OP_CALL:
            fn = form[1] if n > 1 else None
            if not callable(fn):
                raise TxError("transact/syntax", f"db.fn/call expects a function, got {fn!r}", {"tx-data": form})
            res = fn(self.db, *form[2:])
            if res is not None and not isinstance(res, Mapping | str | bytes) and hasattr(res, "__iter__"):
                res = list(res)
            self.expand(res)
            return
        raise _no_data_function(form)

    # -- tempids

    def resolve_tempids(self) -> dict:
        for t in self.tempid_order:
            if t not in self.asserting:
                raise TxError(
                    "db.error/tempid-not-an-entity",
                    f"tempid {_edn(t) if not isinstance(t, AutoTempid) else t!r} used only as value in transaction",
                    {"tempid": t},
                )
        parent: dict = {}

        def find(t: Any) -> Any:
            root = t
            while root in parent:
                root = parent[root]
            while t != root:
                nxt = parent[t]
                parent[t] = root
                t = nxt
            return root

        bound: dict = {}
        idops = [op for op in self.ops if op[0] == _ADD and op[2].identity and _is_temp(op[1])]
        avet = self.db.avet
        changed = bool(idops)
        while changed:
            changed = False
            by_av: dict = {}
            for op in idops:
                _, t, info, v, _form = op
                r = find(t)
                if info.ref and _is_temp(v):
                    vr = find(v)
                    if vr in bound:
                        v = bound[vr]
                    else:
                        key: tuple = (info.name, "tempid", vr)
                        v = None
                if v is not None:
                    k = avet.first((info.name, value_rank(v), index_value(v)))
                    if k is not None:
                        existing = k[3]
                        have = bound.get(r)
                        if have is None:
                            bound[r] = existing
                            changed = True
                        elif have != existing:
                            raise _unique_conflict(info.name, v, existing, have)
                        continue
                    key = (info.name, value_rank(v), index_value(v))
                other = by_av.get(key)
                if other is None:
                    by_av[key] = r
                    continue
                ro = find(other)
                if ro == r:
                    continue
                b1, b2 = bound.get(ro), bound.get(r)
                if b1 is not None and b2 is not None and b1 != b2:
                    raise _unique_conflict(info.name, v, b1, b2)
                parent[r] = ro
                if b1 is None and b2 is not None:
                    bound[ro] = b2
                changed = True
        resolved: dict = {}
        allocated: dict = {}
        max_eid = self.db.max_eid
        for t in self.tempid_order:
            r = find(t)
            e = bound.get(r)
            if e is None:
                e = allocated.get(r)
                if e is None:
                    max_eid += 1
                    if max_eid >= TX0:
                        raise TxError("db.error/invalid-entity-id", "Entity ids exhausted", {})
                    e = allocated[r] = max_eid
            resolved[t] = e
        self.max_eid = max_eid
        for op in self.ops:
            if _is_temp(op[1]):
                op[1] = resolved[op[1]]
            info = op[2]
            if info is not None and info.ref:
                if op[0] == _CAS:
                    old, new = op[3]
                    if _is_temp(new):
                        op[3] = (old, resolved[new])
                elif _is_temp(op[3]):
                    op[3] = resolved[op[3]]
        return resolved


def _is_temp(x: Any) -> bool:
    t = type(x)
    return t is str or t is AutoTempid or (t is int and x < 0)


def _no_data_function(form: Any) -> TxError:
    op = op_name(form[0])
    return TxError(
        "db.error/not-a-data-function",
        f"Unable to resolve data function: {':' + op if type(op) is str else _edn(op)}",
        {"op": form[0], "tx-data": form},
    )


def _arity(form: Any, expected: str) -> TxError:
    return TxError("transact/syntax", f"Bad form {form!r}: expected {expected}", {"tx-data": form})


def _unique_conflict(a: str, v: Any, held: int, asserted: Any) -> TxError:
    return TxError(
        "db.error/unique-conflict",
        f"Unique conflict: :{a}, value: {_edn(_plain(v))} already held by: {held} asserted for: {asserted}",
        {"attribute": a, "value": _plain(v), "held-by": held, "asserted-for": asserted},
    )


def _datoms_conflict(d1: Datom, d2: Datom) -> TxError:
    return TxError(
        "db.error/datoms-conflict",
        "Two datoms in the same transaction conflict "
        f"{{:d1 {_fmt_datom(*d1)}, :d2 {_fmt_datom(*d2)}}}",
        {"d1": d1, "d2": d2},
    )


class _Changes:
    """The datoms a resolved transaction adds and retracts, checked for conflicts."""

    def __init__(self, txn: _Tx):
        self.txn = txn
        db = txn.db
        self.db = db
        self.eavt = db.eavt
        self.tx = txn.tx
        self.out: list[Datom] = []
        self.adds: dict[tuple, Datom] = {}
        self.one: dict[tuple, Datom] = {}
        self.explicit: dict[tuple, Datom] = {}
        self.retracted: dict[tuple, tuple] = {}
        self.attr_tuples = db.props.attr_tuples
        self.touched: dict[int, set] = {}

    def touch(self, e: int, a: str) -> None:
        if a in self.attr_tuples:
            s = self.touched.get(e)
            if s is None:
                s = self.touched[e] = set()
            s.add(a)

    def retract_key(self, k: tuple) -> None:
        """Retract the current datom whose EAVT key is ``k`` (once)."""
        e, a, _, iv, _ = k
        key = (e, a, iv)
        if key in self.retracted:
            return
        self.retracted[key] = k
        self.out.append(Datom(e, a, _plain(iv), self.tx, False))
        self.touch(e, a)

    def retract(self, e: int, a: str, v: Any, form: Any) -> None:
        key = (e, a, v)
        d = Datom(e, a, v, self.tx, False)
        added = self.adds.get(key)
        if added is not None:
            raise _datoms_conflict(added, d)
        self.explicit.setdefault(key, d)
        k = self.eavt.first((e, a, value_rank(v), index_value(v)))
        if k is not None:
            self.retract_key(k)

    def add(self, e: int, info: _Attr, v: Any, form: Any) -> None:
        a = info.name
        key = (e, a, v)
        if key in self.adds:
            return
        d = Datom(e, a, v, self.tx, True)
        r = self.explicit.get(key)
        if r is not None:
            raise _datoms_conflict(d, r)
        redundant = False
        if not info.many:
            prev = self.one.get((e, a))
            if prev is not None and not same_value(prev.v, v):
                raise _datoms_conflict(prev, d)
            self.one[(e, a)] = d
            for k in self.eavt.prefix_list((e, a)):
                if same_value(k[3], v):
                    redundant = True
                else:
                    self.retract_key(k)
        else:
            redundant = self.eavt.first((e, a, value_rank(v), index_value(v))) is not None
        if redundant and key in self.retracted:
            raise _datoms_conflict(d, Datom(e, a, v, self.tx, False))
        self.adds[key] = d
        if not redundant:
            self.out.append(d)
        self.touch(e, a)

    def retract_entity(self, e: int, form: Any) -> None:
        component = self.db.props.component
        stack, seen = [e], set()
        while stack:
            x = stack.pop()
            if x in seen:
                continue
            seen.add(x)
            for k in self.eavt.prefix_list((x,)):
                self.retract(x, k[1], _plain(k[3]), form)
                if k[1] in component:
                    stack.append(k[3])
            for vk in self.db.vaet.prefix_list((x,)):
                self.retract(vk[2], vk[1], x, form)

    def cas(self, e: int, info: _Attr, old: Any, new: Any, form: Any) -> None:
        if info.many:
            raise TxError(
                "db.error/invalid-cas", f"Cannot CAS on a cardinality-many attribute :{info.name}",
                {"attribute": info.name, "tx-data": form},
            )
        k = self.eavt.first((e, info.name))
        cur = None if k is None else _plain(k[3])
        if (old is None and cur is None) or (old is not None and cur is not None and same_value(cur, old)):
            self.add(e, info, new, form)
            return
        raise TxError(
            "db.error/cas-failed", f"Compare failed: {_edn(old)} {_edn(cur)}",
            {"entity": e, "attribute": info.name, "expected": old, "found": cur, "new": new},
        )

    def composites(self) -> None:
        props = self.db.props
        attrs = self.txn.attrs
        for e, members in self.touched.items():
            tuple_attrs: set = set()
            for m in members:
                tuple_attrs.update(self.attr_tuples[m])
            for t_attr in sorted(tuple_attrs):
                vals = []
                for src in props.tuple_attrs[t_attr]:
                    d = self.one.get((e, src))
                    if d is not None:
                        vals.append(d.v)
                        continue
                    k = self.eavt.first((e, src))
                    if k is not None and (e, src, k[3]) not in self.retracted:
                        vals.append(_plain(k[3]))
                    else:
                        vals.append(None)
                k = self.eavt.first((e, t_attr))
                if all(x is None for x in vals):
                    if k is not None:
                        self.retract_key(k)
                    continue
                new = tuple(vals)
                if k is not None and k[3] == new and (e, t_attr, k[3]) not in self.retracted:
                    continue
                self.add(e, attrs[t_attr], new, None)

    def check_unique(self) -> None:
        unique = self.db.props.unique
        avet = self.db.avet
        seen: dict = {}
        for d in self.out:
            if not d.added or d.a not in unique:
                continue
            r, iv = value_rank(d.v), index_value(d.v)
            key = (d.a, r, iv)
            holder = seen.get(key)
            if holder is not None and holder != d.e:
                raise _unique_conflict(d.a, d.v, holder, d.e)
            seen[key] = d.e
            k = avet.first(key)
            if k is not None and k[3] != d.e and (k[3], d.a, iv) not in self.retracted:
                raise _unique_conflict(d.a, d.v, k[3], d.e)


def transact_datomic(db: DB, tx_data: Any, tx_meta: Any = None, *, instant: _dt.datetime | None = None) -> TxReport:
    """Apply ``tx_data`` to the Datomic-flavored ``db`` as one transaction; ``TxError`` and no
    change if it fails. ``instant`` is the transaction's ``db/txInstant``; None means the previous
    transaction's instant (deterministic: the core reads no clock)."""
    if db.is_view:
        raise TxError("db/view", "Cannot transact against a filtered or time view of a database", {})
    txn = _Tx(db)
    try:
        txn.expand(tx_data)
        tempids = txn.resolve_tempids()
    except TxError:
        raise
    except DatsyncError as err:
        raise TxError(err.code, err.message, err.data) from None
    tx = txn.tx
    ch = _Changes(txn)
    for kind, e, info, v, form in txn.ops:
        if kind == _ADD:
            if info.composite is None:
                ch.add(e, info, v, form)
        elif kind == _RETRACT:
            ch.retract(e, info.name, v, form)
        elif kind == _RETRACT_ATTR:
            for k in db.eavt.prefix_list((e, info.name)):
                ch.retract(e, info.name, _plain(k[3]), form)
        elif kind == _RETRACT_ENTITY:
            ch.retract_entity(e, form)
        else:
            ch.cas(e, info, v[0], v[1], form)
    if ch.touched:
        ch.composites()
    ch.check_unique()
    out = _tx_instant(db, ch, instant)
    schema_touched: set = set()
    for d in out:
        if d.a in SCHEMA_ATTRS:
            if d.e <= BOOTSTRAP_MAX_EID and d.a != "db/doc":
                raise TxError(
                    "db.error/invalid-alter-attribute",
                    f"Cannot alter the built-in entity {_edn(db.idents.get(d.e))}: {_fmt_datom(*d)}",
                    {"datom": d},
                )
            schema_touched.add(d.e)
    st = _Apply(db, tx)
    for d in out:
        if d.added:
            st.add(d.e, d.a, d.v)
        else:
            st.retract(ch.retracted[(d.e, d.a, index_value(d.v))])
    fields: dict[str, Any] = {}
    if schema_touched:
        out = _schema_changes(db, st, schema_touched, out, fields)
    if (type(st.eavt) is TransientIndex and type(st.aevt) is TransientAttrIndex
            and len(st.eavt) - len(db.eavt) >= LAYOUT_MIN_KEYS):
        lay_out_by_attribute(st.eavt, st.aevt, tx)
    db_after = db.replace(
        eavt=st.eavt.persistent(),
        aevt=st.aevt.persistent(),
        avet=st.avet.persistent(),
        vaet=st.vaet.persistent(),
        hist=st.history(),
        max_eid=txn.max_eid,
        max_tx=tx,
        **fields,
    )
    report_ids: dict[Any, int] = {t: e for t, e in tempids.items() if type(t) is not AutoTempid}
    for t in txn.used_tx_tempids:
        report_ids[t] = tx
    report_ids[CURRENT_TX_KEY] = tx
    return TxReport(db, db_after, out, report_ids, tx_meta)


def _last_instant(db: DB) -> _dt.datetime:
    k = db.eavt.first((db.max_tx, "db/txInstant"))
    return k[3] if k is not None else EPOCH


def _tx_instant(db: DB, ch: _Changes, instant: _dt.datetime | None) -> list[Datom]:
    """The transaction's datoms with its ``db/txInstant`` first (added unless asserted by the user)."""
    tx = ch.tx
    prev = _last_instant(db)
    explicit = ch.one.get((tx, "db/txInstant"))
    for d in ch.out:
        if d.a == "db/txInstant" and (d.e != tx or not d.added):
            raise TxError(
                "db.error/invalid-tx-instant",
                f"db/txInstant can only be asserted on the current transaction: {_fmt_datom(*d)}",
                {"datom": d},
            )
    if explicit is not None:
        inst = explicit.v
    elif instant is not None:
        inst = normalize_instant(instant)
        if inst is _BAD:
            raise TxError("transact/syntax", f"instant must be a datetime, got {instant!r}", {"instant": instant})
    else:
        inst = prev
    if inst < prev:
        raise TxError(
            "db.error/past-tx-instant",
            f"Time conflict: {inst.isoformat()} is older than database basis {prev.isoformat()}",
            {"instant": inst, "basis-instant": prev},
        )
    d = Datom(tx, "db/txInstant", inst, tx, True)
    rest = [x for x in ch.out if not (x.e == tx and x.a == "db/txInstant")]
    return [d, *rest]


class _Apply:
    """Transient current indexes receiving a transaction's datoms, and its history events."""

    def __init__(self, db: DB, tx: int):
        self.props = db.props
        self.tx = tx
        self.eavt = db.eavt.transient()
        self.aevt = db.aevt.transient()
        self.avet = db.avet.transient()
        self.vaet = db.vaet.transient()
        self.hist = db.hist
        self.events: list[tuple] = []

    def history(self) -> HistoryIndexes:
        """The history indexes with this transaction's events."""
        return self.hist.appended(self.events)

    def add(self, e: int, a: str, v: Any) -> None:
        r, iv, tx = value_rank(v), index_value(v), self.tx
        key = (e, a, r, iv, tx)
        self.eavt.add(key)
        self.aevt.add(key)
        if a in self.props.indexed:
            self.avet.add((a, r, iv, e, tx))
        if a in self.props.ref:
            self.vaet.add((iv, a, e, tx))
        self.events.append((e, a, r, iv, tx, True))

    def retract(self, k: tuple) -> None:
        e, a, r, iv, old_tx = k
        self.eavt.discard(k)
        self.aevt.discard(k)
        if a in self.props.indexed:
            self.avet.discard((a, r, iv, e, old_tx))
        if a in self.props.ref:
            self.vaet.discard((iv, a, e, old_tx))
        self.events.append((e, a, r, iv, self.tx, False))


# ------------------------------------------------------------------------------------------------
# Schema derivation and alteration


def _alter_error(nested: str, message: str, **data: Any) -> TxError:
    return TxError(
        "db.error/invalid-alter-attribute", f"Error: {{:db/error :{nested}, {message}}}",
        {"db/error": nested, **data},
    )


def _install_error(code: str, message: str, **data: Any) -> TxError:
    return TxError(code, message, data)


def _entity_schema_values(eavt: Any, e: int) -> dict[str, Any]:
    vals: dict[str, Any] = {}
    for k in eavt.prefix_list((e,)):
        if k[1] in SCHEMA_ATTRS:
            vals[k[1]] = _plain(k[3])
    return vals


def derive_attr_props(vals: Mapping[str, Any], idents: Mapping[Any, Any], schema: Mapping[str, Any]) -> dict:
    """The schema-map entry of an attribute entity from its schema datoms (``vals``: attr -> value,
    ref values as eids); raises ``TxError`` where the definition is inconsistent."""
    ident_kw = vals.get("db/ident")
    where = _edn(ident_kw)
    p: dict[str, Any] = {}

    def enum(attr: str, allowed: Iterable[Keyword]) -> Keyword | None:
        v = vals.get(attr)
        if v is None:
            return None
        k = idents.get(v) if type(v) is int else None
        if k not in allowed:
            raise _install_error(
                "db.error/invalid-install-attribute", f"Bad {attr} {_edn(k or v)} for attribute {where}",
                attribute=ident_kw, key=attr, value=k or v,
            )
        return k

    vt = enum("db/valueType", TYPE_KEYWORDS)
    card = enum("db/cardinality", (CARDINALITY_ONE, CARDINALITY_MANY))
    uniq = enum("db/unique", (UNIQUE_IDENTITY, UNIQUE_VALUE))
    if vt is not None:
        p["db/valueType"] = vt
    if card is not None:
        p["db/cardinality"] = card
    if uniq is not None:
        p["db/unique"] = uniq
    for b in _BOOL_PROPS:
        if vals.get(b) is True:
            p[b] = True
    if "db/doc" in vals:
        p["db/doc"] = vals["db/doc"]
    if "db/tupleAttrs" in vals:
        names = []
        for x in vals["db/tupleAttrs"]:
            e = idents.get(x)
            cur = idents.get(e) if e is not None else None
            member = schema.get(cur.name) if isinstance(cur, Keyword) else None
            if member is None or member.get("db/cardinality") == CARDINALITY_MANY or "db/tupleAttrs" in member:
                raise _install_error(
                    "db.error/invalid-tuple-attrs",
                    f":db/tupleAttrs of {where} must name existing cardinality-one, non-composite attributes; "
                    f"got {_edn(x)}",
                    attribute=ident_kw, value=x,
                )
            names.append(cur.name)
        p["db/tupleAttrs"] = tuple(names)
    if "db/tupleType" in vals:
        p["db/tupleType"] = vals["db/tupleType"]
    if "db/tupleTypes" in vals:
        p["db/tupleTypes"] = tuple(vals["db/tupleTypes"])
    return p


def validate_attr_props(ident_kw: Keyword, p: Mapping[str, Any]) -> None:
    """Raise ``TxError`` unless ``p`` is a complete, consistent attribute definition."""
    where = _edn(ident_kw)
    missing = [k for k in ("db/valueType", "db/cardinality") if k not in p]
    if missing:
        raise _install_error(
            "db.error/incomplete-install-attribute",
            f"Attribute {where} requires :db/ident, :db/valueType and :db/cardinality; missing "
            + " ".join(":" + m for m in missing),
            attribute=ident_kw, missing=missing,
        )
    vt = p["db/valueType"].local
    tuple_keys = [k for k in ("db/tupleAttrs", "db/tupleType", "db/tupleTypes") if k in p]
    if vt == "tuple" and len(tuple_keys) != 1:
        raise _install_error(
            "db.error/invalid-install-attribute",
            f"Tuple attribute {where} needs exactly one of :db/tupleAttrs, :db/tupleType, :db/tupleTypes",
            attribute=ident_kw,
        )
    if vt != "tuple" and tuple_keys:
        raise _install_error(
            "db.error/invalid-install-attribute",
            f"Attribute {where} has {':' + tuple_keys[0]} but is not of :db.type/tuple",
            attribute=ident_kw,
        )
    scalar = TYPE_KEYWORDS - {kw("db.type/tuple")}
    for t in [p.get("db/tupleType"), *p.get("db/tupleTypes", ())]:
        if t is not None and t not in scalar:
            raise _install_error(
                "db.error/invalid-install-attribute", f"Bad tuple element type {_edn(t)} for {where}",
                attribute=ident_kw, value=t,
            )
    if "db/tupleAttrs" in p and p["db/cardinality"] != CARDINALITY_ONE:
        raise _install_error(
            "db.error/invalid-tuple-attrs", f"Composite tuple attribute {where} must be cardinality one",
            attribute=ident_kw,
        )
    if p.get("db/isComponent") and vt != "ref":
        raise _install_error(
            "db.error/invalid-install-attribute", f"Attribute {where} has :db/isComponent but is not a ref",
            attribute=ident_kw,
        )
    if p.get("db/fulltext") and vt != "string":
        raise _install_error(
            "db.error/invalid-install-attribute", f"Attribute {where} has :db/fulltext but is not a string",
            attribute=ident_kw,
        )


def _schema_changes(db: DB, st: _Apply, touched: set, out: list[Datom], fields: dict) -> list[Datom]:
    """Re-derive schema and idents for the entities whose schema datoms changed; validate the
    installs and alterations against Datomic's rules; rename datoms of renamed attributes and fix
    AVET membership. Fills ``fields`` with the new ``schema``, ``props`` and ``idents``."""
    old_schema, old_idents, old_props = db.schema, db.idents, db.props
    schema = dict(old_schema)
    idents = dict(old_idents)
    renames: dict[str, str] = {}
    changed: list[tuple[str | None, str]] = []
    entity_vals = {e: _entity_schema_values(st.eavt, e) for e in touched}
    # composites last: their members may be installed by the same transaction
    for e in sorted(touched, key=lambda e: ("db/tupleAttrs" in entity_vals[e], e)):
        vals = entity_vals[e]
        old_kw = old_idents.get(e)
        old_kw = old_kw if isinstance(old_kw, Keyword) else None
        new_kw = vals.get("db/ident")
        was_attr = old_kw is not None and old_kw.name in old_schema and old_idents.get(old_kw) == e
        if e <= BOOTSTRAP_MAX_EID:
            if was_attr:
                entry = dict(schema[old_kw.name])
                entry.pop("db/doc", None)
                if "db/doc" in vals:
                    entry["db/doc"] = vals["db/doc"]
                schema[old_kw.name] = entry
            continue
        has_attr_props = any(a in vals for a in _ATTR_PROPS)
        if was_attr:
            name = old_kw.name
            if new_kw is None:
                raise _alter_error(
                    "db.error/unsupported-alter-schema",
                    f":entity {old_kw}, :attribute :db/ident, :from {old_kw}, :to nil",
                    entity=old_kw, attribute="db/ident",
                )
            p = derive_attr_props(vals, idents, schema)
            _check_alteration(db, st, old_kw, schema[name], p, vals)
            del schema[name]
            schema[new_kw.name] = p
            if new_kw.name != name:
                renames[name] = new_kw.name
            changed.append((name, new_kw.name))
        elif has_attr_props:
            if new_kw is None:
                raise _install_error(
                    "db.error/incomplete-install-attribute",
                    f"Attribute {e} requires :db/ident, :db/valueType and :db/cardinality; missing :db/ident",
                    entity=e,
                )
            p = derive_attr_props(vals, idents, schema)
            validate_attr_props(new_kw, p)
            schema[new_kw.name] = p
            changed.append((None, new_kw.name))
        if old_kw != new_kw:
            if new_kw is not None:
                idents[e] = new_kw
                idents[new_kw] = e
            else:
                idents.pop(e, None)
                if idents.get(old_kw) == e:
                    del idents[old_kw]
    if renames:
        for name, entry in schema.items():
            ta = entry.get("db/tupleAttrs")
            if ta and any(x in renames for x in ta):
                schema[name] = {**entry, "db/tupleAttrs": tuple(renames.get(x, x) for x in ta)}
        for old, new in renames.items():
            _rename_datoms(st, old, new, old_props)
        out = [d._replace(a=renames[d.a]) if d.a in renames else d for d in out]
    props = Props(schema)
    for old, new in changed:
        if old is None:
            continue
        was, now = old in old_props.indexed, new in props.indexed
        if was == now:
            continue
        keys = st.aevt.prefix_list((new,))
        if now:
            st.avet.update((a, r, iv, e, tx) for e, a, r, iv, tx in keys)
        else:
            for e, a, r, iv, tx in keys:
                st.avet.discard((a, r, iv, e, tx))
    fields["schema"] = schema
    fields["props"] = props
    fields["idents"] = idents
    return out


def _check_alteration(db: DB, st: _Apply, ident_kw: Keyword, old: Mapping, new: Mapping, vals: Mapping) -> None:
    name = ident_kw.name
    for key in _IMMUTABLE_PROPS:
        if old.get(key) != new.get(key):
            raise _alter_error(
                "db.error/unsupported-alter-schema",
                f":entity {ident_kw}, :attribute :{key}, :from {_edn(old.get(key))}, :to {_edn(new.get(key))}",
                entity=ident_kw, attribute=key, **{"from": old.get(key), "to": new.get(key)},
            )
    if "db/cardinality" not in new:
        raise _alter_error(
            "db.error/unsupported-alter-schema",
            f":entity {ident_kw}, :attribute :db/cardinality, :from {_edn(old.get('db/cardinality'))}, :to nil",
            entity=ident_kw, attribute="db/cardinality",
        )
    validate_attr_props(ident_kw, new)
    if new["db/cardinality"] == CARDINALITY_MANY and old.get("db/cardinality") != CARDINALITY_MANY:
        composites = sorted(a for a, p in db.schema.items() if name in (p.get("db/tupleAttrs") or ()))
        if composites:
            raise _alter_error(
                "db.error/unsupported-alter-schema",
                f":entity {ident_kw}, :attribute :db/cardinality: a member of the composite tuple "
                f"{', '.join(':' + c for c in composites)} must stay :db.cardinality/one",
                entity=ident_kw, attribute="db/cardinality", composites=composites,
            )
    if old.get("db/cardinality") == CARDINALITY_MANY and new["db/cardinality"] == CARDINALITY_ONE:
        prev = None
        for k in st.aevt.prefix_list((name,)):
            if prev is not None and prev[0] == k[0]:
                ds = [Datom(prev[0], name, _plain(prev[3]), prev[4]), Datom(k[0], name, _plain(k[3]), k[4])]
                raise _alter_error(
                    "db.error/cardinality-violation",
                    f":datoms [{' '.join(_fmt_datom(*d) for d in ds)}]",
                    entity=ident_kw, datoms=ds,
                )
            prev = k
    if old.get("db/unique") is None and new.get("db/unique") is not None:
        if db.aevt.first((name,)) is not None and not old.get("db/index"):
            raise _alter_error(
                "db.error/unique-without-index",
                f":entity {ident_kw}, :attribute :db/unique (set :db/index true in an earlier transaction)",
                entity=ident_kw, attribute="db/unique",
            )
        holders: dict = {}
        for k in st.aevt.prefix_list((name,)):
            key = (k[2], k[3])
            other = holders.get(key)
            if other is not None and other[0] != k[0]:
                ds = [Datom(other[0], name, _plain(other[3]), other[4]), Datom(k[0], name, _plain(k[3]), k[4])]
                raise _alter_error(
                    "db.error/unique-violation",
                    f":datoms [{' '.join(_fmt_datom(*d) for d in ds)}]",
                    entity=ident_kw, datoms=ds,
                )
            holders[key] = k


def _rename_datoms(st: _Apply, old: str, new: str, props: Props) -> None:
    """Rewrite every current and historical datom of attribute ``old`` to name ``new``."""
    indexed, ref = old in props.indexed, old in props.ref
    for k in st.aevt.prefix_list((old,)):
        e, a, r, iv, tx = k
        st.eavt.discard(k)
        st.aevt.discard(k)
        renamed = (e, new, r, iv, tx)
        st.eavt.add(renamed)
        st.aevt.add(renamed)
        if indexed:
            st.avet.discard((a, r, iv, e, tx))
            st.avet.add((new, r, iv, e, tx))
        if ref:
            st.vaet.discard((iv, a, e, tx))
            st.vaet.add((iv, new, e, tx))
    hist = st.history()
    heavt, haevt = hist.heavt.transient(), hist.haevt.transient()
    for k in hist.haevt.prefix_list((old,)):
        e, _, r, iv, tx, added = k
        heavt.discard(k)
        haevt.discard(k)
        renamed = (e, new, r, iv, tx, added)
        heavt.add(renamed)
        haevt.add(renamed)
    st.hist, st.events = HistoryIndexes(heavt.persistent(), haevt.persistent()), []


# ------------------------------------------------------------------------------------------------
# Bulk construction


def _install_all(entity_vals: Mapping[int, Mapping[str, Any]], idents: Mapping[Any, Any], schema: dict) -> dict:
    """``schema`` plus the attributes defined by ``entity_vals`` (eid -> schema attr -> value),
    composites last so that their members may be defined alongside them."""
    for e in sorted(entity_vals, key=lambda e: ("db/tupleAttrs" in entity_vals[e], e)):
        vals = entity_vals[e]
        if e <= BOOTSTRAP_MAX_EID or not any(a in vals for a in _ATTR_PROPS):
            continue
        k = vals.get("db/ident")
        if k is None:
            raise _install_error(
                "db.error/incomplete-install-attribute", f"Attribute {e} is missing :db/ident", entity=e
            )
        p = derive_attr_props(vals, idents, schema)
        validate_attr_props(k, p)
        schema[k.name] = p
    return schema


def init_datomic_db(datoms: Iterable[Datom], schema: Any = None) -> DB:
    """A database holding the bootstrap, ``schema`` (installed as by ``empty_datomic_db``) and
    ``datoms``, built in bulk (every datom becomes a history assertion).

    ``datoms`` may include schema datoms defining attributes (``db/ident``, ``db/valueType`` ...;
    ref values as eids or ident keywords) and transaction datoms (``db/txInstant``). Datoms equal to
    bootstrap/schema datoms are skipped, so the datoms of another Datomic-flavored database load
    back. Datoms whose ``tx`` is not after the base (the default ``TX0`` included) are stamped with
    one new load transaction; every transaction without a ``db/txInstant`` gets the latest known
    instant. Values are type-checked; cardinality-one and unique constraints are enforced
    (``TxError`` as in ``transact``)."""
    base = empty_datomic_db(schema)
    ds = list(datoms)
    if not ds:
        return base
    idents = dict(base.idents)
    attr_name: dict[Any, str] = {}

    def name_of(a: Any) -> str:
        n = attr_name.get(a)
        if n is None:
            n = a.name if isinstance(a, Keyword) else (idents[a].name if type(a) is int and a in idents else a)
            if type(n) is not str:
                raise TxError("transact/syntax", f"Bad attribute {a!r}", {"attribute": a})
            attr_name[a] = n
        return n

    rows = [(d[0], name_of(d[1]), d[2], d[3]) for d in ds]
    # idents and schema entities defined by the input
    for e, a, v, _ in rows:
        if a == "db/ident":
            k = kw(v) if type(v) is str else v
            if type(k) is not Keyword:
                raise TxError(
                    "db.error/wrong-type-for-attribute", f"Value {v!r} is not a valid :keyword for :db/ident", {}
                )
            idents[k] = e
            idents[e] = k

    def ref(v: Any) -> Any:
        if type(v) is Keyword:
            e = idents.get(v)
            if e is None:
                raise _not_an_entity(v)
            return e
        if type(v) is str:
            return ref(kw(v))
        return v

    schema_vals: dict[int, dict[str, Any]] = {}
    for e, a, v, _ in rows:
        if a in SCHEMA_ATTRS:
            if a in _LENIENT_REF:
                v = ref(v)
            elif a in ("db/ident", "db/tupleType") and type(v) is str:
                v = kw(v)
            elif a in ("db/tupleAttrs", "db/tupleTypes"):
                v = tuple(kw(x) if type(x) is str else x for x in v)
            schema_vals.setdefault(e, {})[a] = v
    for e, vals in schema_vals.items():
        if e <= BOOTSTRAP_MAX_EID and {**_entity_schema_values(base.eavt, e), **vals} != _entity_schema_values(
            base.eavt, e
        ):
            raise TxError("db.error/invalid-alter-attribute", f"Cannot alter the built-in entity {e}", {})
    full_vals = {e: {**_entity_schema_values(base.eavt, e), **vals} for e, vals in schema_vals.items()}
    new_schema = _install_all(full_vals, idents, dict(base.schema))
    props = Props(new_schema)
    db0 = base.replace(schema=new_schema, props=props, idents=idents)
    txn = _Tx(db0)
    attrs = txn.attrs
    base_max_tx = base.max_tx
    later = [r[3] for r in rows if r[3] > base_max_tx]
    later += [r[0] for r in rows if type(r[0]) is int and r[0] > base_max_tx]
    load_tx = max([base_max_tx, *later]) + 1
    out: list[Datom] = []
    max_eid = base.max_eid
    for e, a, v, tx in rows:
        info = attrs.get(a)
        if info is None:
            raise TxError("db.error/not-an-entity", f"Unable to resolve entity: :{a}", {"entity": a})
        if type(e) is not int or e <= 0:
            raise TxError("db.error/invalid-entity-id", f"Invalid entity id: {e!r}", {"entity": e})
        if info.ref:
            v = ref(v)
            if type(v) is not int or v <= 0:
                raise txn.wrong_type(info, v, (e, a, v))
        else:
            v = txn.coerce(info, v, (e, a, v))
        if base.eavt.first((e, a, value_rank(v), index_value(v))) is not None:
            continue
        tx = tx if tx > base_max_tx else load_tx
        if e < TX0:
            max_eid = max(max_eid, e)
        if info.ref and v < TX0:
            max_eid = max(max_eid, v)
        out.append(Datom(e, a, v, tx, True))
    seen: dict = {}
    unique_seen: dict = {}
    for d in out:
        info = attrs[d.a]
        if not info.many:
            prev = seen.get((d.e, d.a))
            if prev is None:
                k = base.eavt.first((d.e, d.a))
                prev = Datom(k[0], k[1], _plain(k[3]), k[4]) if k is not None else None
            if prev is not None and not same_value(prev.v, d.v):
                raise _datoms_conflict(prev, d)
            seen[(d.e, d.a)] = d
        if info.unique:
            key = (d.a, value_rank(d.v), index_value(d.v))
            holder = unique_seen.get(key)
            if holder is None:
                k = base.avet.first(key)
                holder = k[3] if k is not None else None
            if holder is not None and holder != d.e:
                raise _unique_conflict(d.a, d.v, holder, d.e)
            unique_seen[key] = d.e
    all_datoms = [Datom(k[0], k[1], k[3], k[4]) for k in base.eavt] + out
    txs = sorted(t for t in {d.tx for d in out} | {d.e for d in out if d.e >= TX0} if t > base_max_tx)
    instants = {d.e: d.v for d in all_datoms if d.a == "db/txInstant"}
    prev = _last_instant(base)
    for t in txs:
        inst = instants.get(t)
        if inst is None:
            all_datoms.append(Datom(t, "db/txInstant", prev, t))
        elif inst < prev:
            raise TxError(
                "db.error/past-tx-instant",
                f"Time conflict: {inst.isoformat()} of tx {t} is older than {prev.isoformat()}",
                {"tx": t, "instant": inst},
            )
        else:
            prev = inst
    max_tx = max([base_max_tx, *txs])
    return make_db(new_schema, "datomic", all_datoms, max_eid=max_eid, max_tx=max_tx, idents=idents)


def from_history(events: Iterable[Datom]) -> DB:
    """The database whose history is ``events``: every assertion and retraction (``Datom.added``)
    of a Datomic-flavored database, bootstrap included, e.g. ``datoms(history(db), "eavt")``. The
    current datoms, schema and idents (with the old names of renamed entities) are derived from it;
    the events are trusted (not re-validated). For restoring a database from storage."""
    hist = [Datom(*d) for d in events]
    last: dict[tuple, Datom] = {}
    for d in sorted(hist, key=lambda d: (d.tx, d.added)):
        last[(d.e, d.a, value_rank(d.v), index_value(d.v))] = d
    cur = [d for d in last.values() if d.added]
    entity_vals: dict[int, dict[str, Any]] = {}
    for d in cur:
        if d.a in SCHEMA_ATTRS:
            entity_vals.setdefault(d.e, {})[d.a] = _plain(d.v)
    # replay ident changes as transact makes them: a renamed entity keeps its old names
    idents: dict[Any, Any] = {}
    changes: dict[tuple[int, int], Any] = {}
    for d in sorted((d for d in hist if d.a == "db/ident"), key=lambda d: (d.tx, d.added)):
        changes[(d.tx, d.e)] = d.v if d.added else None
    for (_, e), new in sorted(changes.items()):
        if new is not None:
            idents[e] = new
            idents[new] = e
        else:
            old = idents.pop(e, None)
            if old is not None and idents.get(old) == e:
                del idents[old]
    _, bschema, _ = _BOOT
    schema = _install_all(entity_vals, idents, {k: dict(v) for k, v in bschema.items()})
    for e, vals in entity_vals.items():
        if e <= BOOTSTRAP_MAX_EID and "db/doc" in vals and isinstance(idents.get(e), Keyword):
            name = idents[e].name
            if name in schema:
                schema[name] = {**schema[name], "db/doc": vals["db/doc"]}
    max_eid = max([BOOTSTRAP_MAX_EID, *(d.e for d in hist if d.e < TX0)])
    refs = Props(schema).ref
    max_eid = max([max_eid, *(d.v for d in hist if d.a in refs and d.v < TX0)])
    max_tx = max(d.tx for d in hist)
    return make_db(schema, "datomic", cur, max_eid=max_eid, max_tx=max_tx, history=hist, idents=idents)


__all__ = [
    "BOOTSTRAP_MAX_EID",
    "EPOCH",
    "SCHEMA_ATTRS",
    "TYPE_KEYWORDS",
    "VALUE_TYPES",
    "derive_attr_props",
    "empty_datomic_db",
    "from_history",
    "ident",
    "init_datomic_db",
    "normalize_instant",
    "schema_tx_data",
    "transact_datomic",
    "validate_attr_props",
]
