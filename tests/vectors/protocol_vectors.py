"""Shared protocol test vectors: messages, their exact bytes, and their decoded values, in a form both
the Python and the JavaScript test suites read (tests/vectors/protocol/*.json).

Each vector file holds a list of cases:

* ``{"name", "wire", "value"}``: ``wire`` (the JSON text the codec writes) decodes to a message that
  ``describe`` turns into ``value``, and encoding that message gives back ``wire`` byte for byte;
* ``{"name", "wire", "error"}``: decoding ``wire`` fails with the error code ``error``.

``value`` spells every value type without ambiguity: strings, booleans, null, safe integers and
non-integral doubles as themselves, lists as arrays, and anything else as a one-key object:
``{"$keyword": "a/b"}``, ``{"$symbol": ..}``, ``{"$instant": iso}``, ``{"$uuid": ..}``,
``{"$int": digits}`` (beyond 2^53), ``{"$double": repr}`` (integral or special), ``{"$bigdec": ..}``,
``{"$bytes": base64}``, ``{"$tuple": [..]}``, ``{"$set": [..]}`` (sorted), ``{"$object": {..}}``,
``{"$map": [[k, v], ..]}``.

Regenerate after a protocol change: ``python -m tests.vectors.protocol_vectors``.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import decimal
import json
import math
import uuid
from pathlib import Path
from typing import Any

from datsync.core.sync.codec import MAX_SAFE_INT, encode
from datsync.core.sync.delta import Delta, Origin
from datsync.core.sync.messages import (
    PROTOCOL_VERSION,
    Ack,
    Deltas,
    Error,
    Hello,
    Ping,
    Pong,
    Resync,
    Scopes,
    ScopesOk,
    ScopesRejected,
    Submit,
    Sync,
    TxOk,
    TxRejected,
    Welcome,
)
from datsync.core.sync.schema import SchemaDelta
from datsync.core.sync.snapshot import SnapshotBegin, SnapshotChunk, SnapshotEnd
from datsync.core.values import Keyword, Symbol, kw

DIR = Path(__file__).parent / "protocol"

UTC = dt.UTC
T0 = dt.datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
U = uuid.UUID("6f1c2a4e-8b3d-4c5e-9f00-112233445566")


def _compact(x: Any) -> str:
    return json.dumps(x, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def describe(v: Any) -> Any:
    """``v`` (a decoded value) in the vectors' unambiguous JSON spelling."""
    t = type(v)
    if v is None or t is bool or t is str:
        return v
    if t is int:
        return v if -MAX_SAFE_INT <= v <= MAX_SAFE_INT else {"$int": str(v)}
    if t is float:
        return v if math.isfinite(v) and not v.is_integer() else {"$double": repr(v)}
    if t is Keyword:
        return {"$keyword": v.name}
    if t is Symbol:
        return {"$symbol": v.name}
    if isinstance(v, dt.datetime):
        return {"$instant": v.isoformat()}
    if t is uuid.UUID:
        return {"$uuid": str(v)}
    if t is decimal.Decimal:
        return {"$bigdec": str(v)}
    if t is bytes:
        return {"$bytes": base64.b64encode(v).decode("ascii")}
    if isinstance(v, tuple):
        return {"$tuple": [describe(x) for x in v]}
    if isinstance(v, frozenset | set):
        return {"$set": sorted((describe(x) for x in v), key=_compact)}
    if isinstance(v, dict):
        if all(type(k) is str for k in v):
            return {"$object": {k: describe(x) for k, x in v.items()}}
        return {"$map": [[describe(k), describe(x)] for k, x in v.items()]}
    if isinstance(v, list):
        return [describe(x) for x in v]
    raise TypeError(f"cannot describe {v!r}")


def _datoms(ds: Any) -> list:
    return [[e, a, describe(v), last] for e, a, v, last in ds]


def describe_message(m: Any) -> dict:
    """A decoded message in the vectors' spelling: ``{"type": ..., <wire field>: <described value>}``."""
    out: dict[str, Any] = {"type": m.TYPE}
    if type(m) is Delta:
        out.update(t=m.t, tx=m.tx, instant=describe(m.instant), datoms=_datoms(m.datoms))
        if m.schema.changes:
            out["schema"] = {a: None if p is None else {k: describe(x) for k, x in p.items()}
                             for a, p in m.schema.changes.items()}
        if m.schema.renames:
            out["renames"] = [list(r) for r in m.schema.renames]
        if m.origin is not None:
            o = m.origin
            out["origin"] = {"client": o.client, "seq": o.seq, "tempids": describe(dict(o.tempids or {}))}
        return out
    if type(m) is Deltas:
        out["deltas"] = [describe_message(d) for d in m.deltas]
        return out
    if type(m) is SnapshotChunk:
        out.update(t=m.t, seq=m.seq, datoms=_datoms(m.datoms))
        return out
    if type(m) is ScopesOk:
        out.update(req=m.req, t=m.t, datoms=_datoms(m.datoms))
        return out
    if type(m) is Scopes:
        out.update(req=m.req, scopes=[[n, [describe(a) for a in args]] for n, args in m.scopes])
        return out
    if type(m) is Hello:
        out.update(credentials=m.credentials, t=m.t, db_id=m.db_id)  # credentials are verbatim JSON
        if m.client is not None:
            out["client"] = m.client
        if m.batch:
            out["batch"] = True
        return out
    if type(m) is SnapshotBegin:
        out.update(t=m.t, tx=m.tx, max_eid=m.max_eid, datoms=m.datoms, chunks=m.chunks, db_id=m.db_id)
        if m.aliases:
            out["aliases"] = [list(r) for r in m.aliases]
        return out
    for name in (f.name for f in dataclasses.fields(m)):
        if type(m) is Submit and name in ("client", "seq") and m.client is None:
            continue  # sent only with exactly-once submission
        out["tx" if (type(m) is Submit and name == "tx_data") else name] = describe(getattr(m, name))
    return out


def cases() -> dict[str, list[dict]]:
    """The vector files: name -> cases."""
    every_value = [
        None, True, False, 0, -1, 42, MAX_SAFE_INT, -MAX_SAFE_INT, MAX_SAFE_INT + 1, -(1 << 63), 1 << 70,
        1.5, -0.25, 1e-05, 1.2345e-7, 3.0, -0.0, 1e16, 1.5e300, math.inf, -math.inf, math.nan,
        "", "plain", "~tilde", "~~two", "üñí ☃ \n\t\"\\ \x01", "~:not-a-keyword",
        kw("status/done"), kw("plain"), kw("::colon"), Symbol("sym"), T0,
        dt.datetime(2024, 5, 1, 10, 0, 0, 123456, tzinfo=UTC),
        dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=2))), U,
        decimal.Decimal("1.50"), decimal.Decimal("-1E+3"), decimal.Decimal("0.000"), b"", b"\x00\xffbytes",
        (1, "a", kw("k")), (), (None, 2.0),
    ]
    values = [[e, "v/x", v, True] for e, v in enumerate(every_value, 1)]
    delta = Delta(42, 536870954, T0, tuple((e, a, v, added) for e, a, v, added in values))
    collections = [
        ["db/add", "ann", "p/tags", frozenset({1, 2, 3})],
        {"db/id": "bob", "p/meta": {"k": 1, "~k": [1, 2]}},
        {"db/id": -1, "p/map": {1: "one", kw("x"): (1, 2)}},
        ["db/add", ("p/name", "Ann"), "p/score", 1.0],
        ["db/retractEntity", 101],
    ]
    return {
        "messages": [
            {"message": Hello({"token": "~secret"}, None, None)},
            {"message": Hello("tok", 17, "db-1")},
            {"message": Hello(None, 0, "~odd-db")},
            {"message": Hello({"token": "t"}, 5, "db-1", "client-7f3a")},
            {"message": Hello(None, 5, "db-1", "client-7f3a", batch=True)},
            {"message": Welcome("db-1", 42, "resume", 32)},
            {"message": Welcome("db-1", 0, "bootstrap", 1)},
            {"message": Sync(None)},
            {"message": Sync(7)},
            {"message": Ack(41)},
            {"message": Submit(1, collections)},
            {"message": Submit("~req", [])},
            {"message": Submit(2, [["db/add", "x", "p/name", "X"]], "client-7f3a", 12)},
            {"message": TxOk(1, 43, {"ann": 101, "db/current-tx": 536870955})},
            {"message": TxOk("r2", 44, {-1: 102, "bob": 103})},
            {"message": TxRejected(3, "db.error/unique-conflict", "Unique conflict: ~ann")},
            {"message": Scopes(4, (("team", ("red",)), ("~odd", (1, kw("x"))), ("all", ())))},
            {"message": Scopes("r5", ())},
            {"message": ScopesOk(4, 42, ((101, "p/name", "Ann", True), (102, "p/name", "Bob", False)))},
            {"message": ScopesRejected(5, "policy/unknown-scope", "No scope named 'nope'")},
            {"message": Resync("too far behind", 100)},
            {"message": Ping(3, None)},
            {"message": Ping(4, 42)},
            {"message": Pong(4)},
            {"message": Error("protocol/unexpected", "welcome outside the handshake")},
            {"message": SnapshotBegin(42, 536870954, 1042, 3, 1, "db-1")},
            {"message": SnapshotBegin(0, 536870912, 0, 0, 0, None)},
            {"message": SnapshotBegin(9, 536870921, 200, 10, 1, "db-1", (("p/age", "p/years"), ("~x", "y")))},
            {"message": SnapshotChunk(42, 0, ((1, "db/ident", kw("p/name"), 536870913),
                                               (101, "p/name", "Ann", 536870954),
                                               (101, "p/pos", (1, 2), 536870954)))},
            {"message": SnapshotEnd(42, 1)},
        ],
        "deltas": [
            {"message": Delta(1, 536870913, T0, ((101, "p/name", "Ann", True), (101, "p/name", "Anne", False),
                                                 (536870913, "db/txInstant", T0, True)))},
            {"message": Delta(2, 536870914, T0, ((102, "db/ident", kw("p/age"), True),),
                              SchemaDelta({"p/age": {"db/valueType": kw("db.type/long"),
                                                     "db/cardinality": kw("db.cardinality/one")},
                                           "p/gone": None}, ()))},
            {"message": Delta(3, 536870915, T0, (), SchemaDelta({"p/years": {"db/valueType": kw("db.type/long")}},
                                                                (("p/age", "p/years"),)))},
            {"message": Delta(4, 536870916, T0, ((1, "~tilde/attr", "~v", True),))},
            {"message": Delta(5, 536870917, T0, ((103, "p/name", "X", True),),
                              origin=Origin("client-7f3a", 12, {"x": 103, "db/current-tx": 536870917}))},
            {"message": Deltas((Delta(6, 536870918, T0, ((104, "p/name", "Y", True),)),
                                Delta(7, 536870919, T0, ((104, "p/name", "Y", False),), origin=Origin("c", 1, {}))))},
        ],
        "values": [{"message": delta}],
        "errors": [
            {"wire": '{"v":99,"type":"ping","n":1}', "error": "protocol/version"},
            {"wire": '{"type":"ping","n":1}', "error": "protocol/malformed"},
            {"wire": "[1,2]", "error": "protocol/malformed"},
            {"wire": "{nope", "error": "protocol/malformed"},
            {"wire": f'{{"v":{PROTOCOL_VERSION},"type":"no-such","n":1}}', "error": "protocol/malformed"},
            {"wire": f'{{"v":{PROTOCOL_VERSION},"type":"ack"}}', "error": "protocol/malformed"},
            {"wire": f'{{"v":{PROTOCOL_VERSION},"type":"error","code":"c","message":"\\ud800"}}',
             "error": "protocol/malformed"},
            {"wire": f'{{"v":{PROTOCOL_VERSION},"type":"ack","t":-1}}', "error": "protocol/malformed"},
            {"wire": f'{{"v":{PROTOCOL_VERSION},"type":"ack","t":"1"}}', "error": "protocol/malformed"},
            {"wire": f'{{"v":{PROTOCOL_VERSION},"type":"welcome","db_id":"d","t":1,"mode":"other","ack_every":1}}',
             "error": "protocol/malformed"},
            {"wire": f'{{"v":{PROTOCOL_VERSION},"type":"delta","t":1,"tx":2,"instant":"~tnot-a-time","datoms":[]}}',
             "error": "protocol/malformed"},
            {"wire": f'{{"v":{PROTOCOL_VERSION},"type":"delta","t":1,"tx":2,"instant":"~t2024-05-01T10:00:00+00:00",'
                     '"datoms":[[1,"a",1]]}', "error": "protocol/malformed"},
            {"wire": f'{{"v":{PROTOCOL_VERSION},"type":"delta","t":1,"tx":2,"instant":"~t2024-05-01T10:00:00+00:00",'
                     '"datoms":[[0,"a",1,true]]}', "error": "protocol/malformed"},
            {"wire": f'{{"v":{PROTOCOL_VERSION},"type":"delta","t":1,"tx":2,"instant":"~t2024-05-01T10:00:00+00:00",'
                     '"datoms":[[1,"a",[1,2],true]]}', "error": "protocol/malformed"},
            {"wire": f'{{"v":{PROTOCOL_VERSION},"type":"deltas","deltas":[]}}', "error": "protocol/malformed"},
            {"wire": f'{{"v":{PROTOCOL_VERSION},"type":"deltas",'
                     f'"deltas":[{{"v":{PROTOCOL_VERSION},"type":"ack","t":1}}]}}', "error": "protocol/malformed"},
            {"wire": f'{{"v":{PROTOCOL_VERSION},"type":"hello","credentials":null,"t":null,"db_id":null,"batch":1}}',
             "error": "protocol/malformed"},
            {"wire": f'{{"v":{PROTOCOL_VERSION},"type":"snapshot-chunk","t":1,"seq":0,"datoms":[[1,"a","~qbad",5]]}}',
             "error": "protocol/malformed"},
            {"wire": f'{{"v":{PROTOCOL_VERSION},"type":"tx-ok","req":1,"t":1,"tempids":[1]}}',
             "error": "protocol/malformed"},
            {"wire": f'{{"v":{PROTOCOL_VERSION},"type":"submit","req":{{"x":1}},"tx":[]}}',
             "error": "protocol/malformed"},
            {"wire": f'{{"v":{PROTOCOL_VERSION},"type":"submit","req":1,"tx":[["~#m",1]]}}',
             "error": "protocol/malformed"},
            {"wire": f'{{"v":{PROTOCOL_VERSION},"type":"submit","req":1,"tx":[],"client":"c"}}',
             "error": "protocol/malformed"},
            {"wire": f'{{"v":{PROTOCOL_VERSION},"type":"submit","req":1,"tx":[],"client":"c","seq":0}}',
             "error": "protocol/malformed"},
            {"wire": f'{{"v":{PROTOCOL_VERSION},"type":"submit","req":1,"tx":[],"client":"","seq":1}}',
             "error": "protocol/malformed"},
            {"wire": f'{{"v":{PROTOCOL_VERSION},"type":"hello","credentials":null,"t":null,"db_id":null,'
                     f'"client":{json.dumps("c" * 129)}}}', "error": "protocol/malformed"},
            {"wire": f'{{"v":{PROTOCOL_VERSION},"type":"delta","t":1,"tx":2,"instant":"~t2024-05-01T10:00:00+00:00",'
                     '"datoms":[],"origin":{"client":"c","seq":0,"tempids":{}}}', "error": "protocol/malformed"},
        ],
    }


def build() -> dict[str, list[dict]]:
    """Every vector file's content, computed with the Python codec."""
    out: dict[str, list[dict]] = {}
    for fname, items in cases().items():
        rows = []
        for i, item in enumerate(items):
            if "message" in item:
                m = item["message"]
                rows.append({"name": f"{fname}-{i}-{m.TYPE}", "wire": encode(m).decode("utf-8"),
                             "value": describe_message(m)})
            else:
                rows.append({"name": f"{fname}-{i}-error", "wire": item["wire"], "error": item["error"]})
        out[fname] = rows
    return out


def render(rows: list[dict]) -> str:
    """A vector file's text (stable, one case per line)."""
    return "[\n" + ",\n".join(json.dumps(r, ensure_ascii=False, allow_nan=False) for r in rows) + "\n]\n"


def write() -> None:
    DIR.mkdir(exist_ok=True)
    for fname, rows in build().items():
        (DIR / f"{fname}.json").write_text(render(rows), encoding="utf-8")


if __name__ == "__main__":
    write()
