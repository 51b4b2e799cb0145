"""Examples for ``transact``, DataScript flavor: one test per feature and per error path.

Every expectation (tempids, tx_data in order, final datoms, error codes) was confirmed against the real
DataScript 1.8.1 through tests/oracle while writing these examples, except where a test says it is
Python-only (functions as values, ``Datom`` objects, keyword spellings the JS API cannot express);
those follow DataScript's source. Tests marked ``xfail(strict=True)`` show bugs: they assert what
DataScript does.

``run(schema, txs)`` transacts each tx in turn and returns one result per tx - ``(tempids, tx_data)``
or ``("error", code)`` (a failed tx changes nothing) - and the final datoms as ``(e, a, v, tx)``.
"""

from __future__ import annotations

import pytest

from datsync.core import (
    TX0,
    Datom,
    TxError,
    datoms,
    db_with,
    empty_db,
    filter_db,
    init_db,
    kw,
    transact,
)

T1, T2, T3, T4 = TX0 + 1, TX0 + 2, TX0 + 3, TX0 + 4
CUR = "db/current-tx"

REF = kw("db.type/ref")
MANY = kw("db.cardinality/many")
IDENTITY = kw("db.unique/identity")

SCHEMA = {
    "name": {"db/unique": IDENTITY},
    "email": {"db/unique": kw("db.unique/value")},
    "aka": {"db/cardinality": MANY},
    "friend": {"db/valueType": REF, "db/cardinality": MANY},
    "parent": {"db/valueType": REF},
    "child": {"db/valueType": REF, "db/cardinality": MANY, "db/isComponent": True},
    "part": {"db/valueType": REF, "db/isComponent": True},
}

TUPLES = {
    "a+b": {"db/tupleAttrs": ["a", "b"]},
    "a+c": {"db/tupleAttrs": ["a", "c"], "db/unique": IDENTITY},
}


def run(schema, txs, init=None):
    db = init_db(init, schema) if init is not None else empty_db(schema)
    results = []
    for tx in txs:
        try:
            report = transact(db, tx)
        except TxError as e:
            results.append(("error", e.code))
            continue
        db = report.db_after
        results.append((report.tempids, [tuple(d) for d in report.tx_data]))
    return results, [tuple(d)[:4] for d in db]


def error_of(db, tx) -> TxError:
    """The TxError ``tx`` raises against ``db``, after checking that ``db`` did not change."""
    before = list(db)
    with pytest.raises(TxError) as e:
        transact(db, tx)
    assert list(db) == before
    return e.value


# ------------------------------------------------------------------------------------------------
# Map forms


def test_map_form_with_a_tempid():
    results, final = run(SCHEMA, [[{"db/id": -1, "name": "Ivan", "age": 30}]])
    assert results == [({-1: 1, CUR: T1}, [(1, "name", "Ivan", T1, True), (1, "age", 30, T1, True)])]
    assert final == [(1, "age", 30, T1), (1, "name", "Ivan", T1)]


def test_maps_without_db_id_are_new_entities_not_reported_in_tempids():
    results, _ = run(SCHEMA, [[{"aka": "x"}, {"aka": "y"}]])
    assert results == [({CUR: T1}, [(1, "aka", "x", T1, True), (2, "aka", "y", T1, True)])]


def test_map_form_with_an_existing_eid_and_a_lookup_ref_as_db_id():
    results, final = run(SCHEMA, [[{"db/id": 7, "name": "Ivan"}], [{"db/id": ("name", "Ivan"), "age": 3}]])
    assert results == [
        ({CUR: T1}, [(7, "name", "Ivan", T1, True)]),
        ({CUR: T2}, [(7, "age", 3, T2, True)]),
    ]
    assert final == [(7, "age", 3, T2), (7, "name", "Ivan", T1)]


def test_nested_maps_under_ref_attributes():
    tx = [{
        "db/id": -1,
        "name": "Ivan",
        "friend": [{"name": "Petr"}, {"name": "Oleg", "aka": ["O", "Ol"]}],
        "parent": {"name": "Pa"},
    }]
    results, _ = run(SCHEMA, [tx])
    # each nested map is an entity of its own, referenced from the outer one right after its datoms
    assert results == [({-1: 1, CUR: T1}, [
        (1, "name", "Ivan", T1, True),
        (2, "name", "Petr", T1, True),
        (1, "friend", 2, T1, True),
        (3, "name", "Oleg", T1, True),
        (3, "aka", "O", T1, True),
        (3, "aka", "Ol", T1, True),
        (1, "friend", 3, T1, True),
        (4, "name", "Pa", T1, True),
        (1, "parent", 4, T1, True),
    ])]


def test_reverse_ref_keys_in_map_forms():
    results, _ = run(SCHEMA, [
        [{"name": "Ivan", "_friend": [{"name": "Petr"}, -5]}, {"db/id": -5, "name": "X"}],
        [{"name": "Kid", "_parent": {"name": "Pa"}}],
    ])
    assert results == [
        ({-5: 3, CUR: T1}, [
            (1, "name", "Ivan", T1, True),
            (2, "name", "Petr", T1, True),
            (2, "friend", 1, T1, True),
            (3, "friend", 1, T1, True),
            (3, "name", "X", T1, True),
        ]),
        ({CUR: T2}, [(4, "name", "Kid", T2, True), (5, "name", "Pa", T2, True), (5, "parent", 4, T2, True)]),
    ]


def test_reverse_key_of_a_non_ref_attribute_is_an_error():
    results, _ = run(SCHEMA, [[{"db/id": 1, "_aka": 2}]])
    assert results == [("error", "transact/syntax")]


def test_collections_for_cardinality_many_in_map_forms():
    results, final = run(SCHEMA, [[{"db/id": 1, "aka": ["a", "b", "a"]}], [{"db/id": 1, "aka": {"c"}}]])
    assert results == [
        ({CUR: T1}, [(1, "aka", "a", T1, True), (1, "aka", "b", T1, True)]),
        ({CUR: T2}, [(1, "aka", "c", T2, True)]),
    ]
    assert final == [(1, "aka", "a", T1), (1, "aka", "b", T1), (1, "aka", "c", T2)]


def test_a_tuple_is_one_value_in_a_cardinality_many_slot():
    schema = {"pt": {"db/cardinality": MANY}}
    results, _ = run(schema, [[{"db/id": 1, "pt": [(1, 2), (3, 4)]}, {"db/id": 2, "pt": (5, 6)}]])
    assert results == [({CUR: T1}, [
        (1, "pt", (1, 2), T1, True), (1, "pt", (3, 4), T1, True), (2, "pt", (5, 6), T1, True)])]


def test_lookup_refs_in_a_many_ref_slot_of_a_map():
    results, _ = run(SCHEMA, [
        [{"db/id": 1, "name": "Ivan"}, {"db/id": 2, "name": "Petr"}],
        [{"name": "Oleg", "friend": ("name", "Ivan")}],  # one lookup ref, not two values
        [{"db/id": 3, "friend": [("name", "Ivan"), ("name", "Petr")]}],
    ])
    assert results[1:] == [
        ({CUR: T2}, [(3, "name", "Oleg", T2, True), (3, "friend", 1, T2, True)]),
        ({CUR: T3}, [(3, "friend", 2, T3, True)]),
    ]


def test_map_with_only_a_tempid_asserts_nothing():
    results, _ = run(SCHEMA, [[{"db/id": -1}], [{"db/id": -1, "x": 1}, {"db/id": -2}]])
    assert results == [({CUR: T1}, []), ({-1: 1, CUR: T2}, [(1, "x", 1, T2, True)])]


# ------------------------------------------------------------------------------------------------
# db/add, db/retract


def test_add():
    results, final = run(SCHEMA, [[["db/add", 1, "name", "Ivan"], ["db/add", 1, "aka", "V"]]])
    assert results == [({CUR: T1}, [(1, "name", "Ivan", T1, True), (1, "aka", "V", T1, True)])]
    assert final == [(1, "aka", "V", T1), (1, "name", "Ivan", T1)]


def test_add_with_an_explicit_tx():
    results, _ = run(SCHEMA, [[["db/add", 1, "a", 1, TX0 + 87]]])
    assert results == [({CUR: T1}, [(1, "a", 1, TX0 + 87, True)])]


def test_keyword_and_colon_spellings_of_ops_and_attributes():
    results, final = run(SCHEMA, [
        [[kw("db/add"), 1, kw("a"), 1], [":db/add", 1, "b", 2], {kw("db/id"): 1, kw("c"): 3}],
        [[kw("db/retract"), 1, kw("a"), 1]],
    ])
    assert results == [
        ({CUR: T1}, [(1, "a", 1, T1, True), (1, "b", 2, T1, True), (1, "c", 3, T1, True)]),
        ({CUR: T2}, [(1, "a", 1, T2, False)]),
    ]
    assert final == [(1, "b", 2, T1), (1, "c", 3, T1)]


def test_retract_with_a_value():
    results, final = run(SCHEMA, [
        [{"db/id": 1, "aka": ["x", "y"], "name": "Ivan", "age": 3}],
        [["db/retract", 1, "aka", "x"], ["db/retract", 1, "aka", "nope"], ["db/retract", 1, "age", 4]],
        [["db/retract", ("name", "Ivan"), "age", 3]],
    ])
    assert results[1:] == [
        ({CUR: T2}, [(1, "aka", "x", T2, False)]),  # absent values retract nothing
        ({CUR: T3}, [(1, "age", 3, T3, False)]),
    ]
    assert final == [(1, "aka", "y", T1), (1, "name", "Ivan", T1)]


def test_retract_without_a_value_retracts_every_value_and_components():
    results, final = run(SCHEMA, [
        [["db/add", 1, "aka", "x"], ["db/add", 1, "aka", "y"], ["db/add", 1, "child", 2], ["db/add", 1, "child", 3],
         ["db/add", 2, "v", 1], ["db/add", 3, "v", 2], ["db/add", 1, "part", 4], ["db/add", 4, "v", 3]],
        [["db/retract", 1, "aka"], ["db/retract", 1, "child"], ["db/retract", 1, "part", 4]],
    ])
    # retracting the component attribute without a value retracts the components; with a value, not
    assert results[1] == ({CUR: T2}, [
        (1, "aka", "x", T2, False), (1, "aka", "y", T2, False),
        (1, "child", 2, T2, False), (1, "child", 3, T2, False), (2, "v", 1, T2, False), (3, "v", 2, T2, False),
        (1, "part", 4, T2, False),
    ])
    assert final == [(4, "v", 3, T1)]


def test_retract_of_what_does_not_exist_is_a_no_op():
    results, _ = run(SCHEMA, [[["db/retract", ("name", "Nobody"), "age", 3], ["db/retract", 99, "x"]]])
    assert results == [({CUR: T1}, [])]


# ------------------------------------------------------------------------------------------------
# db/retractEntity, db.fn/retractAttribute


def test_retract_entity_retracts_its_datoms_references_and_components_in_order():
    results, final = run(SCHEMA, [
        [{"db/id": 1, "name": "Ivan", "aka": ["I", "Vanya"],
          "child": [{"db/id": 2, "name": "Kid", "part": {"db/id": 3, "v": "deep"}}], "part": 4},
         {"db/id": 4, "v": "own"}, {"db/id": 5, "friend": 1, "parent": 1}, {"db/id": 6, "friend": [1, 5]}],
        [["db/retractEntity", 1]],
    ])
    # DataScript's order: the entity's datoms (EAVT), then references to it (VAET by attribute,
    # then entity), then each component recursively, depth first
    assert results[1] == ({CUR: T2}, [
        (1, "aka", "I", T2, False),
        (1, "aka", "Vanya", T2, False),
        (1, "child", 2, T2, False),
        (1, "name", "Ivan", T2, False),
        (1, "part", 4, T2, False),
        (5, "friend", 1, T2, False),
        (6, "friend", 1, T2, False),
        (5, "parent", 1, T2, False),
        (2, "name", "Kid", T2, False),
        (2, "part", 3, T2, False),
        (3, "v", "deep", T2, False),
        (4, "v", "own", T2, False),
    ])
    assert final == [(6, "friend", 5, T1)]


def test_retract_entity_alias_and_lookup_ref():
    results, final = run(SCHEMA, [
        [{"db/id": 1, "name": "Ivan", "aka": "x"}, ["db/add", 2, "parent", 1]],
        [["db.fn/retractEntity", ("name", "Ivan")]],
        [["db/retractEntity", ("name", "Ivan")], ["db/retractEntity", 77]],
    ])
    assert results[1:] == [
        ({CUR: T2}, [(1, "aka", "x", T2, False), (1, "name", "Ivan", T2, False), (2, "parent", 1, T2, False)]),
        ({CUR: T3}, []),
    ]
    assert final == []


def test_retract_attribute_retracts_all_values_and_components():
    results, final = run(SCHEMA, [
        [{"db/id": 1, "aka": ["a", "b"], "child": [2, 3], "name": "I"}, {"db/id": 2, "v": 1}, {"db/id": 3, "v": 2}],
        [["db.fn/retractAttribute", 1, "child"], ["db.fn/retractAttribute", 1, "aka"],
         ["db.fn/retractAttribute", 1, "nothing"]],
    ])
    assert results[1] == ({CUR: T2}, [
        (1, "child", 2, T2, False), (1, "child", 3, T2, False), (2, "v", 1, T2, False), (3, "v", 2, T2, False),
        (1, "aka", "a", T2, False), (1, "aka", "b", T2, False),
    ])
    assert final == [(1, "name", "I", T1)]


# ------------------------------------------------------------------------------------------------
# db/cas


def test_cas_replaces_the_expected_value():
    results, final = run(SCHEMA, [
        [["db/add", 1, "age", 1]],
        [["db/cas", 1, "age", 1, 2]],
        [["db.fn/cas", 1, "age", 2, 3]],
    ])
    assert results[1:] == [
        ({CUR: T2}, [(1, "age", 1, T2, False), (1, "age", 2, T2, True)]),
        ({CUR: T3}, [(1, "age", 2, T3, False), (1, "age", 3, T3, True)]),
    ]
    assert final == [(1, "age", 3, T3)]


def test_cas_failure():
    db = db_with(empty_db(SCHEMA), [["db/add", 1, "age", 2]])
    err = error_of(db, [["db/add", 1, "x", 1], ["db/cas", 1, "age", 1, 3]])
    assert err.code == "transact/cas"
    assert err.data == {"old": 2, "expected": 1, "new": 3}


def test_cas_none_means_absent():
    results, final = run(SCHEMA, [
        [["db/cas", 1, "age", None, 1]],
        [["db/cas", 1, "age", None, 2]],  # present: fails
        [["db/cas", 1, "age", 1, 2]],
    ])
    assert results == [
        ({CUR: T1}, [(1, "age", 1, T1, True)]),
        ("error", "transact/cas"),
        ({CUR: T2}, [(1, "age", 1, T2, False), (1, "age", 2, T2, True)]),
    ]
    assert final == [(1, "age", 2, T2)]


def test_cas_on_cardinality_many_checks_membership_and_adds():
    results, final = run(SCHEMA, [
        [{"db/id": 1, "aka": ["x", "y"]}],
        [["db/cas", 1, "aka", "y", "z"]],  # "y" is one of the values: "z" is added, "y" stays
        [["db/cas", 1, "aka", "q", "w"]],  # "q" is not
        [["db/cas", 1, "aka", "x", "y"]],  # "y" already there: nothing to do
    ])
    assert results[1:] == [
        ({CUR: T2}, [(1, "aka", "z", T2, True)]),
        ("error", "transact/cas"),
        ({CUR: T3}, []),
    ]
    assert final == [(1, "aka", "x", T1), (1, "aka", "y", T1), (1, "aka", "z", T2)]


def test_cas_on_a_ref_resolves_lookup_refs():
    results, final = run(SCHEMA, [
        [{"db/id": 1, "name": "A"}, {"db/id": 2, "name": "B"}, ["db/add", 3, "parent", 1]],
        [["db/cas", 3, "parent", ("name", "A"), ("name", "B")]],
        [["db/cas", 3, "parent", ("name", "X"), 1]],
    ])
    assert results[1:] == [
        ({CUR: T2}, [(3, "parent", 1, T2, False), (3, "parent", 2, T2, True)]),
        ("error", "entity-id/missing"),
    ]
    assert final == [(1, "name", "A", T1), (2, "name", "B", T1), (3, "parent", 2, T2)]


def test_cas_on_a_missing_entity_expects_none():
    results, _ = run(SCHEMA, [
        [["db/cas", 77, "age", None, 1]],
        [["db/cas", 78, "age", 5, 1]],
        [["db/cas", 79, "aka", None, 1]],  # cardinality many: None is never one of the values
    ])
    assert results == [({CUR: T1}, [(77, "age", 1, T1, True)]), ("error", "transact/cas"), ("error", "transact/cas")]


@pytest.mark.parametrize(
    "form",
    [
        pytest.param(["db/cas", -1, "age", None, 1], id="tempid"),
        pytest.param(["db/cas", 1, "age", None], id="no-new-value"),
        pytest.param(["db/cas", 1, "age", None, None], id="nil-new-value"),
    ],
)
def test_cas_syntax_errors(form):
    results, _ = run(SCHEMA, [[form]])
    assert results == [("error", "transact/syntax")]


def test_cas_with_extra_elements_ignores_them():
    results, _ = run(SCHEMA, [[["db/cas", 1, "age", None, 1, 2]]])
    assert results == [({CUR: T1}, [(1, "age", 1, T1, True)])]


# ------------------------------------------------------------------------------------------------
# Transaction functions (Python-only: functions do not cross into DataScript's JS API)


def increment(db, e, a):
    """A transaction function: the forms that add 1 to ``e``'s ``a`` in ``db``."""
    (d,) = datoms(db, "eavt", e, a)
    return [["db/add", e, a, d.v + 1]]


def test_fn_call_gets_the_in_progress_db_and_its_forms_run_in_place():
    db = db_with(empty_db(SCHEMA), [{"db/id": 1, "n": 1}])
    report = transact(db, [["db/add", 1, "n", 10], ["db.fn/call", increment, 1, "n"], ["db/add", 1, "m", 1]])
    assert [tuple(d) for d in report.tx_data] == [
        (1, "n", 1, T2, False), (1, "n", 10, T2, True),  # the function saw n = 10, written by this tx
        (1, "n", 10, T2, False), (1, "n", 11, T2, True),
        (1, "m", 1, T2, True),
    ]


def test_fn_call_db_is_a_value_later_forms_do_not_change():
    seen = []

    def capture(db):
        seen.append(db)
        return [["db/add", -1, "name", "Fn"]]

    report = transact(empty_db(SCHEMA), [["db/add", 1, "a", 1], ["db.fn/call", capture], ["db/add", 1, "a", 2]])
    (in_progress,) = seen
    assert [tuple(d)[:3] for d in in_progress] == [(1, "a", 1)]
    assert report.tempids == {-1: 2, CUR: T1}
    assert [tuple(d)[:3] for d in report.db_after] == [(1, "a", 2), (2, "name", "Fn")]


def test_fn_call_of_something_not_callable_is_an_error():
    err = error_of(empty_db(SCHEMA), [["db.fn/call", 5, 1]])
    assert err.code == "transact/syntax"


def test_fn_call_returning_none_adds_nothing():
    # DataScript: (concat (apply f db args) entities) - a function returning nil contributes no forms
    report = transact(empty_db(SCHEMA), [["db.fn/call", lambda db: None], ["db/add", 1, "a", 1]])
    assert [tuple(d) for d in report.tx_data] == [(1, "a", 1, T1, True)]


def test_installed_transaction_function():
    db = db_with(empty_db(SCHEMA), [{"db/id": -1, "db/ident": kw("inc"), "db/fn": increment}, {"db/id": 5, "n": 1}])
    for op in ("inc", kw("inc"), ":inc"):
        report = transact(db, [[op, 5, "n"]])
        assert [tuple(d) for d in report.tx_data] == [(5, "n", 1, T2, False), (5, "n", 2, T2, True)]


def test_calling_an_unknown_transaction_function_is_an_error():
    err = error_of(empty_db(SCHEMA), [["db/foo", 1, "a", 1]])
    assert err.code == "transact/syntax"
    assert "Can't find entity for transaction fn" in err.message


def test_an_ident_without_db_fn_is_not_a_transaction_function():
    db = db_with(empty_db(SCHEMA), [{"db/id": -1, "db/ident": kw("nofn")}])
    err = error_of(db, [["nofn", 1, "n"]])
    assert err.code == "transact/syntax"
    assert "expected to have :db/fn" in err.message


def test_unorderable_values_of_one_attribute_are_a_clear_error():
    # Known deviation: DataScript 1.8.1 orders values it cannot compare by hash and stores both;
    # our indexes need a total order, so two functions in one many-valued slot are refused cleanly.
    def f(db):
        return []

    def g(db):
        return []

    db = empty_db({"fns": {"db/cardinality": MANY}})
    err = error_of(db, [["db/add", 1, "fns", f], ["db/add", 1, "fns", g]])
    assert err.code == "transact/unorderable-value"


# ------------------------------------------------------------------------------------------------
# Tempids


def test_tempids_negative_ints_and_strings():
    results, _ = run(SCHEMA, [[
        ["db/add", -1, "a", 1], ["db/add", "s", "a", 2], ["db/add", -1, "b", 3], {"db/id": "s", "c": 4},
        ["db/add", -2, "a", 5],
    ]])
    assert results == [({-1: 1, "s": 2, -2: 3, CUR: T1}, [
        (1, "a", 1, T1, True), (2, "a", 2, T1, True), (1, "b", 3, T1, True), (2, "c", 4, T1, True),
        (3, "a", 5, T1, True)])]


def test_tempid_in_value_position_is_allocated_first():
    results, _ = run(SCHEMA, [[["db/add", -1, "friend", -2], ["db/add", -2, "name", "X"]]])
    assert results == [({-2: 1, -1: 2, CUR: T1}, [(2, "friend", 1, T1, True), (1, "name", "X", T1, True)])]


def test_current_tx_tempids():
    results, final = run(SCHEMA, [
        [["db/add", "db/current-tx", "a", 1], {"db/id": "datomic.tx", "b": 2}, ["db/add", "datascript.tx", "d", 4],
         ["db/add", -1, "parent", "datomic.tx"]],
        [["db/add", -1, "a", 1]],  # the tx entity does not count as an entity id
    ])
    assert results == [
        ({CUR: T1, "datomic.tx": T1, "datascript.tx": T1, -1: 1}, [
            (T1, "a", 1, T1, True), (T1, "b", 2, T1, True), (T1, "d", 4, T1, True), (1, "parent", T1, T1, True)]),
        ({-1: 2, CUR: T2}, [(2, "a", 1, T2, True)]),
    ]
    assert final == [(1, "parent", T1, T1), (2, "a", 1, T2), (T1, "a", 1, T1), (T1, "b", 2, T1), (T1, "d", 4, T1)]


def test_current_tx_keyword_tempid_means_the_transaction():
    report = transact(empty_db(SCHEMA), [[kw("db/add"), kw("db/current-tx"), "a", 1]])
    assert [tuple(d) for d in report.tx_data] == [(T1, "a", 1, T1, True)]
    assert report.tempids[CUR] == T1


def test_current_tx_keyword_tempid_is_reported_once():
    report = transact(empty_db(SCHEMA), [[kw("db/add"), kw("db/current-tx"), "a", 1]])
    # DataScript: {:db/current-tx tx} - the keyword is the current-tx key itself
    assert report.tempids == {CUR: T1}


def test_tempids_used_only_as_values_are_an_error():
    results, _ = run(SCHEMA, [
        [["db/add", 5, "parent", -1]],
        [["db/add", 5, "parent", "x"], ["db/add", 5, "friend", "y"]],
        [["db/add", 1, "parent", -1]],  # -1 becomes 1, which then gets a datom: fine
    ])
    assert results == [
        ("error", "transact/syntax"),
        ("error", "transact/syntax"),
        ({-1: 1, CUR: T1}, [(1, "parent", 1, T1, True)]),
    ]
    err = error_of(empty_db(SCHEMA), [["db/add", 5, "parent", "x"], ["db/add", 5, "friend", "y"]])
    assert "Tempids used only as value in transaction: ['x', 'y']" in err.message


def test_tempids_are_allowed_only_in_db_add():
    results, _ = run(SCHEMA, [
        [["db/retract", -1, "a", "x"]],
        [["db/retractEntity", "x"]],
        [["db.fn/retractAttribute", -1, "a"]],
    ])
    assert results == [("error", "transact/syntax")] * 3


# ------------------------------------------------------------------------------------------------
# Lookup refs and idents


def test_lookup_refs_in_entity_and_value_positions():
    results, final = run(SCHEMA, [
        [["db/add", 1, "name", "A"]],
        [["db/add", 2, "parent", ("name", "A")], ["db/add", ("name", "A"), "age", 3],
         ["db/add", 2, "friend", ["name", "A"]]],
    ])
    assert results[1] == ({CUR: T2}, [
        (2, "parent", 1, T2, True), (1, "age", 3, T2, True), (2, "friend", 1, T2, True)])
    assert final == [(1, "age", 3, T2), (1, "name", "A", T1), (2, "friend", 1, T2), (2, "parent", 1, T2)]


@pytest.mark.parametrize(
    ("form", "code"),
    [
        pytest.param(["db/add", ("name", "X"), "a", 1], "entity-id/missing", id="entity-missing"),
        pytest.param(["db/add", 1, "parent", ("name", "X")], "entity-id/missing", id="value-missing"),
        pytest.param({"db/id": ("name", "X"), "a": 1}, "entity-id/missing", id="db-id-missing"),
        pytest.param(["db/add", ("aka", "x"), "a", 1], "lookup-ref/unique", id="not-unique"),
        pytest.param(["db/add", ("name", "x", 3), "a", 1], "lookup-ref/syntax", id="three-elements"),
        pytest.param(["db/retract", 1, "parent", ("name", "X")], "entity-id/missing", id="retract-value-missing"),
    ],
)
def test_bad_lookup_refs(form, code):
    results, _ = run(SCHEMA, [[form]])
    assert results == [("error", code)]


def test_ident_keywords_as_entity_and_ref_value():
    # Python-only spelling: keyword values cannot cross into DataScript's JS API
    db = db_with(empty_db(SCHEMA), [{"db/id": 1, "db/ident": kw("ivan")}])
    report = transact(db, [["db/add", kw("ivan"), "age", 3], ["db/add", 2, "parent", kw("ivan")]])
    assert [tuple(d) for d in report.tx_data] == [(1, "age", 3, T2, True), (2, "parent", 1, T2, True)]
    assert error_of(db, [["db/add", kw("nobody"), "age", 3]]).code == "entity-id/missing"
    assert error_of(db, [{"db/id": kw("ivan"), "age": 3}]).code == "entity-id/syntax"


# ------------------------------------------------------------------------------------------------
# Upserts


IVAN_AND_PETR = [{"db/id": 1, "name": "Ivan", "email": "i@x"}, {"db/id": 2, "name": "Petr", "email": "p@x"}]
IDS = {**SCHEMA, "email": {"db/unique": IDENTITY}}


def test_upsert_of_a_map_through_an_identity_attribute():
    results, final = run(SCHEMA, [[{"db/id": -1, "name": "Ivan"}], [{"db/id": -2, "name": "Ivan", "age": 3}]])
    assert results == [
        ({-1: 1, CUR: T1}, [(1, "name", "Ivan", T1, True)]),
        ({-2: 1, CUR: T2}, [(1, "age", 3, T2, True)]),
    ]
    assert final == [(1, "age", 3, T2), (1, "name", "Ivan", T1)]


def test_upsert_in_list_forms_and_without_db_id():
    results, _ = run(SCHEMA, [
        [["db/add", -1, "name", "A"]],
        [["db/add", "x", "name", "A"], ["db/add", "x", "age", 3]],
        [{"name": "A", "age": 4}],
    ])
    assert results[1:] == [
        ({"x": 1, CUR: T2}, [(1, "age", 3, T2, True)]),
        ({CUR: T3}, [(1, "age", 3, T3, False), (1, "age", 4, T3, True)]),
    ]


def test_a_tempid_that_upserts_later_reruns_the_transaction():
    results, _ = run(IDS, [
        IVAN_AND_PETR,
        [{"db/id": -1, "age": 35}, {"db/id": -1, "name": "Ivan"}],
        [["db/add", -1, "age", 36], ["db/add", 3, "friend", -1], ["db/add", -1, "name", "Ivan"]],
    ])
    # without the re-run -1 would have become the new entity 3
    assert results[1:] == [
        ({-1: 1, CUR: T2}, [(1, "age", 35, T2, True)]),
        ({-1: 1, CUR: T3}, [(1, "age", 35, T3, False), (1, "age", 36, T3, True), (3, "friend", 1, T3, True)]),
    ]


def test_nested_map_upserts():
    results, _ = run(IDS, [IVAN_AND_PETR, [{"name": "Zed", "friend": {"name": "Ivan", "age": 9}}]])
    assert results[1] == ({CUR: T2}, [
        (3, "name", "Zed", T2, True), (1, "age", 9, T2, True), (3, "friend", 1, T2, True)])


@pytest.mark.parametrize(
    "tx",
    [
        pytest.param([{"db/id": -1, "name": "Ivan"}, ["db/add", -1, "name", "Petr"]], id="tempid-to-two-entities"),
        pytest.param([["db/add", -1, "name", "Ivan"], ["db/add", -1, "email", "p@x"]], id="list-forms"),
        pytest.param([{"db/id": -1, "name": "Ivan", "email": "p@x"}], id="two-attributes-of-one-map"),
        pytest.param([{"name": "Ivan", "email": "p@x"}], id="map-without-db-id"),
        pytest.param([{"db/id": 5, "name": "Ivan"}], id="map-with-another-eid"),
    ],
)
def test_conflicting_upserts(tx):
    results, _ = run(IDS, [IVAN_AND_PETR, tx])
    assert results[1] == ("error", "transact/upsert")


def test_conflicting_upsert_messages():
    db = db_with(empty_db(IDS), IVAN_AND_PETR)
    err = error_of(db, [["db/add", -1, "name", "Ivan"], ["db/add", -1, "email", "p@x"]])
    assert err.message == "Conflicting upsert: -1 resolves both to 1 and 2"
    err = error_of(db, [{"db/id": -1, "name": "Ivan", "email": "p@x"}])
    assert err.message == "Conflicting upserts: [name 'Ivan'] resolves to 1, but [email 'p@x'] resolves to 2"


# ------------------------------------------------------------------------------------------------
# Uniqueness, cardinality, redundancy


def test_unique_value_conflicts():
    results, final = run(SCHEMA, [
        [["db/add", 1, "email", "e"]],
        [["db/add", 2, "email", "e"]],
        [{"db/id": -1, "email": "e", "x": 1}],  # db.unique/value does not upsert
        [["db/add", 1, "name", "A"], ["db/add", 2, "name", "A"]],  # identity attributes are unique too
    ])
    assert results[1:] == [("error", "transact/unique")] * 3
    assert final == [(1, "email", "e", T1)]


def test_unique_conflict_message_names_both_datoms():
    db = db_with(empty_db(SCHEMA), [["db/add", 1, "email", "e"]])
    err = error_of(db, [["db/add", 2, "email", "e"]])
    assert err.code == "transact/unique"
    assert err.message == (f"Cannot add #datom [2 'email' 'e' {T2} true] because of unique constraint: "
                           f"(#datom [1 'email' 'e' {T1} true])")


def test_cardinality_one_replaces_the_value():
    results, final = run(SCHEMA, [
        [["db/add", 1, "age", 1]],
        [["db/add", 1, "age", 2], ["db/add", 1, "age", 3]],
        [["db/add", 1, "age", True]],  # true is not 1
    ])
    assert results[1:] == [
        ({CUR: T2}, [(1, "age", 1, T2, False), (1, "age", 2, T2, True), (1, "age", 2, T2, False),
                     (1, "age", 3, T2, True)]),
        ({CUR: T3}, [(1, "age", 3, T3, False), (1, "age", True, T3, True)]),
    ]
    assert final == [(1, "age", True, T3)]
    assert final[0][2] is True


def test_redundant_datoms_are_dropped():
    results, _ = run(SCHEMA, [
        [["db/add", 1, "age", 1], ["db/add", 1, "age", 1], ["db/add", 1, "aka", "x"], ["db/add", 1, "aka", "x"],
         {"db/id": 1, "aka": ["x", "y"]}],
        [["db/add", 1, "age", 1], ["db/add", 1, "aka", "y"]],
    ])
    assert results == [
        ({CUR: T1}, [(1, "age", 1, T1, True), (1, "aka", "x", T1, True), (1, "aka", "y", T1, True)]),
        ({CUR: T2}, []),
    ]


# ------------------------------------------------------------------------------------------------
# Composite tuples and tuple values


def test_composite_tuples_are_maintained():
    results, final = run(TUPLES, [
        [{"db/id": 1, "a": 1, "b": 2}],
        [["db/add", 1, "b", 3]],
        [["db/retract", 1, "a", 1]],
        [["db/retract", 1, "b", 3]],
    ])
    assert results == [
        ({CUR: T1}, [(1, "a", 1, T1, True), (1, "b", 2, T1, True), (1, "a+b", (1, 2), T1, True),
                     (1, "a+c", (1, None), T1, True)]),
        ({CUR: T2}, [(1, "b", 2, T2, False), (1, "b", 3, T2, True), (1, "a+b", (1, 2), T2, False),
                     (1, "a+b", (1, 3), T2, True)]),
        ({CUR: T3}, [(1, "a", 1, T3, False), (1, "a+b", (1, 3), T3, False), (1, "a+b", (None, 3), T3, True),
                     (1, "a+c", (1, None), T3, False)]),
        ({CUR: T4}, [(1, "b", 3, T4, False), (1, "a+b", (None, 3), T4, False)]),
    ]
    assert final == []


def test_composite_tuples_are_updated_after_every_form():
    results, _ = run(TUPLES, [[["db/add", 1, "a", 1], ["db/add", 1, "b", 2], ["db/add", 1, "a", 5]]])
    assert results == [({CUR: T1}, [
        (1, "a", 1, T1, True), (1, "a+b", (1, None), T1, True), (1, "a+c", (1, None), T1, True),
        (1, "b", 2, T1, True), (1, "a+b", (1, None), T1, False), (1, "a+b", (1, 2), T1, True),
        (1, "a", 1, T1, False), (1, "a", 5, T1, True), (1, "a+b", (1, 2), T1, False), (1, "a+b", (5, 2), T1, True),
        (1, "a+c", (1, None), T1, False), (1, "a+c", (5, None), T1, True),
    ])]


def test_composite_tuple_attributes_cannot_be_written_directly():
    results, final = run(TUPLES, [
        [["db/add", 1, "a+b", (1, 2)]],
        [{"db/id": 1, "a": 1, "b": 2, "a+b": (1, 2)}],  # the value it will have anyway: allowed
        [["db/add", 1, "a+b", (1, 2)], ["db/retract", 1, "a+b", (1, 2)]],  # no-ops
        [["db/add", 1, "a+b", (1, 3)]],
        [["db/retract", 1, "a+b"]],
    ])
    assert results == [
        ("error", "transact/syntax"),
        ({CUR: T1}, [(1, "a", 1, T1, True), (1, "b", 2, T1, True), (1, "a+b", (1, 2), T1, True),
                     (1, "a+c", (1, None), T1, True)]),
        ({CUR: T2}, []),
        ("error", "transact/syntax"),
        ("error", "transact/syntax"),
    ]
    assert final == [(1, "a", 1, T1), (1, "a+b", (1, 2), T1), (1, "a+c", (1, None), T1), (1, "b", 2, T1)]
    err = error_of(empty_db(TUPLES), [["db/add", 1, "a+b", (1, 2)]])
    assert err.message.startswith("Can't modify tuple attrs directly")


def test_upsert_through_a_composite_identity_tuple():
    results, _ = run(TUPLES, [
        [{"db/id": 1, "a": 1, "c": 2}],
        [{"db/id": -1, "a+c": (1, 2), "b": 9}],
        [{"db/id": -1, "a": 1, "c": 2}],
    ])
    assert results[1:] == [
        ({-1: 1, CUR: T2}, [(1, "b", 9, T2, True), (1, "a+b", (1, None), T2, False), (1, "a+b", (1, 9), T2, True)]),
        ({-1: 1, CUR: T3}, []),
    ]


def test_retract_entity_retracts_composite_tuples():
    results, _ = run(TUPLES, [[{"db/id": 1, "a": 1, "b": 2}], [["db/retractEntity", 1]]])
    assert results[1] == ({CUR: T2}, [
        (1, "a", 1, T2, False), (1, "a+b", (1, 2), T2, False), (1, "a+c", (1, None), T2, False),
        (1, "b", 2, T2, False)])


def test_tuple_values_with_none():
    results, final = run({"pt": {}}, [[["db/add", 1, "pt", (1, None, "x")]], [["db/add", 1, "pt", (1, None, "x")]]])
    assert results == [({CUR: T1}, [(1, "pt", (1, None, "x"), T1, True)]), ({CUR: T2}, [])]
    assert final == [(1, "pt", (1, None, "x"), T1)]


def test_tuple_values_keep_booleans_and_numbers_apart_in_cardinality_many():
    tx = [["db/add", 1, "pts", (1, True)], ["db/add", 1, "pts", (1, 1)]]
    results, _ = run({"pts": {"db/cardinality": MANY}}, [tx])
    assert results == [({CUR: T1}, [(1, "pts", (1, True), T1, True), (1, "pts", (1, 1), T1, True)])]


def test_tuple_values_keep_booleans_and_numbers_apart_in_cardinality_one():
    results, _ = run({}, [[["db/add", 1, "pt", (1, True)]], [["db/add", 1, "pt", (1, 1)]]])
    assert results[1] == ({CUR: T2}, [(1, "pt", (1, True), T2, False), (1, "pt", (1, 1), T2, True)])


def test_tuple_values_keep_booleans_and_numbers_apart_in_unique_attributes():
    results, _ = run({"u": {"db/unique": IDENTITY}}, [[["db/add", 1, "u", (0, False)]], [["db/add", 2, "u", (0, 0)]]])
    assert results[1] == ({CUR: T2}, [(2, "u", (0, 0), T2, True)])


def test_list_value_in_a_list_form_is_one_tuple_value():
    results, _ = run({}, [[["db/add", 1, "x", [1, 2]]], [["db/add", 1, "x", (1, 2)]]])
    assert results == [({CUR: T1}, [(1, "x", (1, 2), T1, True)]), ({CUR: T2}, [])]


def test_list_value_in_a_cardinality_one_map_slot_is_one_tuple_value():
    report = transact(empty_db({}), [{"db/id": 1, "x": [1, 2]}])
    (d,) = report.tx_data
    assert isinstance(d.v, tuple) and d.v == (1, 2)
    hash(report.db_after)


# ------------------------------------------------------------------------------------------------
# Datom objects as forms (Python-only: DataScript's JS API takes no Datom objects)


def test_datoms_as_tx_forms():
    db = db_with(empty_db(SCHEMA), [{"db/id": 1, "name": "A", "n": 1}])
    report = transact(db, [Datom(1, "n", 5, TX0 + 99, True), Datom(1, "name", "A", T1, False),
                           Datom(1, "nothing", 0, T1, False)])
    # an added datom is a db/add with the datom's tx; a retracted one is a db/retract
    assert [tuple(d) for d in report.tx_data] == [
        (1, "n", 1, T2, False), (1, "n", 5, TX0 + 99, True), (1, "name", "A", T2, False)]


# ------------------------------------------------------------------------------------------------
# Bad input


@pytest.mark.parametrize(
    ("tx", "code"),
    [
        pytest.param([["db/add", 1, "name", None]], "transact/syntax", id="nil-value"),
        pytest.param([{"db/id": 1, "name": None}], "transact/syntax", id="nil-value-in-map"),
        pytest.param([["db/add", 1, "a"]], "transact/syntax", id="missing-value"),
        pytest.param([["db/add", 1, 5, "x"]], "transact/syntax", id="int-attribute"),
        pytest.param([["db/add", 1, None, "x"]], "transact/syntax", id="nil-attribute"),
        pytest.param([["db/add", 1]], "transact/syntax", id="missing-attribute"),
        pytest.param([["db/retract", 1]], "transact/syntax", id="retract-missing-attribute"),
        pytest.param([{"db/id": 1, 5: "x"}], "transact/syntax", id="int-attribute-in-map"),
        # DataScript fails on these with a plain JS error (no code), or reads a string as a sequence
        pytest.param([5], "transact/syntax", id="form-is-an-int"),
        pytest.param(["x"], "transact/syntax", id="form-is-a-string"),
        pytest.param([[]], "transact/syntax", id="empty-form"),
        pytest.param([["db/foo", 1, "a", 1]], "transact/syntax", id="unknown-op"),
        pytest.param([["db/add", 0, "a", 1]], "entity-id/syntax", id="eid-zero"),
        pytest.param([["db/add", True, "a", 1]], "entity-id/syntax", id="eid-bool"),
        # DataScript takes any positive number as an entity id; here entity ids are ints
        pytest.param([["db/add", 1.5, "a", 1]], "entity-id/syntax", id="eid-float"),
        pytest.param([["db/add", 2**31, "a", 1]], "entity-id", id="eid-too-big"),
        pytest.param([{"db/id": True, "a": 1}], "entity-id/syntax", id="db-id-bool"),
        pytest.param([{"db/id": 0, "a": 1}], "entity-id/syntax", id="db-id-zero"),
        pytest.param([{"db/id": 1.5, "a": 1}], "entity-id/syntax", id="db-id-float"),
    ],
)
def test_bad_forms(tx, code):
    db = db_with(empty_db(SCHEMA), [["db/add", 1, "name", "A"]])
    assert error_of(db, tx).code == code


@pytest.mark.parametrize("tx_data", ["abc", {"a": 1}, 5])
def test_tx_data_must_be_sequential(tx_data):
    assert error_of(empty_db(SCHEMA), tx_data).code == "transact/syntax"


def test_error_messages_name_the_form():
    db = empty_db(SCHEMA)
    assert error_of(db, [["db/add", 1, "name", None]]).message == (
        "Cannot store nil as a value at ['db/add', 1, 'name', None]")
    assert error_of(db, [["db/add", 1, 5, "x"]]).message == (
        "Bad entity attribute 5 at ['db/add', 1, 5, 'x'], expected keyword or string")


# ------------------------------------------------------------------------------------------------
# The report, ids, and failure


def test_report_fields_and_tx_meta():
    db = empty_db(SCHEMA)
    report = transact(db, [["db/add", -1, "name", "A"]], {"who": "me"})
    assert report.db_before is db
    assert report.tx_meta == {"who": "me"}
    assert report.tempids == {-1: 1, CUR: T1}
    assert report.tx_data == [Datom(1, "name", "A", T1, True)]
    assert list(report.db_after) == [Datom(1, "name", "A", T1, True)]
    assert transact(db, []).tx_meta is None


def test_db_with_is_the_db_after():
    db = empty_db(SCHEMA)
    after = db_with(db, [["db/add", 1, "name", "A"]], {"meta": 1})
    assert after == transact(db, [["db/add", 1, "name", "A"]]).db_after
    assert len(db) == 0


def test_tx_ids_count_up_from_536870913_even_for_empty_transactions():
    results, final = run(SCHEMA, [[], None, [["db/add", 1, "a", 1]]])
    assert results == [({CUR: TX0 + 1}, []), ({CUR: TX0 + 2}, []), ({CUR: TX0 + 3}, [(1, "a", 1, TX0 + 3, True)])]
    assert TX0 + 1 == 536870913
    assert final == [(1, "a", 1, TX0 + 3)]


def test_new_entity_ids_are_max_eid_plus_one():
    results, _ = run(SCHEMA, [
        [["db/add", 10, "a", 1], ["db/add", -1, "a", 2]],
        [["db/add", -1, "a", 3]],
        [["db/add", 1, "parent", 50], ["db/add", -1, "a", 4]],  # a ref value is not an entity of this db
        [{"a": 5}],
    ])
    assert results == [
        ({-1: 11, CUR: T1}, [(10, "a", 1, T1, True), (11, "a", 2, T1, True)]),
        ({-1: 12, CUR: T2}, [(12, "a", 3, T2, True)]),
        ({-1: 13, CUR: T3}, [(1, "parent", 50, T3, True), (13, "a", 4, T3, True)]),
        ({CUR: T4}, [(14, "a", 5, T4, True)]),
    ]


def test_a_failed_transaction_leaves_the_db_unchanged():
    db = db_with(empty_db(SCHEMA), [{"db/id": i, "name": f"n{i}", "aka": ["x", "y"]} for i in range(1, 200)])
    before = list(db)
    indexes = {name: list(getattr(db, name)) for name in ("eavt", "aevt", "avet", "vaet")}
    tx = [["db/retractEntity", 5], ["db/add", 7, "aka", "z"], {"db/id": -1, "name": "new"}, ["db/add", 8, "name", "n9"]]
    assert error_of(db, tx).code == "transact/unique"
    assert list(db) == before
    assert {name: list(getattr(db, name)) for name in indexes} == indexes
    assert (db.max_eid, db.max_tx) == (199, T1)
    # and the next transaction gets the tx id the failed one would have had
    assert transact(db, [["db/add", -1, "a", 1]]).tempids == {-1: 200, CUR: T2}


def test_old_db_values_are_unchanged_by_later_transactions():
    db1 = db_with(empty_db(SCHEMA), [["db/add", 1, "aka", "x"]])
    snapshot = list(db1)
    db2 = db_with(db1, [["db/retractEntity", 1], ["db/add", 2, "aka", "y"]])
    assert list(db1) == snapshot
    assert [tuple(d)[:3] for d in db2] == [(2, "aka", "y")]


def test_transacting_against_a_filtered_view_is_refused():
    db = db_with(empty_db(SCHEMA), [["db/add", 1, "age", 1]])
    view = filter_db(db, lambda _, d: True)
    with pytest.raises(TxError):
        transact(view, [["db/add", 1, "age", 2]])
    with pytest.raises(TxError):
        db_with(view, [])
    assert [d.v for d in datoms(db, "eavt", 1, "age")] == [1]


def test_transacting_against_a_filtered_view_has_datascripts_code():
    view = filter_db(empty_db(SCHEMA), lambda _, d: True)
    with pytest.raises(TxError) as e:
        transact(view, [["db/add", 1, "age", 2]])
    assert e.value.code == "transaction/filtered"
