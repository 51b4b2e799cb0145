"""Places where DataScript's own test suite found us answering differently, each checked against the
real DataScript 1.8.1 where its JS API can express the input (keyword values and Python callables
cannot cross: those cases assert DataScript's answer, taken from the real thing, directly)."""

from __future__ import annotations

from typing import Any

import pytest
from pyrsistent import pmap

from datsync.core import (
    DatsyncError,
    QueryError,
    TxError,
    datoms,
    db_with,
    empty_db,
    entity,
    index_range,
    kw,
    pull,
    seek_datoms,
    transact,
)
from datsync.core.query import q
from tests.oracle.bridge import ds_transact_stream, require_oracle, shared_oracle, to_js_schema, to_js_tx
from tests.test_differential_query import norm_result

pytestmark = pytest.mark.differential


def ds_q(text: str, *inputs: Any, schema: dict | None = None, tx: list | None = None, db: bool = True) -> Any:
    """DataScript's answer to ``text`` over ``schema`` + ``tx`` (or, with ``db=False``, over the inputs only)."""
    require_oracle()
    resp = shared_oracle().run({"schema": to_js_schema(schema), "txs": [to_js_tx(tx or [], schema)],
                                "datoms": False, "queries": [{"q": text, "inputs": list(inputs), "db": db}]})
    assert "fatal" not in resp and "error" not in resp["txs"][0], resp
    return resp["query_results"][0]


def same(ours: Any, theirs: Any, aggregate: bool = False) -> bool:
    return norm_result(ours, aggregate) == norm_result(theirs, aggregate)


# -- :in inferred from the use of $ ------------------------------------------------------------------


def test_query_without_in_that_never_reads_a_db_takes_no_inputs():
    text = "[:find ?x :where [(ground [1 2]) [?x ...]]]"
    assert q(text) == {(1,), (2,)}
    assert same(q(text), ds_q(text, db=False))
    text = "[:find ?e :where [(inc 1) ?e]]"
    with pytest.raises(QueryError) as e:
        q(text, empty_db())
    theirs = ds_q(text)
    assert (e.value.code, e.value.message) == (theirs["code"], theirs["error"]) == (
        "query/inputs", "Extra inputs passed, expected: [], got: 1")


@pytest.mark.parametrize("text", [
    "[:find ?e :where [?e :a]]",
    "[:find ?e :where [(ground 1) ?e] (not [?e :a])]",
    "[:find ?e :where [(ground 1) ?e] (not [$ ?e :a])]",
    "[:find ?e :where [(ground 1) ?e] (or [?e :a] [(ground 1) ?e])]",
    "[:find ?e :where [(ground 1) ?e] ($ or [?e :a] [(ground 1) ?e])]",
])
def test_query_without_in_that_reads_the_default_source_takes_a_db(text):
    with pytest.raises(QueryError) as e:
        q(text)
    theirs = ds_q(text, db=False)
    assert (e.value.code, e.value.message) == (theirs["code"], theirs["error"]) == (
        "query/inputs", "Too few inputs passed, expected: [$], got: 0")
    assert same(q(text, empty_db()), ds_q(text))


def test_datomic_flavor_keeps_datomics_default_in():
    # Datomic's :in defaults to $ whatever the query reads
    assert q("[:find ?x :where [(ground [1 2]) [?x ...]]]", empty_db(flavor="datomic")) == {(1,), (2,)}
    assert q("[:find ?x :where [(ground [1 2]) [?x ...]]]") == {(1,), (2,)}


def test_functions_given_the_default_source_and_pull_take_the_db():
    # DataScript rejects these without :in ("Where uses unknown source vars"; pull crashes); we take the db
    db = db_with(empty_db(), [{"db/id": 1, "a": 2}])
    assert q("[:find ?x . :where [(ground 1) ?e] [(get-else $ ?e :a 0) ?x]]", db) == 2
    assert q("[:find (pull ?e [:a]) . :where [(ground 1) ?e]]", db) == {"a": 2}


# -- keyword order -------------------------------------------------------------------------------------

KWS = [kw("a-/b"), kw("a/b"), kw("b"), kw("a.b/c"), kw("a/a"), kw("c"), kw("a/b-")]


def test_keywords_order_as_clojure_compares_them():
    expected = [kw("b"), kw("c"), kw("a/a"), kw("a/b"), kw("a/b-"), kw("a-/b"), kw("a.b/c")]
    assert sorted(KWS) == expected
    assert q("[:find (min ?x) (max ?x) :in [?x ...]]", [kw("a-/b"), kw("a/b")]) == [(kw("a/b"), kw("a-/b"))]
    # the pairs DataScript's compare puts in order (keywords only exist in its query text)
    lits = " ".join(str(k) for k in KWS)
    text = (f"[:find ?sx ?sy :where [(ground [{lits}]) [?x ...]] [(ground [{lits}]) [?y ...]] [(< ?x ?y)] "
            f"[(str ?x) ?sx] [(str ?y) ?sy]]")
    theirs = ds_q(text, db=False)
    assert same(q(text), theirs)
    assert len(theirs) == len(KWS) * (len(KWS) - 1) // 2


def test_indexes_order_keyword_values_as_clojure_does():
    schema = {"k": {"db/index": True}}
    db = db_with(empty_db(schema), [{"db/id": i + 1, "k": k} for i, k in enumerate(KWS)])
    expected = sorted(KWS)
    assert [d.v for d in datoms(db, "avet", "k")] == expected
    assert [d.v for d in index_range(db, "k", kw("a/a"), kw("a-/b"))] == [kw("a/a"), kw("a/b"), kw("a/b-"),
                                                                          kw("a-/b")]
    assert [d.v for d in seek_datoms(db, "avet", "k", kw("a/b-"))] == [kw("a/b-"), kw("a-/b"), kw("a.b/c")]
    many = db_with(empty_db({"k": {"db/cardinality": kw("db.cardinality/many")}}), [{"db/id": 1, "k": KWS}])
    assert [d.v for d in datoms(many, "eavt", 1, "k")] == expected
    assert q("[:find (min 3 ?k) (max 3 ?k) :where [_ :k ?k]]", many) == [(expected[:3], expected[-3:])]


# -- aggregates ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, inputs", [
    ("[:find (max 3 ?x) :in [?x ...]]", [[1, 2, 3, 4, 5]]),
    ("[:find (max 3 ?x) (min 3 ?x) :in [[?x ?y]] :with ?y]", [[[5, 1], [5, 2], [4, 3], [1, 1]]]),
    ("[:find (max 0 ?x) (min 0 ?x) :in [?x ...]]", [[5, 1]]),
    ("[:find (max 9 ?x) (min 9 ?x) :in [?x ...]]", [["b", "a", "c"]]),
])
def test_max_n_and_min_n_are_ascending(text, inputs):
    theirs = ds_q(text, *inputs, db=False)
    assert q(text, *inputs) == [tuple(theirs[0])]


def test_custom_aggregate_passed_as_input():
    assert q("[:find (aggregate ?f ?x) :in [?x ...] ?f]", [2, 1], sorted) == [([1, 2],)]
    assert q("[:find ?k (aggregate ?f ?x) :in [[?k ?x]] ?f]", [["a", 1], ["a", 3], ["b", 2]], sum) in (
        [("a", 4), ("b", 2)], [("b", 2), ("a", 4)])
    with pytest.raises(QueryError) as e:
        q("[:find (aggregate ?f ?x) :in [?x ...] ?f]", [1], 3)
    assert e.value.code == "query/unknown-function"


# -- transaction functions returning maps without db/id ----------------------------------------------


def test_tx_fn_result_map_without_id_makes_a_new_entity():
    db = db_with(empty_db(), [["db.fn/call", lambda db: [{"foo": "bar"}]]])
    assert [tuple(d)[:3] for d in datoms(db, "eavt")] == [(1, "foo", "bar")]  # DataScript: [1 :foo "bar"]


IVAN = [{"db/id": 1, "name": "Ivan"}]


@pytest.mark.parametrize("before, made", [
    ([{"name": "Oleg"}], [{"name": "Ivan", "age": 3}, {"friend": {"name": "Petr"}}, {"name": "Anna"}]),
    ([{"db/id": -1, "age": 1}], [{"x": 1}, {"db/id": -1, "name": "Ivan"}, {"x": 2}]),  # upsert: a re-run
    ([], [{"friends": [{"name": "Ivan", "x": 1}, {"x": 2}]}, {"_friend": [{"x": 3}], "x": 4}]),
])
def test_tx_fn_result_maps_transact_as_the_same_maps_written_inline(before, made):
    """A function's maps get what DataScript gives the same maps written in the transaction."""
    schema = {"name": {"db/unique": kw("db.unique/identity")}, "friend": {"db/valueType": kw("db.type/ref")},
              "friends": {"db/valueType": kw("db.type/ref"), "db/cardinality": kw("db.cardinality/many")}}
    report = transact(db_with(empty_db(schema), IVAN), [*before, ["db.fn/call", lambda db: made]])
    require_oracle()
    theirs, _ = ds_transact_stream(schema, [IVAN, [*before, *made]])
    assert [tuple(d) for d in report.tx_data] == theirs[1]["tx_data"]
    assert report.tempids == theirs[1]["tempids"]


def test_installed_tx_fn_result_maps_get_auto_tempids():
    db = db_with(empty_db({"db/ident": {"db/unique": kw("db.unique/identity")}}),
                 [{"db/ident": kw("mk"), "db/fn": lambda db, v: [{"made": v}]}])
    assert [tuple(d)[1:3] for d in transact(db, [[kw("mk"), 7]]).tx_data] == [("made", 7)]


@pytest.mark.parametrize("tx", [
    [["db.fn/call", lambda db: {"a": 1}]],
    [["db.fn/call", lambda db: 3]],
    [[{}, 1, "a", 2]],
    [["db/add", {"x": 1}, "a", 2]],
    [["db/add", 1, {"x": 1}, 2]],
    [["db/add", (("x",), 1), "a", 2]],
])
def test_transact_answers_malformed_input_with_tx_error(tx):
    with pytest.raises(TxError):
        transact(empty_db({"db/ident": {"db/unique": kw("db.unique/identity")}}), tx)


@pytest.mark.parametrize("tx", [
    [["db.fn/call", lambda db: 3]],
    [[{}, 1, "a", 2]],
    [[3, 1, "a", 2]],
])
def test_datomic_transact_answers_malformed_input_with_tx_error(tx):
    with pytest.raises(TxError):
        transact(empty_db(flavor="datomic"), tx)


# -- maps and lists in results ---------------------------------------------------------------------


def test_results_can_hold_maps_and_lists():
    assert q("[:find ?m ?v :in ?m :where [(get ?m :k) ?v]]", {kw("k"): 1}) == {(pmap({kw("k"): 1}), 1)}
    assert q("[:find ?v :in ?m :where [(get ?m :k) ?v]]", {kw("k"): {"x": 1}}) == {(pmap({"x": 1}),)}
    assert q("[:find ?x ?s :in [?x ...] :where [(identity ?x) ?s]]", [[1, [2]], {3}]) == {
        ((1, (2,)), (1, (2,))), (frozenset({3}), frozenset({3}))}
    text = "[:find ?a ?b :where [_ :attr ?a] [(vector ?a) ?b]]"
    tx = [{"db/id": 1, "attr": "A"}]
    assert q(text, db_with(empty_db(), tx)) == {("A", ("A",))}
    text = text.replace(":attr", '"attr"')  # attributes are strings in DataScript's JS API
    assert same(q(text, db_with(empty_db(), tx)), ds_q(text, tx=tx))


def test_every_collection_a_function_makes_can_be_a_result():
    db = db_with(empty_db(), [{"db/id": 1, "b": 1}])
    assert q("[:find ?s :where [?e :b] [(vector ?e) ?v] [(set ?v) ?s]]", db) == {(frozenset({1}),)}
    assert q("[:find ?s :where [?e :b] [(array-map :a ?e) ?s]]", db) == {(pmap({kw("a"): 1}),)}
    assert q("[:find ?s :where [?e :b] [(list ?e ?e) ?s]]", db) == {((1, 1),)}
    assert q("[:find ?s :where [?e :b] [(range 2) ?s]]", db) == {((0, 1),)}
    assert q("[:find ?s :in ?f :where [(?f) ?s]]", lambda: [{"a": [1]}]) == {((pmap({"a": (1,)}),),)}


def test_map_values_in_the_database_join_and_return():
    db = db_with(empty_db(), [{"db/id": 1, "a": {"x": [1]}}, {"db/id": 2, "a": {"x": [1]}}, {"db/id": 3, "a": {3}}])
    assert q("[:find ?e ?f :where [?e :a ?v] [?f :a ?v] [(< ?e ?f)]]", db) == {(1, 2)}
    assert q("[:find ?v :where [_ :a ?v]]", db) == {(pmap({"x": (1,)}),), (frozenset({3}),)}
    assert q("[:find ?e :in $ ?v :where [?e :a ?v]]", db, {"x": [1]}) == {(1,), (2,)}
    assert datoms(db, "eavt", 1, "a")[0].v == {"x": (1,)}


# -- values that cannot name an entity ---------------------------------------------------------------

REF_SCHEMA = {"friend": {"db/valueType": kw("db.type/ref")}, "name": {"db/unique": kw("db.unique/identity")},
              "age": {}}
REF_TX = [{"db/id": 1, "friend": 2, "name": "a"}, {"db/id": 2, "friend": 3, "name": "b"}, {"db/id": 3, "age": 1}]


@pytest.mark.parametrize("text, value", [
    ('[:find ?e :in $ [?e ...] :where [?e "friend" 3]]', [1, 2, "A"]),
    ('[:find ?e :in $ [?e ...] :where [?e "friend" 3]]', [2, 1.5, True, 0, -1, ["name", "zz"], ["name", "b"]]),
    ('[:find ?e :in $ [?e ...] :where [?e "friend" 3]]', [2, ["age", 1]]),  # malformed lookup ref: an error
    ('[:find ?e :in $ [?e ...] :where [?e "friend" 3]]', [2, [1, 2, 3]]),
    ('[:find ?v :in $ [?v ...] :where [1 "friend" ?v]]', [2, "A"]),
    ('[:find ?e :in $ [?e ...] :where [?e "friend"]]', [2, "A"]),
    ('[:find ?e :in $ [?e ...] :where [?e _ 3]]', [2, "A"]),
    ('[:find ?t :in $ [?t ...] :where [_ "friend" _ ?t]]', [536870913, "A"]),
    ('[:find ?e :in $ [?e ...] :where [(missing? $ ?e "age")]]', [2, "A"]),
    ('[:find ?e :in $ [?e ...] :where (not [?e "friend" 3])]', [2, "A"]),
    ('[:find ?e :in $ [?e ...] :where [(get-else $ ?e "age" 0) ?x]]', [2, "A"]),  # an error
    ('[:find (pull ?e ["name"]) :in $ [?e ...]]', [2, "A"]),  # an error
])
def test_bound_values_that_cannot_name_an_entity_match_nothing(text, value):
    theirs = ds_q(text, value, schema=REF_SCHEMA, tx=REF_TX)
    db = db_with(empty_db(REF_SCHEMA), REF_TX)
    if isinstance(theirs, dict) and "error" in theirs:
        with pytest.raises(DatsyncError):
            q(text, db, value)
    else:
        assert same(q(text, db, value), theirs)


# -- lookup refs inside composite tuple values ------------------------------------------------------

TUPLE_SCHEMA = {"ref": {"db/valueType": kw("db.type/ref")}, "name": {"db/unique": kw("db.unique/identity")},
                "ref+name": {"db/tupleAttrs": ["ref", "name"], "db/unique": kw("db.unique/identity")}}
TUPLE_SETUP = [{"db/id": 1, "name": "Ivan"}, {"db/id": 2, "name": "Petr", "ref": 1}]
IVAN_PETR = (("name", "Ivan"), "Petr")


@pytest.mark.parametrize("tx", [
    [{"ref+name": IVAN_PETR, "age": 32}],
    [["db/add", -1, "ref+name", IVAN_PETR], ["db/add", -1, "age", 32]],
    [{"db/id": ("ref+name", IVAN_PETR), "age": 33}],
    [["db/add", ("ref+name", IVAN_PETR), "age", 34]],
    [{"db/id": 2, "ref+name": IVAN_PETR, "age": 36}],
    [["db/add", 2, "ref+name", IVAN_PETR]],
    [{"ref+name": (1, "Petr"), "age": 35}],
    [{"ref+name": (("name", "Nobody"), "Petr"), "age": 32}],  # an error on both
])
def test_lookup_refs_inside_composite_tuple_values_resolve(tx):
    require_oracle()
    theirs, _ = ds_transact_stream(TUPLE_SCHEMA, [TUPLE_SETUP, tx])
    db = db_with(empty_db(TUPLE_SCHEMA), TUPLE_SETUP)
    if "error" in theirs[1]:
        with pytest.raises(DatsyncError):
            transact(db, tx)
    else:
        assert [tuple(d) for d in transact(db, tx).tx_data] == theirs[1]["tx_data"]


def test_lookup_refs_inside_tuples_in_entity_and_queries():
    db = db_with(empty_db(TUPLE_SCHEMA), TUPLE_SETUP)
    assert entity(db, ("ref+name", IVAN_PETR)).id == 2  # DataScript: entity 2
    assert entity(db, ["ref+name", [["name", "Ivan"], "Petr"]]).id == 2
    assert pull(db, "[:name]", ("ref+name", IVAN_PETR)) == {"name": "Petr"}
    assert [d.e for d in datoms(db, "avet", "ref+name", IVAN_PETR)] == [2]
    linked = db_with(db, [{"db/id": 3, "ref": ("ref+name", IVAN_PETR)}])
    assert q('[:find ?e :where [?e :ref [:ref+name [[:name "Ivan"] "Petr"]]]]', linked) == {(3,)}
    for text in ('[:find ?e :where [?e "ref+name" [["name" "Ivan"] "Petr"]]]',
                 '[:find ?v :where [["ref+name" [["name" "Ivan"] "Petr"]] "ref+name" ?v]]'):
        assert same(q(text, db), ds_q(text, schema=TUPLE_SCHEMA, tx=TUPLE_SETUP))


def test_vector_inside_a_lookup_ref_in_query_text_is_a_tuple():
    schema = {"a+b": {"db/tupleAttrs": ["a", "b"], "db/unique": kw("db.unique/identity")}}
    tx = [{"db/id": 1, "a": "a", "b": "B"}]
    db = db_with(empty_db(schema), tx)
    assert q('[:find ?v :where [[:a+b ["a" "B"]] :a+b ?v]]', db) == {(("a", "B"),)}
    for text in ('[:find ?v :where [["a+b" ["a" "B"]] "a+b" ?v]]', '[:find ?e :where [?e "a+b" ["a" "B"]]]',
                 '[:find ?v :where [(ground ["a+b" ["a" "B"]]) ?r] [?r "a+b" ?v]]'):
        assert same(q(text, db), ds_q(text, schema=schema, tx=tx))
    assert q("[:find ?v :in $ ?r :where [?r :a+b ?v]]", db, ["a+b", ["a", "B"]]) == {(("a", "B"),)}


# -- schema properties read from their values -------------------------------------------------------


def test_schema_properties_are_read_from_their_values():
    schema = {"x": {"db/type": kw("db.type/ref")}, "m": {"foo": kw("db.cardinality/many")},
              "u": {"bar": kw("db.unique/identity")}, "w": {"baz": kw("db.unique/value")},
              "c": {"db/cardinality": kw("db.cardinality/one"), "foo": kw("db.cardinality/many")}}
    txs = [[{"db/id": 1, "x": {"db/id": 5, "name": "n"}, "m": ["a", "b"], "u": "k", "c": ["p", "q"]}],
           [{"u": "k", "y": 1}], [{"db/id": 3, "w": "v"}], [{"db/id": 4, "w": "v"}]]
    require_oracle()
    theirs, final = ds_transact_stream(schema, txs)
    db = empty_db(schema)
    for tx, their in zip(txs, theirs, strict=True):
        if "error" in their:
            with pytest.raises(DatsyncError):
                transact(db, tx)
            continue
        report = transact(db, tx)
        assert [tuple(d) for d in report.tx_data] == their["tx_data"]
        db = report.db_after
    assert [tuple(d)[:4] for d in datoms(db, "eavt")] == final
    assert "error" in theirs[3]  # unique value


def test_joins_on_several_variables_keep_booleans_apart_from_numbers():
    tx = [{"db/id": 1, "score": 1, "flag": True, "friend": 1}, {"db/id": 2, "score": 0, "flag": False}]
    schema = {"friend": {"db/valueType": kw("db.type/ref")}}
    db = db_with(empty_db(schema), tx)
    for text in ('[:find ?e :where [?e "score" ?v] [?e "flag" ?v]]',
                 '[:find ?e :where [?e "friend" ?f] [?f "score" ?v] [?e "friend" ?f] [?f "flag" ?v]]'):
        assert q(text, db) == set()
        assert same(q(text, db), ds_q(text, schema=schema, tx=tx))
