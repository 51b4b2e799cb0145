"""Self-tests of the differential-testing harness against the real DataScript 1.8.1 (no engine involved).

The expected values below were checked by hand against DataScript's documented behaviour.
"""

from __future__ import annotations

import pytest

from tests.oracle.bridge import (
    DATASCRIPT_VERSION,
    TX0,
    DataScriptOracle,
    OracleError,
    UnsupportedValue,
    ds_transact_stream,
    pull_from_js,
    require_oracle,
    shared_oracle,
    tempids_from_js,
    to_js_eid,
    to_js_schema,
    to_js_tx,
    transact_request,
)

try:
    from datsync.core.values import kw
except ImportError:  # not installed: the repo root is on sys.path (pytest's pythonpath)
    from core.values import kw

pytestmark = pytest.mark.differential

TX1 = TX0 + 1  # 536870913, the first transaction's id

SCHEMA = {
    "name": {"db/unique": kw("db.unique/identity")},
    "friends": {"db/valueType": kw("db.type/ref"), "db/cardinality": kw("db.cardinality/many")},
    "child": {"db/valueType": "db.type/ref", "db/isComponent": True, "db/cardinality": "db.cardinality/many"},
    "tags": {"db/cardinality": "db.cardinality/many"},
    "pt": {"db/tupleTypes": [kw("db.type/long"), "db.type/string"]},
}


@pytest.fixture
def oracle() -> DataScriptOracle:
    require_oracle()
    return shared_oracle()


# ---------------------------------------------------------------------------------------------
# translation only (no node needed)


def test_schema_translation() -> None:
    assert to_js_schema(
        {
            "friends": {
                "db/valueType": kw("db.type/ref"),
                "db/cardinality": "db.cardinality/many",
                "db/isComponent": True,
            },
            "a+b": {"db/tupleAttrs": ["a", "b"], "db/unique": kw("db.unique/identity"), "db/index": True},
            "pt": {"db/tupleTypes": ["db.type/long", kw("db.type/string")]},
        }
    ) == {
        "friends": {
            ":db/valueType": ":db.type/ref",
            ":db/cardinality": ":db.cardinality/many",
            ":db/isComponent": True,
        },
        "a+b": {":db/tupleAttrs": ["a", "b"], ":db/unique": ":db.unique/identity", ":db/index": True},
        "pt": {":db/tupleTypes": [":db.type/long", ":db.type/string"]},
    }


def test_tx_translation() -> None:
    forms = [
        {"db/id": -1, "name": "Ivan", "friends": [-2, ("name", "Oleg")], "child": {"name": "Kid"}},
        {"db/id": ("name", "Petr"), "tags": ("a", "b")},  # a tuple in a card-many map slot is ONE value
        ["db/add", "foo", "pt", (1, "x")],
        ["db/retractEntity", ("name", "Ivan")],
        ["db.fn/cas", "db/current-tx", "name", None, "tx"],
        [kw("db/retract"), 1, "tags"],
    ]
    assert to_js_tx(forms, SCHEMA) == [
        {":db/id": -1, "name": "Ivan", "friends": [-2, ["name", "Oleg"]], "child": {"name": "Kid"}},
        {":db/id": ["name", "Petr"], "tags": [["a", "b"]]},
        [":db/add", "foo", "pt", [1, "x"]],
        [":db/retractEntity", ["name", "Ivan"]],
        [":db.fn/cas", ":db/current-tx", "name", None, "tx"],
        [":db/retract", 1, "tags"],
    ]


def test_unsupported_values_raise() -> None:
    with pytest.raises(UnsupportedValue):
        to_js_tx([["db/add", -1, "k", kw("some/keyword")]])
    with pytest.raises(UnsupportedValue):
        to_js_tx([["db/add", -1, "n", 2**60]])
    with pytest.raises(UnsupportedValue):
        to_js_eid(True)
    assert to_js_tx([["db/add", -1, "r", kw("db/current-tx")]]) == [[":db/add", -1, "r", ":db/current-tx"]]


def test_tempids_translation() -> None:
    assert tempids_from_js({"-1": 1, "foo": 2, "5": 3, ":db/current-tx": TX1}) == {
        -1: 1,
        "foo": 2,
        "5": 3,
        "db/current-tx": TX1,
    }


# ---------------------------------------------------------------------------------------------
# against DataScript


def test_version_and_raw_request(oracle: DataScriptOracle) -> None:
    resp = oracle.run({"id": "x", "txs": [[[":db/add", -1, "a", 1]]]})
    assert resp["version"] == DATASCRIPT_VERSION
    assert resp["id"] == "x"
    assert resp["txs"] == [{"tempids": {"-1": 1, ":db/current-tx": TX1}, "tx_data": [[1, "a", 1, TX1, True]]}]
    assert resp["datoms"] == [[1, "a", 1, TX1]]


def test_simple_transact(oracle: DataScriptOracle) -> None:
    tx = [
        {"db/id": -1, "name": "Ivan", "friends": [-2], "child": [{"name": "Kid"}]},
        {"db/id": -2, "name": "Petr"},
        ["db/add", "foo", "name", "Oleg"],
    ]
    results, datoms = ds_transact_stream(SCHEMA, [tx], oracle=oracle)
    # DataScript allocates ids in processing order: -1, then -2 (met as a ref value), the nested map, "foo"
    assert results == [
        {
            "tempids": {-1: 1, -2: 2, "foo": 4, "db/current-tx": 536870913},
            "tx_data": [
                (1, "name", "Ivan", 536870913, True),
                (1, "friends", 2, 536870913, True),
                (3, "name", "Kid", 536870913, True),
                (1, "child", 3, 536870913, True),
                (2, "name", "Petr", 536870913, True),
                (4, "name", "Oleg", 536870913, True),
            ],
        }
    ]
    assert datoms == [
        (1, "child", 3, TX1),
        (1, "friends", 2, TX1),
        (1, "name", "Ivan", TX1),
        (2, "name", "Petr", TX1),
        (3, "name", "Kid", TX1),
        (4, "name", "Oleg", TX1),
    ]


def test_upsert_conflict_has_code_and_changes_nothing(oracle: DataScriptOracle) -> None:
    txs = [
        [{"db/id": -1, "name": "Ivan"}, {"db/id": -2, "name": "Petr"}],
        [{"db/id": 1, "name": "Petr"}],  # "Petr" is entity 2: conflicting upsert
        [{"db/id": -1, "name": "Petr", "tags": "x"}],  # upserts -1 to 2
    ]
    results, datoms = ds_transact_stream(SCHEMA, txs, oracle=oracle)
    assert results[1] == {
        "error": 'Conflicting upsert: ["name" "Petr"] resolves to 2, but entity already has :db/id 1',
        "code": "transact/upsert",
    }
    # a failed tx does not use up a tx id
    assert results[2] == {
        "tempids": {-1: 2, "db/current-tx": TX1 + 1},
        "tx_data": [(2, "tags", "x", TX1 + 1, True)],
    }
    assert datoms == [(1, "name", "Ivan", TX1), (2, "name", "Petr", TX1), (2, "tags", "x", TX1 + 1)]
    raw = oracle.run(transact_request(SCHEMA, txs))["txs"][1]
    assert raw["ex_data"] == {
        ":error": ":transact/upsert",
        ":assertion": [2, "name", "Petr"],
        ":conflict": {":db/id": 1},
    }
    assert raw["data"] == '{:error :transact/upsert, :assertion [2 "name" "Petr"], :conflict {:db/id 1}}'


def test_cas_failure_code(oracle: DataScriptOracle) -> None:
    results, _ = ds_transact_stream(
        SCHEMA, [[["db/add", -1, "name", "Ivan"]], [["db/cas", 1, "name", "X", "Y"]]], oracle=oracle
    )
    assert results[1] == {
        "error": ':db.fn/cas failed on datom [1 "name" "Ivan"], expected "X"',
        "code": "transact/cas",
    }


def test_lookup_refs(oracle: DataScriptOracle) -> None:
    txs = [
        [{"db/id": -1, "name": "Ivan"}, {"db/id": -2, "name": "Petr"}],
        [["db/add", ("name", "Petr"), "friends", ("name", "Ivan")], {"db/id": ("name", "Ivan"), "tags": "t"}],
        [["db/add", ("name", "Nobody"), "tags", "t"]],
    ]
    results, _ = ds_transact_stream(SCHEMA, txs, oracle=oracle)
    assert results[1] == {
        "tempids": {"db/current-tx": TX1 + 1},
        "tx_data": [(2, "friends", 1, TX1 + 1, True), (1, "tags", "t", TX1 + 1, True)],
    }
    assert results[2] == {
        "error": 'Nothing found for entity id ["name" "Nobody"]',
        "code": "entity-id/missing",
    }


def test_multival_map_form_and_tuple_values(oracle: DataScriptOracle) -> None:
    tx = [
        {"db/id": -1, "tags": ["a", "b"]},  # a list in map form: two values
        {"db/id": -2, "tags": ("a", "b")},  # a tuple: one (vector) value
        ["db/add", -3, "pt", (1, "x")],
    ]
    results, datoms = ds_transact_stream(SCHEMA, [tx], oracle=oracle)
    assert results[0]["tx_data"] == [
        (1, "tags", "a", TX1, True),
        (1, "tags", "b", TX1, True),
        (2, "tags", ("a", "b"), TX1, True),
        (3, "pt", (1, "x"), TX1, True),
    ]
    assert (3, "pt", (1, "x"), TX1) in datoms


def test_retract_entity_order(oracle: DataScriptOracle) -> None:
    txs = [
        [
            {"db/id": -1, "name": "Ivan", "friends": [-2], "child": [{"name": "Kid", "tags": "k"}]},
            {"db/id": -2, "name": "Petr"},
            {"db/id": -3, "name": "Oleg", "friends": [-1]},
        ],
        [["db/retractEntity", ("name", "Ivan")]],
    ]
    results, datoms = ds_transact_stream(SCHEMA, txs, oracle=oracle)
    assert results[0]["tempids"] == {-1: 1, -2: 2, -3: 4, "db/current-tx": TX1}
    # the entity's own datoms (EAVT), then references to it, then its components, recursively
    assert results[1]["tx_data"] == [
        (1, "child", 3, TX1 + 1, False),
        (1, "friends", 2, TX1 + 1, False),
        (1, "name", "Ivan", TX1 + 1, False),
        (4, "friends", 1, TX1 + 1, False),
        (3, "name", "Kid", TX1 + 1, False),
        (3, "tags", "k", TX1 + 1, False),
    ]
    assert datoms == [(2, "name", "Petr", TX1), (4, "name", "Oleg", TX1)]


def test_init_datoms(oracle: DataScriptOracle) -> None:
    results, datoms = ds_transact_stream(
        SCHEMA,
        [[["db/add", -1, "name", "New"]]],
        init_datoms=[(1, "name", "Old", TX0), (1, "pt", (2, "y"))],
        oracle=oracle,
    )
    assert results[0]["tempids"] == {-1: 2, "db/current-tx": TX1}
    assert datoms == [(1, "name", "Old", TX0), (1, "pt", (2, "y"), TX0), (2, "name", "New", TX1)]


def test_pull_and_entities(oracle: DataScriptOracle) -> None:
    req = transact_request(
        SCHEMA,
        [
            [
                {"db/id": -1, "name": "Ivan", "friends": [-2], "child": [{"name": "Kid"}]},
                {"db/id": -2, "name": "Petr"},
            ]
        ],
    )
    req["pulls"] = [
        {"pattern": '[* {"friends" ["name"]}]', "eid": to_js_eid(("name", "Ivan"))},
        {"pattern": '["name" {"_friends" [:db/id]}]', "eid": 2},
    ]
    req["entities"] = [1]
    resp = oracle.run(req)
    assert pull_from_js(resp["pull_results"]) == [
        {"db/id": 1, "name": "Ivan", "friends": [{"name": "Petr"}], "child": [{"db/id": 3, "name": "Kid"}]},
        {"name": "Petr", "_friends": [{"db/id": 1}]},
    ]
    assert pull_from_js(resp["entity_results"]) == [
        {"db/id": 1, "name": "Ivan", "friends": [{"db/id": 2}], "child": [{"db/id": 3}]},
    ]


def test_bad_schema_raises(oracle: DataScriptOracle) -> None:
    bad = {"a": {"db/tupleAttrs": ["b", "c"], "db/cardinality": "db.cardinality/many"}}
    with pytest.raises(OracleError) as info:
        ds_transact_stream(bad, [[]], oracle=oracle)
    assert info.value.code == "schema/validation"


def test_run_many_pipelines_in_order(oracle: DataScriptOracle) -> None:
    reqs = [{"id": i, "txs": [[[":db/add", -1, "n", i]]], "datoms": False} for i in range(500)]
    resps = oracle.run_many(reqs)
    assert [r["id"] for r in resps] == list(range(500))
    assert resps[7]["txs"][0]["tx_data"] == [[1, "n", 7, TX1, True]]
    assert "datoms" not in resps[7]


def test_own_process_context_manager() -> None:
    require_oracle()
    with DataScriptOracle() as ds:
        assert ds.running
        assert ds.run({"txs": [[]]})["txs"] == [{"tempids": {":db/current-tx": TX1}, "tx_data": []}]
    assert not ds.running
