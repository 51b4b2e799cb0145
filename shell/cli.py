"""The ``datsync`` command line: argparse wiring only; each command lives in ``shell/commands/``."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable

DESCRIPTION = """\
datsync: a central database with Datomic's semantics, and replicas with DataScript's semantics kept
in sync with it. This command talks to either end.

TARGET, for the commands that take one, is where the database is:
  ws://HOST:PORT/   a running server (`datsync serve`). Reads bootstrap a replica and run locally on
                    it; writes go to the server and return once durable. --token or $DATSYNC_TOKEN
                    for servers that require one.
  PATH              a store file (SQLite, e.g. ./datsync.sqlite): the server's database, read
                    directly. Writes are refused while a server is serving the file.
  postgresql://HOST:PORT/DB   a PostgreSQL store, read directly; writes are allowed while servers
                    serve it (they stream them to their replicas).

Everything goes in and out as EDN (https://github.com/edn-format/edn), as in Datomic:
  :person/name                       a keyword: an attribute, an ident, or a keyword value
  [:person/name "Ivan"]              a lookup ref: the entity whose unique :person/name is "Ivan"
  {:db/id "x" :person/name "Ivan"}   a map tx form ("x", -1: tempids; nested maps; vectors for many)
  [:db/add e :person/age 32]         a list tx form (:db/retract :db/retractEntity :db/cas too)
  [:find ?n :where [?e :person/name ?n]]    a Datalog query;  [:person/name {:person/friends [*]}]  a pull
  #inst "2026-01-01T00:00:00Z"  #uuid "..."  1.5M (bigdec)  42N (bigint)  ##Inf  #datsync/bytes "QUJD"
Arguments that take EDN also take @FILE (the text of FILE); file arguments take '-' for stdin.

Results go to stdout as EDN (attributes as keywords); errors to stderr as
`datsync COMMAND: CODE: message`. Exit status: 0 ok; 1 the database refused (a transaction, query or
pull was rejected: TxError, QueryError, ... with Datomic's error code); 2 usage or I/O (bad
arguments or EDN, a missing or busy store, an unreachable server); 3 a bug in datsync.

`datsync COMMAND --help` explains each command, with examples.
"""

EPILOG = """\
examples:
  datsync import db.sqlite docs/examples/people.edn          # a store file from an EDN file
  datsync q db.sqlite '[:find ?n ?a :where [?e :person/name ?n] [?e :person/age ?a]]'
  datsync pull db.sqlite '[* {:person/friends [:person/name]}]' '[:person/name "Oleg"]'
  echo '[[:db/add [:person/name "Ivan"] :person/age 33]]' | datsync transact db.sqlite -
  datsync export db.sqlite --out backup.edn
  datsync status db.sqlite
  datsync copy db.sqlite postgresql://127.0.0.1:5432/app     # the store into PostgreSQL, verified
  datsync serve --store db.sqlite --port 8080                 # then the same commands on ws://127.0.0.1:8080/
  datsync db docs/examples/people.edn --pull '[*]' '[:person/name "Ivan"]'   # in memory, no store
  datsync bench add-5 pull-many --samples 3
"""


def build_parser() -> argparse.ArgumentParser:
    """The ``datsync`` parser: one subparser per command, each with its handler as ``args.run``."""
    from .commands import COMMANDS

    parser = argparse.ArgumentParser(
        prog="datsync", description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    from . import serve_command  # `datsync serve`: shell/serve_command.py (the sync server's owner)

    for command in (serve_command, *COMMANDS):
        p = sub.add_parser(command.NAME, help=command.HELP, description=command.DESCRIPTION,
                           epilog=command.EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
        command.configure(p)
        p.set_defaults(run=command.run)
    sub.add_parser("bench", help="run DataScript's benchmark suite on our engine and on DataScript "
                   "(`datsync bench --help`)", add_help=False)
    return parser


def run_command(name: str, run: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run a command's handler; report what it raises as ``datsync NAME: CODE: message`` and map it
    to an exit status (see ``commands._errors``)."""
    from .commands._errors import INTERRUPTED, report

    try:
        status = run(args)
        sys.stdout.flush()
        return status
    except KeyboardInterrupt:
        print(f"datsync {name}: interrupted", file=sys.stderr)
        return INTERRUPTED
    except BrokenPipeError:  # stdout closed early (| head): not an error
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115  (no flush error at exit)
        return 0
    except Exception as e:
        return report(name, e)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``datsync`` command."""
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.command == "bench":
        from .bench import main as bench_main

        return bench_main(rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    return run_command(args.command, args.run, args)


if __name__ == "__main__":
    sys.exit(main())
