"""``datsync pull TARGET PATTERN EID ...``: pull entities."""

from __future__ import annotations

import argparse

from ._edn import arg_text, eid, emit, keywordize, read_arg, to_edn
from ._target import TARGET_HELP, add_connection_options, target_from_args
from ._views import add_view_options, check_views, view

NAME = "pull"
HELP = "pull an entity (a tree of attributes) by a pattern"
DESCRIPTION = """\
Pull the entity EID from TARGET by PATTERN and print the map as EDN (attributes as keywords).

PATTERN is a pull pattern in EDN (or @FILE): [*], [:person/name {:person/friends [:person/name]}],
[:person/name (:person/age :default 0)], reverse refs [:person/_friends], recursion
{:person/friends ...}, limits and :as. EID is an entity id (42), a lookup ref
([:person/name "Ivan"]) or an ident (:person/name). An entity that does not exist pulls as nil.
Several EIDs print a vector of maps, in order.

With a server URL the pull runs locally on the bootstrapped replica; with a store file on the
server's database value (which also has --as-of, --since and --history).
"""
EPILOG = """\
examples:
  datsync pull db.sqlite '[*]' '[:person/name "Ivan"]'
  datsync pull db.sqlite '[:person/name {:person/friends [:person/name]}]' 105
  datsync pull db.sqlite '[:person/name :person/_friends]' '[:person/name "Ivan"]' '[:person/name "Petr"]'
  datsync pull db.sqlite '[:db/ident :db/valueType :db/cardinality]' :person/name   # an attribute
  datsync pull ws://127.0.0.1:8080/ '[*]' '[:person/name "Ivan"]'
"""


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", metavar="TARGET", help=TARGET_HELP)
    p.add_argument("pattern", metavar="PATTERN", help="the pull pattern, EDN text or @FILE")
    p.add_argument("eids", metavar="EID", nargs="+", help="entity id, lookup ref [:attr value] or ident :ident")
    add_view_options(p)
    add_connection_options(p)


def run(args: argparse.Namespace) -> int:
    from datsync.core import pull, pull_many

    pattern = arg_text(args.pattern, "PATTERN")
    eids = [eid(read_arg(a, "EID")) for a in args.eids]
    check_views(args)
    target = target_from_args(args)
    try:
        db = view(target.db, args)
        result = pull(db, pattern, eids[0]) if len(eids) == 1 else pull_many(db, pattern, eids)
    finally:
        target.close()
    if len(eids) == 1:
        emit(to_edn(keywordize(result)))
    else:
        emit("[" + "\n ".join(to_edn(keywordize(r)) for r in result) + "]")
    return 0
