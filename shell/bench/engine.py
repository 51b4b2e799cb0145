"""The engine benchmarks of DataScript's suite, on our engine: transact, init, datoms, entity, pull."""

from __future__ import annotations

import random
from collections.abc import Callable
from functools import cache
from typing import Any

from datsync.core import datoms, db_with, empty_db, init_db

from .dataset import SCHEMA, Datasets


@cache
def datasets() -> Datasets:
    """The seeded datasets, generated once per process."""
    return Datasets(42)


@cache
def empty() -> Any:
    return empty_db(SCHEMA)


@cache
def people_db() -> Any:
    """The 20k-people database (~192k datoms)."""
    return db_with(empty(), datasets().people)


@cache
def pull_db() -> Any:
    """The wide 4x5 tree the pull benchmarks read."""
    return db_with(empty(), datasets().wide_4x5)


def add_1() -> Any:
    """One transaction per datom."""
    db = empty()
    for p in datasets().people:
        e = p["db/id"]
        db = db_with(db, [["db/add", e, "name", p["name"]]])
        db = db_with(db, [["db/add", e, "last-name", p["last-name"]]])
        db = db_with(db, [["db/add", e, "sex", p["sex"]]])
        db = db_with(db, [["db/add", e, "age", p["age"]]])
        db = db_with(db, [["db/add", e, "salary", p["salary"]]])
    return db


def add_5() -> Any:
    """One transaction per entity."""
    db = empty()
    for p in datasets().people:
        db = db_with(db, [p])
    return db


def add_all() -> Any:
    """One transaction for everything."""
    return db_with(empty(), datasets().people)


@cache
def _init_datoms() -> list[tuple]:
    out = []
    for p in datasets().people:
        e = int(p["db/id"])
        out += [(e, k, v) for k, v in p.items() if k != "db/id"]
    return out


def init() -> Any:
    """Bulk-build a database from datoms."""
    return init_db(_init_datoms())


@cache
def _retract_eids() -> list[int]:
    eids = [d.e for d in datoms(people_db(), "aevt", "name")]
    random.Random(42).shuffle(eids)
    return eids


def retract_5() -> Any:
    """retractEntity of every person, one transaction each."""
    db = people_db()
    for e in _retract_eids():
        db = db_with(db, [["db/retractEntity", e]])
    return db


def find_datoms() -> None:
    """2,000 point lookups of one attribute."""
    db = people_db()
    for e in range(9000, 11000):
        r = datoms(db, "eavt", e, "full-name")
        if r:
            r[0].v  # noqa: B018


def pull_one_entities() -> Any:
    from datsync.core.entity import entity

    def walk(e: Any) -> dict:
        return {"name": e.get("name"), "follows": [walk(f) for f in (e.get("follows") or ())]}

    return walk(entity(pull_db(), ("id", 1)))


def pull_one() -> Any:
    from datsync.core.pull import pull

    return pull(pull_db(), '["name" {"follows" ...}]', 1)


def pull_many_entities() -> Any:
    from datsync.core.entity import entity

    def walk(e: Any) -> dict:
        return {
            "db/id": e.get("db/id"), "last-name": e.get("last-name"), "alias": e.get("alias"),
            "sex": e.get("sex"), "age": e.get("age"), "salary": e.get("salary"),
            "follows": [walk(f) for f in (e.get("follows") or ())],
        }

    return walk(entity(pull_db(), ("id", 1)))


def pull_many() -> Any:
    from datsync.core.pull import pull

    return pull(pull_db(), '[:db/id "last-name" "alias" "sex" "age" "salary" {"follows" ...}]', 1)


def pull_wildcard() -> Any:
    from datsync.core.pull import pull

    return pull(pull_db(), '[* {"follows" ...}]', 1)


@cache
def _pull_many_eids() -> list[int]:
    return [d.e for d in datoms(people_db(), "aevt", "name")][:2000]


def pull_many_api_2k() -> Any:
    from datsync.core.pull import pull_many

    return pull_many(people_db(), '["name" "last-name" "age" "salary" "alias"]', _pull_many_eids())


BENCHMARKS: dict[str, Callable[[], Any]] = {
    "add-1": add_1,
    "add-5": add_5,
    "add-all": add_all,
    "init": init,
    "retract-5": retract_5,
    "find-datoms": find_datoms,
    "pull-one-entities": pull_one_entities,
    "pull-one": pull_one,
    "pull-many-entities": pull_many_entities,
    "pull-many": pull_many,
    "pull-wildcard": pull_wildcard,
    "pull_many-api-2k": pull_many_api_2k,
}
"""Benchmark name (DataScript's) -> the operation timed."""

SETUP: dict[str, Callable[[], Any]] = {
    "retract-5": lambda: (people_db(), _retract_eids()),
    "find-datoms": people_db,
    "init": _init_datoms,
    "pull_many-api-2k": lambda: (people_db(), _pull_many_eids()),
}
"""Fixtures built before timing starts (DataScript builds them outside the timed function too)."""
