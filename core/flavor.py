"""The two flavors over one database value, and the one place that picks between them.

``core.db`` is the value and its reads; ``core.transact`` is the DataScript flavor's transaction and
``core.datomic`` the Datomic flavor (schema as data, history, its own transaction), both built on
``core.db``. This module is above all three: ``empty_db``, ``init_db`` and ``transact`` dispatch on
``db.flavor`` here and nowhere else, so no flavor imports the module that dispatches to it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

from .datomic import empty_datomic_db, init_datomic_db, transact_datomic
from .db import DB, FLAVORS, TX0, make_db
from .errors import TxError
from .schema import normalize_schema, validate_datascript_schema
from .transact import TxReport, transact_datascript


def empty_db(schema: Mapping[str, Mapping[str, Any]] | None = None, *, flavor: str = "datascript") -> DB:
    """An empty database. DataScript flavor: ``schema`` is a map; Datomic flavor: schema is data,
    so ``schema`` (if given) is installed as attribute entities by a first transaction."""
    if flavor not in FLAVORS:
        raise ValueError(f"unknown flavor {flavor!r}: expected one of {FLAVORS}")
    if flavor == "datomic":
        return empty_datomic_db(schema)
    norm = normalize_schema(schema)
    validate_datascript_schema(norm)
    return make_db(norm, "datascript")


def init_db(
    datoms_: Iterable[Any],
    schema: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    flavor: str = "datascript",
) -> DB:
    """A database holding exactly ``datoms_`` (``Datom`` or ``(e, a, v[, tx])`` tuples), built in bulk."""
    ds = []
    for d in datoms_:
        if not isinstance(d, tuple | list) or not 3 <= len(d) <= 5:
            raise TypeError(f"init_db expects datoms or (e, a, v[, tx]) tuples, got {d!r}")
        ds.append(d if len(d) >= 4 else (d[0], d[1], d[2], TX0))
    if flavor == "datomic":
        return init_datomic_db(ds, schema)
    norm = normalize_schema(schema)
    validate_datascript_schema(norm)
    return make_db(norm, "datascript", ds)


def transact(db: DB, tx_data: Any, tx_meta: Any = None, *, instant: datetime | None = None,
             new_eid: Callable[[Any], int] | None = None) -> TxReport:
    """Apply ``tx_data`` to ``db`` and report what happened; raise ``TxError`` and change nothing
    if it fails. ``instant`` is the Datomic flavor's transaction time (the core reads no clock).
    ``new_eid(tempid)`` (DataScript flavor only) picks the ids of new entities."""
    if db.is_view:
        raise TxError("transaction/filtered", "Filtered DB cannot be modified (a filter or time view)", {})
    if db.flavor == "datomic":
        if new_eid is not None:
            raise ValueError("new_eid is for the DataScript flavor only")
        return transact_datomic(db, tx_data, tx_meta, instant=instant)
    return transact_datascript(db, tx_data, tx_meta, new_eid=new_eid)


def db_with(db: DB, tx_data: Any, tx_meta: Any = None, *, instant: datetime | None = None) -> DB:
    """The database after ``tx_data``: ``transact(...).db_after``."""
    return transact(db, tx_data, tx_meta, instant=instant).db_after


__all__ = ["db_with", "empty_db", "init_db", "transact"]
