"""Datalog ``q``: one group of examples per feature of the grammar, both query spellings, both flavors."""

from __future__ import annotations

import random

import pytest

from datsync.core import QueryError, ResolveError, as_of, empty_db, filter_db, history, kw, since, sym, transact
from datsync.core.query import Query, parse_query, parse_rules, q
from datsync.core.query.parser import Var
from tests.test_history import build

SCHEMA = {
    "name": {"db/unique": kw("db.unique/identity")},
    "follows": {"db/valueType": kw("db.type/ref"), "db/cardinality": kw("db.cardinality/many")},
    "parent": {"db/valueType": kw("db.type/ref")},
    "aka": {"db/cardinality": kw("db.cardinality/many")},
    "age": {"db/index": True},
}


@pytest.fixture(scope="module")
def db():
    d = empty_db(SCHEMA)
    return transact(d, [
        {"db/id": 1, "name": "Ivan", "age": 15, "aka": ["Vanya", "V"], "follows": [2]},
        {"db/id": 2, "name": "Petr", "age": 37, "follows": [3], "parent": 1},
        {"db/id": 3, "name": "Olga", "age": 37, "follows": [4], "parent": 1},
        {"db/id": 4, "name": "Oleg", "age": 20, "kind": kw("person")},
        {"db/id": 5, "name": "Anna", "age": "unknown", "ok": True},
    ]).db_after


# -- parsing --------------------------------------------------------------------------------------


def test_parse_forms_agree():
    text = parse_query('[:find ?e :in $ ?n :where [?e :name ?n]]')
    data = parse_query({"find": ["?e"], "in": ["$", "?n"], "where": [["?e", "name", "?n"]]})
    vec = parse_query([kw("find"), sym("?e"), kw("in"), sym("$"), sym("?n"), kw("where"),
                       [sym("?e"), kw("name"), sym("?n")]])
    for p in (text, data, vec):
        assert isinstance(p, Query)
        assert p.find == (Var("?e"),)
        assert p.where[0].terms == (Var("?e"), "name", Var("?n"))
    assert parse_query('[:find ?e :where [?e :name]]') is parse_query('[:find ?e :where [?e :name]]')


@pytest.mark.parametrize("bad, fragment", [
    ("[:where [?e :a]]", "should have :find"),
    ("[:find :where [?e :a]]", ":find is empty"),
    ("[:find ?e :where [?e :a 1 2 3 4 5]]", "1 to 5 elements"),
    ("[:find ?e :where (foo)]", "needs arguments"),
    ("[:find ?e :where [(> ?e 1) ?a ?b]]", "should be"),
    ("[:find ?e :keys a b :where [?e :a]]", "must match count"),
    ("[:find ?e :where (or-join ?e [?e :a])]", "or-join"),
    ("[:find ?e :where [foo ?e]]", "can't start with symbol"),
    ("[:find ?e :in $ $ :where [?e :a]]", "Duplicate input"),
    ("[:find (count) :where [?e :a]]", "needs a variable"),
    ("[:find ?e :where [?e :a", "Cannot read query"),
    ("{:find [?e] :bogus [1]}", "Unknown query key"),
])
def test_syntax_errors_name_the_problem(bad, fragment):
    with pytest.raises(QueryError) as e:
        parse_query(bad)
    assert e.value.code == "query/syntax"
    assert fragment in e.value.message


def test_rules_parse_and_validate():
    rules = parse_rules('[[(r ?a ?b) [?a :x ?b]] [(r ?a ?b) [?b :x ?a]] [(s [?a] ?b) [?a :y ?b]]]')
    assert set(rules) == {"r", "s"} and len(rules["r"]) == 2 and rules["s"][0].req == (Var("?a"),)
    with pytest.raises(QueryError, match="same arity"):
        parse_rules('[[(r ?a) [?a :x]] [(r ?a ?b) [?a :x ?b]]]')
    with pytest.raises(QueryError, match="plain symbol"):
        parse_rules('[[(not ?a) [?a :x]]]')


# -- patterns -------------------------------------------------------------------------------------


def test_patterns_constants_blanks_and_joins(db):
    assert q('[:find ?e :where [?e :name "Ivan"]]', db) == {(1,)}
    assert q('[:find ?n :where [?e :age 37] [?e :name ?n]]', db) == {("Petr",), ("Olga",)}
    assert q('[:find ?e :where [?e :aka _]]', db) == {(1,)}
    assert q('[:find ?a :where [1 ?a]]', db) == {("name",), ("age",), ("aka",), ("follows",)}
    assert q('[:find ?n1 ?n2 :where [?e1 :follows ?e2] [?e1 :name ?n1] [?e2 :name ?n2]]', db) == {
        ("Ivan", "Petr"), ("Petr", "Olga"), ("Olga", "Oleg")}
    assert q('[:find ?e :where [?e :kind :person]]', db) == {(4,)}
    assert q('[:find ?e :where [?e :ok true]]', db) == {(5,)}
    assert q('[:find ?e ?x :where [?e :name ?x] [?e :age ?x]]', db) == set()
    assert q('[:find ?e :where [?e :nope]]', db) == set()


def test_data_query_spelling(db):
    assert q({"find": ["?n"], "where": [["?e", "age", 37], ["?e", "name", "?n"], [(">", "?e", 2)]]}, db) == {
        ("Olga",)}
    assert q([":find", "?n", ":where", [("name", "Ivan"), "follows", "?f"], ["?f", "name", "?n"]], db) == {
        ("Petr",)}
    assert q({":find": ["?e"], ":where": [("not", ["?e", "age", 37]), ["?e", "name"]]}, db) == {(1,), (4,), (5,)}


def test_lookup_refs_and_idents(db):
    assert q('[:find ?n :where [[:name "Ivan"] :follows ?f] [?f :name ?n]]', db) == {("Petr",)}
    assert q('[:find ?e :where [?e :follows [:name "Olga"]]]', db) == {(2,)}
    with pytest.raises(ResolveError):  # a constant lookup ref must resolve (as in DataScript)
        q('[:find ?e :where [?e :follows [:name "Nobody"]]]', db)
    assert q('[:find ?e :in $ ?f :where [?e :follows ?f]]', db, ("name", "Nobody")) == set()
    assert q('[:find ?n :in $ ?e :where [?e :name ?n]]', db, ("name", "Olga")) == {("Olga",)}
    assert q('[:find ?e :in $ ?f :where [?e :follows ?f]]', db, ["name", "Petr"]) == {(1,)}


def test_source_prefixes_and_collections(db):
    coll = [(1, "likes", "tea"), (4, "likes", "coffee")]
    assert q('[:find ?n ?x :in $ $c :where [$c ?e "likes" ?x] [$ ?e :name ?n]]', db, coll) == {
        ("Ivan", "tea"), ("Oleg", "coffee")}
    assert q('[:find ?x :in $c :where [$c _ _ ?x]]', coll) == {("tea",), ("coffee",)}
    assert q('[:find ?e :in $a $b :where [$a ?e :name "Ivan"] [$b ?e :name "Ivan"]]', db, db) == {(1,)}
    assert q('[:find ?e :in $ $c :where [?e :name] ($c not [?e "likes" _])]', db, coll) == {(2,), (3,), (5,)}
    assert q('[:find ?e :in $ $c :where [?e :age 37] ($c or [?e "likes" "tea"] [?e "likes" "coffee"])]',
             db, coll) == set()
    assert q('[:find ?e :in $ $c :where [?e :name] ($c or [?e "likes" "tea"] [?e "likes" "coffee"])]',
             db, coll) == {(1,), (4,)}
    rules = '[[(likes ?e ?x) [?e "likes" ?x]]]'
    assert q('[:find ?x :in $ $c % :where [?e :name "Oleg"] ($c likes ?e ?x)]', db, coll, rules) == {("coffee",)}


# -- inputs ---------------------------------------------------------------------------------------


def test_inputs_every_binding_form(db):
    assert q('[:find ?e :in $ ?n :where [?e :name ?n]]', db, "Oleg") == {(4,)}
    assert q('[:find ?e :in $ [?n ...] :where [?e :name ?n]]', db, ["Oleg", "Anna"]) == {(4,), (5,)}
    assert q('[:find ?e :in $ [?n ?a] :where [?e :name ?n] [?e :age ?a]]', db, ("Petr", 37)) == {(2,)}
    assert q('[:find ?e ?x :in $ [[?n ?x]] :where [?e :name ?n]]', db, [("Petr", 1), ("Olga", 2)]) == {
        (2, 1), (3, 2)}
    assert q('[:find ?x :in [?x ...]]', [1, 2, 2]) == {(1,), (2,)}
    assert q('[:find ?x ?y :in ?x [?y ...] _]', 1, [2, 3], "ignored") == {(1, 2), (1, 3)}
    assert q('[:find ?e :in $ [?n ...] :where [?e :name ?n]]', db, []) == set()


def test_input_count_is_checked(db):
    with pytest.raises(QueryError) as e:
        q('[:find ?e :in $ ?x :where [?e :name ?x]]', db)
    assert e.value.code == "query/inputs"
    with pytest.raises(QueryError):
        q('[:find ?e :where [?e :name]]', db, 1)


# -- predicates and functions ---------------------------------------------------------------------


def test_predicates(db):
    assert q('[:find ?n :where [?e :age ?a] [(> ?a 20)] [?e :name ?n]]', db) == {("Petr",), ("Olga",),
                                                                                  ("Anna",)}
    assert q('[:find ?n :where [?e :age ?a] [(< 14 ?a 21)] [?e :name ?n]]', db) == {("Ivan",), ("Oleg",)}
    assert q('[:find ?n :in $ ?min :where [?e :age ?a] [(>= ?a ?min)] [?e :name ?n] [(!= ?n "Olga")]]',
             db, 37) == {("Petr",), ("Anna",)}
    assert q('[:find ?e :where [?e :name ?n] [(clojure.string/starts-with? ?n "O")]]', db) == {(3,), (4,)}
    assert q('[:find ?e :where [?e :name ?n] [(re-find "^O" ?n)]]', db) == {(3,), (4,)}
    assert q('[:find ?e :where [?e :name] [(missing? $ ?e :follows)]]', db) == {(4,), (5,)}
    assert q('[:find ?e :where [?e :name] [(missing? $ ?e :_parent)]]', db) == {(2,), (3,), (4,), (5,)}
    assert q('[:find ?e :where [?e :name ?n] [(= ?n "Anna")]]', db) == {(5,)}
    numeric = filter_db(db, lambda _, d: d.a != "age" or isinstance(d.v, int))
    assert q('[:find ?e :where [?e :age ?a] [(odd? ?a)]]', numeric) == {(1,), (2,), (3,)}


def test_comparisons_with_constants_filter_the_scan(db):
    # a comparison on a pattern's variable against a constant (or a one-value input) is applied to
    # index keys as the pattern scans: results equal the predicate applied afterwards
    older = {(2, 37), (3, 37), (4, 20), (5, "unknown")}  # strings sort after numbers
    assert q('[:find ?e ?a :where [?e :age ?a] [(> ?a 16)]]', db) == older
    assert q('[:find ?e ?a :where [?e :age ?a] [(< 16 ?a)]]', db) == older
    assert q('[:find ?e ?a :in $ ?m :where [?e :age ?a] [(> ?a ?m)]]', db, 16) == older
    assert q('[:find ?e :in $ ?m :where [?e :age ?a] [(<= ?a ?m)] [(>= ?a 15)]]', db, 20) == {(1,), (4,)}
    assert q('[:find ?e :where [?e :name] [(>= ?e 4)]]', db) == {(4,), (5,)}
    assert q('[:find ?a :where [?e :age ?a] [(< ?a "v")]]', db) == {(15,), (37,), (20,), ("unknown",)}
    assert q('[:find ?e :where [?e :age ?a] [(> ?a 100)] [?e :name ?n]]', db) == {(5,)}
    coll = [(1, "likes", "tea"), (4, "likes", "coffee"), (5, "likes", 3)]
    assert q('[:find ?x :in $c :where [$c _ "likes" ?x] [(> ?x "d")]]', coll) == {("tea",)}
    assert q('[:find ?x :in $c :where [$c _ "likes" ?x] [(< ?x "d")]]', coll) == {("coffee",), (3,)}
    view = filter_db(db, lambda _, d: d.e != 3)  # rows are datoms, not index keys
    assert q('[:find ?e ?a :where [?e :age ?a ?tx] [(> ?tx 0)] [(> ?a 36)]]', view) == {(2, 37), (5, "unknown")}


def test_python_callables_as_inputs(db):
    short = lambda n: len(n) == 4
    assert q('[:find ?n :in $ ?short :where [?e :name ?n] [(?short ?n)]]', db, short) == {
        ("Ivan",), ("Petr",), ("Olga",), ("Oleg",), ("Anna",)}
    query = {"find": ["?u"],
             "where": [["?e", "name", "?n"], [(str.upper, "?n"), "?u"], [(str.startswith, "?u", "OL")]]}
    assert q(query, db) == {("OLGA",), ("OLEG",)}
    # Clojure truthiness: 0 and "" are true, only None and False are false
    assert len(q('[:find ?e :in $ ?f :where [?e :name] [(?f)]]', db, lambda: 0)) == 5


def test_function_bindings(db):
    assert q('[:find ?n ?l :where [?e :name ?n] [(count ?n) ?l] [(< ?l 4)]]', db) == set()
    assert q('[:find ?x :where [(ground [1 2]) [?x ...]]]') == {(1,), (2,)}
    assert q('[:find ?a ?b :where [(ground [1 2]) [?a ?b]]]') == {(1, 2)}
    assert q('[:find ?a ?b :where [(ground [[1 2] [3 4]]) [[?a ?b]]]]') == {(1, 2), (3, 4)}
    assert q('[:find ?a :where [(ground [1 2]) [?a _]]]') == {(1,)}
    assert q('[:find ?v :where [(get-else $ 4 :aka "none") ?v]]', db) == {("none",)}
    assert q('[:find ?a ?v :where [(get-some $ 2 :aka :age) [?a ?v]]]', db) == {(kw("age"), 37)}
    assert q('[:find ?t :where [(tuple 1 "a") ?t]]') == {((1, "a"),)}
    assert q('[:find ?a ?b :where [(tuple 1 "a") ?t] [(untuple ?t) [?a ?b]]]') == {(1, "a")}
    assert q('[:find ?s :where [(str "a" 1 nil true :k) ?s]]') == {("a1true:k",)}
    assert q('[:find ?x :where [(inc 1) ?x] [(* ?x 3) ?x2] [(= ?x2 6)]]') == {(2,)}
    assert q('[:find ?x :where [(identity nil) ?x]]') == set()
    assert q('[:find ?q ?r ?m :where [(quot -7 2) ?q] [(rem -7 2) ?r] [(mod -7 2) ?m]]') == {(-3, -1, 1)}


def test_builtins_cover_datascripts_set():
    from datsync.core.query.builtins import BUILTINS, DB_FUNCTIONS, RANDOM_FUNCTIONS

    names = set(BUILTINS) | set(DB_FUNCTIONS) | set(RANDOM_FUNCTIONS)
    datascript = """= == not= != < > <= >= + - * / quot rem mod inc dec max min zero? pos? neg? even? odd?
    compare rand rand-int true? false? nil? some? not and or complement identical? identity keyword meta name
    namespace type vector list set hash-map array-map count range not-empty empty? contains? str pr-str print-str
    println-str prn-str subs get re-find re-matches re-seq re-pattern -differ? get-else get-some missing? ground
    clojure.string/blank? clojure.string/includes? clojure.string/starts-with? clojure.string/ends-with? tuple
    untuple"""
    assert set(datascript.split()) <= names


def test_randomness_comes_from_outside(db):
    with pytest.raises(QueryError) as e:
        q('[:find ?x :where [(rand-int 10) ?x]]')
    assert e.value.code == "query/random"
    a = q('[:find ?x :where [(rand-int 1000) ?x]]', random=7)
    assert a == q('[:find ?x :where [(rand-int 1000) ?x]]', random=random.Random(7))
    assert q('[:find ?x :in $ ?r :where [(rand) ?x]]', db, random.Random(1)) == {(random.Random(1).random(),)}
    got = q('[:find (sample 2 ?n) . :where [?e :name ?n]]', db, random=3)
    assert len(got) == 2 and len(set(got)) == 2
    assert q('[:find (rand ?n) . :where [?e :name ?n]]', db, random=3) in {"Ivan", "Petr", "Olga", "Oleg", "Anna"}


# -- errors ---------------------------------------------------------------------------------------


def test_insufficient_binding(db):
    for text in ('[:find ?e :where [?e :name] [(> ?x 1)]]',
                 '[:find ?e :where (not [?e :name "Ivan"])]',
                 '[:find ?e :where [?e :name] (not-join [?e ?x] [?e :age ?x])]',
                 '[:find ?x :in $ :where [(inc ?y) ?x]]'):
        with pytest.raises(QueryError) as e:
            q(text, db)
        assert e.value.code == "db.error/insufficient-binding", text
        assert "Insufficient bindings" in e.value.message


def test_unknown_function_and_rule(db):
    with pytest.raises(QueryError) as e:
        q('[:find ?e :where [?e :name ?n] [(frobnicate ?n)]]', db)
    assert e.value.code == "query/unknown-function" and "frobnicate" in e.value.message
    with pytest.raises(QueryError) as e:
        q('[:find ?e :where (nope ?e)]', db)
    assert e.value.code == "query/unknown-rule"
    with pytest.raises(QueryError) as e:
        q('[:find ?x :where [?e :name] [(ground 1) ?y] [(+ ?y "a") ?x]]', db)
    assert e.value.code == "query/fn-error"
    with pytest.raises(QueryError, match="unknown vars"):
        q('[:find ?x :where [?e :name]]', db)


# -- not / or -------------------------------------------------------------------------------------


def test_not_and_not_join(db):
    assert q('[:find ?e :where [?e :name] (not [?e :age 37])]', db) == {(1,), (4,), (5,)}
    assert q('[:find ?e :where [?e :name] (not [?e :age 37] [?e :parent 1])]', db) == {(1,), (4,), (5,)}
    assert q('[:find ?e :where [?e :name] (not-join [?e] [?f :follows ?e])]', db) == {(1,), (5,)}
    assert q('[:find ?e :where [?e :name] (not [?f :follows ?e] [?f :name "Ivan"])]', db) == {(1,), (3,), (4,),
                                                                                              (5,)}
    # clause order does not matter: not waits for the variables the query binds
    assert q('[:find ?e :where (not [?e :age 37]) [?e :name]]', db) == {(1,), (4,), (5,)}


def test_or_or_join_and(db):
    assert q('[:find ?e :where (or [?e :age 15] [?e :age 20])]', db) == {(1,), (4,)}
    assert q('[:find ?e :where [?e :name] (or [?e :follows 2] (and [?e :age 37] [?e :parent 1]))]', db) == {
        (1,), (2,), (3,)}
    assert q('[:find ?n :where [?e :name ?n] (or-join [?e] [?e :aka "V"] [?x :follows ?e])]', db) == {
        ("Ivan",), ("Petr",), ("Olga",), ("Oleg",)}
    assert q('[:find ?e :in $ ?a :where (or-join [[?a] ?e] [?e :age ?a] [?e :name "Anna"])]', db, 20) == {(4,),
                                                                                                       (5,)}
    with pytest.raises(QueryError, match="same set of free vars"):
        q('[:find ?e :where [?e :name] (or [?e :age 15] [?x :age 20])]', db)


# -- rules ----------------------------------------------------------------------------------------

RULES = """[[(follows* ?a ?b) [?a :follows ?b]]
            [(follows* ?a ?b) [?a :follows ?x] (follows* ?x ?b)]
            [(sibling ?a ?b) [?a :parent ?p] [?b :parent ?p] [(not= ?a ?b)]]
            [(adult [?e]) [?e :age ?a] [(>= ?a 18)]]
            [(named ?e ?n) (or [?e :name ?n] [?e :aka ?n])]]"""


def test_rules(db):
    assert q('[:find ?a ?b :in $ % :where (follows* ?a ?b)]', db, RULES) == {
        (1, 2), (1, 3), (1, 4), (2, 3), (2, 4), (3, 4)}
    assert q('[:find ?b :in $ % :where (follows* 2 ?b)]', db, RULES) == {(3,), (4,)}
    assert q('[:find ?a :in $ % :where (follows* ?a [:name "Oleg"])]', db, RULES) == {(1,), (2,), (3,)}
    assert q('[:find ?a ?b :in $ % :where (sibling ?a ?b)]', db, RULES) == {(2, 3), (3, 2)}
    # "unknown" >= 18: strings sort after numbers in the total order of values (as in DataScript)
    assert q('[:find ?e :in $ % :where [?e :name] (adult ?e)]', db, RULES) == {(2,), (3,), (4,), (5,)}
    assert q('[:find ?e :in $ % :where (named ?e "V")]', db, RULES) == {(1,)}
    assert q('[:find ?e :in $ % :where [?e :name] (not (follows* ?e 4))]', db, RULES) == {(4,), (5,)}
    with pytest.raises(QueryError) as e:
        q('[:find ?e :in $ % :where (adult ?e)]', db, RULES)
    assert e.value.code == "db.error/insufficient-binding"


def test_recursive_rules_cycles_and_mutual_recursion():
    d = transact(empty_db(SCHEMA), [{"db/id": i, "name": str(i), "follows": [i % 5 + 1]} for i in range(1, 6)]).db_after
    rules = '[[(reach ?a ?b) [?a :follows ?b]] [(reach ?a ?b) (reach ?a ?x) (reach ?x ?b)]]'
    assert len(q('[:find ?a ?b :in $ % :where (reach ?a ?b)]', d, rules)) == 25
    even_odd = """[[(even ?a ?b) [?a :follows ?b]] [(even ?a ?b) [?a :follows ?x] (odd ?x ?b)]
                   [(odd ?a ?b) [?a :follows ?x] (even ?x ?b)]]"""
    assert q('[:find ?b :in $ % :where (odd 1 ?b)]', d, even_odd) == {(1,), (2,), (3,), (4,), (5,)}
    # deep recursion: no Python recursion, one semi-naive round per step of the chain
    chain = transact(empty_db(SCHEMA), [{"db/id": i, "follows": [i + 1]} for i in range(1, 1000)]).db_after
    assert len(q('[:find ?b :in $ % :where (follows* 1 ?b)]', chain, RULES)) == 999
    assert len(q('[:find ?b :in $ % :where (reach 900 ?b)]', chain, rules)) == 100


def test_rules_as_data(db):
    rules = [[("f", "?a", "?b"), ["?a", "follows", "?b"]]]
    assert q({"find": ["?b"], "in": ["$", "%"], "where": [("f", 1, "?b")]}, db, rules) == {(2,)}


# -- find specs -----------------------------------------------------------------------------------


def test_find_specs(db):
    assert q('[:find [?n ...] :where [?e :age 37] [?e :name ?n]]', db) in (["Petr", "Olga"], ["Olga", "Petr"])
    assert q('[:find ?n . :where [1 :name ?n]]', db) == "Ivan"
    assert q('[:find ?n . :where [99 :name ?n]]', db) is None
    assert q('[:find [?n ?a] :where [1 :name ?n] [1 :age ?a]]', db) == ("Ivan", 15)
    assert q('[:find ?n ?a :keys name age :where [1 :name ?n] [1 :age ?a]]', db) == [{kw("name"): "Ivan",
                                                                                      kw("age"): 15}]
    assert q('[:find ?n :strs name :where [1 :name ?n]]', db) == [{"name": "Ivan"}]
    assert q('[:find ?n :syms name :where [1 :name ?n]]', db) == [{sym("name"): "Ivan"}]
    assert q('[:find [?n ?a] :keys n a :where [1 :name ?n] [1 :age ?a]]', db) == {kw("n"): "Ivan", kw("a"): 15}
    assert q('{:find [?n] :where [[?e :name ?n] [?e :age 15]]}', db) == {("Ivan",)}


def test_with_and_aggregates(db):
    assert sorted(q('[:find ?a :with ?e :where [?e :age ?a] [?e :parent 1]]', db)) == [(37,), (37,)]
    assert q('[:find (count ?e) . :where [?e :name]]', db) == 5
    assert set(q('[:find ?a (count ?e) :where [?e :age ?a]]', db)) == {(15, 1), (20, 1), (37, 2), ("unknown", 1)}
    row, = q('[:find (sum ?a) (avg ?a) (median ?a) (min ?a) (max ?a) (count-distinct ?a) (distinct ?a) '
             ':with ?e :where [?e :age ?a] [(< ?a 100)]]', db)
    assert row == (109, 27.25, 28.5, 15, 37, 3, {15, 20, 37})
    assert q('[:find (variance ?a) . :with ?e :where [?e :age ?a] [(< ?a 30)]]', db) == 6.25
    assert q('[:find (stddev ?a) . :with ?e :where [?e :age ?a] [(< ?a 30)]]', db) == 2.5
    assert q('[:find (min 2 ?a) (max 2 ?a) :where [?e :age ?a] [(< ?a 100)]]', db) == [([15, 20], [20, 37])]
    assert q('[:find (max ?a) . :where [?e :age ?a]]', db) == "unknown"  # strings sort after numbers
    assert q('[:find (count ?e) . :where [?e :nope]]', db) is None
    total = lambda vs: sum(v for v in vs if isinstance(v, int))
    assert q('[:find (?t ?a) . :in $ ?t :with ?e :where [?e :age ?a]]', db, total) == 109


def test_pull_in_find(db):
    got = q('[:find (pull ?e [:name {:follows [:name]}]) :where [?e :age 37]]', db)
    assert sorted(got, key=str) == [({"name": "Olga", "follows": [{"name": "Oleg"}]},),
                                    ({"name": "Petr", "follows": [{"name": "Olga"}]},)]
    assert q('[:find (pull ?e pat) . :in $ pat :where [?e :name "Oleg"]]', db, ["name", "kind"]) == {
        "name": "Oleg", "kind": kw("person")}
    assert q('[:find [(pull ?e [:name]) ...] :in $ ?p :where [?e :age 15]]', db, None) == [{"name": "Ivan"}]
    assert q('[:find ?n (pull $ ?e [:age]) :where [?e :name ?n] [?e :age 20]]', db) == [("Oleg", {"age": 20})]


# -- views and flavors ----------------------------------------------------------------------------

Q = '[:find ?n ?a :where [?e :p/name ?n] [?e :p/age ?a]]'


def test_time_views():
    db, dbs, _ = build()
    for t, at_t in enumerate(dbs):
        assert q(Q, as_of(db, t)) == q(Q, at_t)
    assert q('[:find ?a :where [?e :p/age ?a]]', since(db, 4)) == {(30,)}
    assert q(Q, since(db, 4)) == set()  # the name was asserted before t 4
    assert sorted(q('[:find ?v ?tx ?added :where [?e :p/name "Ivan"] [?e :p/age ?v ?tx ?added]]', history(db))) == [
        (30, 536870914, True), (30, 536870915, False), (30, 536870918, True), (31, 536870915, True),
        (31, 536870918, False)]
    assert q('[:find ?v :where [_ :p/age ?v _ false]]', history(db)) == {(30,), (31,), (25,)}
    assert q('[:find ?inst :where [?e :p/name "Petr" ?tx] [?tx :db/txInstant ?inst]]', db) == {
        (q('[:find ?i . :where [536870916 :db/txInstant ?i]]', db),)}
    assert q('[:find ?f :where [?e :p/friend ?f] [?e :p/name "Petr"]]', as_of(db, 4)) == {
        (q('[:find ?e . :where [?e :p/name "Ivan"]]', db),)}


def test_filtered_views(db):
    no_ivan = filter_db(db, lambda _, d: d.e != 1)
    assert q('[:find ?e :where [?e :name]]', no_ivan) == {(2,), (3,), (4,), (5,)}
    assert q('[:find ?e :where [?e :follows 2]]', no_ivan) == set()
    assert q('[:find ?e :where [?e :age 15]]', no_ivan) == set()
    assert q('[:find ?e :where [?e :name] [(missing? $ ?e :follows)]]', no_ivan) == {(4,), (5,)}


def test_a_recursive_rule_on_a_time_view_looks_up_each_question_apart():
    # Inside a rule, the same pattern is looked up with different variables bound ([?p :refs ?e]
    # with ?e bound: who refers to it; with ?p bound: what it refers to): the answers are cached
    # by which positions are bound, not only by the values.
    schema = {"item/label": {"db/valueType": kw("db.type/string"), "db/cardinality": kw("db.cardinality/one")},
              "item/refs": {"db/valueType": kw("db.type/ref"), "db/cardinality": kw("db.cardinality/many")}}
    db = empty_db(schema, flavor="datomic")
    db = transact(db, [{"db/id": "b", "item/label": "other"},
                       {"db/id": "a", "item/label": "me", "item/refs": ["b"]}]).db_after
    t = db.max_tx
    db = transact(db, [{"item/label": "later"}]).db_after
    rules = "[[(reach ?me ?e) [?e :item/label ?me]] [(reach ?me ?e) [?p :item/refs ?e] (reach ?me ?p)]]"
    query = '[:find ?e :in $ % :where (reach "me" ?e)]'
    assert q(query, as_of(db, t), rules) == q(query, db, rules) and len(q(query, db, rules)) == 2
