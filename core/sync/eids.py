"""Entity id translation between the server's id space and a replica's.

A replica's ids equal the server's wherever its id space allows: the Python replica always
(``EidMap.identity()``: every function here returns its input unchanged, at no cost). A replica
whose id space is capped (DataScript in a browser holds entity ids below 2^31, and below its tx-id
base ``TX0`` for entities) uses ``EidMap.capped(cap, low=..., start=...)``:

* server ids below ``low`` are held as themselves;
* server entity ids from ``low`` up (below ``TX0``), and any id beyond 2^31 - 1, are *translated*:
  each gets a local id, allocated in order of first sight from ``start`` upward, below ``cap``. No
  server id maps to itself in that band, so the mapping is a bijection.
  ``SyncError("sync/id-space-exhausted")`` when the band is full;
* transaction ids (``TX0 + t`` up to 2^31 - 1) are held as themselves (the replica shares the
  tx-id layout).

The map is a persistent value (two ``pyrsistent`` maps); allocating returns a new map.

Translation covers single ids, datoms (refs inside values per the server schema, including ref
elements of tuples), and tx forms (entity positions, lookup refs, refs in values, reverse refs,
nested maps, ``db/retractEntity``, ``db/cas``); tempids (negative ints, strings), idents
(``Keyword``) and lookup refs' attribute names pass through unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pyrsistent import PMap, pmap

from ..db import EMAX, TX0
from ..schema import is_reverse_attr, reverse_attr
from ..transact import op_name
from ..values import Keyword
from .errors import SyncError
from .schema import Aliases, RefInfo, resolve_attr

IdFn = Callable[[int], int]

PROVISIONAL_BASE = 0x70000000
"""Provisional ids (a pending transaction's new entities, before the server answers) are allocated
from here upward, below ``EMAX``: never a server entity id (those stay below ``TX0``), never a local
id an ``EidMap`` hands out (below its cap, at most ``TX0``), and above every transaction id
``TX0 + t`` a server reaches (``t`` below 1.3 billion). Every ``EidMap`` passes them through."""


def is_provisional(x: Any) -> bool:
    """True for a provisional id."""
    return type(x) is int and PROVISIONAL_BASE <= x <= EMAX


class EidMap:
    """A persistent two-way map between server (remote) and replica (local) entity ids."""

    __slots__ = ("_next", "_to_local", "_to_remote", "cap", "low", "start")

    cap: int | None
    low: int | None
    start: int | None

    def __init__(
        self,
        cap: int | None = None,
        low: int | None = None,
        start: int | None = None,
        to_local: PMap | None = None,
        to_remote: PMap | None = None,
        next_id: int | None = None,
    ):
        if cap is not None:
            low = cap // 2 if low is None else low
            start = low if start is None else start
            if not (0 < low <= start < cap <= TX0):
                raise ValueError(f"capped EidMap needs 0 < low <= start < cap <= TX0, got {low}, {start}, {cap}")
        object.__setattr__(self, "cap", cap)
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "start", start)
        object.__setattr__(self, "_to_local", to_local if to_local is not None else pmap())
        object.__setattr__(self, "_to_remote", to_remote if to_remote is not None else pmap())
        object.__setattr__(self, "_next", next_id if next_id is not None else start)

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError("EidMap is immutable")

    @classmethod
    def identity(cls) -> EidMap:
        """The identity translation: local ids are the server's."""
        return _IDENTITY

    @classmethod
    def capped(cls, cap: int = TX0, *, low: int | None = None, start: int | None = None) -> EidMap:
        """A translation for a replica holding entity ids below ``cap`` (default ``TX0``, DataScript's
        entity-id space): server entity ids ``>= low`` (default ``cap // 2``) get local ids from
        ``start`` (default ``low``) upward."""
        return cls(cap, low, start)

    @property
    def is_identity(self) -> bool:
        """True when every id translates to itself."""
        return self.cap is None

    def __len__(self) -> int:
        """How many ids are translated (0 for the identity)."""
        return len(self._to_local)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, EidMap):
            return NotImplemented
        return (self.cap, self.low, self.start, self._next, self._to_local) == (
            other.cap, other.low, other.start, other._next, other._to_local,
        )

    def __hash__(self) -> int:
        return hash((self.cap, self.low, self.start, self._next, self._to_local))

    def __repr__(self) -> str:
        if self.is_identity:
            return "EidMap.identity()"
        return f"EidMap.capped({self.cap}, low={self.low}, start={self.start}) with {len(self)} ids"

    def items(self) -> Iterable[tuple[int, int]]:
        """The translated ``(remote, local)`` pairs."""
        return self._to_local.items()

    def translates(self, remote: int) -> bool:
        """True when the server id ``remote`` is not held as itself: an entity id from ``low`` up, or
        any id beyond the 32-bit space."""
        return self.low is not None and (self.low <= remote < TX0 or remote > EMAX)

    def to_local(self, remote: Any) -> Any:
        """The local id of the server id ``remote`` (non-ids pass through); ``SyncError`` with code
        ``sync/unknown-eid`` if it needs a local id not yet assigned (see ``assign``)."""
        if self.low is None or type(remote) is not int or remote < self.low or TX0 <= remote <= EMAX:
            return remote
        local = self._to_local.get(remote)
        if local is None:
            raise SyncError("sync/unknown-eid", f"No local id assigned for server id {remote}", {"id": remote})
        return local

    def to_remote(self, local: Any) -> Any:
        """The server id of the local id ``local`` (non-ids pass through); ``SyncError`` with code
        ``sync/unknown-eid`` for a local id in the translated band that maps to nothing."""
        if self.low is None or type(local) is not int or local <= 0 or local < self.low or local >= TX0:
            return local
        remote = self._to_remote.get(local)
        if remote is None:
            raise SyncError("sync/unknown-eid", f"Local id {local} has no server id", {"id": local})
        return remote

    def assign(self, remotes: Iterable[Any]) -> EidMap:
        """This map with a local id for every translated server id in ``remotes`` not yet known."""
        if self.low is None:
            return self
        low, known = self.low, self._to_local
        fresh = [r for r in remotes if type(r) is int and (low <= r < TX0 or r > EMAX) and r not in known]
        if not fresh:
            return self
        tl, tr = known.evolver(), self._to_remote.evolver()
        nxt = self._next
        done: set[int] = set()
        for r in fresh:
            if r in done:
                continue
            done.add(r)
            if nxt >= self.cap:  # type: ignore[operator]
                raise SyncError("sync/id-space-exhausted",
                                f"No local id left below {self.cap} for server id {r}", {"id": r})
            tl[r] = nxt
            tr[nxt] = r
            nxt += 1
        return EidMap(self.cap, self.low, self.start, tl.persistent(), tr.persistent(), nxt)


_IDENTITY = EidMap()


# ------------------------------------------------------------------------------------------------
# Values and datoms


def _tuple_ids(v: Any, positions: tuple[int, ...] | None, f: IdFn) -> Any:
    if not isinstance(v, tuple | list):
        return v
    out = [
        f(x) if type(x) is int and (positions is None or i in positions) else x for i, x in enumerate(v)
    ]
    return tuple(out) if isinstance(v, tuple) else out


def value_ids(refs: RefInfo, attr: str, v: Any, f: IdFn) -> Any:
    """``v`` (a stored value of ``attr``) with the entity ids it holds passed through ``f``."""
    if attr in refs.ref:
        return f(v) if type(v) is int else v
    if attr in refs.tuples:
        return _tuple_ids(v, refs.tuples[attr], f)
    return v


def ids_in_datoms(refs: RefInfo, datoms: Iterable[tuple]) -> list[int]:
    """Every entity id the datoms ``(e, a, v, ...)`` mention (entities and ids inside values)."""
    out: list[int] = []
    for d in datoms:
        out.append(d[0])
        a = d[1]
        if refs.holds_ids(a):
            value_ids(refs, a, d[2], lambda x: out.append(x) or x)
    return out


def datoms_to_local(eids: EidMap, refs: RefInfo, datoms: Iterable[tuple]) -> tuple[EidMap, list[tuple]]:
    """Server datoms ``(e, a, v, ...)`` in local ids, assigning local ids where needed; returns the
    (maybe grown) map and the datoms (same tuple shape)."""
    ds = datoms if isinstance(datoms, list) else list(datoms)
    if eids.is_identity:
        return eids, ds
    eids = eids.assign(ids_in_datoms(refs, ds))
    f = eids.to_local
    return eids, [_datom_ids(d, refs, f) for d in ds]


def datoms_to_remote(eids: EidMap, refs: RefInfo, datoms: Iterable[tuple]) -> list[tuple]:
    """Local datoms ``(e, a, v, ...)`` in server ids (``SyncError`` for an id with no server id)."""
    ds = datoms if isinstance(datoms, list) else list(datoms)
    if eids.is_identity:
        return ds
    return [_datom_ids(d, refs, eids.to_remote) for d in ds]


def _datom_ids(d: tuple, refs: RefInfo, f: IdFn) -> tuple:
    e, a, v = d[0], d[1], d[2]
    e2 = f(e)
    v2 = value_ids(refs, a, v, f) if refs.holds_ids(a) else v
    if e2 is e and v2 is v:
        return d
    return (e2, a, v2, *d[3:])


# ------------------------------------------------------------------------------------------------
# Tx forms


class _TxIds:
    """Walks tx data, passing every entity id in it through ``f``. Attribute names resolve as the
    server resolves them (``resolve_attr``: old names of renamed attributes included; an attribute
    given as an entity id through ``ident_of``, when given). With ``names``, attribute names are
    written out as their current names; with ``tempid``, a map form without ``db/id`` gets one."""

    def __init__(
        self, refs: RefInfo, attrs: Mapping[str, Any], f: IdFn, aliases: Aliases | None = None,
        ident_of: Callable[[int], Any] | None = None, *, names: bool = False,
        tempid: Callable[[], Any] | None = None,
    ):
        self.refs, self.attrs, self.f = refs, attrs, f
        self.aliases = aliases or {}
        self.ident_of = ident_of
        self.names, self.tempid = names, tempid

    def out_name(self, a: Any, name: Any) -> Any:
        """How the attribute written ``a`` (current name ``name``) is written out."""
        return name if self.names and type(name) is str and type(a) in (str, Keyword) else a

    def attr_name(self, a: Any) -> Any:
        """The current name of the attribute ``a`` names (a name, ``:name``, ``Keyword`` or entity id)."""
        t = type(a)
        if t is Keyword:
            a = a.name
        elif t is str and a.startswith(":"):
            a = a[1:]
        elif t is int and self.ident_of is not None:
            k = self.ident_of(a)
            a = k.name if type(k) is Keyword else a
        return resolve_attr(self.attrs, self.aliases, a) if type(a) is str else a

    def is_lookup_ref(self, x: Any) -> bool:
        if not (isinstance(x, tuple | list) and len(x) == 2):
            return False
        name = self.attr_name(x[0])
        return type(name) is str and name in self.attrs

    def entity(self, x: Any) -> Any:
        t = type(x)
        if t is int:
            return self.f(x) if x > 0 else x
        if isinstance(x, Mapping):
            return self.map_form(x)
        if self.is_lookup_ref(x):
            name = self.attr_name(x[0])
            v = self.value(name, x[1])
            a = self.out_name(x[0], name)
            return x if v is x[1] and a is x[0] else type(x)((a, v))
        return x

    def value(self, name: Any, v: Any) -> Any:
        if type(name) is not str:
            return v
        refs = self.refs
        if name in refs.ref:
            return self.entity(v)
        if name in refs.tuples:
            return _tuple_ids(v, refs.tuples[name], self.f)
        return v

    def many(self, name: str, vs: Any) -> Any:
        """A map form's value of a ref attribute: one entity position or a collection of them."""
        if isinstance(vs, Mapping) or self.is_lookup_ref(vs):
            return self.entity(vs)
        if isinstance(vs, list | tuple | set | frozenset):
            return type(vs)(self.entity(x) for x in vs)
        return self.entity(vs)

    def map_form(self, m: Mapping) -> dict:
        out: dict = {}
        refs = self.refs
        if self.tempid is not None and not any(self.attr_name(k) == "db/id" for k in m):
            out["db/id"] = self.tempid()
        for k, v in m.items():
            name = self.attr_name(k)
            if name == "db/id":
                out[k] = self.entity(v)
            elif type(name) is not str:
                out[k] = v
            elif name in refs.ref:
                out[self.out_name(k, name)] = self.many(name, v)
            elif name not in self.attrs and is_reverse_attr(name) and self.attr_name(reverse_attr(name)) in refs.ref:
                out[self.out_name(k, reverse_attr(self.attr_name(reverse_attr(name))))] = self.many(name, v)
            elif name in refs.tuples:
                if isinstance(v, list | set | frozenset) and all(isinstance(x, tuple | list) for x in v):
                    out[self.out_name(k, name)] = type(v)(_tuple_ids(x, refs.tuples[name], self.f) for x in v)
                else:
                    out[self.out_name(k, name)] = _tuple_ids(v, refs.tuples[name], self.f)
            else:
                out[self.out_name(k, name)] = v
        return out

    def list_form(self, form: Any) -> Any:
        if not form:
            return form
        op = op_name(form[0])
        items = list(form)
        n = len(items)
        if op in ("db/add", "db/retract", "db.fn/retractAttribute", "db/cas", "db.fn/cas"):
            if n > 1:
                items[1] = self.entity(items[1])
            if n > 2:
                a = items[2]
                name = self.attr_name(a)
                if type(a) is int:
                    items[2] = self.f(a) if a > 0 else a
                else:
                    items[2] = self.out_name(a, name)
                for i in range(3, n):
                    items[i] = self.value(name, items[i])
        elif op in ("db/retractEntity", "db.fn/retractEntity"):
            if n > 1:
                items[1] = self.entity(items[1])
        else:
            return form
        return tuple(items) if isinstance(form, tuple) else items

    def tx(self, tx_data: Any) -> Any:
        if not isinstance(tx_data, list | tuple):
            return tx_data
        out = []
        for form in tx_data:
            if isinstance(form, Mapping):
                out.append(self.map_form(form))
            elif isinstance(form, list | tuple):
                out.append(self.list_form(form))
            else:
                out.append(form)
        return out


def tx_to_remote(
    eids: EidMap, refs: RefInfo, attrs: Mapping[str, Any], tx_data: Any, aliases: Aliases | None = None,
    ident_of: Callable[[int], Any] | None = None,
) -> Any:
    """A replica's tx data with local entity ids replaced by the server's (``attrs``: the server
    schema, to tell lookup refs from pairs of ids; ``aliases``: the old attribute names the server
    still resolves; ``ident_of``: the ident of a local entity id used as an attribute).
    ``SyncError`` for a local id with no server id."""
    if eids.is_identity:
        return tx_data
    return _TxIds(refs, attrs, eids.to_remote, aliases, ident_of).tx(tx_data)


def tx_ids(
    refs: RefInfo, attrs: Mapping[str, Any], aliases: Aliases | None, tx_data: Any, f: IdFn, *,
    names: bool = False, tempid: Callable[[], Any] | None = None,
) -> Any:
    """``tx_data`` with every entity id in it passed through ``f`` (attribute names resolved as the
    server resolves them); ``names``: attributes written by their current names; ``tempid``: a map
    form without ``db/id`` gets ``tempid()``."""
    return _TxIds(refs, attrs, f, aliases, names=names, tempid=tempid).tx(tx_data)


def tx_to_local(
    eids: EidMap, refs: RefInfo, attrs: Mapping[str, Any], tx_data: Any, aliases: Aliases | None = None,
) -> tuple[EidMap, Any]:
    """Server-side tx data in local ids, assigning local ids where needed; returns the map too."""
    if eids.is_identity:
        return eids, tx_data
    seen: list[int] = []
    _TxIds(refs, attrs, lambda x: seen.append(x) or x, aliases).tx(tx_data)
    eids = eids.assign(seen)
    return eids, _TxIds(refs, attrs, eids.to_local, aliases).tx(tx_data)


__all__ = [
    "PROVISIONAL_BASE",
    "EidMap",
    "datoms_to_local",
    "datoms_to_remote",
    "ids_in_datoms",
    "is_provisional",
    "tx_ids",
    "tx_to_local",
    "tx_to_remote",
    "value_ids",
]
