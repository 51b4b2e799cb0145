"""Properties of the transaction engine (DESIGN.md invariants 1 and 2).

- ``transact`` is deterministic;
- the four indexes always hold the same datoms (AVET: the indexed attributes', VAET: the refs');
- DataScript flavor: the same results as DataScript 1.8.1 (needs Node; skipped without it).
"""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings

from datsync.core import TxError, empty_db, transact
from datsync.core.db import key_to_datom
from datsync.core.strategies import schema_and_streams
from tests.oracle.bridge import node_available, shared_oracle, transact_request, transact_response


def run(schema: dict, txs: list) -> tuple[list, list]:
    """Results (report pieces or error codes) and every intermediate database."""
    db = empty_db(schema)
    results, dbs = [], [db]
    for tx in txs:
        try:
            r = transact(db, tx)
        except TxError as e:
            results.append(("error", e.code))
            continue
        db = r.db_after
        results.append((list(r.tx_data), dict(r.tempids)))
        dbs.append(db)
    return results, dbs


def index_datoms(db, index: str) -> set:
    return {tuple(key_to_datom(index, k))[:4] for k in getattr(db, index)}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schema_and_streams())
def test_transact_is_deterministic(case):
    schema, txs = case
    assert run(schema, txs)[0] == run(schema, txs)[0]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schema_and_streams())
def test_four_indexes_hold_the_same_datoms(case):
    schema, txs = case
    for db in run(schema, txs)[1]:
        eavt = index_datoms(db, "eavt")
        assert index_datoms(db, "aevt") == eavt
        assert index_datoms(db, "avet") == {d for d in eavt if d[1] in db.props.indexed}
        assert index_datoms(db, "vaet") == {d for d in eavt if d[1] in db.props.ref}
        assert len(db.eavt) == len(eavt)


def _norm(v: object) -> object:
    """Comparable form of a value: tuples for arrays, and booleans kept apart from 0 and 1."""
    if isinstance(v, bool):
        return ("#bool", v)
    return tuple(_norm(x) for x in v) if isinstance(v, list | tuple) else v


@pytest.mark.differential
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schema_and_streams())
def test_datascript_parity(case):
    if not node_available():
        pytest.skip("Node.js/npm or tests/oracle/node_modules missing: run (cd tests/oracle && npm ci)")
    schema, txs = case
    theirs, their_datoms = transact_response(shared_oracle().run(transact_request(schema, txs)))
    ours, dbs = run(schema, txs)
    for o, t in zip(ours, theirs, strict=True):
        assert (o[0] == "error") == ("error" in t), (o, t)
        if o[0] == "error":
            if t["code"] is not None:
                assert o[1] == t["code"]
            continue
        tx_data, tempids = o
        assert tempids == t["tempids"]
        assert Counter((d.e, d.a, _norm(d.v), d.tx, d.added) for d in tx_data) == Counter(
            (e, a, _norm(v), tx, added) for e, a, v, tx, added in t["tx_data"]
        )
    assert index_datoms(dbs[-1], "eavt") == {(e, a, _norm(v), tx) for e, a, v, tx in their_datoms}
