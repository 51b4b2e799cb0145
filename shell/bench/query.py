"""The query benchmarks of DataScript's suite on our engine: q1-q4, q5-shortcircuit, qpred1/2, rules.

Same queries and data as ``tests/oracle/bench_ds.js``: the 20k-people database for q*, and for the
rules benchmarks the ``wideDb(depth, width)`` trees and ``longDb(depth, width)`` chains queried with
the recursive ``follows`` rule. Query text is passed as EDN on every call (parsed once, then served
from the parse cache), as DataScript's JS API is called with strings. Attributes are written as a
user writes them in EDN, as keywords (``[?e :name "Ivan"]``); ``query_benchmarks("string")`` gives
DataScript's spelling (``[?e "name" "Ivan"]``), which names the same attributes.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

from datsync.core import db_with
from datsync.core.query import q

from .dataset import Datasets
from .engine import datasets, empty, people_db

ATTRIBUTE_SPELLINGS = ("keyword", "string")
"""How the benchmark queries write attributes: ``:name`` (EDN keywords) or ``"name"`` (DataScript's)."""

RULES = """[[(follows ?x ?y) [?x :follows ?y]]
            [(follows ?x ?y) [?x :follows ?t] (follows ?t ?y)]]"""
RULES_Q = '[:find ?e ?e2 :in $ % :where (follows ?e ?e2)]'

PEOPLE_QUERIES: dict[str, tuple[str, tuple]] = {
    "q1": ('[:find ?e :where [?e :name "Ivan"]]', ()),
    "q2": ('[:find ?e ?a :where [?e :name "Ivan"] [?e :age ?a]]', ()),
    "q3": ('[:find ?e ?a :where [?e :name "Ivan"] [?e :age ?a] [?e :sex "male"]]', ()),
    "q4": ('[:find ?e ?l ?a :where [?e :name "Ivan"] [?e :last-name ?l] [?e :age ?a] [?e :sex "male"]]', ()),
    "q5-shortcircuit": ('[:find ?e ?n ?l ?a ?s ?al :in $ ?n ?a :where [?e :name ?n] [?e :age ?a] '
                        '[?e :last-name ?l] [?e :sex ?s] [?e :alias ?al]]', ("Anastasia", 35)),
    "qpred1": ('[:find ?e ?s :where [?e :salary ?s] [(> ?s 50000)]]', ()),
    "qpred2": ('[:find ?e ?s :in $ ?min_s :where [?e :salary ?s] [(> ?s ?min_s)]]', (50000,)),
}
"""Benchmark name -> (query text with keyword attributes, inputs after the database)."""

_ATTRIBUTES = ("name", "age", "last-name", "sex", "alias", "salary", "follows")


def spelled(text: str, spelling: str) -> str:
    """``text`` with its benchmark attributes written as ``spelling`` says (keywords as given)."""
    if spelling not in ATTRIBUTE_SPELLINGS:
        raise ValueError(f"spelling must be one of {ATTRIBUTE_SPELLINGS}, got {spelling!r}")
    if spelling == "keyword":
        return text
    for a in sorted(_ATTRIBUTES, key=len, reverse=True):
        text = text.replace(f" :{a} ", f' "{a}" ').replace(f" :{a}]", f' "{a}"]')
    return text


@cache
def wide_db(depth: int, width: int) -> Any:
    """A tree of people ``depth`` levels deep, each following ``width`` children."""
    return db_with(empty(), datasets().wide_tx(1, depth, width))


@cache
def long_db(depth: int, width: int) -> Any:
    """``width`` chains of ``depth`` follows each."""
    return db_with(empty(), Datasets.long_tx(depth, width))


def _people(text: str, inputs: tuple) -> Callable[[], Any]:
    def run() -> Any:
        return q(text, people_db(), *inputs)

    return run


def _rules(db: Callable[[], Any], rules: str) -> Callable[[], Any]:
    def run() -> Any:
        return q(RULES_Q, db(), rules)

    return run


_RULES_DBS: dict[str, Callable[[], Any]] = {
    "rules-wide-3x3": lambda: wide_db(3, 3),
    "rules-wide-5x3": lambda: wide_db(5, 3),
    "rules-wide-7x3": lambda: wide_db(7, 3),
    "rules-wide-4x6": lambda: wide_db(4, 6),
    "rules-long-10x3": lambda: long_db(10, 3),
    "rules-long-30x3": lambda: long_db(30, 3),
    "rules-long-30x5": lambda: long_db(30, 5),
}


def query_benchmarks(spelling: str = "keyword") -> dict[str, Callable[[], Any]]:
    """Benchmark name (DataScript's) -> the query timed, attributes written as ``spelling`` says."""
    out = {name: _people(spelled(text, spelling), inputs) for name, (text, inputs) in PEOPLE_QUERIES.items()}
    rules = spelled(RULES, spelling)
    out.update({name: _rules(db, rules) for name, db in _RULES_DBS.items()})
    return out


QUERY_BENCHMARKS: dict[str, Callable[[], Any]] = query_benchmarks("keyword")
"""Benchmark name (DataScript's) -> the query timed, with keyword attributes (as a user writes EDN)."""

SETUP: dict[str, Callable[[], Any]] = {
    **{name: people_db for name in PEOPLE_QUERIES},
    **_RULES_DBS,
}
"""Fixtures built before timing starts (DataScript builds its databases outside the timed function)."""
