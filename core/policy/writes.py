"""Write rules: a replica's transaction commits only if the policy allows every datom it asserts or
retracts.

The write rule is called as ``(rule ?p.. ?e ?a ?v ?added)`` for every datom of the candidate
transaction (``?a`` a keyword, ``?added`` true for an assertion), with ``$`` the database after the
transaction and ``$before`` the database before it (InstantDB's ``newData`` and ``data``). The first
datom it does not derive makes the whole transaction fail with ``sync.error/forbidden``. A policy
without a write rule allows no writes; with no policy at all, nothing is checked.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..db import DB
from ..edn import write_edn
from ..errors import TxError
from ..flavor import transact
from ..query import q
from ..transact import TxReport
from ..values import Symbol, kw
from .spec import Policy, arg_vars, parse_policy, principal_args
from .visibility import _query

FORBIDDEN = "sync.error/forbidden"


def _write_query(policy: Policy) -> Any:
    ps = arg_vars(len(policy.principal))
    e, a, v, added = (Symbol(n) for n in ("?__e", "?__a", "?__v", "?__added"))
    form = {"find": [e, a, v, added], "in": [Symbol("$"), Symbol("$before"), Symbol("%"), *ps, [[e, a, v, added]]],
            "where": [(Symbol(policy.write), *ps, e, a, v, added)]}
    return _query(policy, ("write",), form)


def tx_datoms(report: TxReport) -> list[tuple]:
    """The datoms a transaction asserts or retracts, as ``(e, a, v, added)``, without the
    transaction's own ``db/txInstant`` (the server writes that one)."""
    tx = report.db_after.max_tx
    return [(d.e, d.a, d.v, d.added) for d in report.tx_data if not (d.e == tx and d.a == "db/txInstant")]


def refused(policy: Any, principal: Mapping[str, Any], db_before: DB, db_after: DB, datoms: list[tuple]) -> list[tuple]:
    """The datoms ``(e, a, v, added)`` among ``datoms`` the write rule does not allow, in order."""
    policy = parse_policy(policy)
    if not datoms:
        return []
    if policy.write is None:
        return list(datoms)
    rows = [(e, kw(a), v, added) for e, a, v, added in datoms]
    ok = q(_write_query(policy), db_after, db_before, policy.rules, *principal_args(policy, principal), rows)
    return [d for d, r in zip(datoms, rows) if r not in ok]


def check_write(policy: Any, principal: Mapping[str, Any], report: TxReport) -> TxError | None:
    """None when the policy lets ``principal`` commit ``report``'s transaction; otherwise the
    ``TxError`` ``sync.error/forbidden`` naming the first refused datom (raise it, write nothing)."""
    bad = refused(policy, principal, report.db_before, report.db_after, tx_datoms(report))
    if not bad:
        return None
    e, a, v, added = bad[0]
    shown = write_edn([e, kw(a), v])
    return TxError(FORBIDDEN, f"Not allowed to {'assert' if added else 'retract'} {shown}",
                   {"datom": (e, a, v, added)})


def transact_as(policy: Any, principal: Mapping[str, Any], db: DB, tx_data: Any, **kwargs: Any) -> TxReport:
    """``transact(db, tx_data, **kwargs)`` on behalf of ``principal``: the report if the policy
    allows every datom, else raises the ``sync.error/forbidden`` ``TxError`` (``db`` is unchanged:
    values are immutable, and the caller keeps it)."""
    report = transact(db, tx_data, **kwargs)
    err = check_write(policy, principal, report)
    if err is not None:
        raise err
    return report


__all__ = ["FORBIDDEN", "check_write", "refused", "transact_as", "tx_datoms"]
