"""Replica writes: translation for the server, wire-tx validation, tempid answers in client terms."""

from __future__ import annotations

import datetime as dt
import decimal
import uuid

import pytest

from datsync.core import TX0, TxError, datoms, empty_db, kw, sym, transact
from datsync.core.sync import (
    WIRE_OPS,
    EidMap,
    answer_tempids,
    apply_delta,
    delta_from_report,
    local_tempids,
    replica_of,
    tx_for_server,
    validate_wire_tx,
)

ONE = kw("db.cardinality/one")
SCHEMA = {
    "p/name": {"db/valueType": kw("db.type/string"), "db/cardinality": ONE, "db/unique": kw("db.unique/identity")},
    "p/friend": {"db/valueType": kw("db.type/ref"), "db/cardinality": ONE},
    "p/age": {"db/valueType": kw("db.type/long"), "db/cardinality": ONE},
}
T = dt.datetime(2021, 5, 1, tzinfo=dt.UTC)


def test_data_forms_and_builtin_ops_are_accepted():
    tx = [
        ["db/add", 1, "p/age", 1],
        [kw("db/add"), "tmp", kw("p/age"), 2],
        [":db/retract", 1, "p/age"],
        ["db/retract", 1, "p/age", 1],
        ["db/retractEntity", ("p/name", "x")],
        ["db.fn/retractEntity", 1],
        ["db/cas", 1, "p/age", None, 3],
        ["db.fn/cas", 1, "p/age", 3, 4],
        ["db.fn/retractAttribute", 1, "p/age"],
        {"db/id": "tmp", "p/name": "x", "p/friend": {"p/name": "nested"}, "p/_friend": [1, ("p/name", "y")]},
        {kw("p/name"): "z", "p/age": decimal.Decimal(1), "x/when": T, "x/u": uuid.UUID(int=1), "x/s": sym("s"),
         "x/b": b"\x00", "x/t": (1, None), "x/set": frozenset({1})},
    ]
    assert validate_wire_tx(tx) == tx
    assert validate_wire_tx(tuple(tx)) == tx
    assert "db.fn/call" not in WIRE_OPS


@pytest.mark.parametrize(
    "tx",
    [
        [["db.fn/call", lambda db: [], 1]],
        [["db.fn/call", "my.ns/fn"]],
        [["my/installed-fn", 1, 2]],
        [[kw("my/installed-fn"), 1]],
        [[42, 1]],
        [["db/unknown", 1]],
    ],
)
def test_code_from_the_wire_is_forbidden(tx):
    with pytest.raises(TxError) as e:
        validate_wire_tx(tx)
    assert e.value.code == "sync/forbidden-op"


@pytest.mark.parametrize(
    "tx",
    [
        {"db/add": 1},
        "db/add",
        None,
        [["db/add", 1, "p/age"]],
        [["db/retractEntity"]],
        [["db/cas", 1, "p/age", 1]],
        [[]],
        [42],
        [["db/add", 1, "p/age", lambda: 1]],
        [["db/add", 1, "p/age", object()]],
        [{"p/age": print}],
        [{1: "not an attribute name"}],
        [{"p/friend": {"p/friend": [{"p/age": object()}]}}],
    ],
)
def test_malformed_wire_tx_is_invalid(tx):
    with pytest.raises(TxError) as e:
        validate_wire_tx(tx)
    assert e.value.code == "sync/invalid-tx"


def test_deeply_nested_values_are_invalid():
    v: list = []
    for _ in range(100):
        v = [v]
    with pytest.raises(TxError):
        validate_wire_tx([["db/add", 1, "p/age", v]])


def test_round_trip_with_tempids_answered_in_client_terms():
    server = transact(empty_db(SCHEMA, flavor="datomic"), [{"p/name": "ann"}], instant=T).db_after
    for eids in (EidMap.identity(), EidMap.capped(TX0, low=101, start=50_000)):
        rep = replica_of(server, eids)
        ann = datoms(rep.db, "avet", "p/name", "ann")[0].e
        local_tx = [{"db/id": "new", "p/name": "bob", "p/friend": ann}, ["db/add", "other", "p/friend", "new"]]
        remote_tx = validate_wire_tx(tx_for_server(rep, local_tx))
        report = transact(server, remote_tx, instant=T)
        answer = answer_tempids(report)
        assert set(answer) == {"new", "other", "db/current-tx"} and answer["db/current-tx"] == report.db_after.max_tx
        rep, out = apply_delta(rep, delta_from_report(report))
        assert out.applied
        rep, tempids = local_tempids(rep, answer)
        bob = tempids["new"]
        assert datoms(rep.db, "eavt", bob, "p/name")[0].v == "bob"
        assert datoms(rep.db, "eavt", bob, "p/friend")[0].v == ann
        assert datoms(rep.db, "eavt", tempids["other"], "p/friend")[0].v == bob
        if not eids.is_identity:
            assert bob >= 50_000 and rep.eids.to_remote(bob) == answer["new"]
