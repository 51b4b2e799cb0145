"""Examples for ``pull`` / ``pull_many``. Every expected value below was confirmed against
DataScript 1.8.1 (the Node oracle) on the same schema and data, then spelled the Python way
(``"db/id"`` keys, EDN keywords as ``Keyword``)."""

from __future__ import annotations

import importlib

import pytest

from datsync.core import QueryError, ResolveError, db_with, empty_db, filter_db, kw
from datsync.core.pull import clear_pull_cache, parse_pull_pattern, pull, pull_many

SCHEMA = {
    "name": {"db/unique": "db.unique/identity"},
    "friends": {"db/valueType": "db.type/ref", "db/cardinality": "db.cardinality/many"},
    "best": {"db/valueType": "db.type/ref"},
    "aka": {"db/cardinality": "db.cardinality/many"},
    "address": {"db/valueType": "db.type/ref", "db/isComponent": True},
    "pets": {"db/valueType": "db.type/ref", "db/cardinality": "db.cardinality/many", "db/isComponent": True},
    "tag": {"db/valueType": "db.type/ref", "db/isComponent": True},
}

TX = [
    {
        "db/id": 1,
        "name": "Ivan",
        "age": 30,
        "aka": ["Vanya", "Ivanushka", "Jo"],
        "friends": [2, 3],
        "best": 2,
        "address": {"db/id": 10, "street": "Main", "city": "X"},
        "pets": [{"db/id": 20, "pname": "Rex", "tag": {"db/id": 30, "no": 5}}, {"db/id": 21, "pname": "Tom"}],
    },
    {"db/id": 2, "name": "Petr", "age": 40, "friends": [1, 3], "best": 3},
    {"db/id": 3, "name": "Oleg", "friends": [4]},
    {"db/id": 4, "name": "Kate", "best": 1},
    {"db/id": 5, "name": "Lone"},
]

DB = db_with(empty_db(SCHEMA), TX)

# (pattern, eid, DataScript's result)
ORACLE_CASES = [
    # attribute names, db/id, missing entities
    ('["name" "age"]', 1, {"age": 30, "name": "Ivan"}),
    ('["name" "age"]', 5, {"name": "Lone"}),
    ('["name" "age"]', 99, None),
    ('[:db/id "name" "friends"]', 1, {"friends": [{"db/id": 2}, {"db/id": 3}], "name": "Ivan", "db/id": 1}),
    ('[:db/id "name" "friends"]', 99, {"db/id": 99}),
    ('[:db/id "name"]', 99, {"db/id": 99}),
    ('["age"]', 5, None),
    ('["nonexist"]', 1, None),
    ("[]", 3, None),
    ("[{}]", 1, None),
    ('[:db/id :db/id "name" "name"]', 1, {"name": "Ivan", "db/id": 1}),
    # lookup refs as entity ids
    ('["name" "age"]', ("name", "Petr"), {"age": 40, "name": "Petr"}),
    ('["name" "age"]', ("name", "Nobody"), None),
    # wildcard (components pulled whole, recursively)
    (
        "[*]",
        1,
        {
            "db/id": 1,
            "address": {"db/id": 10, "city": "X", "street": "Main"},
            "age": 30,
            "aka": ["Ivanushka", "Jo", "Vanya"],
            "best": {"db/id": 2},
            "friends": [{"db/id": 2}, {"db/id": 3}],
            "name": "Ivan",
            "pets": [{"db/id": 20, "pname": "Rex", "tag": {"db/id": 30, "no": 5}}, {"db/id": 21, "pname": "Tom"}],
        },
    ),
    ("[*]", 10, {"db/id": 10, "city": "X", "street": "Main"}),
    ("[*]", 99, {"db/id": 99}),
    ("[*]", ("name", "Kate"), {"db/id": 4, "best": {"db/id": 1}, "name": "Kate"}),
    ('[* "_address"]', 10, {"db/id": 10, "city": "X", "street": "Main", "_address": {"db/id": 1}}),
    (
        '[* "_friends"]',
        3,
        {"db/id": 3, "friends": [{"db/id": 4}], "name": "Oleg", "_friends": [{"db/id": 1}, {"db/id": 2}]},
    ),
    (
        '[* {"friends" ["name"]}]',
        1,
        {
            "address": {"db/id": 10, "city": "X", "street": "Main"},
            "age": 30,
            "aka": ["Ivanushka", "Jo", "Vanya"],
            "best": {"db/id": 2},
            "friends": [{"name": "Petr"}, {"name": "Oleg"}],
            "db/id": 1,
            "name": "Ivan",
            "pets": [{"db/id": 20, "pname": "Rex", "tag": {"db/id": 30, "no": 5}}, {"db/id": 21, "pname": "Tom"}],
        },
    ),
    (
        '["name" *]',
        1,
        {
            "address": {"db/id": 10, "city": "X", "street": "Main"},
            "age": 30,
            "aka": ["Ivanushka", "Jo", "Vanya"],
            "best": {"db/id": 2},
            "friends": [{"db/id": 2}, {"db/id": 3}],
            "name": "Ivan",
            "db/id": 1,
            "pets": [{"db/id": 20, "pname": "Rex", "tag": {"db/id": 30, "no": 5}}, {"db/id": 21, "pname": "Tom"}],
        },
    ),
    (
        '[* ["name" :as "N"]]',
        1,
        {
            "address": {"db/id": 10, "city": "X", "street": "Main"},
            "age": 30,
            "aka": ["Ivanushka", "Jo", "Vanya"],
            "best": {"db/id": 2},
            "friends": [{"db/id": 2}, {"db/id": 3}],
            "N": "Ivan",
            "db/id": 1,
            "pets": [{"db/id": 20, "pname": "Rex", "tag": {"db/id": 30, "no": 5}}, {"db/id": 21, "pname": "Tom"}],
        },
    ),
    (
        '[* [:db/id :as "age"]]',
        1,
        {
            "age": 30,
            "address": {"db/id": 10, "city": "X", "street": "Main"},
            "aka": ["Ivanushka", "Jo", "Vanya"],
            "best": {"db/id": 2},
            "friends": [{"db/id": 2}, {"db/id": 3}],
            "name": "Ivan",
            "pets": [{"db/id": 20, "pname": "Rex", "tag": {"db/id": 30, "no": 5}}, {"db/id": 21, "pname": "Tom"}],
        },
    ),
    ('[* ["street" :as "city"]]', 10, {"city": "Main", "db/id": 10}),
    ('[* "*"]', 10, {"db/id": 10, "city": "X", "street": "Main"}),
    ("[:*]", 10, {"db/id": 10, "city": "X", "street": "Main"}),
    # nested maps
    ('["name" {"friends" ["name"]}]', 1, {"friends": [{"name": "Petr"}, {"name": "Oleg"}], "name": "Ivan"}),
    ('["name" {"friends" ["name"]}]', 5, {"name": "Lone"}),
    (
        '["name" {"friends" ["name"], "best" ["name"]}]',
        1,
        {"best": {"name": "Petr"}, "friends": [{"name": "Petr"}, {"name": "Oleg"}], "name": "Ivan"},
    ),
    ('[{"friends" [*]}]', 3, {"friends": [{"db/id": 4, "best": {"db/id": 1}, "name": "Kate"}]}),
    ('[{"friends" [:db/id]}]', 3, {"friends": [{"db/id": 4}]}),
    ('[{"friends" []}]', 3, None),
    ('["name" {"friends" ["name"]} {"friends" ["age"]}]', 1, {"friends": [{"age": 40}], "name": "Ivan"}),
    ('["name" {"friends" ["age"]} "friends"]', 1, {"friends": [{"db/id": 2}, {"db/id": 3}], "name": "Ivan"}),
    # components
    (
        '["name" "address" "pets"]',
        1,
        {
            "address": {"db/id": 10, "city": "X", "street": "Main"},
            "name": "Ivan",
            "pets": [{"db/id": 20, "pname": "Rex", "tag": {"db/id": 30, "no": 5}}, {"db/id": 21, "pname": "Tom"}],
        },
    ),
    (
        '["name" {"pets" ["pname"]} {"address" ["street"]}]',
        1,
        {"address": {"street": "Main"}, "name": "Ivan", "pets": [{"pname": "Rex"}, {"pname": "Tom"}]},
    ),
    (
        '["name" ["pets" :limit 1]]',
        1,
        {"name": "Ivan", "pets": [{"db/id": 20, "pname": "Rex", "tag": {"db/id": 30, "no": 5}}]},
    ),
    (
        '[* {"address" ["city"]}]',
        1,
        {
            "address": {"city": "X"},
            "db/id": 1,
            "age": 30,
            "aka": ["Ivanushka", "Jo", "Vanya"],
            "best": {"db/id": 2},
            "friends": [{"db/id": 2}, {"db/id": 3}],
            "name": "Ivan",
            "pets": [{"db/id": 20, "pname": "Rex", "tag": {"db/id": 30, "no": 5}}, {"db/id": 21, "pname": "Tom"}],
        },
    ),
    # reverse refs (a single map for a component owner)
    ('["name" "_friends"]', 3, {"name": "Oleg", "_friends": [{"db/id": 1}, {"db/id": 2}]}),
    ('["name" "_friends"]', 5, {"name": "Lone"}),
    ('["name" {"_friends" ["name"]}]', 3, {"name": "Oleg", "_friends": [{"name": "Ivan"}, {"name": "Petr"}]}),
    ('["name" "_address"]', 10, {"_address": {"db/id": 1}}),
    ('["name" "_address"]', 1, {"name": "Ivan"}),
    ('["_pets"]', 20, {"_pets": {"db/id": 1}}),
    ('["_best"]', 2, {"_best": [{"db/id": 1}]}),
    (
        '[{"_pets" [*]}]',
        20,
        {
            "_pets": {
                "db/id": 1,
                "address": {"db/id": 10, "city": "X", "street": "Main"},
                "age": 30,
                "aka": ["Ivanushka", "Jo", "Vanya"],
                "best": {"db/id": 2},
                "friends": [{"db/id": 2}, {"db/id": 3}],
                "name": "Ivan",
                "pets": [{"db/id": 20, "pname": "Rex", "tag": {"db/id": 30, "no": 5}}, {"db/id": 21, "pname": "Tom"}],
            }
        },
    ),
    (
        '[{"_address" [*]}]',
        10,
        {
            "_address": {
                "db/id": 1,
                "address": {"db/id": 10, "city": "X", "street": "Main"},
                "age": 30,
                "aka": ["Ivanushka", "Jo", "Vanya"],
                "best": {"db/id": 2},
                "friends": [{"db/id": 2}, {"db/id": 3}],
                "name": "Ivan",
                "pets": [{"db/id": 20, "pname": "Rex", "tag": {"db/id": 30, "no": 5}}, {"db/id": 21, "pname": "Tom"}],
            }
        },
    ),
    ('[{"_address" [*]}]', 1, None),
    # limit
    ('["name" ["friends" :limit 1]]', 1, {"friends": [{"db/id": 2}], "name": "Ivan"}),
    ('["name" (limit "friends" 1)]', 1, {"friends": [{"db/id": 2}], "name": "Ivan"}),
    ('["name" ("limit" "_friends" 1)]', 3, {"name": "Oleg", "_friends": [{"db/id": 1}]}),
    ('["name" ["friends" :limit nil]]', 1, {"friends": [{"db/id": 2}, {"db/id": 3}], "name": "Ivan"}),
    ('[("limit" "friends" nil)]', 1, {"friends": [{"db/id": 2}, {"db/id": 3}]}),
    ('[["friends" :limit 1.5]]', 1, {"friends": [{"db/id": 2}, {"db/id": 3}]}),
    ('["name" ["aka" :limit 2]]', 1, {"aka": ["Ivanushka", "Jo"], "name": "Ivan"}),
    ('[{["friends" :limit 1] ["name"]}]', 1, {"friends": [{"name": "Petr"}]}),
    ('[{("limit" "friends" 1) ["name"]}]', 1, {"friends": [{"name": "Petr"}]}),
    (
        '[* ["aka" :limit 1]]',
        1,
        {
            "address": {"db/id": 10, "city": "X", "street": "Main"},
            "age": 30,
            "aka": ["Ivanushka"],
            "db/id": 1,
            "best": {"db/id": 2},
            "friends": [{"db/id": 2}, {"db/id": 3}],
            "name": "Ivan",
            "pets": [{"db/id": 20, "pname": "Rex", "tag": {"db/id": 30, "no": 5}}, {"db/id": 21, "pname": "Tom"}],
        },
    ),
    # default
    ('["name" ["age" :default 0]]', 5, {"age": 0, "name": "Lone"}),
    ('["name" ["age" :default 0]]', 1, {"age": 30, "name": "Ivan"}),
    ('["name" (default "age" 0)]', 5, {"age": 0, "name": "Lone"}),
    ('["name" ["_friends" :default :none]]', 5, {"name": "Lone", "_friends": kw("none")}),
    ('["name" ["friends" :default "none"]]', 5, {"friends": "none", "name": "Lone"}),
    ('[{["best" :default "x"] ["name"]}]', 5, {"best": "x"}),
    ('[["age" :default nil]]', 5, None),
    ('[["friends" :limit 1 :as "F" :default 7]]', 5, {"F": 7}),
    ('[(limit (default "friends" 7) 1)]', 5, {"friends": 7}),
    ('[(("friends" :limit 1) :default 7)]', 1, {"friends": [{"db/id": 2}]}),
    ('["name" ["_address" :default "nope"]]', 1, {"name": "Ivan", "_address": "nope"}),
    # as
    ('[["name" :as "N"] ["age" :as :years]]', 1, {kw("years"): 30, "N": "Ivan"}),
    ('[[:db/id :as "ID"]]', 1, {"ID": 1}),
    ('[["_friends" :as "fans"]]', 3, {"fans": [{"db/id": 1}, {"db/id": 2}]}),
    ('[{["friends" :as "F"] ["name"]}]', 1, {"F": [{"name": "Petr"}, {"name": "Oleg"}]}),
    ('[["name" :as 5]]', 1, {5: "Ivan"}),
    # repeated attributes: the last spec with the same key wins; same-name specs share datoms
    ('[["name" :as "x"] ["name" :as "y"]]', 1, {"x": "Ivan"}),
    ('[["name" :as "x"] ["name" :as "y" :default "d"]]', 1, {"x": "Ivan", "y": "d"}),
    ('["aka" ["aka" :limit 1]]', 1, {"aka": ["Ivanushka"]}),
    ('[["aka" :limit 1] "aka"]', 1, {"aka": ["Ivanushka", "Jo", "Vanya"]}),
    ('[["name" :as "k"] ["age" :as "k"]]', 1, {"k": 30}),
    ('[["_friends" :as "k"] ["name" :as "k"]]', 3, {"k": [{"db/id": 1}, {"db/id": 2}]}),
    ('["street" "city" [:db/id :as "city"]]', 10, {"street": "Main", "city": 10}),
    # recursion
    (
        '["name" {"friends" ...}]',
        1,
        {
            "friends": [
                {
                    "friends": [
                        {"friends": [{"db/id": 2}, {"friends": [{"name": "Kate"}], "name": "Oleg"}], "name": "Ivan"},
                        {"friends": [{"name": "Kate"}], "name": "Oleg"},
                    ],
                    "name": "Petr",
                },
                {"friends": [{"name": "Kate"}], "name": "Oleg"},
            ],
            "name": "Ivan",
        },
    ),
    ('["name" {"friends" ...}]', 4, {"name": "Kate"}),
    ('["name" {"friends" "..."}]', 3, {"friends": [{"name": "Kate"}], "name": "Oleg"}),
    ('["name" {"friends" 1}]', 1, {"friends": [{"name": "Petr"}, {"name": "Oleg"}], "name": "Ivan"}),
    (
        '["name" {"friends" 2}]',
        1,
        {
            "friends": [
                {"friends": [{"friends": [{"db/id": 2}], "name": "Ivan"}, {"name": "Oleg"}], "name": "Petr"},
                {"friends": [{"name": "Kate"}], "name": "Oleg"},
            ],
            "name": "Ivan",
        },
    ),
    ('[{"friends" 1.5}]', 1, {"friends": [{"friends": [{"friends": [{"db/id": 2}]}]}]}),
    ('["name" {"best" ...}]', 1, {"best": {"best": {"name": "Oleg"}, "name": "Petr"}, "name": "Ivan"}),
    ('["name" {"best" 1}]', 1, {"best": {"name": "Petr"}, "name": "Ivan"}),
    (
        '["name" {"friends" ["name" {"best" ...}]}]',
        1,
        {"friends": [{"best": {"name": "Oleg"}, "name": "Petr"}, {"name": "Oleg"}], "name": "Ivan"},
    ),
    (
        '["name" {"friends" ...} {"best" ...}]',
        2,
        {
            "best": {
                "friends": [
                    {
                        "best": {
                            "best": {"best": {"db/id": 3}, "friends": [{"db/id": 1}, {"db/id": 3}], "name": "Petr"},
                            "friends": [
                                {"best": {"db/id": 3}, "friends": [{"db/id": 1}, {"db/id": 3}], "name": "Petr"},
                                {"db/id": 3},
                            ],
                            "name": "Ivan",
                        },
                        "name": "Kate",
                    }
                ],
                "name": "Oleg",
            },
            "friends": [
                {
                    "best": {
                        "best": {"friends": [{"best": {"db/id": 1}, "name": "Kate"}], "name": "Oleg"},
                        "friends": [
                            {"db/id": 1},
                            {"friends": [{"best": {"db/id": 1}, "name": "Kate"}], "name": "Oleg"},
                        ],
                        "name": "Petr",
                    },
                    "friends": [
                        {
                            "best": {"friends": [{"best": {"db/id": 1}, "name": "Kate"}], "name": "Oleg"},
                            "friends": [
                                {"db/id": 1},
                                {"friends": [{"best": {"db/id": 1}, "name": "Kate"}], "name": "Oleg"},
                            ],
                            "name": "Petr",
                        },
                        {"friends": [{"best": {"db/id": 1}, "name": "Kate"}], "name": "Oleg"},
                    ],
                    "name": "Ivan",
                },
                {
                    "friends": [
                        {
                            "best": {
                                "best": {"best": {"db/id": 3}, "friends": [{"db/id": 1}, {"db/id": 3}], "name": "Petr"},
                                "friends": [
                                    {"best": {"db/id": 3}, "friends": [{"db/id": 1}, {"db/id": 3}], "name": "Petr"},
                                    {"db/id": 3},
                                ],
                                "name": "Ivan",
                            },
                            "name": "Kate",
                        }
                    ],
                    "name": "Oleg",
                },
            ],
            "name": "Petr",
        },
    ),
    (
        '[{"friends" ["name"] "best" ...}]',
        1,
        {
            "best": {"best": {"friends": [{"name": "Kate"}]}, "friends": [{"name": "Ivan"}, {"name": "Oleg"}]},
            "friends": [{"name": "Petr"}, {"name": "Oleg"}],
        },
    ),
    (
        '["name" {"_friends" ...}]',
        4,
        {
            "name": "Kate",
            "_friends": [
                {
                    "name": "Oleg",
                    "_friends": [
                        {"name": "Ivan", "_friends": [{"name": "Petr", "_friends": [{"db/id": 1}]}]},
                        {"name": "Petr", "_friends": [{"name": "Ivan", "_friends": [{"db/id": 2}]}]},
                    ],
                }
            ],
        },
    ),
    ('["name" {"_friends" 1}]', 4, {"name": "Kate", "_friends": [{"name": "Oleg"}]}),
    ('[* {"friends" ...}]', 4, {"best": {"db/id": 1}, "db/id": 4, "name": "Kate"}),
]


@pytest.mark.parametrize(("pattern", "eid", "expected"), ORACLE_CASES)
def test_pull_matches_datascript(pattern, eid, expected):
    assert pull(DB, pattern, eid) == expected


@pytest.mark.parametrize(
    ("pattern", "key", "value"),
    [
        ('[* [:db/id :as "name"] "zzz"]', "name", 1),
        ('[* [:db/id :as "name"] "aaa"]', "name", "Ivan"),
        ('[* [:db/id :as "name"] "best"]', "name", "Ivan"),
        ('[* [:db/id :as "name"] "pets"]', "name", 1),
        ('[* [:db/id :as "age"]]', "age", 30),
    ],
)
def test_db_id_specs_are_matched_after_named_attributes(pattern, key, value):
    # DataScript walks db/id specs after the named ones, so with a wildcard the alias collides
    # with a datom's attribute either before or after it (checked against the oracle).
    assert pull(DB, pattern, 1)[key] == value


def test_as_alias_is_kept_as_given():
    # DataScript keys the result by the alias value itself (JSON shows it as "5").
    assert pull(DB, '[["name" :as 5] ["age" :as :years]]', 1) == {5: "Ivan", kw("years"): 30}


# --- Python data patterns ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "edn"),
    [
        (["name", "age"], '["name" "age"]'),
        (["*"], "[*]"),
        ([kw("name"), kw("db/id")], "[:name :db/id]"),
        (["name", {"friends": ["name"]}], '["name" {"friends" ["name"]}]'),
        (["name", {"friends": "..."}], '["name" {"friends" ...}]'),
        (["name", {"friends": 2}], '["name" {"friends" 2}]'),
        ([["friends", "limit", 1]], '[["friends" :limit 1]]'),
        ([("friends", "limit", None)], '[("friends" :limit nil)]'),
        ([("limit", "friends", 1)], '[(limit "friends" 1)]'),
        ([("default", "age", 0)], '[(default "age" 0)]'),
        ([["age", "default", 0, "as", "years"]], '[["age" :default 0 :as "years"]]'),
        ([[kw("age"), kw("as"), "years"]], '[[:age :as "years"]]'),
        ([{("friends", "as", "F", "limit", 1): ["name"]}], '[{("friends" :as "F" :limit 1) ["name"]}]'),
        (["name", "_friends", {"_best": ["name"]}], '["name" "_friends" {"_best" ["name"]}]'),
    ],
)
def test_python_data_patterns_mean_what_edn_means(data, edn):
    for eid in (1, 2, 3, 5):
        assert pull(DB, data, eid) == pull(DB, edn, eid)


def test_python_data_options_may_be_strings_but_edn_options_are_keywords():
    assert pull(DB, [("name", "as", "x")], 1) == {"x": "Ivan"}
    with pytest.raises(QueryError, match="Expected one of :as, :limit, :default, :xform"):
        pull(DB, '[("name" "as" "x")]', 1)


# --- xform (Python callables; the semantics are DataScript's, checked with its built-ins) ---


def test_xform_on_plain_values_and_db_id_is_always_stored():
    assert pull(DB, [("age", "xform", lambda v: v + 1)], 1) == {"age": 31}
    assert pull(DB, [("name", "xform", lambda v: None), "age"], 1) == {"name": None, "age": 30}
    assert pull(DB, [("db/id", "xform", str)], 2) == {"db/id": "2"}


def test_xform_on_missing_attribute_sees_none_unless_there_is_a_default():
    assert pull(DB, [("zz", "xform", lambda v: f"<{v}>")], 1) == {"zz": "<None>"}
    assert pull(DB, [("zz", "xform", lambda v: None), "name"], 1) == {"name": "Ivan"}
    assert pull(DB, [("zz", "xform", str, "default", 5)], 1) == {"zz": 5}
    assert pull(DB, [("age", "xform", str, "default", 5)], 1) == {"age": "30"}


def test_xform_on_many_and_refs_drops_none():
    assert pull(DB, [("aka", "xform", len)], 1) == {"aka": 3}
    assert pull(DB, [("aka", "xform", len, "limit", 1)], 1) == {"aka": 1}
    assert pull(DB, [("best", "xform", lambda v: v["db/id"])], 1) == {"best": 2}
    assert pull(DB, [{("best", "xform", repr): ["nothing"]}], 1) == {"best": "None"}
    assert pull(DB, [{("friends", "xform", len): ["name"]}], 1) == {"friends": 2}
    assert pull(DB, [("aka", "xform", lambda v: None), ("friends", "xform", lambda v: None), "name"], 1) == {
        "name": "Ivan"
    }
    assert pull(DB, [("_friends", "xform", len)], 3) == {"_friends": 2}
    # no reverse datoms: the attribute is skipped, xform is not called
    assert pull(DB, [("_friends", "xform", repr), "name"], 5) == {"name": "Lone"}


# --- errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ('"name"', 'Expected pattern to be sequential?, got: "name"'),
        ('{"friends" ["name"]}', 'Expected pattern to be sequential?, got: {"friends" ["name"]}'),
        ("[1]", "Expected attr-name | attr-expr | map-spec | *, got: 1"),
        ('["name" nil]', "Expected attr-name | attr-expr | map-spec | *, got: nil"),
        ('["name" ["name" :limit 1]]', 'Expected limit attribute having :db.cardinality/many, got: "name"'),
        ('[("limit" "name" 1)]', 'Expected limit attribute having :db.cardinality/many, got: "name"'),
        ('[["_address" :limit 1]]', 'Expected limit attribute having :db.cardinality/many, got: "address"'),
        ('[["friends" :limit 0]]', "Expected (positive-number | nil), got: 0"),
        ('[["friends" :limit "x"]]', 'Expected (positive-number | nil), got: "x"'),
        ('[["friends" :limit true]]', "Expected (positive-number | nil), got: true"),
        ('[["friends" :as]]', 'Expected even number of opts, got: ["friends" :as]'),
        ('[["friends" :foo 1]]', 'Expected one of :as, :limit, :default, :xform, got: ["friends" :foo 1]'),
        ('[(:limit "friends" 1)]', 'Expected one of :as, :limit, :default, :xform, got: (:limit "friends" 1)'),
        (
            "[[]]",
            "Expected [attr-name attr-option+] | ['limit attr-name (positive-num | nil)] | "
            "['default attr-name any-val], got: []",
        ),
        (
            '[(foo "friends" 1)]',
            "Expected [attr-name attr-option+] | ['limit attr-name (positive-num | nil)] | "
            '[\'default attr-name any-val], got: (foo "friends" 1)',
        ),
        ('[("limit" "friends")]', 'Expected [\'limit attr-name (positive-number | nil)], got: ("limit" "friends")'),
        ('[(default "age")]', 'Expected [\'default attr-name any-value], got: (default "age")'),
        ('["name" {"age" ["x"]}]', 'Expected attribute having :db.type/ref, got: "age"'),
        ('[{"nonexist" ["name"]}]', 'Expected attribute having :db.type/ref, got: "nonexist"'),
        ('[{"friends" "name"}]', 'Expected pattern to be sequential?, got: "name"'),
        ('[{"friends" nil}]', "Expected pattern to be sequential?, got: nil"),
        ('[{"friends" 0}]', 'Expected (positive-num | ...), got: {"friends" 0}'),
        ('[{* ["name"]}]', "Expected attr-name | attr-expr, got: *"),
        ('["_name"]', 'Expected reverse attribute having :db.type/ref, got: "_name"'),
        ('["_nonexist"]', 'Expected reverse attribute having :db.type/ref, got: "_nonexist"'),
        ('[["age" :xform nil]]', "Can't resolve symbol nil"),
        ('[["age" :xform inc]]', "Can't resolve symbol inc"),
    ],
)
def test_malformed_patterns_raise_query_errors_with_datascripts_messages(pattern, message):
    with pytest.raises(QueryError) as info:
        pull(DB, pattern, 1)
    assert info.value.code == "pull/syntax"
    assert str(info.value) == message


def test_unreadable_edn_is_a_query_error():
    with pytest.raises(QueryError, match="Cannot read pull pattern") as info:
        pull(DB, '["name"', 1)
    assert info.value.code == "pull/syntax"


def test_malformed_python_data_patterns():
    with pytest.raises(QueryError, match="sequential"):
        pull(DB, "name", 1)  # a str is EDN text: the symbol `name`, not a pattern
    with pytest.raises(QueryError, match="Expected one of :as, :limit, :default, :xform"):
        pull(DB, [["name", "age", 1]], 1)
    with pytest.raises(QueryError, match="Can't resolve symbol"):
        pull(DB, [("age", "xform", 42)], 1)


def test_malformed_entity_ids_raise_resolve_errors():
    for eid in (0, -1, "Ivan", None):
        with pytest.raises(ResolveError):
            pull(DB, '["name"]', eid)
    with pytest.raises(ResolveError):
        pull(DB, '["name"]', ("age", 30))  # lookup refs need a unique attribute


# --- pull_many, idents, views, cycles, depth, limits ------------------------------------


def test_pull_many_keeps_order_and_nones():
    eids = [1, 99, ("name", "Petr"), ("name", "Nobody"), 5]
    assert pull_many(DB, '["name"]', eids) == [{"name": "Ivan"}, None, {"name": "Petr"}, None, {"name": "Lone"}]
    assert pull_many(DB, "[*]", [99]) == [{"db/id": 99}]
    assert pull_many(DB, '["name"]', []) == []


def test_ident_keywords_resolve_as_entity_ids():
    db = db_with(DB, [{"db/id": 4, "db/ident": kw("kate")}])
    assert pull(db, '["name"]', kw("kate")) == {"name": "Kate"}
    assert pull(db, '["name"]', kw("nobody")) is None


def test_filtered_views_pull_only_visible_datoms():
    # DataScript's d/filter: the datom [1 f 3] stays visible, entity 3's own datoms do not.
    schema = {"f": {"db/valueType": "db.type/ref", "db/cardinality": "db.cardinality/many"}}
    db = db_with(
        empty_db(schema),
        [
            {"db/id": 1, "name": "a", "age": 3, "f": [2, 3]},
            {"db/id": 2, "name": "b"},
            {"db/id": 3, "name": "c"},
        ],
    )
    fdb = filter_db(db, lambda _db, d: d.a != "age" and d.e != 3)
    assert pull(fdb, "[*]", 1) == {"db/id": 1, "f": [{"db/id": 2}, {"db/id": 3}], "name": "a"}
    assert pull(fdb, '["name" "age" {"f" ["name"]}]', 1) == {"f": [{"name": "b"}], "name": "a"}
    assert pull(fdb, '["name" "_f"]', 3) == {"_f": [{"db/id": 1}]}
    assert pull(fdb, '["name" "_f"]', 2) == {"name": "b", "_f": [{"db/id": 1}]}


CYCLE = db_with(
    empty_db(SCHEMA),
    [
        {"db/id": 1, "n": "A", "address": 2, "best": 3, "friends": [3, 4]},
        {"db/id": 2, "n": "B", "address": 1},
        {"db/id": 3, "n": "C"},
        {"db/id": 4, "n": "D"},
    ],
)


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        (
            "[*]",
            {
                "db/id": 1,
                "address": {
                    "db/id": 2,
                    "address": {
                        "db/id": 1,
                        "address": {"db/id": 2},
                        "best": {"db/id": 3},
                        "friends": [{"db/id": 3}, {"db/id": 4}],
                        "n": "A",
                    },
                    "n": "B",
                },
                "best": {"db/id": 3},
                "friends": [{"db/id": 3}, {"db/id": 4}],
                "n": "A",
            },
        ),
        (
            '[{"address" ["n" {"address" ...}]}]',
            {"address": {"address": {"address": {"address": {"db/id": 1}, "n": "B"}, "n": "A"}, "n": "B"}},
        ),
        (
            '[{"address" ["n" {"address" ["n" {"address" ["n"]}]}]}]',
            {"address": {"address": {"address": {"n": "B"}, "n": "A"}, "n": "B"}},
        ),
        (
            '["n" {"_address" ...}]',
            {"n": "A", "_address": {"n": "B", "_address": {"n": "A", "_address": {"db/id": 2}}}},
        ),
        ('[{"address" 2} "n"]', {"address": {"address": {"address": {"db/id": 2}, "n": "A"}, "n": "B"}, "n": "A"}),
    ],
)
def test_component_cycles_stop_where_datascript_stops(pattern, expected):
    assert pull(CYCLE, pattern, 1) == expected


def test_deep_recursion_has_no_python_recursion_limit():
    db = db_with(empty_db(SCHEMA), [{"db/id": i, "name": f"P{i}", "best": i + 1} for i in range(100, 1600)])
    node = pull(db, '["name" {"best" ...}]', 100)
    depth = 0
    while "best" in node:
        node = node["best"]
        depth += 1
    assert (depth, node) == (1499, {"name": "P1599"})


def test_default_limit_is_1000_for_many_and_reverse_of_many():
    # DataScript: 1000 for "aka", "_friends" (friends is many); none for "_best" (best is one).
    tx = [{"db/id": 1, "name": "hub"}]
    tx += [{"db/id": i, "best": 1, "friends": [1]} for i in range(2, 1105)]
    tx += [{"db/id": 2000, "aka": list(range(1200))}]
    db = db_with(empty_db(SCHEMA), tx)
    sizes = {k: len(v) for k, v in pull(db, '["_best" "_friends"]', 1).items()}
    assert sizes == {"_best": 1103, "_friends": 1000}
    assert len(pull(db, '["aka"]', 2000)["aka"]) == 1000
    assert len(pull(db, "[*]", 2000)["aka"]) == 1000
    assert len(pull(db, '[["aka" :limit nil]]', 2000)["aka"]) == 1200
    assert len(pull(db, '[["_friends" :limit 1001]]', 1)["_friends"]) == 1001


# --- parsing and the cache --------------------------------------------------------------


def test_parsed_patterns_are_cached_per_pattern_and_schema():
    clear_pull_cache()
    compiled = importlib.import_module("datsync.core.pull")._compiled
    assert compiled(DB.props, '["name"]') is compiled(DB.props, '["name"]')
    assert compiled(DB.props, ["name", {"friends": ["name"]}]) is compiled(DB.props, ["name", {"friends": ["name"]}])
    assert compiled(DB.props, ["name"]) is not compiled(CYCLE.props, ["name"])
    # equal but differently typed option values are different patterns
    assert pull(DB, [("zz", "default", False)], 1) == {"zz": False}
    assert pull(DB, [("zz", "default", 0)], 1) == {"zz": 0}
    assert pull(DB, [("zz", "default", 0.0)], 1)["zz"].__class__ is float


def test_unhashable_option_values_still_work():
    assert pull(DB, [("zz", "default", [])], 1) == {"zz": []}
    assert pull(DB, [("zz", "default", {"a": [1]})], 1) == {"zz": {"a": [1]}}


def test_parse_pull_pattern_reports_errors_without_a_db_read():
    parse_pull_pattern(DB, '["name" {"friends" ...}]')
    with pytest.raises(QueryError):
        parse_pull_pattern(DB.props, ["_name"])
