"""Policies: parsing and its errors, principals from tokens, visibility, write rules, explain — on the
todos example of docs/examples/todos."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from datsync.core import datoms, empty_db, entid, kw, q, transact
from datsync.core.datomic import SCHEMA_ATTRS
from datsync.core.edn import read_edn
from datsync.core.policy import (
    FORBIDDEN,
    PolicyError,
    check_write,
    explain,
    filter_for,
    open_view,
    parse_policy,
    parse_tokens,
    principal_for,
    visible_datoms,
)
from datsync.shell.commands.db import _names

EXAMPLE = Path(__file__).parent.parent / "docs" / "examples" / "todos"
INSTANT = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
ALICE, BOB, CAROL = {"user/id": "alice"}, {"user/id": "bob"}, {"user/id": "carol"}


def todos_db():
    """The example's database: schema and sample data, Datomic flavor."""
    spec = read_edn((EXAMPLE / "schema.edn").read_text())
    schema = _names(spec[kw("schema")])
    db = transact(empty_db(None, flavor="datomic"), [{"db/ident": kw(a), **p} for a, p in schema.items()],
                  instant=INSTANT).db_after
    for tx in _names(spec[kw("tx-data")]):
        db = transact(db, tx, instant=INSTANT).db_after
    return db


@pytest.fixture(scope="module")
def policy():
    return parse_policy((EXAMPLE / "policy.edn").read_text())


@pytest.fixture(scope="module")
def db():
    return todos_db()


def eid(db, attr, value):
    return entid(db, (attr, value))


def titles(db, policy, principal, scopes=None):
    return {d.v for d in visible_datoms(policy, db, principal, scopes) if d.a == "todo/title"}


# ------------------------------------------------------------------------------------------------
# Parsing


def test_parse_example(policy):
    assert policy.principal == ("user/id",)
    assert policy.read == "can-read" and policy.write == "can-write"
    assert policy.hidden == frozenset({"user/password-hash"})
    assert policy.attributes == {"user/email": "self"}
    assert policy.scopes["team"].follow == ("list/_team", "todo/_list", "todo/owner")
    assert "member" in policy.reachable(frozenset({"can-read"}))
    assert {"user/teams", "team/parent", "todo/list", "list/team"} <= policy.watched()


def test_parse_python_data_equals_edn():
    p = parse_policy({"principal": ["user/id"], "rules": [[("mine", "?me", "?e"), ["?e", "todo/owner", "?me"]]],
                      "read": {"rule": "mine"}})
    assert p.read == "mine" and p.mentions["mine"] == frozenset({"todo/owner"})


@pytest.mark.parametrize("text, code", [
    ("{:rules [[(r ?e) [?e :a]]", "policy/syntax"),
    ("{:rules [[r ?e]]}", "policy/syntax"),
    ("{:read {:rule nope}}", "policy/unknown-rule"),
    ("{:rules [[(r ?e) (other ?e)]] :read {:rule r}}", "policy/unknown-rule"),
    ("{:principal [:user/id] :rules [[(r ?e) [?e :a _]]] :read {:rule r}}", "policy/invalid"),
    ("{:reed {}}", "policy/invalid"),
    ("{:rules [[(r ?me ?x ?e) [?e :a ?x]]] :principal [:id] :scopes {:s {:params [x] :rule r}}}", "policy/invalid"),
    ("[1 2]", "policy/invalid"),
])
def test_parse_errors(text, code):
    with pytest.raises(PolicyError) as err:
        parse_policy(text)
    assert err.value.code == code


# ------------------------------------------------------------------------------------------------
# Principals


def test_tokens_file():
    tokens = parse_tokens((EXAMPLE / "tokens.edn").read_text())
    assert principal_for(tokens, "alice-token") == {"user/id": "alice"}
    assert principal_for(tokens, "nope") is None and principal_for(tokens, None) is None
    for bad, code in (("{\"t\" 1}", "policy/invalid"), ("{1 {:a 1}}", "policy/invalid"), ("{", "policy/syntax")):
        with pytest.raises(PolicyError) as err:
            parse_tokens(bad)
        assert err.value.code == code


# ------------------------------------------------------------------------------------------------
# Reading


def test_members_see_their_teams_todos(db, policy):
    assert titles(db, policy, ALICE) == {"water the plants"}
    assert titles(db, policy, BOB) == {"fix the bike"}
    # carol is in the parent team: membership is recursive over :team/parent
    assert titles(db, policy, CAROL) == {"water the plants", "fix the bike"}
    assert titles(db, policy, {"user/id": "mallory"}) == set()


def test_hidden_and_owner_only_attributes(db, policy):
    seen = visible_datoms(policy, db, CAROL)
    assert not any(d.a == "user/password-hash" for d in seen)
    emails = {d.v for d in seen if d.a == "user/email"}
    assert emails == {"carol@example.com"}
    names = {d.v for d in seen if d.a == "user/name"}
    assert names == {"Alice", "Bob", "Carol"}
    # alice sees her own email, and neither bob (other team) nor carol's
    assert {d.v for d in visible_datoms(policy, db, ALICE) if d.a in ("user/email", "user/name")} == {
        "Alice", "alice@example.com"}


def test_schema_datoms_always_visible(db, policy):
    stranger = visible_datoms(policy, db, {"user/id": "mallory"})
    assert stranger and all(d.a in SCHEMA_ATTRS or d.a == "db/txInstant" for d in stranger)
    assert {d.v for d in stranger if d.a == "db/ident"} >= {kw("todo/title"), kw("user/email")}


def test_scopes_restrict_to_what_was_asked(db, policy):
    assert titles(db, policy, CAROL, [("team", ("blue",))]) == {"fix the bike"}
    assert titles(db, policy, CAROL, [("team", ("red",)), ("team", ("blue",))]) == {"water the plants",
                                                                                    "fix the bike"}
    # a scope never widens what the principal may read
    assert titles(db, policy, ALICE, [("team", ("blue",))]) == set()
    assert titles(db, policy, ALICE, []) == set()
    with pytest.raises(PolicyError) as err:
        open_view(policy, db, ALICE, [("nope", ())])
    assert err.value.code == "policy/unknown-scope"


def test_filter_for_is_a_queryable_view(db, policy):
    fdb = filter_for(policy, db, ALICE)
    assert q("[:find [?t ...] :where [_ :todo/title ?t]]", fdb) == ["water the plants"]


# ------------------------------------------------------------------------------------------------
# Writing


def attempt(db, policy, principal, tx):
    report = transact(db, tx, instant=INSTANT)
    return check_write(policy, principal, report)


def test_members_add_todos_and_edit_their_own(db, policy):
    red_list = q('[:find ?l . :where [?l :list/name "red chores"]]', db)
    alice, bob = eid(db, "user/id", "alice"), eid(db, "user/id", "bob")
    mine = q('[:find ?t . :where [?t :todo/title "water the plants"]]', db)
    theirs = q('[:find ?t . :where [?t :todo/title "fix the bike"]]', db)
    assert attempt(db, policy, ALICE, [{"todo/title": "new", "todo/list": red_list, "todo/owner": alice}]) is None
    assert attempt(db, policy, ALICE, [["db/add", mine, "todo/done", True]]) is None
    assert attempt(db, policy, ALICE, [["db/retractEntity", mine]]) is None
    # not a member of the blue list's team, not the owner
    err = attempt(db, policy, ALICE, [["db/add", theirs, "todo/done", True]])
    assert err.code == FORBIDDEN and "todo/done" in err.message
    assert err.data["datom"][:2] == (theirs, "todo/done")
    # a todo in alice's team owned by someone else
    err = attempt(db, policy, ALICE, [{"todo/title": "x", "todo/list": red_list, "todo/owner": bob}])
    assert err.code == FORBIDDEN
    # not a todo attribute
    err = attempt(db, policy, ALICE, [["db/add", alice, "user/name", "Al"]])
    assert err.code == FORBIDDEN and err.data["datom"][1] == "user/name"
    # moving her own todo to a list of another team
    blue_list = q('[:find ?l . :where [?l :list/name "blue chores"]]', db)
    err = attempt(db, policy, ALICE, [["db/add", mine, "todo/list", blue_list]])
    assert err.code == FORBIDDEN and err.data["datom"][:3] == (mine, "todo/list", blue_list)


def test_no_write_rule_refuses_every_write(db):
    p = parse_policy("{:principal [:user/id] :rules [[(r ?me ?e) [?e :user/id ?me]]] :read {:rule r}}")
    err = attempt(db, p, ALICE, [["db/add", eid(db, "user/id", "alice"), "user/name", "A"]])
    assert err.code == FORBIDDEN


# ------------------------------------------------------------------------------------------------
# Explain


def test_explain_visible_names_rule_and_bindings(db, policy):
    todo = q('[:find ?t . :where [?t :todo/title "water the plants"]]', db)
    ex = explain(policy, db, CAROL, todo)
    assert ex.holds and ex.rule == "can-read" and ex.branch == 2
    assert ex.bindings["?e"] == todo and ex.bindings["?me"] == "carol"
    assert ex.bindings["?t"] == eid(db, "team/name", "red")
    (member,) = ex.calls
    assert member.rule == "member" and member.holds and member.branch == 1   # via the parent team
    assert member.calls[0].holds and member.calls[0].branch == 0
    assert "holds by branch 3" in ex.text() and ":user/password-hash" in ex.text()


def test_explain_invisible_names_the_clause_that_failed(db, policy):
    todo = q('[:find ?t . :where [?t :todo/title "fix the bike"]]', db)
    ex = explain(policy, db, ALICE, todo)
    assert not ex.holds and len(ex.failures) == 6
    f = ex.failures[2]
    assert f.bindings["?t"] == eid(db, "team/name", "blue")
    assert "member" in str(f.clause)
    assert "does not hold" in ex.text()


def test_datoms_of_visible_entities_are_complete(db, policy):
    view = open_view(policy, db, BOB)
    list_ = q('[:find ?l . :where [?l :list/name "blue chores"]]', db)
    assert view.sees(list_)
    assert [d for d in visible_datoms(policy, db, BOB) if d.e == list_] == datoms(db, "eavt", list_)


# ------------------------------------------------------------------------------------------------
# Maintained per delta


def test_moving_a_user_between_teams_moves_the_data(db, policy):
    from datsync.core.policy import route, view_datoms

    who = {"a": ALICE, "b": BOB, "blue": CAROL}
    scopes = {"a": None, "b": None, "blue": [("team", ("blue",))]}
    views = {k: open_view(policy, db, who[k], scopes[k]) for k in who}
    held = {k: {(d.e, d.a, d.v) for d in view_datoms(policy, db, v)} for k, v in views.items()}
    alice, red, blue = eid(db, "user/id", "alice"), eid(db, "team/name", "red"), eid(db, "team/name", "blue")
    report = transact(db, [["db/retract", alice, "user/teams", red], ["db/add", alice, "user/teams", blue]],
                      instant=INSTANT)
    views, out = route(policy, report.db_before, report.db_after,
                       [(d.e, d.a, d.v, d.added) for d in report.tx_data], views)
    for k, sent in out.items():
        for e, a, v, added in sent:
            (held[k].add if added else held[k].discard)((e, a, v))
        assert held[k] == {(d.e, d.a, d.v) for d in visible_datoms(policy, report.db_after, who[k], scopes[k])}
    plants = q('[:find ?t . :where [?t :todo/title "water the plants"]]', db)
    assert (plants, "todo/title", "water the plants", False) in out["a"]
    assert {v for e, a, v, added in out["a"] if a == "todo/title" and added} == {"fix the bike"}
    assert (alice, "user/name", "Alice", True) in out["b"]           # bob now sees his new teammate
    assert not any(a == "user/email" for _, a, _, _ in out["b"])     # but not her email


def test_adding_and_dropping_a_scope(db, policy):
    from datsync.core.policy import change_scopes

    view = open_view(policy, db, CAROL, [("team", ("red",))])
    view, sent = change_scopes(policy, db, view, [("team", ("red",)), ("team", ("blue",))])
    assert {v for _, a, v, added in sent if a == "todo/title" and added} == {"fix the bike"}
    assert all(added for *_, added in sent)
    view, sent = change_scopes(policy, db, view, [("team", ("blue",))])
    assert {v for _, a, v, added in sent if a == "todo/title"} == {"water the plants"}
    assert not any(added for *_, added in sent)
