"""``datsync transact TARGET FILE.edn``: commit transactions."""

from __future__ import annotations

import argparse

from ._edn import TxConverter, emit, preview, read_file, to_edn
from ._errors import REFUSED, CliError
from ._progress import Progress, enabled
from ._target import TARGET_HELP, Committed, add_connection_options, target_from_args

NAME = "transact"
HELP = "commit a transaction (or many) from an EDN file"
DESCRIPTION = """\
Commit the transaction in FILE.edn ('-' for stdin) to TARGET and print what was committed.

FILE holds one transaction: a vector of tx forms, as Datomic takes them —
  [{:db/id "ivan" :person/name "Ivan" :person/friends [[:person/name "Petr"]]}
   [:db/add [:person/name "Petr"] :person/age 28]
   [:db/retract [:person/name "Oleg"] :person/aliases "Olezhka"]
   [:db/cas [:person/name "Ivan"] :person/age 31 32]
   [:db/retractEntity [:person/name "Anna"]]]
With --many, FILE holds a vector of transactions, committed in order, each on its own.
Schema is data: {:db/ident :person/email :db/valueType :db.type/string :db/cardinality
:db.cardinality/one :db/unique :db.unique/identity} installs an attribute.

For each transaction one EDN map is printed: {:t 4, :tx 536870916, :tempids {"ivan" 105}}. A
transaction is acknowledged only once it is durable. A rejected one prints its error code (e.g.
db.error/unique-conflict) and exits with status 1; with --many the ones before it stay committed.

A store file that a server is serving is refused: write through the server's URL instead.
"""
EPILOG = """\
examples:
  datsync transact db.sqlite tx.edn
  echo '[{:person/name "Anna" :person/age 25}]' | datsync transact db.sqlite -
  datsync transact db.sqlite --many txs.edn
  datsync transact ws://127.0.0.1:8080/ tx.edn --token "$TOKEN"
"""


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", metavar="TARGET", help=TARGET_HELP)
    p.add_argument("file", metavar="FILE.edn", help="a vector of tx forms ('-' for stdin)")
    p.add_argument("--many", action="store_true", help="FILE holds a vector of transactions")
    add_connection_options(p)


def _looks_like_many(tx: list) -> bool:
    return bool(tx) and all(isinstance(f, list) and f and isinstance(f[0], list | dict) for f in tx)


def result_map(c: Committed) -> str:
    return to_edn({_kw("t"): c.t, _kw("tx"): c.tx, _kw("tempids"): c.tempids})


def _kw(name: str):
    from datsync.core import kw

    return kw(name)


def run(args: argparse.Namespace) -> int:
    from datsync.core.errors import DatsyncError

    data = read_file(args.file, "FILE")
    if not isinstance(data, list):
        what = "a vector of transactions" if args.many else "a vector of tx forms"
        raise CliError("edn/shape", f"{args.file} must hold {what}, got {preview(data)}")
    if args.many:
        txs = data
        for i, tx in enumerate(txs):
            if not isinstance(tx, list):
                raise CliError("edn/shape", f"transaction {i} in {args.file} must be a vector of tx forms, "
                               f"got {preview(tx)}")
    else:
        if _looks_like_many(data):
            raise CliError("edn/shape", f"{args.file} holds a vector of transactions: add --many to commit them "
                           "one after another")
        txs = [data]
    target = target_from_args(args, write=True)
    try:
        with Progress("transact", total=len(txs), unit="transactions",
                      show=enabled(args.progress) and len(txs) > 1) as bar:
            for i, tx in enumerate(txs):
                try:
                    c = target.transact(TxConverter(target.db.schema).tx(tx))
                except DatsyncError as e:
                    if not args.many:
                        raise
                    raise CliError(e.code, f"transaction {i} failed ({i} committed before it): {e.message}",
                                   REFUSED) from None
                target.wait_for_t(c.t)
                emit(result_map(c))
                bar.advance()
    finally:
        target.close()
    return 0
