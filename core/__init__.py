"""datsync.core: pure functions over immutable database values (no I/O, no clock, no randomness)."""

from .datomic import from_history, ident
from .db import (
    DB,
    TX0,
    datoms,
    entid,
    filter_db,
    index_range,
    is_filtered,
    rseek_datoms,
    seek_datoms,
    unfiltered,
)
from .entity import Entity, entity, entity_db, touch
from .errors import DatsyncError, QueryError, ResolveError, SchemaError, TxError
from .flavor import db_with, empty_db, init_db, transact
from .history import TimeView, as_of, as_of_t, basis_t, history, is_history, since, since_t
from .policy import (
    Policy,
    PolicyError,
    change_scopes,
    check_write,
    explain,
    filter_for,
    open_view,
    parse_policy,
    parse_tokens,
    route,
    transact_as,
    visible_datoms,
)
from .pull import parse_pull_pattern, pull, pull_many
from .query import clear_query_cache, parse_query, parse_rules, q
from .sync import (
    ClientConfig,
    ClientSession,
    Delta,
    EidMap,
    Outcome,
    ProtocolError,
    Replica,
    ServerConfig,
    ServerSession,
    SyncError,
    answer_tempids,
    apply_delta,
    build_replica,
    client_step,
    delta_from_report,
    history_events,
    new_client_session,
    new_server_session,
    replica_of,
    server_step,
    snapshot,
    tx_for_server,
    validate_wire_tx,
)
from .transact import TxReport
from .values import Datom, Keyword, Symbol, compare_values, kw, sym

__all__ = [
    "ClientConfig", "ClientSession", "DB", "Datom", "DatsyncError", "Delta", "EidMap", "Entity", "Keyword",
    "Outcome", "Policy", "PolicyError", "ProtocolError", "QueryError", "Replica", "ResolveError",
    "SchemaError", "ServerConfig", "ServerSession", "Symbol", "SyncError", "TX0", "TimeView", "TxError",
    "TxReport", "answer_tempids", "apply_delta", "as_of", "as_of_t", "basis_t", "build_replica",
    "change_scopes", "check_write", "clear_query_cache", "client_step", "compare_values", "datoms", "db_with",
    "delta_from_report", "empty_db", "entid", "entity", "entity_db", "explain", "filter_db", "filter_for",
    "from_history", "history", "history_events", "ident", "index_range", "init_db", "is_filtered",
    "is_history", "kw", "new_client_session", "new_server_session", "open_view", "parse_policy",
    "parse_pull_pattern", "parse_query", "parse_rules", "parse_tokens", "pull", "pull_many", "q", "replica_of",
    "route", "rseek_datoms", "seek_datoms", "server_step", "since", "since_t", "snapshot", "sym", "touch",
    "transact", "transact_as", "tx_for_server", "unfiltered", "validate_wire_tx", "visible_datoms",
]
