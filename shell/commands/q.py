"""``datsync q TARGET QUERY [INPUT ...]``: a Datalog query."""

from __future__ import annotations

import argparse

from ._edn import arg_text, emit, read_arg, result_edn
from ._target import TARGET_HELP, add_connection_options, target_from_args
from ._views import add_view_options, check_views, view

NAME = "q"
HELP = "run a Datalog query"
DESCRIPTION = """\
Run a Datalog query (Datomic's and DataScript's syntax) against TARGET and print the result as EDN.

The database is the query's first source ($) when the query reads one (a query without :in that
never uses $ takes no database, as in DataScript); every INPUT binds the next name of :in, in order.
QUERY and each INPUT are EDN text, or @FILE to read the text from a file. Inputs are EDN values:
"Ivan", 42, #inst "2026-01-01", a collection [1 2 3], a relation [["Ivan" 1] ...], a lookup ref
[:person/name "Ivan"], rules (for %), a keyword value :color/red. An attribute bound through :in is
given as a string: "person/name".

Results: a relation prints as a set of vectors, one per line, in value order; [?x ...] as a vector;
?x . as one value; [?x ?y] as a vector; :keys as maps; pull maps with keyword keys.

With a server URL the replica bootstraps and the query runs locally on it (DataScript flavor, the
server's datoms and ids). With a store file it runs on the server's database value (Datomic flavor),
which also has --as-of, --since and --history.
"""
EPILOG = """\
examples:
  datsync q db.sqlite '[:find ?n ?a :where [?e :person/name ?n] [?e :person/age ?a]]'
  datsync q db.sqlite '[:find ?a . :in $ ?n :where [?e :person/name ?n] [?e :person/age ?a]]' '"Ivan"'
  datsync q db.sqlite '[:find [?n ...] :in $ [?a ...] :where [?e :person/age ?a] [?e :person/name ?n]]' '[27 40]'
  datsync q db.sqlite '[:find (pull ?e [*]) :where [?e :person/age 40]]'
  datsync q db.sqlite @reach.edn '[:person/name "Petr"]' @rules.edn       # query and rules from files
  datsync q db.sqlite --as-of 2 '[:find ?a . :where [_ :person/age ?a]]'  # the database at t=2
  datsync q ws://127.0.0.1:8080/ '[:find (count ?e) . :where [?e :person/name]]'
"""


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", metavar="TARGET", help=TARGET_HELP)
    p.add_argument("query", metavar="QUERY", help="the query, EDN text or @FILE: [:find ... :in ... :where ...]")
    p.add_argument("inputs", metavar="INPUT", nargs="*", default=[], help="an input for :in (after $), EDN or @FILE")
    add_view_options(p)
    add_connection_options(p)


def run(args: argparse.Namespace) -> int:
    from datsync.core import q
    from datsync.core.query import parse_query
    from datsync.core.query.parser import InSrc

    query = arg_text(args.query, "QUERY")
    pq = parse_query(query)
    takes_db = bool(pq.inputs) and type(pq.inputs[0]) is InSrc
    inputs = [read_arg(a, f"INPUT {i + 1}") for i, a in enumerate(args.inputs)]
    check_views(args)
    target = target_from_args(args)
    try:
        result = q(pq, *([view(target.db, args)] if takes_db else []), *inputs)
    finally:
        target.close()
    emit(result_edn(result))
    return 0
