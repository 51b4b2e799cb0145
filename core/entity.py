"""``entity``: a lazy, read-only, map-like view of one entity in one database value (DataScript's).

``entity(db, eid)`` is None unless the entity has at least one datom (in the view, for time views
and filtered databases). Attribute values are read on first access and memoized in the entity:

- ``e["person/name"]`` / ``e.get(attr, default)``: the value, or None / ``default`` when absent;
  ``attr`` may be a ``str`` or a ``Keyword``. ``e["db/id"]`` (and ``e.id``) is the entity id.
- cardinality-many values are ``frozenset``s; ref values are ``Entity`` objects (None where the
  referenced entity has no datoms), so ``e["person/friends"]`` is a frozenset of entities.
- reverse refs ``e["person/_friends"]`` are a frozenset of the referring entities, or a single entity
  when the attribute is a component (an entity has at most one owner). Reverse lookups are not cached.
- ``keys()``, ``items()``, ``values()``, ``len``, iteration and ``in`` cover forward attributes (not
  ``db/id``) and realize the whole entity first, like ``touch``; ``touch`` also realizes components,
  recursively.
- two entities are equal when they have the same id and come from the very same database value.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .db import DB, datoms, entid
from .index import TOP
from .schema import is_reverse_attr, reverse_attr
from .values import RANK_NUMBER, Keyword, value_rank

__all__ = ["Entity", "entity", "entity_db", "touch"]

_NF = object()


class Entity:
    """A lazy, read-only map of one entity's attributes in one database value."""

    __slots__ = ("_cache", "_db", "_eid", "_touched")

    _db: DB
    _eid: int
    _cache: dict[str, Any]
    _touched: bool

    def __init__(self, db: DB, eid: int):
        self._db = db
        self._eid = eid
        self._cache = {}
        self._touched = False

    @property
    def id(self) -> int:
        """The entity id (``e["db/id"]``)."""
        return self._eid

    @property
    def db(self) -> DB:
        """The database value this entity reads from."""
        return self._db

    def _lookup(self, attr: Any, nf: Any) -> Any:
        try:
            v = self._cache.get(attr, _NF)
        except TypeError:  # unhashable: names no attribute
            return nf
        if v is not _NF:
            return v
        t = type(attr)
        if t is Keyword:
            attr = attr.name
            v = self._cache.get(attr, _NF)
            if v is not _NF:
                return v
        elif t is not str:
            return nf
        if attr == "db/id":
            return self._eid
        if "_" in attr and is_reverse_attr(attr):
            return _lookup_backwards(self._db, self._eid, reverse_attr(attr), nf)
        if self._touched:
            return nf
        db = self._db
        props = db.props
        if db.view is None and db.pred is None:
            if attr in props.many:
                e = self._eid
                vs = [k[3] for k in db.eavt.slice_list((e, attr), (e, attr, TOP))]
                if not vs:
                    return nf
                if attr in props.ref:
                    v = frozenset(_entities(db, vs))
                else:
                    v = frozenset(vs)
            else:
                k = db.eavt.first((self._eid, attr))
                if k is None:
                    return nf
                v = k[3]
                if attr in props.ref:
                    v = Entity(db, v) if db.eavt.first((v,)) is not None else None
        else:
            vs = [d.v for d in datoms(db, "eavt", self._eid, attr)]
            if not vs:
                return nf
            v = _attr_value(db, attr, vs)
        self._cache[attr] = v
        return v

    def __getitem__(self, attr: str | Keyword) -> Any:
        return self._lookup(attr, None)

    def get(self, attr: str | Keyword, default: Any = None) -> Any:
        """The value of ``attr`` (see the module docstring for its shape), or ``default``."""
        return self._lookup(attr, default)

    def __contains__(self, attr: object) -> bool:
        return self._lookup(attr, _NF) is not _NF

    def keys(self) -> list[str]:
        """The entity's attribute names, in index order (realizes the entity)."""
        _touch(self, set())
        return list(self._cache)

    def values(self) -> list[Any]:
        """The entity's attribute values, in index order (realizes the entity)."""
        _touch(self, set())
        return list(self._cache.values())

    def items(self) -> list[tuple[str, Any]]:
        """``(attribute, value)`` pairs, in index order (realizes the entity)."""
        _touch(self, set())
        return list(self._cache.items())

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        _touch(self, set())
        return len(self._cache)

    def __bool__(self) -> bool:
        return True

    def __eq__(self, other: object) -> bool:
        if type(other) is not Entity:
            return NotImplemented
        return self._eid == other._eid and self._db is other._db

    def __hash__(self) -> int:
        return hash(self._eid)

    def __repr__(self) -> str:
        body = ", ".join(f"{k!r}: {v!r}" for k, v in self._cache.items())
        return f"Entity({{'db/id': {self._eid}{', ' if body else ''}{body}}})"


def _exists(db: DB, e: int) -> bool:
    if db.view is None and db.pred is None:
        return db.eavt.first((e,)) is not None
    return bool(datoms(db, "eavt", e))


def _entities(db: DB, eids: list[int]) -> list[Entity | None]:
    """``entity(db, e)`` for ids known to be well formed (ref values)."""
    if db.view is None and db.pred is None:
        first = db.eavt.first
        return [Entity(db, e) if first((e,)) is not None else None for e in eids]
    return [Entity(db, e) if _exists(db, e) else None for e in eids]


def _attr_value(db: DB, attr: str, vs: list) -> Any:
    props = db.props
    if attr in props.many:
        if attr in props.ref:
            return frozenset(_entities(db, vs))
        return frozenset(vs)
    if attr in props.ref:
        return _entities(db, vs[:1])[0]
    return vs[0]


def _lookup_backwards(db: DB, e: int, attr: str, nf: Any) -> Any:
    props = db.props
    if attr in props.ref:
        if db.view is None and db.pred is None:
            es = [k[2] for k in db.vaet.prefix_list((e, attr))]
        else:
            es = [d.e for d in datoms(db, "vaet", e, attr)]
    else:
        # DataScript searches [nil attr e] for any attribute: numbers equal to the id match.
        es = [d.e for d in datoms(db, "aevt", attr) if d.v == e and value_rank(d.v) == RANK_NUMBER]
    if not es:
        return nf
    if attr in props.component:
        return _entities(db, es[:1])[0]
    return frozenset(_entities(db, es))


def entity(db: DB, eid: Any) -> Entity | None:
    """The entity ``eid`` names (an id, a lookup ref ``(attr, value)`` or an ident keyword) in ``db``,
    or None when that resolves to nothing or to an id without datoms (DataScript's ``d/entity``).

    Anything else that is not a number (a string, say) is None too; a malformed id (0, a negative
    number, a lookup ref on a non-unique attribute) raises ``ResolveError``."""
    if isinstance(eid, bool) or not isinstance(eid, int | float | tuple | list | Keyword):
        return None
    if isinstance(eid, float):
        if not eid.is_integer() or eid <= 0:
            return None if eid > 0 else entid(db, eid)
        eid = int(eid)
    e = entid(db, eid)
    if e is None or not _exists(db, e):
        return None
    return Entity(db, e)


def _touch(e: Entity, active: set[int]) -> Entity:
    if e._touched:
        return e
    db = e._db
    if db.view is None and db.pred is None:
        pairs = [(k[1], k[3]) for k in db.eavt.prefix_list((e._eid,))]
    else:
        pairs = [(d.a, d.v) for d in datoms(db, "eavt", e._eid)]
    if not pairs:
        return e
    grouped: dict[str, list] = {}
    for a, v in pairs:
        vs = grouped.get(a)
        if vs is None:
            grouped[a] = [v]
        else:
            vs.append(v)
    component = db.props.component
    many = db.props.many
    active.add(e._eid)
    cache = {}
    for a, vs in grouped.items():
        value = _attr_value(db, a, vs)
        if a in component:
            # Realize components recursively; a component cycle is left lazy instead of looping.
            if a in many:
                value = frozenset(_touch(x, active) if x is not None and x._eid not in active else x for x in value)
            elif value is not None and value._eid not in active:
                _touch(value, active)
        cache[a] = value
    active.discard(e._eid)
    e._cache = cache
    e._touched = True
    return e


def touch(e: Entity) -> Entity:
    """Realize every attribute of ``e`` (and of its components, recursively) and return ``e``."""
    if not isinstance(e, Entity):
        raise TypeError(f"touch expects an Entity, got {e!r}")
    return _touch(e, set())


def entity_db(e: Entity) -> DB:
    """The database value ``e`` was read from."""
    return e._db
