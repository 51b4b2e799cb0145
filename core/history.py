"""Time views of a Datomic-flavored database: ``as_of``, ``since``, ``history``.

A time view is the same ``DB`` value with ``db.view`` set to a ``TimeView(as_of, since, history)``
(transaction ids or None, and a flag); ``core.db.datoms``/``seek_datoms``/``rseek_datoms`` then read
through ``view_datoms``/``view_seek`` (in ``core.db``: reads of the value), over the history
indexes ``heavt (e a rank v tx added)`` and ``haevt`` (the same key tuples in AEVT order), which hold
every assertion and retraction ever made.

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
from typing import Any

from .db import DB, TX0, TimeView, _view, view_datoms, view_seek
from .index import TOP
from .values import RANK_INSTANT


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
    if db.hist is None:
        raise ValueError("time views need a Datomic-flavored database (one that keeps history)")


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
