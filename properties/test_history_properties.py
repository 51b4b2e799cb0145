"""Datomic flavor time properties: ``as_of(db, t)`` is the database as it was at ``t``, ``history(db)``
holds every assertion and retraction ever made, ``since(db, t)`` holds what changed after ``t``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from datsync.core import TxError, as_of, datoms, empty_db, history, kw, since, transact

SCHEMA_TX = [
    {"db/ident": kw("p/name"), "db/valueType": kw("db.type/string"), "db/cardinality": kw("db.cardinality/one"),
     "db/unique": kw("db.unique/identity")},
    {"db/ident": kw("p/age"), "db/valueType": kw("db.type/long"), "db/cardinality": kw("db.cardinality/one")},
    {"db/ident": kw("p/tags"), "db/valueType": kw("db.type/string"), "db/cardinality": kw("db.cardinality/many")},
    {"db/ident": kw("p/friend"), "db/valueType": kw("db.type/ref"), "db/cardinality": kw("db.cardinality/one")},
]
NAMES = ["ann", "bob", "cid"]
people = st.sampled_from(NAMES).map(lambda n: ("p/name", n))

forms = st.one_of(
    st.builds(lambda n, a: {"p/name": n, "p/age": a}, st.sampled_from(NAMES), st.integers(0, 3)),
    st.builds(lambda p, t: ["db/add", p, "p/tags", t], people, st.sampled_from(["x", "y"])),
    st.builds(lambda p, t: ["db/retract", p, "p/tags", t], people, st.sampled_from(["x", "y"])),
    st.builds(lambda p, q: ["db/add", p, "p/friend", q], people, people),
    st.builds(lambda p: ["db/retract", p, "p/age"], people),
    st.builds(lambda p: ["db/retractEntity", p], people),
)
streams = st.lists(st.lists(forms, min_size=1, max_size=3), min_size=1, max_size=8)

START = datetime(2026, 1, 1, tzinfo=UTC)


def run(txs: list) -> tuple[list, list]:
    """Every successful database value, and every datom every transaction produced."""
    db = transact(empty_db(flavor="datomic"), SCHEMA_TX, instant=START).db_after
    dbs, events = [db], []
    for i, tx in enumerate(txs):
        try:
            r = transact(db, tx, instant=START + timedelta(hours=i + 1))
        except TxError:
            continue
        db = r.db_after
        dbs.append(db)
        events += [tuple(d) for d in r.tx_data]
    return dbs, events


def facts(db) -> list[tuple]:
    return [tuple(d)[:4] for d in datoms(db, "eavt")]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams)
def test_as_of_is_the_database_at_t(txs):
    dbs, _ = run(txs)
    final = dbs[-1]
    for db in dbs:
        assert facts(as_of(final, db.max_tx)) == facts(db)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams)
def test_history_holds_every_assertion_and_retraction(txs):
    dbs, events = run(txs)
    schema_t = dbs[0].max_tx
    hist = [tuple(d) for d in datoms(history(dbs[-1]), "eavt") if d.tx > schema_t]
    assert sorted(hist, key=repr) == sorted(events, key=repr)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams)
def test_since_holds_the_current_datoms_asserted_after_t(txs):
    dbs, _ = run(txs)
    final = dbs[-1]
    for db in dbs:
        expected = [f for f in facts(final) if f[3] > db.max_tx]
        assert facts(since(final, db.max_tx)) == expected
