"""datsync.core: pure functions over immutable database values (no I/O, no clock, no randomness)."""

from .db import (
    DB,
    TX0,
    datoms,
    empty_db,
    entid,
    filter_db,
    index_range,
    init_db,
    is_filtered,
    rseek_datoms,
    seek_datoms,
    unfiltered,
)
from .errors import DatsyncError, QueryError, ResolveError, SchemaError, TxError
from .transact import TxReport, db_with, transact
from .values import Datom, Keyword, Symbol, compare_values, kw, sym

__all__ = [
    "DB", "TX0", "Datom", "DatsyncError", "Keyword", "QueryError", "ResolveError", "SchemaError",
    "Symbol", "TxError", "TxReport", "compare_values", "datoms", "db_with", "empty_db", "entid",
    "filter_db", "index_range", "init_db", "is_filtered", "kw", "rseek_datoms", "seek_datoms", "sym",
    "transact", "unfiltered",
]
