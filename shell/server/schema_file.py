"""Schema files: the transaction an EDN schema describes, and whether a database already has it."""

from __future__ import annotations

from typing import Any

from datsync.core import Keyword, transact

from ..connection import utc_now


def schema_tx_from_edn(text: str) -> list[dict]:
    """The transaction installing the schema an EDN text describes: a map attribute -> properties
    (as ``:schema`` in docs/examples/people.edn; a whole such file works too) or a vector of
    attribute entity maps (``[{:db/ident :person/name :db/valueType :db.type/string ...}]``)."""
    from datsync.core.edn import read_edn

    data = read_edn(text)
    if isinstance(data, dict) and any(isinstance(k, Keyword) and k.name == "schema" for k in data):
        data = next(v for k, v in data.items() if isinstance(k, Keyword) and k.name == "schema")

    def attr_name(k: Any) -> str:
        if isinstance(k, Keyword):
            return k.name
        if isinstance(k, str):
            return k.lstrip(":")
        raise ValueError(f"attribute names are keywords, got {k!r}")

    def props(m: Any) -> dict:
        if not isinstance(m, dict):
            raise ValueError(f"attribute properties are a map, got {m!r:.80}")
        return {attr_name(k): v for k, v in m.items()}

    from datsync.core import kw

    if isinstance(data, dict):
        return [{"db/ident": kw(attr_name(a)), **props(p)} for a, p in data.items()]
    if isinstance(data, list | tuple):
        out = [props(m) for m in data]
        for m in out:
            if "db/ident" not in m:
                raise ValueError(f"an attribute entity map needs :db/ident: {m!r:.80}")
        return out
    raise ValueError("a schema file holds a map {attr {props}} or a vector of attribute maps")


def schema_is_installed(db: Any, tx: list) -> bool:
    """True when transacting ``tx`` into ``db`` would change nothing but the transaction's instant."""
    report = transact(db, tx, instant=utc_now())
    tx_id = report.db_after.max_tx
    return all(d.e == tx_id and d.a == "db/txInstant" for d in report.tx_data)
