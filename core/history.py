"""Time views of a Datomic-flavored database: ``as_of``, ``since``, ``history``.

A time view is the same ``DB`` value with ``db.view`` set to a ``TimeView(as_of, since, history)``
(transaction ids or None, and a flag); ``core.db.datoms``/``seek_datoms``/``rseek_datoms`` then read
through ``view_datoms``/``view_seek`` here, over the history indexes ``heavt (e a rank v tx added)``
and ``haevt (a e rank v tx added)``, which hold every assertion and retraction ever made.

Semantics (Datomic's):

* ``as_of(db, t)``: the datoms that were current right after transaction ``t`` (inclusive);
* ``since(db, t)``: the current datoms asserted by transactions after ``t`` (exclusive);
* ``history(db)``: every assertion and retraction (``Datom.added`` False for retractions);
* they compose: ``as_of(since(db, t1), t2)`` is what happened in ``(t1, t2]`` and is still current
  at ``t2``; ``history`` combined with either keeps the events inside the window. Applying ``as_of``
  to an as-of view keeps the earlier point, ``since`` on a since view the later one (views are
  filters, so restrictions accumulate).

``t`` may be a basis ``t`` (``< TX0``), a transaction id (``TX0 + t``), or a ``datetime``, which
stands for the last transaction whose ``db/txInstant`` is at or before it (naive means UTC). The
schema of a view is always the current one (as in Datomic); ``basis_t`` of a view is the basis of
the database it was made from.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

from .db import DB, TX0, _prefix
from .index import TOP
from .values import RANK_INSTANT, Datom, index_value, value_rank


class TimeView(NamedTuple):
    """The time basis of a view: ``as_of`` and ``since`` are transaction ids (None: unbounded)."""

    as_of: int | None = None
    since: int | None = None
    history: bool = False


def t_to_tx(t: int) -> int:
    """The transaction id of basis ``t``."""
    return TX0 + t


def tx_to_t(tx: int) -> int:
    """The basis ``t`` of transaction id ``tx``."""
    return tx - TX0


def basis_t(db: DB) -> int:
    """The ``t`` of the last transaction in ``db`` (0 for a fresh database)."""
    return db.max_tx - TX0


def _require_history(db: DB) -> None:
    if db.heavt is None:
        raise ValueError("time views need a Datomic-flavored database (one that keeps history)")


def _view(db: DB) -> TimeView:
    v = db.view
    return v if isinstance(v, TimeView) else TimeView()


def _instant_tx(db: DB, instant: _dt.datetime) -> int:
    if instant.tzinfo is None or instant.tzinfo.utcoffset(instant) is None:
        instant = instant.replace(tzinfo=_dt.UTC)
    for k in db.avet.rseek(("db/txInstant", RANK_INSTANT, instant, TOP)):
        if k[0] != "db/txInstant" or k[1] != RANK_INSTANT:
            break
        return k[3]
    return TX0 - 1


def resolve_tx(db: DB, t: Any) -> int:
    """The transaction id named by ``t``: a basis t, a transaction id, or a ``datetime``."""
    if isinstance(t, _dt.datetime):
        return _instant_tx(db, t)
    if isinstance(t, bool) or not isinstance(t, int):
        raise TypeError(f"expected a t, a transaction id or a datetime, got {t!r}")
    return t if t >= TX0 else TX0 + t


def as_of(db: DB, t: Any) -> DB:
    """``db`` as it was right after transaction ``t`` (inclusive)."""
    _require_history(db)
    tx = resolve_tx(db, t)
    v = _view(db)
    if v.as_of is not None:
        tx = min(tx, v.as_of)
    return db.replace(view=v._replace(as_of=tx))


def since(db: DB, t: Any) -> DB:
    """The datoms of ``db`` added by transactions after ``t`` (exclusive)."""
    _require_history(db)
    tx = resolve_tx(db, t)
    v = _view(db)
    if v.since is not None:
        tx = max(tx, v.since)
    return db.replace(view=v._replace(since=tx))


def history(db: DB) -> DB:
    """Every assertion and retraction of ``db`` (within the view's time window, if any)."""
    _require_history(db)
    return db.replace(view=_view(db)._replace(history=True))


def as_of_t(db: DB) -> int | None:
    """The ``t`` of an ``as_of`` view (None if ``db`` is not one)."""
    v = db.view
    return v.as_of - TX0 if isinstance(v, TimeView) and v.as_of is not None else None


def since_t(db: DB) -> int | None:
    """The ``t`` of a ``since`` view (None if ``db`` is not one)."""
    v = db.view
    return v.since - TX0 if isinstance(v, TimeView) and v.since is not None else None


def is_history(db: DB) -> bool:
    """True for a ``history`` view."""
    v = db.view
    return isinstance(v, TimeView) and v.history


def current(db: DB) -> DB:
    """The database under a time view (filters from ``filter_db`` are kept)."""
    return db.replace(view=None) if db.view is not None else db


# ------------------------------------------------------------------------------------------------
# Reading history indexes through a view


def _events(keys: Iterable[tuple], v: TimeView) -> Iterator[tuple]:
    """The history keys (layout ``(x, y, rank, value, tx, added)``, grouped by their first four
    components) that the view shows: every event in the window for a history view, else the
    assertion that is current at ``as_of`` (and made after ``since``) of each group."""
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


def _from_heavt(k: tuple) -> Datom:
    return Datom(k[0], k[1], k[3], k[4], k[5])


def _from_haevt(k: tuple) -> Datom:
    return Datom(k[1], k[0], k[3], k[4], k[5])


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
        out = [_from_heavt(k) for k in _events(keys, v)]
        return [d for d in out if d.tx == comps[3]] if n > 3 else out
    if index == "aevt":
        keys = db.haevt.prefix_list(_prefix("aevt", comps)[:4])
        out = [_from_haevt(k) for k in _events(keys, v)]
        return [d for d in out if d.tx == comps[3]] if n > 3 else out
    if index == "avet":
        indexed = db.props.indexed
        if n == 0:
            out = [_from_haevt(k) for k in _events(_attr_keys(db, indexed), v)]
        elif comps[0] not in indexed:
            return []
        elif n >= 3:
            a, val, e = comps[0], comps[1], comps[2]
            out = [_from_heavt(k) for k in _events(_eav_keys(db, e, a, val, True), v)]
        else:
            out = [_from_haevt(k) for k in _events(db.haevt.prefix_list((comps[0],)), v)]
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
            out = [_from_haevt(k) for k in _events(_attr_keys(db, ref), v)]
        elif n == 1:
            target = comps[0]
            out = [
                _from_haevt(k)
                for a in sorted(ref)
                for k in _events([k for k in db.haevt.prefix_list((a,)) if k[3] == target], v)
            ]
        elif comps[1] not in ref:
            return []
        elif n >= 3:
            out = [_from_heavt(k) for k in _events(_eav_keys(db, comps[2], comps[1], comps[0], True), v)]
        else:
            target = comps[0]
            keys = [k for k in db.haevt.prefix_list((comps[1],)) if k[3] == target]
            out = [_from_haevt(k) for k in _events(keys, v)]
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
    if index in ("eavt", "aevt"):
        hist, conv = (db.heavt, _from_heavt) if index == "eavt" else (db.haevt, _from_haevt)
        return _seek_events(hist.seek(start[:4]), v, start, conv)
    if index == "avet":
        key = _avet_sort_key
    elif index == "vaet":
        key = _vaet_sort_key
    else:
        raise ValueError(f"unknown index {index!r}")
    return (d for d in view_datoms(db, index, ()) if key(d)[: len(start)] >= start)


def _seek_events(keys: Iterator[tuple], v: TimeView, start: tuple, conv: Any) -> Iterator[Datom]:
    passed = False
    for k in _events(keys, v):
        if not passed:
            if k[: len(start)] < start:
                continue
            passed = True
        yield conv(k)


__all__ = [
    "TimeView",
    "as_of",
    "as_of_t",
    "basis_t",
    "current",
    "history",
    "is_history",
    "resolve_tx",
    "since",
    "since_t",
    "t_to_tx",
    "tx_to_t",
    "view_datoms",
    "view_seek",
]
