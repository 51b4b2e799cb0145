"""datsync.core: pure functions over immutable database values (no I/O, no clock, no randomness)."""

from .datomic import from_history, ident
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
from .entity import Entity, entity, entity_db, touch
from .errors import DatsyncError, QueryError, ResolveError, SchemaError, TxError
from .history import TimeView, as_of, as_of_t, basis_t, history, is_history, since, since_t
from .pull import parse_pull_pattern, pull, pull_many
from .query import clear_query_cache, parse_query, parse_rules, q
from .transact import TxReport, db_with, transact
from .values import Datom, Keyword, Symbol, compare_values, kw, sym

__all__ = [
    "DB", "Datom", "DatsyncError", "Entity", "Keyword", "QueryError", "ResolveError", "SchemaError", "Symbol",
    "TX0", "TimeView", "TxError", "TxReport", "as_of", "as_of_t", "basis_t", "clear_query_cache",
    "compare_values", "datoms", "db_with", "empty_db", "entid", "entity", "entity_db", "filter_db",
    "from_history", "history", "ident", "index_range", "init_db", "is_filtered", "is_history", "kw",
    "parse_pull_pattern", "parse_query", "parse_rules", "pull", "pull_many", "q", "rseek_datoms",
    "seek_datoms", "since", "since_t", "sym", "touch", "transact", "unfiltered",
]
