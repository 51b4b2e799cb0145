"""The query benchmarks of DataScript's suite on our engine: q1-q4, q5-shortcircuit, qpred1/2, rules.

Same queries and data as ``tests/oracle/bench_ds.js``: the 20k-people database for q*, and for the
rules benchmarks the ``wideDb(depth, width)`` trees and ``longDb(depth, width)`` chains queried with
the recursive ``follows`` rule. Query text is passed as EDN on every call (parsed once, then served
from the parse cache), as DataScript's JS API is called with strings.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

from datsync.core import db_with
from datsync.core.query import q

from .dataset import Datasets
from .engine import datasets, empty, people_db

RULES = """[[(follows ?x ?y) [?x "follows" ?y]]
            [(follows ?x ?y) [?x "follows" ?t] (follows ?t ?y)]]"""
RULES_Q = '[:find ?e ?e2 :in $ % :where (follows ?e ?e2)]'


@cache
def wide_db(depth: int, width: int) -> Any:
    """A tree of people ``depth`` levels deep, each following ``width`` children."""
    return db_with(empty(), datasets().wide_tx(1, depth, width))


@cache
def long_db(depth: int, width: int) -> Any:
    """``width`` chains of ``depth`` follows each."""
    return db_with(empty(), Datasets.long_tx(depth, width))


def q1() -> Any:
    return q('[:find ?e :where [?e "name" "Ivan"]]', people_db())


def q2() -> Any:
    return q('[:find ?e ?a :where [?e "name" "Ivan"] [?e "age" ?a]]', people_db())


def q3() -> Any:
    return q('[:find ?e ?a :where [?e "name" "Ivan"] [?e "age" ?a] [?e "sex" "male"]]', people_db())


def q4() -> Any:
    return q('[:find ?e ?l ?a :where [?e "name" "Ivan"] [?e "last-name" ?l] [?e "age" ?a] [?e "sex" "male"]]',
             people_db())


def q5_shortcircuit() -> Any:
    return q('[:find ?e ?n ?l ?a ?s ?al :in $ ?n ?a :where [?e "name" ?n] [?e "age" ?a] [?e "last-name" ?l] '
             '[?e "sex" ?s] [?e "alias" ?al]]', people_db(), "Anastasia", 35)


def qpred1() -> Any:
    return q('[:find ?e ?s :where [?e "salary" ?s] [(> ?s 50000)]]', people_db())


def qpred2() -> Any:
    return q('[:find ?e ?s :in $ ?min_s :where [?e "salary" ?s] [(> ?s ?min_s)]]', people_db(), 50000)


def _rules(db: Callable[[], Any]) -> Callable[[], Any]:
    def run() -> Any:
        return q(RULES_Q, db(), RULES)

    return run


QUERY_BENCHMARKS: dict[str, Callable[[], Any]] = {
    "q1": q1,
    "q2": q2,
    "q3": q3,
    "q4": q4,
    "q5-shortcircuit": q5_shortcircuit,
    "qpred1": qpred1,
    "qpred2": qpred2,
    "rules-wide-3x3": _rules(lambda: wide_db(3, 3)),
    "rules-wide-5x3": _rules(lambda: wide_db(5, 3)),
    "rules-wide-7x3": _rules(lambda: wide_db(7, 3)),
    "rules-wide-4x6": _rules(lambda: wide_db(4, 6)),
    "rules-long-10x3": _rules(lambda: long_db(10, 3)),
    "rules-long-30x3": _rules(lambda: long_db(30, 3)),
    "rules-long-30x5": _rules(lambda: long_db(30, 5)),
}
"""Benchmark name (DataScript's) -> the query timed."""

SETUP: dict[str, Callable[[], Any]] = {
    **{name: people_db for name in ("q1", "q2", "q3", "q4", "q5-shortcircuit", "qpred1", "qpred2")},
    "rules-wide-3x3": lambda: wide_db(3, 3),
    "rules-wide-5x3": lambda: wide_db(5, 3),
    "rules-wide-7x3": lambda: wide_db(7, 3),
    "rules-wide-4x6": lambda: wide_db(4, 6),
    "rules-long-10x3": lambda: long_db(10, 3),
    "rules-long-30x3": lambda: long_db(30, 3),
    "rules-long-30x5": lambda: long_db(30, 5),
}
"""Fixtures built before timing starts (DataScript builds its databases outside the timed function)."""
