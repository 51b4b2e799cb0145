"""datsync.core.sync: replicas of a Datomic-flavored server database, kept in sync, as pure functions.

The pieces, one concern per module:

* ``schema``: the replica schema derived from the server's schema entities; schema changes as data.
* ``eids``: ``EidMap``, the persistent server <-> replica id translation (identity, or capped).
* ``delta``: ``Delta`` (one server transaction, minimal) from a ``TxReport``; ``Outcome``.
* ``replica``: the ``Replica`` value and ``apply_delta`` (idempotent, gaps detected, never skipped).
* ``snapshot``: bootstrap snapshots streamed in chunks, replicas built from them in bulk.
* ``writes``: replica tx data for the server, the server's wire-tx validation, tempid answers.
* ``messages``/``codec``: the protocol's messages and their versioned, strictly validated encoding.
* ``events``/``heartbeat``/``server``/``client``: the sans-I/O protocol state machines.
* ``strategies``: hypothesis strategies for schedules and streams (``datsync[testing]``).

See docs/sync.md (concepts and use from Python) and docs/protocol.md (the wire protocol).
"""

from .client import ClientConfig, ClientSession, client_step, new_client_session
from .codec import DEFAULT_MAX_SIZE, decode, decode_value, encode, encode_snapshot, encode_value, receive
from .delta import (
    ALREADY_APPLIED,
    APPLIED,
    GAP,
    Delta,
    Outcome,
    delta_from_report,
    history_events,
    server_db_with,
)
from .eids import EidMap, datoms_to_local, datoms_to_remote, tx_to_local, tx_to_remote
from .errors import ProtocolError, SyncError
from .events import (
    AuthDecision,
    Authorize,
    Close,
    Closed,
    LogRead,
    Malformed,
    Notify,
    Opened,
    Received,
    RequestLogRead,
    RequestSnapshot,
    RequestTransact,
    Send,
    SendStream,
    SetTimer,
    SnapshotReady,
    SubmitTx,
    Timer,
    TxAccepted,
    TxCommitted,
    TxFailed,
)
from .heartbeat import Heartbeat
from .messages import (
    MESSAGE_TYPES,
    PROTOCOL_VERSION,
    Ack,
    Error,
    Hello,
    Ping,
    Pong,
    Resync,
    Submit,
    Sync,
    TxOk,
    TxRejected,
    Welcome,
)
from .replica import Replica, apply_delta, server_datoms
from .schema import (
    RefInfo,
    SchemaDelta,
    apply_schema_delta,
    ref_info,
    replica_schema,
    schema_delta,
    server_schema_from_datoms,
)
from .server import ServerConfig, ServerSession, new_server_session, server_step
from .snapshot import (
    SnapshotBegin,
    SnapshotBuilder,
    SnapshotChunk,
    SnapshotEnd,
    add_chunk,
    begin_snapshot,
    build_replica,
    replica_of,
    snapshot,
    snapshot_datoms,
)
from .writes import WIRE_OPS, answer_tempids, local_tempids, tx_for_server, validate_wire_tx

__all__ = [
    "ALREADY_APPLIED",
    "APPLIED",
    "DEFAULT_MAX_SIZE",
    "GAP",
    "MESSAGE_TYPES",
    "PROTOCOL_VERSION",
    "WIRE_OPS",
    "Ack",
    "AuthDecision",
    "Authorize",
    "ClientConfig",
    "ClientSession",
    "Close",
    "Closed",
    "Delta",
    "EidMap",
    "Error",
    "Heartbeat",
    "Hello",
    "LogRead",
    "Malformed",
    "Notify",
    "Opened",
    "Outcome",
    "Ping",
    "Pong",
    "ProtocolError",
    "Received",
    "RefInfo",
    "Replica",
    "RequestLogRead",
    "RequestSnapshot",
    "RequestTransact",
    "Resync",
    "SchemaDelta",
    "Send",
    "SendStream",
    "ServerConfig",
    "ServerSession",
    "SetTimer",
    "SnapshotBegin",
    "SnapshotBuilder",
    "SnapshotChunk",
    "SnapshotEnd",
    "SnapshotReady",
    "Submit",
    "SubmitTx",
    "Sync",
    "SyncError",
    "Timer",
    "TxAccepted",
    "TxCommitted",
    "TxFailed",
    "TxOk",
    "TxRejected",
    "Welcome",
    "add_chunk",
    "answer_tempids",
    "apply_delta",
    "apply_schema_delta",
    "begin_snapshot",
    "build_replica",
    "client_step",
    "datoms_to_local",
    "datoms_to_remote",
    "decode",
    "decode_value",
    "delta_from_report",
    "encode",
    "encode_snapshot",
    "encode_value",
    "history_events",
    "local_tempids",
    "new_client_session",
    "new_server_session",
    "receive",
    "ref_info",
    "replica_of",
    "replica_schema",
    "schema_delta",
    "server_db_with",
    "server_datoms",
    "server_schema_from_datoms",
    "server_step",
    "snapshot",
    "snapshot_datoms",
    "tx_for_server",
    "tx_to_local",
    "tx_to_remote",
    "validate_wire_tx",
]
