"""The database value: schema, four covering indexes, and views over time and filters.

A ``DB`` is immutable. Its indexes hold plain key tuples in index order (see ``core.index``):

    eavt  (e, a, rank, v, tx)       every current datom
    aevt  (e, a, rank, v, tx)       every current datom in AEVT order: the eavt key tuples themselves,
                                    grouped by attribute (an ``AttrIndex``; prefixes in AEVT order)
    avet  (a, rank, v, e, tx)       datoms of indexed attributes (unique, db/index, ref, tuple)
    vaet  (v, a, e, tx)             datoms of ref attributes

``rank`` is the value's type rank (``core.values.value_rank``), so values of different types never
meet in a comparison. The Datomic flavor also keeps history indexes of every assertion and
retraction: ``heavt (e, a, rank, v, tx, added)`` and ``haevt``, the same keys in AEVT order (an
``AttrIndex`` over heavt's tuples), held in ``hist`` (a ``HistoryIndexes``: a transaction appends its
events there, and they are written into the two indexes when a time view first reads them).

Reads go through ``datoms``/``seek_datoms``/``index_range``; a view (``as_of``, ``since``,
``history``, ``filter_db``) is the same value with a time basis or predicate that those honor.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from itertools import repeat
from typing import Any, NamedTuple

from .errors import ResolveError
from .index import TOP, AttrIndex, HistoryIndexes, SortedIndex
from .schema import IMPLICIT_SCHEMA, Props
from .values import RANKS, Datom, Keyword, index_value, value_rank

E0 = 0
TX0 = 0x20000000
"""Transaction ids are ``TX0 + t``; entity ids stay below it (DataScript's layout)."""
EMAX = 0x7FFFFFFF

INDEXES = ("eavt", "aevt", "avet", "vaet")
FLAVORS = ("datascript", "datomic")


class TimeView(NamedTuple):
    """The time basis of a view: ``as_of`` and ``since`` are transaction ids (None: unbounded)."""

    as_of: int | None = None
    since: int | None = None
    history: bool = False


class DB:
    """An immutable database value. Build with ``empty_db``/``init_db``; change with ``transact``."""

    __slots__ = (
        "_hash",
        "aevt",
        "avet",
        "eavt",
        "flavor",
        "hist",
        "idents",
        "max_eid",
        "max_tx",
        "pred",
        "props",
        "schema",
        "vaet",
        "view",
    )

    flavor: str
    schema: dict[str, dict[str, Any]]
    props: Props
    eavt: SortedIndex
    aevt: AttrIndex
    avet: SortedIndex
    vaet: SortedIndex
    max_eid: int
    max_tx: int
    hist: HistoryIndexes | None
    idents: dict[Any, Any]
    view: tuple | None
    pred: Callable[[Datom], bool] | None

    def __init__(self, **fields: Any):
        for k in self.__slots__:
            object.__setattr__(self, k, fields.get(k))

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError("DB is immutable")

    def replace(self, **changes: Any) -> DB:
        """A copy of this value with some fields replaced."""
        new = _new_db(_DBBuilder)
        for k in self.__slots__:
            setattr(new, k, changes[k] if k in changes else getattr(self, k))
        new._hash = None
        new.__class__ = DB
        return new

    def with_indexes(self, eavt: SortedIndex, aevt: AttrIndex, avet: SortedIndex, vaet: SortedIndex,
                     max_eid: int, max_tx: int) -> DB:
        """This value with new current indexes and counters (the transaction fast path)."""
        new = _new_db(_DBBuilder)
        new.flavor = self.flavor
        new.schema = self.schema
        new.props = self.props
        new.hist = self.hist
        new.idents = self.idents
        new.view = self.view
        new.pred = self.pred
        new.eavt = eavt
        new.aevt = aevt
        new.avet = avet
        new.vaet = vaet
        new.max_eid = max_eid
        new.max_tx = max_tx
        new._hash = None
        new.__class__ = DB
        return new

    @property
    def heavt(self) -> SortedIndex | None:
        """Every assertion and retraction, EAVT order (None: this database keeps no history)."""
        hist = self.hist
        return None if hist is None else hist.heavt

    @property
    def haevt(self) -> AttrIndex | None:
        """``heavt``'s events in AEVT order."""
        hist = self.hist
        return None if hist is None else hist.haevt

    @property
    def is_view(self) -> bool:
        """True for ``as_of``/``since``/``history``/``filter_db`` views (read-only)."""
        return self.view is not None or self.pred is not None

    def __len__(self) -> int:
        if not self.is_view:
            return len(self.eavt)
        return sum(1 for _ in datoms(self, "eavt"))

    def __iter__(self) -> Iterator[Datom]:
        return iter(datoms(self, "eavt"))

    def _facts(self) -> list[tuple]:
        """``(e, a, rank, v)`` of every datom: what equality compares (DataScript ignores tx)."""
        if not self.is_view:
            return [k[:4] for k in self.eavt]
        return [(d.e, d.a, value_rank(d.v), index_value(d.v)) for d in datoms(self, "eavt")]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DB):
            return NotImplemented
        if self is other:
            return True
        return self.schema == other.schema and self._facts() == other._facts()

    def __hash__(self) -> int:
        h = self._hash
        if h is None:
            h = hash(tuple(self._facts()))
            object.__setattr__(self, "_hash", h)
        return h

    def __repr__(self) -> str:
        view = f" view={self.view}" if self.view else ""
        return f"<DB {self.flavor} {len(self.eavt)} datoms max_tx={self.max_tx}{view}>"


class _DBBuilder(DB):
    """A ``DB`` under construction: its fields are assigned at plain attribute speed, then its class
    becomes ``DB`` (same layout), which is immutable from then on."""

    __slots__ = ()
    __setattr__ = object.__setattr__


_new_db = object.__new__

# ------------------------------------------------------------------------------------------------
# Construction


def _props_for(schema: dict[str, dict[str, Any]], flavor: str) -> Props:
    if flavor == "datascript":
        return Props({**IMPLICIT_SCHEMA, **schema}, by_value=True)
    return Props(schema)


def make_db(
    schema: dict[str, dict[str, Any]],
    flavor: str,
    datoms_: Iterable[Datom] = (),
    *,
    max_eid: int | None = None,
    max_tx: int | None = None,
    history: Iterable[Datom] | None = None,
    idents: dict[Any, Any] | None = None,
) -> DB:
    """Bulk-build a database from current datoms (and, for the Datomic flavor, history)."""
    props = _props_for(schema, flavor)
    hist_from_datoms = flavor == "datomic" and history is None
    ds = list(datoms_) if hist_from_datoms and not isinstance(datoms_, list) else datoms_
    eav = eavt_keys(ds)  # (one pass: datoms made as they are read are dropped at once)
    eav.sort()
    eav = _dedupe_sorted(eav)  # the other indexes permute these keys: distinct too
    aev = AttrIndex.from_sorted(eav)
    indexed, ref = props.indexed, props.ref
    ave = sorted([(k[1], k[2], k[3], k[0], k[4]) for k in eav if k[1] in indexed])
    vae = sorted([(k[3], k[1], k[0], k[4]) for k in eav if k[1] in ref])
    hist = None
    if flavor == "datomic":
        events = list(history) if history is not None else [Datom(*d[:4], True) for d in ds]
        hk = sorted((d[0], d[1], value_rank(d[2]), index_value(d[2]), d[3], d[4]) for d in events)
        hist = HistoryIndexes(SortedIndex.from_sorted(hk), AttrIndex.from_sorted(hk))
    return _bulk_db(schema, flavor, props, eav, aev, ave, vae, max_eid, max_tx, hist, idents)


def make_db_from_columns(
    schema: dict[str, dict[str, Any]],
    flavor: str,
    columns: Iterable[tuple[str, list, list, list]],
    eavt_order: list[int],
    *,
    max_eid: int | None = None,
    max_tx: int | None = None,
) -> DB:
    """``make_db`` of the datoms given as columns ``(a, es, vs, txs)`` in AEVT order (attributes
    sorted, each column sorted as its index keys), with distinct keys and ``eavt_order`` the place in
    AEVT order of each key in EAVT order (``codec.encode_datom_columns``): a database opens from a
    file without sorting or deduplicating its keys (AVET and VAET are sorted per attribute)."""
    props = _props_for(schema, flavor)
    indexed, ref = props.indexed, props.ref
    by_attr: dict[str, list[tuple]] = {}
    eav_in_aevt: list[tuple] = []
    ave: list[tuple] = []
    vae: list[tuple] = []
    shared: dict[type, dict] = {int: {}, str: {}}
    for a, es, vs, txs in columns:
        es, txs = _share(es, shared), _share(txs, shared)
        rs, ivs = _ranked(_share(vs, shared))
        keys = list(zip(es, repeat(a), rs, ivs, txs))
        by_attr.setdefault(a, []).extend(keys)
        eav_in_aevt += keys
        if a in indexed:
            ave.extend(sorted(zip(repeat(a), rs, ivs, es, txs)))
        if a in ref:
            vae.extend(zip(ivs, repeat(a), es, txs))
    eav = [eav_in_aevt[i] for i in eavt_order]
    del eav_in_aevt
    aev = AttrIndex.from_groups(by_attr)
    vae.sort()
    hist = None
    if flavor == "datomic":
        heavt = SortedIndex.from_sorted([(*k, True) for k in eav])
        hist = HistoryIndexes(heavt, AttrIndex.from_sorted(heavt))
    return _bulk_db(schema, flavor, props, eav, aev, ave, vae, max_eid, max_tx, hist, None)


def _share(xs: list, shared: dict[type, dict]) -> list:
    """``xs`` with equal values made one object each (through ``shared``, a table per type) when all
    are ``int`` or all ``str``: values decoded from a file or the wire are one object per occurrence."""
    kinds = set(map(type, xs))
    if len(kinds) != 1:
        return xs
    table = shared.get(kinds.pop())
    if table is None:
        return xs
    share = table.setdefault
    return [share(x, x) for x in xs]


def _ranked(vs: list) -> tuple[list, list]:
    """The ranks and index values of the values ``vs`` (as ``eavt_keys`` makes them); one pass of
    type checks when all are of one plain type."""
    kinds = set(map(type, vs))
    if len(kinds) == 1:
        t = kinds.pop()
        r = RANKS.get(t)
        if r is not None and t is not tuple:
            return [r] * len(vs), vs
    keys = eavt_keys((None, None, v, None) for v in vs)
    return [k[2] for k in keys], [k[3] for k in keys]


def _bulk_db(schema: dict[str, dict[str, Any]], flavor: str, props: Props, eav: list, aev: AttrIndex, ave: list,
             vae: list, max_eid: int | None, max_tx: int | None, hist: HistoryIndexes | None,
             idents: dict[Any, Any] | None) -> DB:
    vae = _dedupe_sorted(vae)
    if max_eid is None:
        max_eid = max((k[0] for k in eav if k[0] < TX0), default=E0)
        for k in vae:
            if max_eid < k[0] < TX0:
                max_eid = k[0]
    if max_tx is None:
        max_tx = max((k[4] for k in eav), default=TX0)
    return DB(
        flavor=flavor,
        schema=schema,
        props=props,
        eavt=SortedIndex.from_sorted(eav),
        aevt=aev,
        avet=SortedIndex.from_sorted(ave),
        vaet=SortedIndex.from_sorted(vae),
        max_eid=max_eid,
        max_tx=max_tx,
        hist=hist,
        idents=idents if idents is not None else {},
        view=None,
        pred=None,
    )


def eavt_keys(ds: Iterable[tuple]) -> list[tuple]:
    """EAVT keys ``(e, a, rank, v, tx)`` of datoms or ``(e, a, v, tx)`` tuples, in input order."""
    ranks = RANKS.get
    out = []
    append = out.append
    for d in ds:
        v = d[2]
        t = type(v)
        r = ranks(t)
        if r is None or t is tuple:
            r = value_rank(v)
            v = index_value(v)
        append((d[0], d[1], r, v, d[3]))
    return out


def _dedupe_sorted(keys: list) -> list:
    if len(keys) < 2:
        return keys
    out = [keys[0]]
    for k in keys[1:]:
        if k != out[-1]:
            out.append(k)
    return out


# ------------------------------------------------------------------------------------------------
# Reading history indexes through a view


def _events(keys: Iterable[tuple], v: TimeView) -> Iterator[tuple]:
    """The history keys ``(e, a, rank, value, tx, added)`` (in heavt's or haevt's order: grouped by
    their first four components) that the view shows: every event in the window for a history view,
    else the assertion that is current at ``as_of`` (and made after ``since``) of each group."""
    hi, lo = v.as_of, v.since
    if v.history:
        for k in keys:
            tx = k[4]
            if (hi is None or tx <= hi) and (lo is None or tx > lo):
                yield k
        return
    g0 = g1 = g3 = g2 = None
    last = None
    for k in keys:
        if k[0] != g0 or k[1] != g1 or k[2] != g2 or k[3] != g3:
            if last is not None and last[5] and (lo is None or last[4] > lo):
                yield last
            g0, g1, g2, g3 = k[0], k[1], k[2], k[3]
            last = None
        if hi is None or k[4] <= hi:
            last = k
    if last is not None and last[5] and (lo is None or last[4] > lo):
        yield last


def _from_history(k: tuple) -> Datom:
    """The datom of a history key ``(e, a, rank, v, tx, added)`` (heavt's and haevt's)."""
    return Datom(k[0], k[1], k[3], k[4], k[5])


def _eav_keys(db: DB, e: Any, a: Any, v: Any, has_v: bool) -> list:
    """History keys of entity ``e`` (and attribute ``a``, value ``v`` if given), heavt layout."""
    if a is None:
        return db.heavt.prefix_list((e,))
    if not has_v:
        return db.heavt.prefix_list((e, a))
    return db.heavt.prefix_list((e, a, value_rank(v), index_value(v)))


def _avet_sort_key(d: Datom) -> tuple:
    return (d.a, value_rank(d.v), index_value(d.v), d.e, d.tx, d.added)


def _vaet_sort_key(d: Datom) -> tuple:
    return (d.v, d.a, d.e, d.tx, d.added)  # ref values: entity ids


def view_datoms(db: DB, index: str, comps: tuple) -> list[Datom]:
    """Datoms of ``index`` matching ``comps`` (resolved, index order) as the time view shows them."""
    v = _view(db)
    n = len(comps)
    if index == "eavt":
        keys = db.heavt.prefix_list(_prefix("eavt", comps)[:4])
        out = [_from_history(k) for k in _events(keys, v)]
        return [d for d in out if d.tx == comps[3]] if n > 3 else out
    if index == "aevt":
        keys = db.haevt.prefix_list(_prefix("aevt", comps)[:4])
        out = [_from_history(k) for k in _events(keys, v)]
        return [d for d in out if d.tx == comps[3]] if n > 3 else out
    if index == "avet":
        indexed = db.props.indexed
        if n == 0:
            out = [_from_history(k) for k in _events(_attr_keys(db, indexed), v)]
        elif comps[0] not in indexed:
            return []
        elif n >= 3:
            a, val, e = comps[0], comps[1], comps[2]
            out = [_from_history(k) for k in _events(_eav_keys(db, e, a, val, True), v)]
        else:
            out = [_from_history(k) for k in _events(db.haevt.prefix_list((comps[0],)), v)]
            if n == 2:
                r, iv = value_rank(comps[1]), index_value(comps[1])
                out = [d for d in out if value_rank(d.v) == r and d.v == iv]
        if n > 3:
            out = [d for d in out if d.tx == comps[3]]
        out.sort(key=_avet_sort_key)
        return out
    if index == "vaet":
        ref = db.props.ref
        if n == 0:
            out = [_from_history(k) for k in _events(_attr_keys(db, ref), v)]
        elif n == 1:
            target = comps[0]
            out = [
                _from_history(k)
                for a in sorted(ref)
                for k in _events([k for k in db.haevt.prefix_list((a,)) if k[3] == target], v)
            ]
        elif comps[1] not in ref:
            return []
        elif n >= 3:
            out = [_from_history(k) for k in _events(_eav_keys(db, comps[2], comps[1], comps[0], True), v)]
        else:
            target = comps[0]
            keys = [k for k in db.haevt.prefix_list((comps[1],)) if k[3] == target]
            out = [_from_history(k) for k in _events(keys, v)]
        if n > 3:
            out = [d for d in out if d.tx == comps[3]]
        out.sort(key=_vaet_sort_key)
        return out
    raise ValueError(f"unknown index {index!r}")


def _attr_keys(db: DB, attrs: Iterable[str]) -> Iterator[tuple]:
    for a in sorted(attrs):
        yield from db.haevt.prefix((a,))


def view_seek(db: DB, index: str, comps: tuple) -> Iterator[Datom]:
    """Datoms of ``index`` at or after ``comps`` (resolved, index order), as the view shows them."""
    v = _view(db)
    start = _prefix(index, comps)
    if index == "eavt":
        return _seek_events(db.heavt.seek(start[:4]), v, start, _heavt_order)
    if index == "aevt":
        return _seek_events(db.haevt.seek(start[:4]), v, start, _haevt_order)
    if index == "avet":
        key = _avet_sort_key
    elif index == "vaet":
        key = _vaet_sort_key
    else:
        raise ValueError(f"unknown index {index!r}")
    return (d for d in view_datoms(db, index, ()) if key(d)[: len(start)] >= start)


def _seek_events(keys: Iterator[tuple], v: TimeView, start: tuple,
                 in_order: Callable[[tuple], tuple]) -> Iterator[Datom]:
    """The datoms of history ``keys`` the view shows, from ``start`` (``in_order``: a key's components
    in the index's order, which ``start`` is given in)."""
    passed = False
    n = len(start)
    for k in _events(keys, v):
        if not passed:
            if in_order(k)[:n] < start:
                continue
            passed = True
        yield _from_history(k)


def _heavt_order(k: tuple) -> tuple:
    return k


def _haevt_order(k: tuple) -> tuple:
    return (k[1], k[0], *k[2:])


def _view(db: DB) -> TimeView:
    v = db.view
    return v if isinstance(v, TimeView) else TimeView()


# ------------------------------------------------------------------------------------------------
# Entity id resolution


def is_lookup_ref(x: Any) -> bool:
    """Lookup refs are ``(attr, value)`` tuples (lists are accepted too, as DataScript does)."""
    return isinstance(x, tuple | list) and len(x) == 2 and isinstance(x[0], str | Keyword)


def entid(db: DB, eid: Any) -> int | None:
    """The entity id ``eid`` names: an int, a lookup ref ``(attr, value)``, or an ident keyword.
    None when a lookup ref or ident matches nothing; ``ResolveError`` when ``eid`` is malformed."""
    if type(eid) is int:
        if eid > EMAX and db.flavor == "datascript":
            raise ResolveError("entity-id", f"Highest supported entity id is {EMAX}, got {eid}", {"value": eid})
        return eid if eid > 0 else _bad_eid(eid)
    if isinstance(eid, tuple | list):
        if len(eid) != 2:
            raise ResolveError(
                "lookup-ref/syntax", f"Lookup ref should contain 2 elements: {eid!r}", {"entity-id": eid}
            )
        attr, value = eid
        if isinstance(attr, Keyword):
            attr = attr.name
        if attr not in db.props.unique:
            raise ResolveError(
                "lookup-ref/unique", f"Lookup ref attribute should be marked as :db/unique: {eid!r}", {"entity-id": eid}
            )
        if value is None:
            return None
        if attr in db.props.ref and not isinstance(value, int):
            value = entid(db, value)
            if value is None:
                return None
        if db.flavor == "datascript":
            value = resolve_tuple_refs(db.props, attr, value, lambda x: entid_strict(db, x))
        for d in datoms(db, "avet", attr, value):
            return d.e
        return None
    if isinstance(eid, Keyword):
        if db.flavor == "datomic":
            return db.idents.get(eid)
        for d in datoms(db, "avet", "db/ident", eid):
            return d.e
        return None
    if isinstance(eid, bool) or not isinstance(eid, int):
        raise ResolveError(
            "entity-id/syntax", f"Expected number or lookup ref for entity id, got {eid!r}", {"entity-id": eid}
        )
    return eid if eid > 0 else _bad_eid(eid)


def _bad_eid(eid: Any) -> None:
    raise ResolveError("entity-id/syntax", f"Expected a positive entity id, got {eid!r}", {"entity-id": eid})


def resolve_tuple_refs(props: Any, attr: str, value: Any, resolve: Callable[[Any], int]) -> Any:
    """A composite tuple value of ``attr`` with the lookup refs and idents at its ref positions
    replaced by entity ids (``resolve``: the strict ``entid`` of the database in question), as
    DataScript resolves them in lookup refs, upserts and patterns; other values are themselves."""
    srcs = props.tuple_attrs.get(attr)
    if srcs is None or not isinstance(value, tuple | list) or len(value) != len(srcs):
        return value
    if not any(a in props.ref and isinstance(x, tuple | list | Keyword) for a, x in zip(srcs, value)):
        return value
    return tuple(resolve(x) if a in props.ref and isinstance(x, tuple | list | Keyword) else x
                 for a, x in zip(srcs, value))


def entid_strict(db: DB, eid: Any) -> int:
    """``entid``, raising ``ResolveError`` (``entity-id/missing``) when nothing matches."""
    e = entid(db, eid)
    if e is None:
        raise ResolveError("entity-id/missing", f"Nothing found for entity id {eid!r}", {"entity-id": eid})
    return e


# ------------------------------------------------------------------------------------------------
# Index access


def _attr_name(a: Any) -> Any:
    return a.name if isinstance(a, Keyword) else a


def _resolve_components(db: DB, index: str, components: tuple) -> tuple:
    """Components in index order with attribute keywords as names and eids/ref values resolved."""
    comps = list(components)
    if index == "eavt":
        slots = ("e", "a", "v", "tx")
    elif index == "aevt":
        slots = ("a", "e", "v", "tx")
    elif index == "avet":
        slots = ("a", "v", "e", "tx")
    elif index == "vaet":
        slots = ("v", "a", "e", "tx")
    else:
        raise ResolveError("index/unknown", f"Unknown index {index!r}: expected one of {INDEXES}", {"index": index})
    if len(comps) > 4:
        raise ResolveError("index/components", f"Too many components for {index}: {components!r}", {})
    named = dict(zip(slots, comps))
    a = named.get("a")
    if a is not None:
        named["a"] = a = _attr_name(a)
    for slot in ("e", "tx"):
        x = named.get(slot)
        if x is not None and type(x) is not int:
            named[slot] = entid_strict(db, x)
    v = named.get("v")
    if v is not None and type(v) is not int and (index == "vaet" or (a is not None and a in db.props.ref)):
        named["v"] = entid_strict(db, v)
    elif type(v) is tuple and db.flavor == "datascript":
        named["v"] = resolve_tuple_refs(db.props, a, v, lambda x: entid_strict(db, x))
    out = []
    for slot in slots[: len(comps)]:
        x = named[slot]
        if x is None:
            break
        out.append(x)
    return tuple(out)


def _prefix(index: str, comps: tuple) -> tuple:
    """The key prefix of ``comps`` (already in index order) for ``index``'s key layout."""
    if index == "eavt" or index == "aevt":
        if len(comps) <= 2:
            return comps
        v = comps[2]
        return (comps[0], comps[1], value_rank(v), index_value(v), *comps[3:])
    if index == "avet":
        if len(comps) <= 1:
            return comps
        v = comps[1]
        return (comps[0], value_rank(v), index_value(v), *comps[2:])
    return comps


_KEY_TO_DATOM: dict[str, Callable[[tuple], Datom]] = {
    "eavt": lambda k: Datom(k[0], k[1], k[3], k[4], True),
    "aevt": lambda k: Datom(k[0], k[1], k[3], k[4], True),
    "avet": lambda k: Datom(k[3], k[0], k[2], k[4], True),
    "vaet": lambda k: Datom(k[2], k[1], k[0], k[3], True),
}


def key_to_datom(index: str, k: tuple) -> Datom:
    """The datom a key of ``index`` stands for."""
    return _KEY_TO_DATOM[index](k)


def _check_avet(db: DB, index: str, comps: tuple) -> None:
    if index == "avet" and comps and comps[0] not in db.props.indexed and db.flavor == "datascript":
        raise ResolveError(
            "index-access",
            f"Attribute {comps[0]} should be marked as :db/index true",
            {"index": "avet", "components": comps},
        )


def datoms(db: DB, index: str, *components: Any) -> list[Datom]:
    """Datoms of ``index`` (``"eavt" "aevt" "avet" "vaet"``) whose leading components match.

    Components are given in index order: ``datoms(db, "eavt", e, a)``, ``datoms(db, "avet", a, v)``.
    Entity ids may be lookup refs or idents; ref values may be too.
    """
    comps = _resolve_components(db, index, components)
    _check_avet(db, index, comps)
    if db.view is not None:
        out = view_datoms(db, index, comps)
    else:
        keys = getattr(db, index).prefix_list(_prefix(index, comps))
        conv = _KEY_TO_DATOM[index]
        out = [conv(k) for k in keys]
    if db.pred is not None:
        out = list(filter(db.pred, out))
    return out


def seek_datoms(db: DB, index: str, *components: Any) -> Iterator[Datom]:
    """Datoms of ``index`` from the first one at or after ``components`` to the end of the index."""
    comps = _resolve_components(db, index, components)
    _check_avet(db, index, comps)
    if db.view is not None:
        it: Iterable[Datom] = view_seek(db, index, comps)
    else:
        conv = _KEY_TO_DATOM[index]
        it = map(conv, getattr(db, index).seek(_prefix(index, comps)))
    if db.pred is not None:
        return filter(db.pred, it)
    return iter(it)


def rseek_datoms(db: DB, index: str, *components: Any) -> Iterator[Datom]:
    """Datoms of ``index`` from the last one at or before ``components`` back to the start."""
    comps = _resolve_components(db, index, components)
    _check_avet(db, index, comps)
    if db.view is not None:
        all_ = view_datoms(db, index, ())
        hi = (*_prefix(index, comps), TOP)
        conv_key = _datom_to_key(index)
        it: Iterable[Datom] = (d for d in reversed(all_) if conv_key(d) <= hi)
    else:
        conv = _KEY_TO_DATOM[index]
        it = map(conv, getattr(db, index).rseek((*_prefix(index, comps), TOP)))
    if db.pred is not None:
        return filter(db.pred, it)
    return iter(it)


def _datom_to_key(index: str) -> Callable[[Datom], tuple]:
    if index == "eavt":
        return lambda d: (d.e, d.a, value_rank(d.v), index_value(d.v), d.tx)
    if index == "aevt":
        return lambda d: (d.a, d.e, value_rank(d.v), index_value(d.v), d.tx)
    if index == "avet":
        return lambda d: (d.a, value_rank(d.v), index_value(d.v), d.e, d.tx)
    return lambda d: (d.v, d.a, d.e, d.tx)


def index_range(db: DB, attr: Any, start: Any = None, end: Any = None) -> list[Datom]:
    """AVET datoms of ``attr`` with ``start <= v <= end`` (either bound may be None: open)."""
    attr = _attr_name(attr)
    _check_avet(db, "avet", (attr,))
    if attr in db.props.ref:
        start = entid_strict(db, start) if start is not None else None
        end = entid_strict(db, end) if end is not None else None
    lo = (attr,) if start is None else (attr, value_rank(start), index_value(start))
    hi = (attr, TOP) if end is None else (attr, value_rank(end), index_value(end), TOP)
    if db.view is not None:
        key = _datom_to_key("avet")
        out = [d for d in datoms(db, "avet", attr) if lo <= key(d) < hi]
    else:
        conv = _KEY_TO_DATOM["avet"]
        out = [conv(k) for k in db.avet.slice(lo, hi)]
        if db.pred is not None:
            out = list(filter(db.pred, out))
    return out


# Fast internal lookups used by transact, entity and pull (current, unfiltered values only).


def first_v(db: DB, e: int, a: str) -> Any:
    """The value of the first datom ``[e a _]``, or None."""
    k = db.eavt.first((e, a))
    return None if k is None else k[3]


def filter_db(db: DB, pred: Callable[[DB, Datom], bool]) -> DB:
    """A view of ``db`` holding only the datoms for which ``pred(unfiltered_db, datom)`` is true.

    Filters compose: filtering a filtered view keeps the datoms that pass both predicates."""
    base = unfiltered(db)
    prev = db.pred

    def keep(datom: Datom) -> bool:
        return (prev is None or prev(datom)) and pred(base, datom)

    return db.replace(pred=keep)


def unfiltered(db: DB) -> DB:
    """The database under a filtered view (time views are kept)."""
    return db.replace(pred=None) if db.pred is not None else db


def is_filtered(db: DB) -> bool:
    """True when ``db`` is a ``filter_db`` view."""
    return db.pred is not None


# ------------------------------------------------------------------------------------------------
# Replaying datoms another database already validated (sync replicas, logs)


def apply_datoms(
    db: DB,
    datoms_: Iterable[tuple],
    *,
    schema: dict[str, dict[str, Any]] | None = None,
    props: Props | None = None,
    max_eid: int | None = None,
    max_tx: int | None = None,
) -> DB:
    """``db`` with ``datoms_`` (``Datom`` or ``(e, a, v, tx, added)``) written straight into its indexes.

    No transaction semantics: no tempids, upserts, schema or uniqueness checks. An assertion inserts
    the datom unless ``(e, a, v)`` is already current; a retraction removes the current ``(e, a, v)``
    whatever transaction asserted it (nothing if absent). This is how a replica replays the datoms a
    server transaction produced, tx ids included; cost grows with the datoms, not the database.
    ``schema`` (and/or ``props``) is the schema these datoms leave behind: AVET/VAET membership of
    the attributes whose properties changed is fixed first. A Datomic-flavored ``db`` also records
    every datom in its history indexes. ``max_eid``/``max_tx`` default to the largest seen."""
    if props is None and schema is not None:
        props = _props_for(schema, db.flavor)
    old_props = db.props
    props = props or old_props
    eavt, aevt, avet, vaet = db.eavt.transient(), db.aevt.transient(), db.avet.transient(), db.vaet.transient()
    if props is not old_props:
        for a in old_props.indexed ^ props.indexed:
            keys = aevt.prefix_list((a,))
            for e, _, r, iv, tx in keys:
                (avet.add if a in props.indexed else avet.discard)((a, r, iv, e, tx))
        for a in old_props.ref ^ props.ref:
            keys = aevt.prefix_list((a,))
            for e, _, _, iv, tx in keys:
                (vaet.add if a in props.ref else vaet.discard)((iv, a, e, tx))
    hist = db.hist is not None
    events: list[tuple] = []
    indexed, ref = props.indexed, props.ref
    new_eid, new_tx = db.max_eid, db.max_tx
    for d in datoms_:
        e, a, v, tx, added = d
        r, iv = value_rank(v), index_value(v)
        k = eavt.first((e, a, r, iv))
        if added:
            if k is not None:
                continue
            key = (e, a, r, iv, tx)
            eavt.add(key)
            aevt.add(key)
            if a in indexed:
                avet.add((a, r, iv, e, tx))
            if a in ref:
                vaet.add((iv, a, e, tx))
                if type(iv) is int and new_eid < iv < TX0:
                    new_eid = iv
            if new_eid < e < TX0:
                new_eid = e
        else:
            if k is None:
                continue
            old_tx = k[4]
            eavt.discard(k)
            aevt.discard(k)
            if a in indexed:
                avet.discard((a, r, iv, e, old_tx))
            if a in ref:
                vaet.discard((iv, a, e, old_tx))
        if hist:
            events.append((e, a, r, iv, tx, added))
        if tx > new_tx:
            new_tx = tx
    fields: dict[str, Any] = {}
    if hist:
        fields = {"hist": db.hist.appended(events)}
    if schema is not None:
        fields["schema"] = schema
    return db.replace(
        eavt=eavt.persistent(),
        aevt=aevt.persistent(),
        avet=avet.persistent(),
        vaet=vaet.persistent(),
        props=props,
        max_eid=new_eid if max_eid is None else max_eid,
        max_tx=new_tx if max_tx is None else max_tx,
        **fields,
    )
