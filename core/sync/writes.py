"""Replica writes: tx data from a replica, made fit for the server, checked there, answered.

1. The client translates its tx data to server ids (``tx_for_server``): local entity ids become
   the server's; tempids, lookup refs and idents are kept (tempids are the client's own names).
2. The server accepts only data (``validate_wire_tx``): map forms and the built-in operations
   ``db/add``, ``db/retract``, ``db/retractEntity``, ``db/cas``, ``db.fn/retractAttribute`` over
   wire-representable values. Never code: no callables, no ``db.fn/call``, no installed functions
   (an unknown operation could name one). The shell then transacts, passing the instant in.
3. The answer (``TxOk``) maps each of the client's tempids to a server id (``answer_tempids``); the
   client session turns those into local ids (``local_tempids``): tempid resolution in the client's
   terms. A rejection carries the ``TxError``'s code and message.
"""

from __future__ import annotations

import datetime as _dt
import decimal as _decimal
import uuid as _uuid
from collections.abc import Mapping
from typing import Any

from ..errors import TxError
from ..transact import CURRENT_TX_KEY, TxReport, op_name
from ..values import Keyword, Symbol
from .eids import is_provisional, tx_to_remote
from .errors import SyncError
from .pending import PendingTx, ids_in_tx
from .replica import Replica

WIRE_OPS = frozenset({
    "db/add", "db/retract", "db/retractEntity", "db.fn/retractEntity", "db/cas", "db.fn/cas",
    "db.fn/retractAttribute",
})
"""The operations a transaction from the wire may use (besides map forms)."""

_ARITY = {
    "db/add": (4,), "db/retract": (3, 4), "db/retractEntity": (2,), "db.fn/retractEntity": (2,),
    "db/cas": (5,), "db.fn/cas": (5,), "db.fn/retractAttribute": (3,),
}
_ATOMS = (type(None), bool, int, float, str, Keyword, Symbol, _uuid.UUID, _dt.datetime, _decimal.Decimal, bytes)
MAX_FORMS = 100_000
MAX_DEPTH = 32


def _invalid(message: str, form: Any = None) -> TxError:
    return TxError("sync/invalid-tx", message, {"form": form})


def _check_value(v: Any, form: Any, depth: int = 0) -> None:
    if type(v) in _ATOMS:
        return
    if depth > MAX_DEPTH:
        raise _invalid("Value nested too deeply", form)
    if isinstance(v, list | tuple | set | frozenset):
        for x in v:
            _check_value(x, form, depth + 1)
        return
    if isinstance(v, Mapping):
        for k, x in v.items():
            _check_value(k, form, depth + 1)
            _check_value(x, form, depth + 1)
        return
    raise _invalid(f"Value of type {type(v).__name__} cannot come from the wire: {v!r:.80}", form)


def _check_map(m: Mapping, depth: int = 0) -> None:
    for k, v in m.items():
        if type(k) is not str and type(k) is not Keyword:
            raise _invalid(f"Map form keys are attribute names, got {k!r:.80}", m)
        if isinstance(v, Mapping):
            _check_map(v, depth + 1)
        elif isinstance(v, list | tuple | set | frozenset) and any(isinstance(x, Mapping) for x in v):
            for x in v:
                if isinstance(x, Mapping):
                    _check_map(x, depth + 1)
                else:
                    _check_value(x, m, depth + 1)
        else:
            _check_value(v, m, depth + 1)


def validate_wire_tx(tx_data: Any) -> list:
    """``tx_data`` as a list if it holds only data forms and built-in operations over
    wire-representable values; otherwise ``TxError`` with code ``sync/forbidden-op`` (a function
    call, an installed function, any unknown operation) or ``sync/invalid-tx`` (anything else)."""
    if not isinstance(tx_data, list | tuple):
        raise _invalid(f"Transaction data is a list of forms, got {type(tx_data).__name__}")
    if len(tx_data) > MAX_FORMS:
        raise _invalid(f"Too many forms ({len(tx_data)} > {MAX_FORMS})")
    for form in tx_data:
        if isinstance(form, Mapping):
            _check_map(form)
            continue
        if not isinstance(form, list | tuple) or not form:
            raise _invalid(f"A form is a map or a non-empty list, got {form!r:.80}", form)
        op = form[0]
        name = op_name(op) if type(op) in (str, Keyword) else None
        if name not in WIRE_OPS:
            raise TxError(
                "sync/forbidden-op",
                f"Operation {op!r:.60} is not allowed from a replica: only {', '.join(sorted(WIRE_OPS))} "
                "and map forms",
                {"form": form},
            )
        if len(form) not in _ARITY[name]:
            raise _invalid(f"Bad arity for {name}: {form!r:.80}", form)
        for x in form[1:]:
            _check_value(x, form)
    return list(tx_data)


def tx_for_server(replica: Replica, tx_data: Any) -> Any:
    """A replica's tx data (local ids) in server ids, attribute names resolved as the server resolves
    them; ``SyncError`` for a local id with no server id."""
    if replica.eids.is_identity:
        return tx_data
    eavt = replica.db.eavt

    def ident_of(e: int) -> Any:
        for k in eavt.prefix((e, "db/ident")):
            return k[3]
        return None

    return tx_to_remote(replica.eids, replica.refs, replica.server_schema, tx_data, replica.aliases, ident_of)


def pending_tx_for_server(replica: Replica, pending: PendingTx) -> Any:
    """The tx data to submit for the pending transaction ``pending``, in server ids;
    ``SyncError("sync/provisional-id")`` while it refers to a provisional id of an earlier pending
    transaction the server has not confirmed yet (submit that one first)."""
    waiting = [x for x in ids_in_tx(replica, pending.tx_data) if is_provisional(x)]
    if waiting:
        raise SyncError("sync/provisional-id",
                        f"Transaction {pending.client}/{pending.seq} refers to unconfirmed provisional id {waiting[0]}",
                        {"client": pending.client, "seq": pending.seq, "id": waiting[0]})
    return tx_for_server(replica, list(pending.tx_data))


def answer_tempids(report: TxReport) -> dict:
    """The tempid resolution to answer a submit with: the client's tempids -> server entity ids, and
    ``"db/current-tx"`` -> the transaction id."""
    return {k: v for k, v in report.tempids.items() if type(k) in (int, str) or k == CURRENT_TX_KEY}


def local_tempids(replica: Replica, tempids: Mapping[Any, int]) -> tuple[Replica, dict]:
    """A ``TxOk``'s tempids (server ids) in the replica's ids; the replica may grow its id map."""
    eids = replica.eids
    if eids.is_identity:
        return replica, dict(tempids)
    eids = eids.assign(tempids.values())
    out = {k: eids.to_local(v) for k, v in tempids.items()}
    return (replica if eids is replica.eids else replica.replace(eids=eids)), out


__all__ = [
    "WIRE_OPS", "answer_tempids", "local_tempids", "pending_tx_for_server", "tx_for_server", "validate_wire_tx",
]
