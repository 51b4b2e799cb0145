"""The wire codec: protocol messages to and from bytes (JSON with tagged values), strictly validated.

Every message is a JSON object ``{"v": 2, "type": "...", ...fields}``; ``v`` is the protocol
version (``PROTOCOL_VERSION``): a message with another version is refused with
``ProtocolError("protocol/version")``, and ``version_error`` is the answer a peer of that other
version can still read.

Values that JSON cannot carry exactly are tagged, so every Datomic value type round-trips exactly:

=======================  =====================================  ==========================================
value                    on the wire                             note
=======================  =====================================  ==========================================
``None True False``      ``null true false``
``int``                  number                                  if ``|i| <= 2**53 - 1`` (exact in any JSON)
big ``int``              ``"~n123..."``                          beyond 2^53 (Datomic ``bigint``, ``long``)
``float``                number                                  if finite and not integral
integral ``float``       ``"~d1.0"``                             so ``1.0`` stays a double, ``1`` a long
``inf -inf nan``         ``"~finf"`` ``"~f-inf"`` ``"~fnan"``
``str``                  string                                  a leading ``~`` is escaped as ``~~``
``Keyword``              ``"~:ns/name"``
``Symbol``               ``"~$name"``
``datetime``             ``"~t2020-01-01T00:00:00+00:00"``       ISO 8601; aware stays aware (offset kept)
``uuid.UUID``            ``"~u<uuid>"``
``decimal.Decimal``      ``"~m1.50"``                            finite; exponent and digits kept
``bytes``                ``"~b<base64>"``
``tuple``                ``["~#t", ...]``                        a list stays a JSON array
``set``/``frozenset``    ``["~#s", ...]``                        decodes as ``frozenset``
``dict``                 object, or ``["~#m", k, v, ...]``       an object when every key is a ``str``
=======================  =====================================  ==========================================

Datomic's ``uri`` values are ``str`` in this engine and travel as strings.

A hello's ``credentials`` are the exception: they are plain JSON data (strings, numbers, booleans,
null, lists, objects), sent and read verbatim, never tagged or escaped, so a secret of any shape
(a token that begins with ``~``, say) is never read as a tagged value; and no error about them ever
quotes them.

Decoding checks the size first (``max_size``: ``protocol/too-large``), then the JSON (valid Unicode: a
``\\u`` escape of a lone surrogate is refused, since nothing could send such a string on), the envelope,
and the shape and type of every field of the message type; anything wrong is a ``ProtocolError``
with code ``protocol/malformed`` (or ``protocol/version``): nothing from the wire raises anything
else. Encode a delta once (``encode``) and send the same bytes to every replica that may see it.
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import decimal as _decimal
import json
import math
import re
import uuid as _uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from itertools import pairwise, repeat
from typing import Any

from ..db import eavt_keys
from ..values import Keyword, OrderedTuple, Symbol
from .delta import Delta, Origin
from .errors import MALFORMED, TOO_LARGE, VERSION, ProtocolError
from .messages import (
    MAX_CLIENT_ID,
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
from .schema import SchemaDelta
from .snapshot import DEFAULT_CHUNK_SIZE, SnapshotBegin, SnapshotChunk, SnapshotEnd, snapshot

DEFAULT_MAX_SIZE = 16 << 20
"""Default largest message ``decode`` accepts, in bytes (16 MiB)."""

MAX_DEPTH = 64
"""Deepest nesting of values ``decode`` accepts."""

MAX_SAFE_INT = (1 << 53) - 1
_INT_RE = re.compile(r"-?[0-9]+\Z")
_DUMPS = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


def _bad(message: str, **data: Any) -> ProtocolError:
    return ProtocolError(MALFORMED, message, data)


# ------------------------------------------------------------------------------------------------
# Values


def _enc_str(v: str) -> str:
    return "~" + v if v[:1] == "~" else v


def _enc_float(v: float) -> Any:
    if not math.isfinite(v):
        return "~f" + repr(v)
    if v.is_integer():
        return "~d" + repr(v)
    return v


def _enc_int(v: int) -> Any:
    if -MAX_SAFE_INT <= v <= MAX_SAFE_INT:
        return v
    return "~n" + str(v)


def _enc_decimal(v: _decimal.Decimal) -> str:
    if not v.is_finite():
        raise ProtocolError("protocol/unencodable", f"Cannot send the non-finite decimal {v}", {"value": str(v)})
    return "~m" + str(v)


def _enc_seq(tag: str | None, xs: Any, depth: int) -> list:
    out = [_enc(x, depth + 1) for x in xs]
    if tag is not None:
        out.insert(0, tag)
    return out


def _enc_dict(v: Mapping, depth: int) -> Any:
    if all(type(k) is str for k in v):
        return {_enc_str(k): _enc(x, depth + 1) for k, x in v.items()}
    out: list = ["~#m"]
    for k, x in v.items():
        out.append(_enc(k, depth + 1))
        out.append(_enc(x, depth + 1))
    return out


_SIMPLE: dict[type, Callable[[Any], Any]] = {
    str: _enc_str,
    int: _enc_int,
    float: _enc_float,
    bool: lambda v: v,
    type(None): lambda v: v,
    Keyword: lambda v: "~:" + v.name,
    Symbol: lambda v: "~$" + v.name,
    _uuid.UUID: lambda v: "~u" + str(v),
    _dt.datetime: lambda v: "~t" + v.isoformat(),
    _decimal.Decimal: _enc_decimal,
    bytes: lambda v: "~b" + base64.b64encode(v).decode("ascii"),
}


def _enc(v: Any, depth: int = 0) -> Any:
    """``v`` as JSON-ready data (tagged where JSON would lose its type)."""
    t = type(v)
    f = _SIMPLE.get(t)
    if f is not None:
        return f(v)
    if depth > MAX_DEPTH:
        raise ProtocolError("protocol/unencodable", "Value nested too deeply to send", {})
    if t is list:
        return _enc_seq(None, v, depth)
    if t is tuple or t is OrderedTuple:
        return _enc_seq("~#t", v, depth)
    if t is dict:
        return _enc_dict(v, depth)
    if t is frozenset or t is set:
        return _enc_seq("~#s", v, depth)
    # subclasses (NamedTuples such as Datom, IntEnum, bytearray ...)
    if isinstance(v, bool):
        return bool(v)
    if isinstance(v, int):
        return _enc_int(int(v))
    if isinstance(v, float):
        return _enc_float(float(v))
    if isinstance(v, str):
        return _enc_str(str(v))
    if isinstance(v, bytes | bytearray | memoryview):
        return _SIMPLE[bytes](bytes(v))
    if isinstance(v, _dt.datetime):
        return _SIMPLE[_dt.datetime](v)
    if isinstance(v, tuple):
        return _enc_seq("~#t", v, depth)
    if isinstance(v, list):
        return _enc_seq(None, v, depth)
    if isinstance(v, Mapping):
        return _enc_dict(v, depth)
    if isinstance(v, AbstractSet):
        return _enc_seq("~#s", v, depth)
    if isinstance(v, Sequence):  # e.g. pyrsistent's pvector
        return _enc_seq(None, v, depth)
    raise ProtocolError(
        "protocol/unencodable", f"Cannot send a value of type {type(v).__name__}: {v!r:.80}", {"type": type(v).__name__}
    )


def encode_value(v: Any) -> Any:
    """``v`` as JSON-ready data (for embedding values in other JSON)."""
    return _enc(v)


def _dec_str(s: str) -> Any:
    """A string from the wire that starts with ``~``: an escaped string or a tagged value."""
    tag = s[1:2]
    body = s[2:]
    if tag == "~":
        return s[1:]
    if tag == ":":
        return Keyword(":" + body)  # the constructor drops one leading colon: exactly this one
    if tag == "$":
        return Symbol(body)
    if tag == "t":
        try:
            return _dt.datetime.fromisoformat(body)
        except ValueError:
            raise _bad(f"Bad instant {body!r:.80}") from None
    if tag == "u":
        try:
            return _uuid.UUID(body)
        except ValueError:
            raise _bad(f"Bad uuid {body!r:.80}") from None
    if tag == "n":
        if not _INT_RE.match(body):
            raise _bad(f"Bad integer {body!r:.80}")
        try:
            return int(body)
        except ValueError:
            raise _bad("Integer too long") from None
    if tag == "d":
        try:
            return float(body)
        except ValueError:
            raise _bad(f"Bad double {body!r:.80}") from None
    if tag == "f":
        if body in ("inf", "-inf", "nan"):
            return float(body)
        raise _bad(f"Bad special double {body!r:.80}")
    if tag == "m":
        try:
            d = _decimal.Decimal(body)
        except _decimal.InvalidOperation:
            raise _bad(f"Bad decimal {body!r:.80}") from None
        if not d.is_finite():
            raise _bad(f"Non-finite decimal {body!r:.80}")
        return d
    if tag == "b":
        try:
            return base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise _bad("Bad base64 bytes") from None
    raise _bad(f"Unknown tag in {s[:16]!r}")


def _dec_key(k: str) -> str:
    if k[:1] != "~":
        return k
    if k[:2] == "~~":
        return k[1:]
    raise _bad(f"Bad map key {k[:16]!r}: tagged keys go in a ~#m map")


def _dec(x: Any, depth: int = 0) -> Any:
    """A value from JSON-decoded data (tags resolved, shape checked)."""
    t = type(x)
    if t is str:
        return _dec_str(x) if x[:1] == "~" else x
    if t is int or t is float or t is bool or x is None:
        return x
    if depth > MAX_DEPTH:
        raise _bad("Value nested too deeply")
    if t is list:
        if x and type(x[0]) is str and x[0][:2] == "~#":
            tag = x[0]
            items = [_dec(y, depth + 1) for y in x[1:]]
            if tag == "~#t":
                return tuple(items)
            try:
                if tag == "~#s":
                    return frozenset(items)
                if tag == "~#m":
                    if len(items) % 2:
                        raise _bad("A ~#m map needs an even number of items")
                    return dict(zip(items[::2], items[1::2]))
            except TypeError:
                raise _bad(f"Unhashable key or element in {tag}") from None
            raise _bad(f"Unknown tag {tag[:16]!r}")
        return [_dec(y, depth + 1) for y in x]
    if t is dict:
        return {_dec_key(k): _dec(v, depth + 1) for k, v in x.items()}
    raise _bad(f"Unexpected JSON value of type {t.__name__}")


def _credentials(x: Any, depth: int = 0) -> Any:
    """A hello's credentials: JSON data taken verbatim (never tagged), checked for depth only. Errors
    never quote them: they are secrets."""
    t = type(x)
    if t is list:
        if depth > MAX_DEPTH:
            raise _bad("Credentials nested too deeply")
        for y in x:
            _credentials(y, depth + 1)
    elif t is dict:
        if depth > MAX_DEPTH:
            raise _bad("Credentials nested too deeply")
        for y in x.values():
            _credentials(y, depth + 1)
    elif not (t is str or t is int or t is bool or x is None or (t is float and math.isfinite(x))):
        raise _bad("Credentials must be JSON data")
    return x


def decode_value(x: Any) -> Any:
    """The value JSON-ready data stands for (``ProtocolError`` if malformed)."""
    return _dec(x)


# ------------------------------------------------------------------------------------------------
# Field checks


def _field(obj: dict, name: str) -> Any:
    try:
        return obj[name]
    except KeyError:
        raise _bad(f"Missing field {name!r} in {obj.get('type')!r} message", field=name) from None


def _int(obj: dict, name: str, lo: int = 0) -> int:
    x = _field(obj, name)
    if type(x) is not int or x < lo:
        raise _bad(f"Field {name!r} must be an integer >= {lo}, got {x!r:.40}", field=name)
    return x


def _opt_int(obj: dict, name: str, lo: int = 0) -> int | None:
    if obj.get(name) is None:
        return None
    return _int(obj, name, lo)


def _str(obj: dict, name: str, *, max_len: int = 1 << 16) -> str:
    x = _field(obj, name)
    if type(x) is not str or len(x) > max_len:
        raise _bad(f"Field {name!r} must be a string, got {x!r:.40}", field=name)
    return _dec_key(x)


def _opt_str(obj: dict, name: str) -> str | None:
    if obj.get(name) is None:
        return None
    return _str(obj, name)


def _req(obj: dict) -> int | str:
    x = _field(obj, "req")
    if type(x) is int:
        return x
    if type(x) is str and len(x) <= 256:
        return _dec_key(x)
    raise _bad(f"Field 'req' must be an integer or a short string, got {x!r:.40}", field="req")


def _attr(a: Any) -> str:
    if type(a) is not str or not a:
        raise _bad(f"Attribute must be a non-empty string, got {a!r:.40}")
    if a[0] == "~":
        a = _dec_key(a)
    return a


def _val(v: Any) -> Any:
    t = type(v)
    if t is str:
        return _dec_str(v) if v[:1] == "~" else v
    if t is int or t is float or t is bool:
        return v
    return _dec(v, 1)


def _instant(obj: dict, name: str) -> _dt.datetime:
    x = _val(_field(obj, name))
    if not isinstance(x, _dt.datetime):
        raise _bad(f"Field {name!r} must be an instant", field=name)
    return x


_NOT_DATOM_VALUES = (list, dict, frozenset)


def _datoms(x: Any, last_is_tx: bool) -> tuple:
    """``[[e a v added-or-tx] ...]`` checked and decoded (the hot loop of deltas and snapshots)."""
    if type(x) is not list:
        raise _bad("Field 'datoms' must be a list")
    out = []
    append = out.append
    lt = int if last_is_tx else bool
    for d in x:
        if type(d) is not list or len(d) != 4:
            raise _bad(f"A datom is [e a v {'tx' if last_is_tx else 'added'}], got {d!r:.80}")
        e, a, v, last = d
        if type(e) is not int or e <= 0 or type(last) is not lt or type(a) is not str or not a:
            raise _bad(f"Bad datom {d!r:.80}")
        if last_is_tx and last <= 0:
            raise _bad(f"Bad datom {d!r:.80}")
        if a[0] == "~":
            a = _dec_key(a)
        tv = type(v)
        if tv is str:
            if v and v[0] == "~":
                v = _dec_str(v)
        elif tv is not int and tv is not float and tv is not bool:
            v = _dec(v, 1)
            if type(v) in _NOT_DATOM_VALUES:
                raise _bad(f"A datom's value is an atom or a tuple, got {type(v).__name__}")
        append((e, a, v, last))
    return tuple(out)


def _delta_datoms(x: Any) -> tuple:
    return _datoms(x, False)


def _snapshot_datoms(x: Any) -> tuple:
    return _datoms(x, True)


def _schema_delta(obj: dict) -> SchemaDelta:
    changes = obj.get("schema")
    renames = obj.get("renames")
    if changes is None and renames is None:
        return SchemaDelta({}, ())
    ch: dict[str, Any] = {}
    if changes is not None:
        if type(changes) is not dict:
            raise _bad("Field 'schema' must be a map of attribute -> properties")
        for name, props in changes.items():
            name = _attr(name)
            if props is None:
                ch[name] = None
                continue
            if type(props) is not dict:
                raise _bad(f"Schema properties of {name} must be a map")
            ch[name] = {_attr(k): _val(v) for k, v in props.items()}
    return SchemaDelta(ch, _name_pairs(obj, "renames"))


def _name_pairs(obj: dict, name: str) -> tuple[tuple[str, str], ...]:
    """The optional field ``name``: a list of ``[old new]`` attribute names (renames, aliases)."""
    x = obj.get(name)
    if x is None:
        return ()
    if type(x) is not list:
        raise _bad(f"Field {name!r} must be a list of [old new]", field=name)
    out = []
    for r in x:
        if type(r) is not list or len(r) != 2:
            raise _bad(f"An entry of {name!r} is [old new], got {r!r:.80}", field=name)
        out.append((_attr(r[0]), _attr(r[1])))
    return tuple(out)


def _tempids(obj: dict) -> dict:
    x = _dec(_field(obj, "tempids"), 1)
    if type(x) is not dict:
        raise _bad("Field 'tempids' must be a map")
    for k, v in x.items():
        if type(k) not in (int, str) or type(v) is not int:
            raise _bad(f"Bad tempid entry {k!r:.40} -> {v!r:.40}")
    return x


def _client_id(x: Any) -> str:
    if type(x) is not str or not 0 < len(x) <= MAX_CLIENT_ID:
        raise _bad(f"A client id is a string of 1 to {MAX_CLIENT_ID} characters, got {x!r:.40}")
    return x


def _opt_client(o: dict) -> str | None:
    x = o.get("client")
    return None if x is None else _client_id(x)


def _origin(o: dict) -> Origin | None:
    x = o.get("origin")
    if x is None:
        return None
    if type(x) is not dict:
        raise _bad("Field 'origin' must be a map")
    return Origin(_client_id(x.get("client")), _int(x, "seq", 1), _tempids(x))


def _decode_delta(o: dict) -> Delta:
    return Delta(_int(o, "t", 1), _int(o, "tx", 1), _instant(o, "instant"), _delta_datoms(_field(o, "datoms")),
                 _schema_delta(o), _origin(o))


MAX_BATCH = 4096
"""Most deltas one ``deltas`` message may carry."""


def _decode_deltas(o: dict) -> Deltas:
    xs = _field(o, "deltas")
    if type(xs) is not list or not xs or len(xs) > MAX_BATCH:
        raise _bad(f"Field 'deltas' must be a list of 1 to {MAX_BATCH} delta messages", field="deltas")
    for x in xs:
        if type(x) is not dict or x.get("v") != PROTOCOL_VERSION or x.get("type") != "delta":
            raise _bad(f"Each of 'deltas' is a delta message, got {x!r:.40}", field="deltas")
    return Deltas(tuple(_decode_delta(x) for x in xs))


def _hello(o: dict) -> Hello:
    batch = o.get("batch", False)
    if type(batch) is not bool:
        raise _bad("Field 'batch' must be true or false", field="batch")
    return Hello(_credentials(o.get("credentials")), _opt_int(o, "t"), _opt_str(o, "db_id"), _opt_client(o), batch)


def _decode_welcome(o: dict) -> Welcome:
    mode = _str(o, "mode")
    if mode not in ("resume", "bootstrap"):
        raise _bad(f"Welcome mode must be resume or bootstrap, got {mode!r:.40}")
    return Welcome(_str(o, "db_id"), _int(o, "t"), mode, _int(o, "ack_every", 1))


def _decode_submit(o: dict) -> Submit:
    tx = _dec(_field(o, "tx"), 1)
    if type(tx) is not list:
        raise _bad("Field 'tx' must be a list of forms")
    client, seq = _opt_client(o), _opt_int(o, "seq")
    if (client is None) != (seq is None):
        raise _bad("A submit names its client and seq together, or neither")
    if seq is not None and seq < 1:
        raise _bad(f"A submission's seq is at least 1, got {seq}")
    return Submit(_req(o), tx, client, seq)


def _decode_scopes(o: dict) -> Scopes:
    xs = _field(o, "scopes")
    if type(xs) is not list or len(xs) > 1024:
        raise _bad("Field 'scopes' must be a list of [name, [args...]]", field="scopes")
    out = []
    for x in xs:
        if type(x) is not list or len(x) != 2 or type(x[0]) is not str or type(x[1]) is not list:
            raise _bad(f"A scope is [name, [args...]], got {x!r:.40}", field="scopes")
        out.append((_dec_key(x[0]), tuple(_dec(a, 1) for a in x[1])))
    return Scopes(_req(o), tuple(out))


_DECODERS: dict[str, Callable[[dict], Any]] = {
    "hello": _hello,
    "welcome": _decode_welcome,
    "sync": lambda o: Sync(_opt_int(o, "t")),
    "ack": lambda o: Ack(_int(o, "t")),
    "submit": _decode_submit,
    "tx-ok": lambda o: TxOk(_req(o), _int(o, "t"), _tempids(o)),
    "tx-rejected": lambda o: TxRejected(_req(o), _str(o, "code"), _str(o, "message")),
    "scopes": _decode_scopes,
    "scopes-ok": lambda o: ScopesOk(_req(o), _int(o, "t"), _delta_datoms(_field(o, "datoms"))),
    "scopes-rejected": lambda o: ScopesRejected(_req(o), _str(o, "code"), _str(o, "message")),
    "resync": lambda o: Resync(_str(o, "reason"), _int(o, "t")),
    "ping": lambda o: Ping(_int(o, "n"), _opt_int(o, "t")),
    "pong": lambda o: Pong(_int(o, "n")),
    "error": lambda o: Error(_str(o, "code"), _str(o, "message")),
    "delta": _decode_delta,
    "deltas": _decode_deltas,
    "snapshot-begin": lambda o: SnapshotBegin(
        _int(o, "t"), _int(o, "tx"), _int(o, "max_eid"), _int(o, "datoms"), _int(o, "chunks"), _opt_str(o, "db_id"),
        _name_pairs(o, "aliases"),
    ),
    "snapshot-chunk": lambda o: SnapshotChunk(_int(o, "t"), _int(o, "seq"), _snapshot_datoms(_field(o, "datoms"))),
    "snapshot-end": lambda o: SnapshotEnd(_int(o, "t"), _int(o, "chunks")),
}


# ------------------------------------------------------------------------------------------------
# Messages


def _enc_datoms(ds: Any) -> list:
    """Datoms ``(e, a, v, last)`` as JSON-ready lists (the hot loop of deltas and snapshots)."""
    out = []
    append = out.append
    lo, hi = -MAX_SAFE_INT, MAX_SAFE_INT
    for e, a, v, last in ds:
        t = type(v)
        if t is str:
            if v and v[0] == "~":
                v = "~" + v
        elif t is not int or not lo <= v <= hi:
            v = _enc(v)
        if a and a[0] == "~":
            a = "~" + a
        append([e, a, v, last])
    return out


def _enc_delta(m: Delta) -> dict:
    out: dict[str, Any] = {"t": m.t, "tx": m.tx, "instant": _enc(m.instant), "datoms": _enc_datoms(m.datoms)}
    if m.schema.changes:
        out["schema"] = {
            _enc_str(a): (None if p is None else {_enc_str(k): _enc(v) for k, v in p.items()})
            for a, p in m.schema.changes.items()
        }
    if m.schema.renames:
        out["renames"] = _enc_pairs(m.schema.renames)
    if m.origin is not None:
        o = m.origin
        out["origin"] = {"client": o.client, "seq": o.seq, "tempids": _enc(dict(o.tempids or {}))}
    return out


def _enc_pairs(pairs: Any) -> list:
    return [[_enc_str(o), _enc_str(n)] for o, n in pairs]


def _enc_snapshot_begin(m: SnapshotBegin) -> dict:
    out = {"t": m.t, "tx": m.tx, "max_eid": m.max_eid, "datoms": m.datoms, "chunks": m.chunks, "db_id": _enc(m.db_id)}
    if m.aliases:
        out["aliases"] = _enc_pairs(m.aliases)
    return out


def _enc_chunk(m: SnapshotChunk) -> dict:
    return {"t": m.t, "seq": m.seq, "datoms": _enc_datoms(m.datoms)}


def _enc_hello(m: Hello) -> dict:
    out = {"credentials": _enc_credentials(m.credentials), "t": m.t, "db_id": _enc(m.db_id)}
    if m.client is not None:
        out["client"] = m.client
    if m.batch:
        out["batch"] = True
    return out


def _enc_submit(m: Submit) -> dict:
    out = {"req": _enc_req(m.req), "tx": _enc(list(m.tx_data))}
    if m.client is not None:
        out["client"] = m.client
        out["seq"] = m.seq
    return out


def _enc_req(req: Any) -> Any:
    if type(req) is int:
        return req
    if type(req) is str:
        return _enc_str(req)
    raise ProtocolError("protocol/unencodable", f"A request id is an int or a str, got {req!r:.40}", {})


def _enc_credentials(v: Any, depth: int = 0) -> Any:
    """Credentials as JSON data, verbatim (see ``_credentials``); the error names no value: it is a secret."""
    if isinstance(v, bool) or v is None:
        return v
    if isinstance(v, str):
        return str(v)
    if isinstance(v, int):
        return int(v)
    if isinstance(v, float) and math.isfinite(v):
        return float(v)
    if depth <= MAX_DEPTH:
        if isinstance(v, Mapping) and all(isinstance(k, str) for k in v):
            return {str(k): _enc_credentials(x, depth + 1) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [_enc_credentials(x, depth + 1) for x in v]
    raise ProtocolError("protocol/unencodable", "Credentials must be JSON data (strings, finite numbers, booleans, "
                        "null, lists, maps with string keys)", {})


_ENCODERS: dict[type, Callable[[Any], dict]] = {
    Hello: _enc_hello,
    Welcome: lambda m: {"db_id": _enc_str(m.db_id), "t": m.t, "mode": m.mode, "ack_every": m.ack_every},
    Sync: lambda m: {"t": m.t},
    Ack: lambda m: {"t": m.t},
    Submit: _enc_submit,
    TxOk: lambda m: {"req": _enc_req(m.req), "t": m.t, "tempids": _enc(dict(m.tempids))},
    TxRejected: lambda m: {"req": _enc_req(m.req), "code": _enc_str(m.code), "message": _enc_str(m.message)},
    Scopes: lambda m: {"req": _enc_req(m.req),
                       "scopes": [[_enc_str(n), [_enc(a) for a in args]] for n, args in m.scopes]},
    ScopesOk: lambda m: {"req": _enc_req(m.req), "t": m.t, "datoms": _enc_datoms(m.datoms)},
    ScopesRejected: lambda m: {"req": _enc_req(m.req), "code": _enc_str(m.code), "message": _enc_str(m.message)},
    Resync: lambda m: {"reason": _enc_str(m.reason), "t": m.t},
    Ping: lambda m: {"n": m.n, "t": m.t},
    Pong: lambda m: {"n": m.n},
    Error: lambda m: {"code": _enc_str(m.code), "message": _enc_str(m.message)},
    Delta: _enc_delta,
    Deltas: lambda m: {"deltas": [{"v": PROTOCOL_VERSION, "type": Delta.TYPE, **_enc_delta(d)} for d in m.deltas]},
    SnapshotBegin: _enc_snapshot_begin,
    SnapshotChunk: _enc_chunk,
    SnapshotEnd: lambda m: {"t": m.t, "chunks": m.chunks},
}


def encode(message: Any) -> bytes:
    """``message`` as bytes (UTF-8 JSON). ``ProtocolError("protocol/unencodable")`` for a value the wire
    cannot carry (a function, an object of an unknown type)."""
    f = _ENCODERS.get(type(message))
    if f is None:
        raise ProtocolError("protocol/unencodable", f"Not a protocol message: {message!r:.80}", {})
    body = f(message)
    obj = {"v": PROTOCOL_VERSION, "type": message.TYPE, **body}
    try:
        return _DUMPS(obj).encode("utf-8")
    except (ValueError, TypeError, UnicodeEncodeError) as e:
        raise ProtocolError("protocol/unencodable", f"Cannot encode {message.TYPE}: {e}", {}) from None


def with_origin(payload: bytes, origin: Origin) -> bytes:
    """``encode(delta)`` of a delta with ``origin``, made from ``payload``: the same delta encoded
    without one (``origin`` is the last field ``encode`` writes: the bytes are the same)."""
    tempids = _enc(dict(origin.tempids or {}))
    return b"%b,\"origin\":%b}" % (payload[:-1], _DUMPS({"client": origin.client, "seq": origin.seq,
                                                         "tempids": tempids}).encode("utf-8"))


def encode_batch(payloads: Sequence[bytes]) -> bytes:
    """The ``deltas`` message of the encoded deltas ``payloads`` (``encode(delta)`` each, in order):
    the bytes ``encode(Deltas(...))`` writes, made by joining, without encoding anything again."""
    return b'{"v":%d,"type":"deltas","deltas":[%b]}' % (PROTOCOL_VERSION, b",".join(payloads))


def version_error(peer_version: int) -> bytes:
    """The ``error`` message refusing a peer that speaks ``peer_version``, carrying that version so
    the peer can read it (an ``error`` has the same fields in every version)."""
    text = (f"This side speaks datsync protocol version {PROTOCOL_VERSION}; the peer speaks {peer_version}: "
            "upgrade the older side")
    v = peer_version if type(peer_version) is int else PROTOCOL_VERSION
    return _DUMPS({"v": v, "type": "error", "code": VERSION, "message": text}).encode("utf-8")


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
"""A JSON escape of a surrogate: a message holding one is checked for lone surrogates (a pair is one
character once parsed; a lone one is no character, and nothing could send it back out as UTF-8)."""


def _has_lone_surrogate(obj: Any) -> bool:
    try:
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _reject_constant(name: str) -> Any:
    raise _bad(f"JSON constant {name} is not allowed")


_JSON = json.JSONDecoder(parse_constant=_reject_constant)
"""The wire's JSON reader, made once (``json.loads`` with an option builds a new one per message)."""


def decode(data: bytes | bytearray | memoryview | str, *, max_size: int = DEFAULT_MAX_SIZE) -> Any:
    """The message ``data`` holds; ``ProtocolError`` (``protocol/too-large``, ``protocol/malformed``,
    ``protocol/version``) for anything else. Never raises another exception."""
    try:
        if isinstance(data, str):
            try:
                size = len(data.encode("utf-8"))
            except UnicodeEncodeError:
                raise _bad("Message is not valid Unicode (a lone surrogate)") from None
            text = data
        elif isinstance(data, bytes | bytearray | memoryview):
            size = len(data)
            if size > max_size:
                raise ProtocolError(TOO_LARGE, f"Message of {size} bytes exceeds the limit of {max_size}",
                                    {"size": size, "max_size": max_size})
            text = bytes(data).decode("utf-8")
        else:
            raise _bad(f"Expected bytes, got {type(data).__name__}")
        if size > max_size:
            raise ProtocolError(TOO_LARGE, f"Message of {size} bytes exceeds the limit of {max_size}",
                                {"size": size, "max_size": max_size})
        obj = _JSON.decode(text)
        if _SURROGATE_ESCAPE.search(text) and _has_lone_surrogate(obj):
            raise _bad("Message strings must be valid Unicode: a \\u escape is a lone surrogate")
        if type(obj) is not dict:
            raise _bad("A message is a JSON object")
        v = obj.get("v")
        if type(v) is not int:
            raise _bad("Missing protocol version field 'v'")
        if v != PROTOCOL_VERSION:
            raise ProtocolError(VERSION, f"Unsupported protocol version {v} (this side speaks {PROTOCOL_VERSION})",
                                {"version": v, "supported": [PROTOCOL_VERSION]})
        kind = obj.get("type")
        dec = _DECODERS.get(kind) if type(kind) is str else None
        if dec is None:
            raise _bad(f"Unknown message type {kind!r:.40}", type=kind)
        return dec(obj)
    except ProtocolError:
        raise
    except RecursionError:
        raise _bad("Message nested too deeply") from None
    except UnicodeDecodeError:
        raise _bad("Message is not valid UTF-8") from None
    except json.JSONDecodeError as e:
        raise _bad(f"Message is not valid JSON: {e.msg} at {e.pos}") from None
    except Exception as e:  # the last line of defense: nothing from the wire raises anything else
        raise _bad(f"Malformed message ({type(e).__name__}: {str(e)[:80]})") from None


def receive(data: bytes | bytearray | memoryview | str, *, max_size: int = DEFAULT_MAX_SIZE) -> Any:
    """The session event for bytes off the wire: ``Received(message)``, or ``Malformed(code, message)``
    when they do not decode (with the ``version_error`` to answer a peer of another version)."""
    from .events import Malformed, Received

    try:
        return Received(decode(data, max_size=max_size))
    except ProtocolError as e:
        reply = version_error(e.data["version"]) if e.code == VERSION and "version" in e.data else None
        return Malformed(e.code, e.message, reply)


def encode_snapshot(db: Any, chunk_size: int = DEFAULT_CHUNK_SIZE, *, db_id: str | None = None,
                    keep: Any = None) -> tuple[int, Any]:
    """``(t, messages)``: the snapshot of the server database ``db`` as a lazy iterator of encoded
    messages (``snapshot-begin``, the chunks, ``snapshot-end``), ready for ``SnapshotReady``
    (``keep(e, a)``: only the datoms it accepts, see ``snapshot``)."""
    head, chunks = snapshot(db, chunk_size, db_id=db_id, keep=keep)

    def messages() -> Any:
        yield encode(head)
        for c in chunks:
            yield encode(c)
        yield encode(SnapshotEnd(head.t, head.chunks))

    return head.t, messages()


def encode_datom_columns(datoms: Iterable[Sequence]) -> bytes:
    """Snapshot datoms ``(e, a, v, tx)`` as one JSON document of columns, ``[a, es, vs, txs, plain]``
    per attribute (values as ``encode_value`` makes them; ``plain``: all are numbers and strings that
    stand for themselves): for files a replica keeps for itself, read back by ``decode_datom_columns``
    several times faster than a snapshot chunk, and independent of the protocol version. The columns
    come in AEVT order; when the datoms' index keys are distinct, ``eavt`` gives each key's place in
    AEVT order, EAVT order first, so ``make_db_from_columns`` builds a database without sorting."""
    ds = list(datoms)
    keys = eavt_keys(ds)
    try:
        aevt = sorted(range(len(ds)), key=lambda i: (keys[i][1], keys[i][0], *keys[i][2:]))
        eavt: list[int] | None = sorted(range(len(ds)), key=keys.__getitem__)
    except TypeError:  # values no index orders (naive and aware datetimes): columns as they come
        aevt, eavt = sorted(range(len(ds)), key=lambda i: ds[i][1]), None
    cols: dict[str, tuple[list, list, list]] = {}
    place = [0] * len(ds)
    for n, i in enumerate(aevt):
        e, a, v, tx = ds[i]
        place[i] = n
        c = cols.get(a)
        if c is None:
            c = cols[a] = ([], [], [])
        c[0].append(e)
        c[1].append(_enc(v))
        c[2].append(tx)
    doc: dict[str, Any] = {"columns": [[a, *c, all(type(v) is int or (type(v) is str and v[:1] != "~") for v in c[1])]
                                       for a, c in cols.items()]}
    if eavt is not None and all(keys[i] != keys[j] for i, j in pairwise(eavt)):
        doc["eavt"] = [place[i] for i in eavt]
    return _DUMPS(doc).encode("utf-8")


def decode_column_doc(data: bytes | bytearray | memoryview) -> tuple[list[tuple[str, list, list, list]],
                                                                    list[int] | None]:
    """The columns ``(a, es, vs, txs)`` of ``encode_datom_columns`` (values decoded) and its ``eavt``
    order (None when absent); ``ProtocolError`` if ``data`` is not such a document (a ``plain`` column
    is taken as it is, without per-datom checks: the data comes from a file this side wrote)."""
    try:
        obj = json.loads(bytes(data).decode("utf-8"), parse_constant=_reject_constant)
        out: list[tuple[str, list, list, list]] = []
        total = 0
        for col in obj["columns"]:
            a, es, vs, txs = col[:4]
            if type(a) is not str or not len(es) == len(vs) == len(txs):
                raise _bad(f"Bad datom column {a!r:.40}")
            if col[4:] != [True]:
                vs = [_dec(v, 1) for v in vs]
            out.append((a, es, vs, txs))
            total += len(es)
        order = obj.get("eavt")
        if order is not None and (type(order) is not list or len(order) != total):
            raise _bad("Bad EAVT order of datom columns")
        return out, order
    except ProtocolError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise _bad(f"Not a document of datom columns: {e}") from None


def decode_datom_columns(data: bytes | bytearray | memoryview) -> list[tuple]:
    """The datoms ``(e, a, v, tx)`` of ``encode_datom_columns`` (``ProtocolError`` as
    ``decode_column_doc``)."""
    out: list[tuple] = []
    for a, es, vs, txs in decode_column_doc(data)[0]:
        out.extend(zip(es, repeat(a), vs, txs))
    return out


__all__ = [
    "DEFAULT_MAX_SIZE",
    "MAX_DEPTH",
    "MAX_SAFE_INT",
    "decode",
    "decode_column_doc",
    "decode_datom_columns",
    "decode_value",
    "encode",
    "encode_batch",
    "with_origin",
    "encode_datom_columns",
    "encode_snapshot",
    "encode_value",
    "receive",
    "version_error",
]
