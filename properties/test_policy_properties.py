"""Properties of policies: every session's replica, maintained delta by delta, equals the server's
database filtered by its principal and scopes at every ``t`` (random policies with recursive rules
and negation, membership changing mid-stream, scopes added and dropped); write rules let a
transaction commit exactly when they allow every datom."""

from __future__ import annotations

import contextlib
import datetime as dt

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from datsync.core import TxError, empty_db, entid, kw, q, transact
from datsync.core.policy import (
    FORBIDDEN,
    change_scopes,
    open_view,
    parse_policy,
    route,
    transact_as,
    view_datoms,
    visible_datoms,
)

INSTANT = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

SCHEMA = {
    "t/uid": {"db/valueType": kw("db.type/long"), "db/unique": kw("db.unique/identity")},
    "t/name": {"db/valueType": kw("db.type/string"), "db/unique": kw("db.unique/identity")},
    "t/member": {"db/valueType": kw("db.type/ref"), "db/cardinality": kw("db.cardinality/many")},
    "t/parent": {"db/valueType": kw("db.type/ref")},
    "t/in": {"db/valueType": kw("db.type/ref")},
    "t/owner": {"db/valueType": kw("db.type/ref")},
    "t/link": {"db/valueType": kw("db.type/ref"), "db/cardinality": kw("db.cardinality/many")},
    "t/title": {"db/valueType": kw("db.type/string")},
    "t/secret": {"db/valueType": kw("db.type/string")},
    "t/tag": {"db/valueType": kw("db.type/long")},
}
USERS, GROUPS, DOCS = 3, 3, 5

MEM = ["[(mem ?me ?g) [?u :t/uid ?me] [?u :t/member ?g]]"]
MEM_RECURSIVE = "[(mem ?me ?g) [?g :t/parent ?p] (mem ?me ?p)]"
REACH = ["[(reach ?a ?b) [?a :t/link ?b]]", "[(reach ?a ?b) [?a :t/link ?x] (reach ?x ?b)]"]
READ_BRANCHES = [
    "[(rd ?me ?e) (mem ?me ?e)]",
    "[(rd ?me ?e) [?e :t/in ?g] (mem ?me ?g)]",
    "[(rd ?me ?e) [?e :t/owner ?u] [?u :t/uid ?me]]",
    "[(rd ?me ?e) [?e :t/uid ?me]]",
    "[(rd ?me ?e) [?e :t/tag 3]]",
    "[(rd ?me ?e) [?e :t/in ?g] (not [?e :t/tag 0]) (mem ?me ?g)]",
    "[(rd ?me ?e) [?u :t/uid ?me] (reach ?u ?e)]",
    "[(rd ?me ?e) [?e :t/member ?g] (mem ?me ?g)]",
    "[(rd ?me ?e) [?e :t/tag ?t] [(= ?t ?me)]]",
]
OWN = "[(own ?me ?e) [?e :t/owner ?u] [?u :t/uid ?me]]"
SCOPE_RULES = ["[(grp ?me ?n ?g) [?g :t/name ?n]]", "[(mine ?me ?e) [?e :t/owner ?u] [?u :t/uid ?me]]"]
SCOPES = '{:grp {:params [?n] :rule grp :follow [:t/_in :t/owner :t/link]} :mine {:rule mine :follow [:t/link]}}'
SCOPE_CHOICES = [("grp", ("g0",)), ("grp", ("g1",)), ("mine", ())]


def read_policy(branches: list[int], recursive: bool = False, hidden: bool = False, owner_only: bool = False):
    """A read policy with the read branches ``branches`` (indexes into ``READ_BRANCHES``)."""
    rules = MEM + ([MEM_RECURSIVE] if recursive else []) + REACH + [READ_BRANCHES[i] for i in branches]
    rules += [OWN, *SCOPE_RULES]
    hidden = "#{:t/secret}" if hidden else "#{}"
    attrs = "{:t/title own}" if owner_only else "{}"
    return parse_policy(f"{{:principal [:t/uid] :rules [{' '.join(rules)}] "
                        f":read {{:rule rd :hidden {hidden} :attributes {attrs}}} :scopes {SCOPES}}}")


@st.composite
def policies(draw):
    """A random read policy: membership (maybe recursive), some read branches, maybe a hidden
    attribute and an owner-only attribute, and two scopes."""
    branches = draw(st.lists(st.integers(0, len(READ_BRANCHES) - 1), min_size=1, max_size=5, unique=True))
    return read_policy(branches, draw(st.booleans()), draw(st.booleans()), draw(st.booleans()))


def base_db():
    one = {"db/cardinality": kw("db.cardinality/one")}
    db = transact(empty_db(None, flavor="datomic"), [{"db/ident": kw(a), **one, **p} for a, p in SCHEMA.items()],
                  instant=INSTANT).db_after
    tx = [{"db/id": f"u{i}", "t/uid": i, "t/member": [f"g{i}"]} for i in range(USERS)]
    tx += [{"db/id": f"g{i}", "t/name": f"g{i}"} for i in range(GROUPS)]
    tx += [{"db/id": f"d{i}", "t/title": f"doc {i}", "t/secret": f"s{i}", "t/tag": i % 4, "t/in": f"g{i % GROUPS}",
            "t/owner": f"u{(i + 1) % USERS}"} for i in range(DOCS)]
    return transact(db, tx, instant=INSTANT).db_after


def ents(db):
    users = [entid(db, ("t/uid", i)) for i in range(USERS)]
    groups = [entid(db, ("t/name", f"g{i}")) for i in range(GROUPS)]
    docs = sorted(q("[:find [?d ...] :where [?d :t/title _]]", db))
    return users, groups, docs


ops = st.one_of(
    st.tuples(st.just("member"), st.integers(0, USERS - 1), st.integers(0, GROUPS - 1), st.booleans()),
    st.tuples(st.just("parent"), st.integers(0, GROUPS - 1), st.integers(-1, GROUPS - 1)),
    st.tuples(st.just("in"), st.integers(0, 20), st.integers(-1, GROUPS - 1)),
    st.tuples(st.just("owner"), st.integers(0, 20), st.integers(-1, USERS - 1)),
    st.tuples(st.just("tag"), st.integers(0, 20), st.integers(0, 3)),
    st.tuples(st.just("title"), st.integers(0, 20), st.sampled_from(["a", "b"])),
    st.tuples(st.just("secret"), st.integers(0, 20), st.sampled_from(["x", "y"])),
    st.tuples(st.just("link"), st.integers(0, 30), st.integers(0, 30), st.booleans()),
    st.tuples(st.just("new"), st.integers(0, GROUPS - 1), st.integers(0, USERS - 1)),
    st.tuples(st.just("retract"), st.integers(0, 20)),
)


def form(db, op):
    """The tx form of a random op against the current entities (None when it does not apply)."""
    users, groups, docs = ents(db)
    kind = op[0]
    if kind == "member":
        _, u, g, add = op
        return ["db/add" if add else "db/retract", users[u], "t/member", groups[g]]
    if kind == "parent":
        _, g, p = op
        if p < 0:
            return ["db.fn/retractAttribute", groups[g], "t/parent"]
        return ["db/add", groups[g], "t/parent", groups[p]]
    if kind == "new":
        return {"t/title": "new", "t/in": groups[op[1]], "t/owner": users[op[2]], "t/tag": 1}
    if not docs:
        return None
    d = docs[op[1] % len(docs)]
    if kind == "in":
        return ["db.fn/retractAttribute", d, "t/in"] if op[2] < 0 else ["db/add", d, "t/in", groups[op[2]]]
    if kind == "owner":
        return ["db.fn/retractAttribute", d, "t/owner"] if op[2] < 0 else ["db/add", d, "t/owner", users[op[2]]]
    if kind in ("tag", "title", "secret"):
        return ["db/add", d, f"t/{kind}", op[2]]
    if kind == "retract":
        return ["db/retractEntity", d]
    if kind == "link":
        every = users + groups + docs
        return ["db/add" if op[3] else "db/retract", every[op[1] % len(every)], "t/link", every[op[2] % len(every)]]
    raise AssertionError(kind)


scope_sets = st.one_of(st.none(), st.lists(st.sampled_from(SCOPE_CHOICES), max_size=2))
sessions = st.tuples(st.lists(scope_sets, min_size=USERS, max_size=USERS), st.integers(0, USERS)).map(
    lambda x: [(u, None) for u in range(USERS)] + [(u, s) for u, s in enumerate(x[0])] + [(x[1], None)])
"""A session of every user with no scope and one with random scopes, and one more of any principal."""
steps = st.lists(st.one_of(
    st.lists(ops, min_size=1, max_size=3).map(lambda xs: ("tx", xs)),
    st.tuples(st.just("scopes"), st.integers(0, 2 * USERS), scope_sets)),
    min_size=2, max_size=14)


def held(policy, db, principal, scopes):
    return {(d.e, d.a, d.v) for d in visible_datoms(policy, db, principal, scopes)}


def populated(setup):
    """The base database after the ``setup`` ops (those that fail are skipped)."""
    db = base_db()
    for op in setup:
        with contextlib.suppress(TxError):
            db = transact(db, [form(db, op)], instant=INSTANT).db_after
    return db


setups = st.lists(ops, min_size=4, max_size=16)


@SETTINGS
@given(policies(), setups, sessions, steps)
# a tag flips the negated clause; a followed link is retracted; an entity linked from the scope
# becomes readable; membership through the recursive parent rule changes
@example(read_policy([5]), [], [(0, None)], [("tx", [("tag", 0, 1)]), ("tx", [("tag", 0, 0)])])
@example(read_policy([1, 2]), [("link", 8, 6, True)], [(0, [("mine", ())])], [("tx", [("link", 8, 6, False)])])
@example(read_policy([1, 2]), [("link", 8, 7, True)], [(0, [("mine", ())])], [("tx", [("in", 1, 0)])])
@example(read_policy([1], recursive=True), [], [(0, None), (0, [("grp", ("g1",))])],
         [("tx", [("parent", 1, 0)]), ("scopes", 1, [("grp", ("g2",))]), ("tx", [("parent", 1, -1)])])
def test_every_replica_equals_the_filtered_database_at_every_t(policy, setup, sess, stream):
    db = populated(setup)
    principals = {i: {"t/uid": u} for i, (u, _) in enumerate(sess)}
    scopes = {i: s for i, (_, s) in enumerate(sess)}
    views = {i: open_view(policy, db, principals[i], scopes[i]) for i in principals}
    replicas = {i: {(d.e, d.a, d.v) for d in view_datoms(policy, db, v)} for i, v in views.items()}
    leaked = missing = 0
    for step in stream:
        if step[0] == "scopes":
            i = step[1] % len(views)
            scopes[i] = step[2]
            views[i], sent = change_scopes(policy, db, views[i], step[2])
        else:
            forms = [f for f in (form(db, op) for op in step[1]) if f is not None]
            try:
                report = transact(db, forms, instant=INSTANT)
            except TxError:
                continue
            tx = [(d.e, d.a, d.v, d.added) for d in report.tx_data]
            views, out = route(policy, report.db_before, report.db_after, tx, views)
            db = report.db_after
        for i in views:
            ds = sent if step[0] == "scopes" and i == step[1] % len(views) else (
                [] if step[0] == "scopes" else out[i])
            for e, a, v, added in ds:
                (replicas[i].add if added else replicas[i].discard)((e, a, v))
            want = held(policy, db, principals[i], scopes[i])
            leaked += len(replicas[i] - want)
            missing += len(want - replicas[i])
            assert views[i] == open_view(policy, db, principals[i], scopes[i])
    assert (leaked, missing) == (0, 0)


# ------------------------------------------------------------------------------------------------
# Write rules

WRITE_BRANCHES = [
    "[(wr ?me ?e ?a ?v ?added) [?e :t/owner ?u] [?u :t/uid ?me]]",
    "[(wr ?me ?e ?a ?v ?added) [(= ?added false)] [$before ?e :t/owner ?u] [$before ?u :t/uid ?me]]",
    "[(wr ?me ?e ?a ?v ?added) [(contains? #{:t/title :t/tag} ?a)] [?e :t/in ?g] (mem ?me ?g)]",
    "[(wr ?me ?e ?a ?v ?added) [(= ?a :t/tag)] [(< ?v 3)]]",
]


@SETTINGS
@given(st.lists(st.sampled_from(WRITE_BRANCHES), min_size=1, max_size=3, unique=True), st.booleans(),
       setups, st.lists(ops, min_size=1, max_size=3), st.integers(0, USERS))
def test_a_transaction_commits_exactly_when_every_datom_is_allowed(branches, recursive, setup, candidate, who):
    rules = MEM + ([MEM_RECURSIVE] if recursive else []) + branches
    policy = parse_policy(f"{{:principal [:t/uid] :rules [{' '.join(rules)}] :write {{:rule wr}}}}")
    db = populated(setup)
    forms = [f for f in (form(db, op) for op in candidate) if f is not None]
    try:
        report = transact(db, forms, instant=INSTANT)
    except TxError:
        return
    me = {"t/uid": who}
    one = "[:find ?x . :in $ $before % ?me ?e ?a ?v ?added :where (wr ?me ?e ?a ?v ?added) [(ground 1) ?x]]"
    tx = report.db_after.max_tx
    datoms = [(d.e, d.a, d.v, d.added) for d in report.tx_data if not (d.e == tx and d.a == "db/txInstant")]
    allowed = [q(one, report.db_after, report.db_before, policy.rules, who, e, kw(a), v, added) == 1
               for e, a, v, added in datoms]
    try:
        committed = transact_as(policy, me, db, forms, instant=INSTANT)
    except TxError as err:
        assert err.code == FORBIDDEN
        assert not all(allowed)
        assert err.data["datom"] == datoms[allowed.index(False)]
    else:
        assert all(allowed)
        assert committed.db_after == report.db_after
