"""``datsync why``: the policy's explanation for an entity and a principal, on a store file."""

from __future__ import annotations

import pytest

from .test_cli_commands import ROOT, datsync, ok

TODOS = ROOT / "docs" / "examples" / "todos"
POLICY = str(TODOS / "policy.edn")


@pytest.fixture
def todos(tmp_path) -> str:
    store = str(tmp_path / "todos.sqlite")
    ok("import", store, str(TODOS / "schema.edn"))
    return store


def test_why_visible_names_the_rule_and_bindings(todos):
    r = datsync("why", todos, "--policy", POLICY, "--principal", '{:user/id "carol"}', '[:user/id "alice"]')
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith('(can-read "carol" ') and "holds by branch 4" in r.stdout
    assert '(member "carol" ' in r.stdout and "never sent: :user/password-hash" in r.stdout


def test_why_not_visible_exits_1_with_the_failed_clauses(todos):
    r = datsync("why", todos, "--policy", POLICY, "--tokens", str(TODOS / "tokens.edn"), "--principal",
                "alice-token", '[:user/id "bob"]')
    assert r.returncode == 1, r.stderr
    assert "does not hold" in r.stdout and "branch 4: nothing matches (member ?me ?t)" in r.stdout


def test_why_refuses_a_bad_policy_or_token(todos, tmp_path):
    bad = tmp_path / "bad.edn"
    bad.write_text("{:read {:rule nope}}")
    r = datsync("why", todos, "--policy", str(bad), "--principal", '{:user/id "a"}', "1")
    assert r.returncode == 1 and "policy/unknown-rule" in r.stderr
    r = datsync("why", todos, "--policy", POLICY, "--tokens", str(TODOS / "tokens.edn"), "--principal", "x", "1")
    assert r.returncode == 2 and "policy/unknown-token" in r.stderr
