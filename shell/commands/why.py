"""``datsync why TARGET --policy POLICY --principal PRINCIPAL ENTITY``: why an entity is (or is not)
visible to a principal."""

from __future__ import annotations

import argparse

from ._edn import eid, emit, read_arg, read_text
from ._errors import CliError
from ._target import TARGET_HELP, add_connection_options, target_from_args

NAME = "why"
HELP = "explain which policy rule makes an entity visible to a principal, or why it is not"
DESCRIPTION = """\
Evaluate the read rule of POLICY (an EDN policy file, see docs/security.md) for PRINCIPAL and ENTITY
on TARGET's database and print which branch, with which bindings, made the entity visible (and the
rules that branch called, the same way), or, when it is not visible, the first clause of each branch
that found nothing and the bindings up to it. Attributes the policy never sends are listed.

PRINCIPAL is an EDN map ({:user/id "alice"}), @FILE, or a token of --tokens FILE. ENTITY is an entity
id, a lookup ref ([:user/id "bob"]) or an ident. Exit status 0 when visible, 1 when not.
"""
EPILOG = """\
examples:
  datsync why db.sqlite --policy policy.edn --principal '{:user/id "alice"}' '[:team/name "red"]'
  datsync why db.sqlite --policy policy.edn --tokens tokens.edn --principal alice-token 17
"""


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", metavar="TARGET", help=TARGET_HELP)
    p.add_argument("entity", metavar="ENTITY", help="entity id, lookup ref [:attr value] or ident")
    p.add_argument("--policy", required=True, metavar="FILE.edn", help="the policy (EDN)")
    p.add_argument("--principal", required=True, metavar="PRINCIPAL",
                   help="EDN map of the principal's attributes, @FILE, or a token of --tokens")
    p.add_argument("--tokens", metavar="FILE.edn", help="token -> principal map; PRINCIPAL is then a token")
    add_connection_options(p)


def run(args: argparse.Namespace) -> int:
    from datsync.core import entid
    from datsync.core.policy import explain, parse_policy, parse_principal, parse_tokens, principal_for

    policy = parse_policy(read_text(args.policy, "policy"))
    if args.tokens:
        principal = principal_for(parse_tokens(read_text(args.tokens, "tokens")), args.principal)
        if principal is None:
            raise CliError("policy/unknown-token", f"no principal for that token in {args.tokens}")
    else:
        principal = parse_principal(read_arg(args.principal, "PRINCIPAL"))
    target = target_from_args(args)
    try:
        db = target.db
        e = entid(db, eid(read_arg(args.entity, "ENTITY")))
        if e is None:
            raise CliError("db/not-found", f"no entity {args.entity}", status=1)
        why = explain(policy, db, principal, e)
    finally:
        target.close()
    emit(why.text())
    return 0 if why.holds else 1
