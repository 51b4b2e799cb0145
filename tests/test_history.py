"""Time views of the Datomic flavor: as_of, since, history, and how they compose."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from datsync.core import (
    TX0,
    Datom,
    TxError,
    datoms,
    empty_db,
    entid,
    filter_db,
    index_range,
    kw,
    rseek_datoms,
    seek_datoms,
    transact,
)
from datsync.core.datomic import EPOCH
from datsync.core.history import (
    TimeView,
    as_of,
    as_of_t,
    basis_t,
    current,
    history,
    is_history,
    resolve_tx,
    since,
    since_t,
    t_to_tx,
    tx_to_t,
)

UTC = dt.UTC
INDEXES = ("eavt", "aevt", "avet", "vaet")


def attr(name, vtype, card="one", **extra):
    return {"db/ident": kw(name), "db/valueType": kw(f"db.type/{vtype}"),
            "db/cardinality": kw(f"db.cardinality/{card}"), **extra}


SCHEMA = [
    attr("p/name", "string", **{"db/unique": kw("db.unique/identity")}),
    attr("p/age", "long", **{"db/index": True}),
    attr("p/tags", "keyword", "many", **{"db/index": True}),
    attr("p/friend", "ref", "many"),
    attr("p/best", "ref"),
    attr("p/note", "string"),
]


def hour(h):
    return dt.datetime(2024, 1, 1, tzinfo=UTC) + dt.timedelta(hours=h)


def build():
    """A small history: returns the final db and the db after every transaction (index = t)."""
    db = empty_db(flavor="datomic")
    dbs = [db]
    reports = []
    steps = [
        SCHEMA,
        [{"db/id": "i", "p/name": "Ivan", "p/age": 30, "p/tags": [kw("a"), kw("b")]},
         {"db/id": "o", "p/name": "Olga", "p/age": 25, "p/friend": ["i"]}],
        [{"p/name": "Ivan", "p/age": 31, "p/tags": [kw("c")], "p/best": ("p/name", "Olga")}],
        [["db/retract", ("p/name", "Ivan"), "p/tags", kw("a")], {"p/name": "Petr", "p/friend": ("p/name", "Ivan")}],
        [["db/retractEntity", ("p/name", "Olga")]],
        [{"p/name": "Ivan", "p/age": 30, "p/note": "back to 30"}],
    ]
    for h, data in enumerate(steps):
        r = transact(db, data, instant=hour(h))
        reports.append(r)
        db = r.db_after
        dbs.append(db)
    return db, dbs, reports


@pytest.fixture(scope="module")
def world():
    return build()


def all_datoms(db, index):
    return list(datoms(db, index))


def test_basis_and_t_helpers(world):
    db, dbs, _ = world
    assert basis_t(db) == len(dbs) - 1
    assert basis_t(empty_db(flavor="datomic")) == 0
    assert t_to_tx(3) == TX0 + 3 and tx_to_t(TX0 + 3) == 3
    assert resolve_tx(db, 2) == resolve_tx(db, TX0 + 2) == TX0 + 2
    v = as_of(db, 2)
    assert as_of_t(v) == 2 and since_t(v) is None and not is_history(v) and basis_t(v) == basis_t(db)
    assert v.view == TimeView(as_of=TX0 + 2)
    assert as_of_t(db) is None and since_t(since(db, 1)) == 1 and is_history(history(db))
    assert current(history(as_of(db, 2))) is not db and list(current(as_of(db, 2))) == list(db)
    with pytest.raises(TypeError):
        as_of(db, "yesterday")


@pytest.mark.parametrize("index", INDEXES)
def test_as_of_equals_the_database_at_t(world, index):
    db, dbs, _ = world
    for t, then in enumerate(dbs):
        assert all_datoms(as_of(db, t), index) == all_datoms(then, index), (t, index)
        assert all_datoms(as_of(db, TX0 + t), index) == all_datoms(then, index)
    assert all_datoms(as_of(db, 100), index) == all_datoms(db, index)


def test_as_of_with_components(world):
    db, dbs, _ = world
    ivan = entid(db, ("p/name", "Ivan"))
    olga = entid(dbs[2], ("p/name", "Olga"))
    for t, then in enumerate(dbs):
        v = as_of(db, t)
        assert datoms(v, "eavt", ivan) == datoms(then, "eavt", ivan)
        assert datoms(v, "eavt", ivan, "p/age") == datoms(then, "eavt", ivan, "p/age")
        assert datoms(v, "eavt", ivan, "p/age", 30) == datoms(then, "eavt", ivan, "p/age", 30)
        for d in datoms(then, "eavt", ivan):
            assert datoms(v, "eavt", d.e, d.a, d.v, d.tx) == [d]
        assert datoms(v, "aevt", "p/tags") == datoms(then, "aevt", "p/tags")
        assert datoms(v, "aevt", "p/tags", ivan) == datoms(then, "aevt", "p/tags", ivan)
        assert datoms(v, "avet", "p/age") == datoms(then, "avet", "p/age")
        assert datoms(v, "avet", "p/age", 30) == datoms(then, "avet", "p/age", 30)
        assert datoms(v, "avet", "p/age", 30, ivan) == datoms(then, "avet", "p/age", 30, ivan)
        assert datoms(v, "vaet", ivan) == datoms(then, "vaet", ivan)
        assert datoms(v, "vaet", olga, "p/best") == datoms(then, "vaet", olga, "p/best")
        assert datoms(v, "vaet", olga, "p/best", ivan) == datoms(then, "vaet", olga, "p/best", ivan)
        assert datoms(v, "avet", "p/note") == datoms(then, "avet", "p/note") == []
        assert index_range(v, "p/age", 26, 31) == index_range(then, "p/age", 26, 31)
        assert list(seek_datoms(v, "eavt", ivan, "p/name")) == list(seek_datoms(then, "eavt", ivan, "p/name"))
        assert list(seek_datoms(v, "aevt", "p/age")) == list(seek_datoms(then, "aevt", "p/age"))
        assert list(seek_datoms(v, "avet", "p/age", 30)) == list(seek_datoms(then, "avet", "p/age", 30))
        assert list(seek_datoms(v, "vaet", ivan)) == list(seek_datoms(then, "vaet", ivan))
        assert list(rseek_datoms(v, "eavt", ivan, "p/name")) == list(rseek_datoms(then, "eavt", ivan, "p/name"))
        assert len(v) == len(then) and list(v) == list(then)


def test_as_of_a_datetime(world):
    db, dbs, _ = world
    assert list(as_of(db, hour(2))) == list(dbs[3])
    assert list(as_of(db, hour(2) + dt.timedelta(minutes=30))) == list(dbs[3])
    assert list(as_of(db, hour(2) - dt.timedelta(seconds=1))) == list(dbs[2])
    assert list(as_of(db, dt.datetime(2024, 1, 1, 2))) == list(dbs[3])  # naive means UTC
    assert list(as_of(db, EPOCH)) == list(dbs[0])
    assert list(as_of(db, dt.datetime(1900, 1, 1, tzinfo=UTC))) == []
    assert list(since(db, hour(4))) == list(since(db, 5))


def test_history_holds_every_assertion_and_retraction(world):
    db, dbs, reports = world
    expected = {tuple(d) for d in dbs[0]}
    for r in reports:
        expected |= {tuple(d) for d in r.tx_data}
    for index in INDEXES[:2]:
        got = datoms(history(db), index)
        assert len(got) == len(set(got))
        assert {tuple(d) for d in got} == expected
    assert any(not d.added for d in datoms(history(db), "eavt"))
    ivan = entid(db, ("p/name", "Ivan"))
    ages = [(d.v, d.tx - TX0, d.added) for d in datoms(history(db), "eavt", ivan, "p/age")]
    assert ages == [(30, 2, True), (30, 3, False), (30, 6, True), (31, 3, True), (31, 6, False)]
    refs = {(d.e, d.a, d.added) for d in datoms(history(db), "vaet", ivan)}
    olga = entid(dbs[2], ("p/name", "Olga"))
    petr = entid(db, ("p/name", "Petr"))
    assert refs == {(olga, "p/friend", True), (olga, "p/friend", False), (petr, "p/friend", True)}
    tags = [d for d in datoms(history(db), "avet", "p/tags", kw("a"))]
    assert [(d.tx - TX0, d.added) for d in tags] == [(2, True), (4, False)]


def test_since(world):
    db, dbs, _ = world
    for t in range(len(dbs)):
        got = {tuple(d) for d in datoms(since(db, t), "eavt")}
        expected = {tuple(d) for d in datoms(db, "eavt") if d.tx > TX0 + t}
        assert got == expected
        for index in INDEXES:
            assert {tuple(d) for d in datoms(since(db, t), index)} <= expected
    assert list(since(db, len(dbs))) == []
    ivan = entid(db, ("p/name", "Ivan"))
    assert [(d.a, d.v) for d in datoms(since(db, 5), "eavt", ivan)] == [("p/age", 30), ("p/note", "back to 30")]


def test_views_compose(world):
    db, dbs, reports = world
    for lo in range(len(dbs)):
        for hi in range(len(dbs)):
            window = {tuple(d) for d in datoms(dbs[hi], "eavt") if d.tx > TX0 + lo}
            assert {tuple(d) for d in as_of(since(db, lo), hi)} == window
            assert {tuple(d) for d in since(as_of(db, hi), lo)} == window
            events = {tuple(d) for r in reports for d in r.tx_data if TX0 + lo < d.tx <= TX0 + hi}
            for v in (history(as_of(since(db, lo), hi)), as_of(since(history(db), lo), hi),
                      since(history(as_of(db, hi)), lo)):
                assert {tuple(d) for d in v} == events
    # restrictions accumulate: as_of keeps the earlier point, since the later one
    assert as_of_t(as_of(as_of(db, 2), 4)) == 2 and as_of_t(as_of(as_of(db, 4), 2)) == 2
    assert since_t(since(since(db, 2), 1)) == 2


def test_idents_and_lookup_refs_on_views(world):
    db, dbs, _ = world
    early = as_of(db, 1)
    # the schema of a view is the current one: idents resolve even before they were installed
    assert entid(as_of(db, 0), kw("p/name")) == db.idents[kw("p/name")]
    assert entid(since(db, 3), kw("p/age")) == db.idents[kw("p/age")]
    assert entid(early, ("p/name", "Ivan")) is None
    assert entid(as_of(db, 2), ("p/name", "Ivan")) == entid(db, ("p/name", "Ivan"))
    olga = entid(dbs[2], ("p/name", "Olga"))
    assert entid(as_of(db, 4), ("p/name", "Olga")) == olga and entid(db, ("p/name", "Olga")) is None
    assert datoms(as_of(db, 4), "eavt", ("p/name", "Olga"))[0].e == olga


def test_filters_on_time_views(world):
    db, dbs, _ = world
    v = filter_db(as_of(db, 3), lambda _db, d: d.a == "p/age")
    assert list(v) == [d for d in dbs[3] if d.a == "p/age"]


def test_views_are_read_only(world):
    db, _, _ = world
    for v in (as_of(db, 1), since(db, 1), history(db)):
        with pytest.raises(TxError):
            transact(v, [{"p/name": "x"}])


def test_renamed_attribute_is_renamed_through_history(world):
    db, _, _ = world
    db2 = transact(db, [{"db/id": kw("p/age"), "db/ident": kw("p/years")}]).db_after
    ivan = entid(db2, ("p/name", "Ivan"))
    assert [d.a for d in datoms(history(db2), "eavt", ivan) if d.a.endswith(("age", "years"))] == ["p/years"] * 5
    assert datoms(as_of(db2, 2), "avet", "p/years", 30)[0].e == ivan
    assert datoms(as_of(db2, 2), "avet", "p/age") == []


def test_random_histories_match_snapshots():
    rng = random.Random(7)
    db = transact(empty_db(flavor="datomic"), SCHEMA).db_after
    snapshots = {basis_t(db): db}
    names = [f"n{i}" for i in range(6)]
    for _ in range(40):
        data = []
        for _ in range(rng.randint(1, 4)):
            n = rng.choice(names)
            existing = entid(db, ("p/name", n))
            choice = rng.random()
            if existing is not None and choice < 0.15:
                data.append(["db/retractEntity", existing])
                break
            if existing is not None and choice < 0.3:
                tags = datoms(db, "eavt", existing, "p/tags")
                if tags:
                    data.append(["db/retract", existing, "p/tags", rng.choice(tags).v])
                    continue
            m = {"p/name": n, "p/age": rng.randint(0, 5), "p/tags": [kw(rng.choice("xyz"))]}
            friend = rng.choice(names)
            if friend != n and entid(db, ("p/name", friend)) is not None:
                m["p/friend"] = [("p/name", friend)]
            data.append(m)
        try:
            db = transact(db, data).db_after
        except TxError as e:
            assert e.code in ("db.error/datoms-conflict", "db.error/unique-conflict")
            continue
        snapshots[basis_t(db)] = db
    assert len(snapshots) > 20
    h = datoms(history(db), "eavt")
    for t, then in snapshots.items():
        v = as_of(db, t)
        for index in INDEXES:
            assert datoms(v, index) == datoms(then, index), (t, index)
        # replaying the history up to t gives the same datoms
        state: dict = {}
        for d in sorted((d for d in h if d.tx <= TX0 + t), key=lambda d: (d.tx, d.added)):
            if d.added:
                state[(d.e, d.a, d.v)] = d
            else:
                state.pop((d.e, d.a, d.v), None)
        assert sorted(state.values()) == [Datom(*d) for d in datoms(then, "eavt")]
