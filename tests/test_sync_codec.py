"""The wire codec: exact round trips of every value type and message, and every malformed input."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import uuid

import pytest

from datsync.core import TX0, Keyword, kw, sym
from datsync.core.sync import (
    DEFAULT_MAX_SIZE,
    PROTOCOL_VERSION,
    Ack,
    Delta,
    Error,
    Hello,
    Malformed,
    Ping,
    Pong,
    ProtocolError,
    Received,
    Resync,
    SchemaDelta,
    SnapshotBegin,
    SnapshotChunk,
    SnapshotEnd,
    Submit,
    Sync,
    TxOk,
    TxRejected,
    Welcome,
    decode,
    decode_value,
    encode,
    encode_value,
    receive,
)
from datsync.core.sync.delta import Origin

UTC = dt.UTC
VALUES = [
    None, True, False, 0, 1, -1, (1 << 53) - 1, 1 << 53, -(1 << 53), 1 << 63, -(1 << 100), 10**40,
    1.0, -0.0, 0.0, 2.5, 1e300, 1e-300, float("inf"), float("-inf"), 12345678901234567.0,
    "", "plain", "~", "~~", "~:not-a-keyword", "~#t", "é\u2603\n\"\\", "~m1",
    kw("a"), kw("db.type/ref"), sym("?e"), sym("..."),
    dt.datetime(2020, 1, 2, 3, 4, 5, 678901, tzinfo=UTC), dt.datetime(1, 1, 1), dt.datetime(9999, 12, 31, 23, 59),
    dt.datetime(2020, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30))),
    uuid.UUID("00000000-0000-0000-0000-000000000001"), uuid.uuid4(),
    decimal.Decimal("1.50"), decimal.Decimal("-0"), decimal.Decimal("1E+30"), decimal.Decimal("123456789.000000001"),
    b"", b"\x00\xff\x10", bytes(range(256)),
    (), (1,), (1, None, "a"), ((1, 2), [3]), [], [1, [2, (3,)]], ["~#t", 1],
    frozenset(), frozenset({1, "a", kw("k")}),
    {}, {"a": 1, "~b": [2], "": None}, {-1: 101, "x": 102}, {kw("k"): 1, (1, 2): "tuple key"},
    "http://example.com/uri?q=1",
]


def same(a, b) -> bool:
    """Equal and of the same types all the way down (1 vs 1.0 vs True, tuple vs list, tz offsets)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, float) and a != a:
        return b != b
    if isinstance(a, float) and a == 0:
        return str(a) == str(b)
    if isinstance(a, dt.datetime):
        return a == b and a.utcoffset() == b.utcoffset() and (a.tzinfo is None) == (b.tzinfo is None)
    if isinstance(a, decimal.Decimal):
        return str(a) == str(b)
    return a == b


@pytest.mark.parametrize("v", VALUES, ids=lambda v: f"{type(v).__name__}:{v!r:.30}")
def test_every_value_type_round_trips_exactly(v):
    assert same(decode(encode(Submit(1, [v]))).tx_data[0], v)
    assert same(decode_value(json.loads(json.dumps(encode_value(v)))), v)


def test_keywords_whose_names_start_with_a_colon_round_trip():
    for name in (":a", "::b/c", ":"):
        k = Keyword(":" + name)
        assert k.name == name and decode(encode(Submit(1, [k]))).tx_data[0] is k


def test_nan_round_trips_as_nan():
    v = decode(encode(Submit(1, [float("nan")]))).tx_data[0]
    assert isinstance(v, float) and v != v


def test_set_decodes_as_frozenset_and_subclasses_encode():
    from datsync.core import Datom

    assert decode(encode(Submit(1, [{1, 2}]))).tx_data[0] == frozenset({1, 2})
    assert decode(encode(Submit(1, [Datom(1, "a", 2, 3, True)]))).tx_data[0] == (1, "a", 2, 3, True)
    assert decode(encode(Submit(1, [bytearray(b"ab")]))).tx_data[0] == b"ab"
    from pyrsistent import pmap, pset, pvector

    assert decode(encode(Submit(1, [pvector([1, 2])]))).tx_data[0] == [1, 2]
    assert decode(encode(Submit(1, [pset([1])]))).tx_data[0] == frozenset({1})
    assert decode(encode(Submit(1, [pmap({"a": 1})]))).tx_data[0] == {"a": 1}


MESSAGES = [
    Hello({"token": "s3cret"}, 42, "db-1"),
    Hello(),
    Welcome("db-1", 42, "resume", 32),
    Welcome("~db", 0, "bootstrap", 1),
    Sync(7),
    Sync(None),
    Ack(9),
    Submit(1, [["db/add", -1, "p/name", "~x"], {"db/id": "t", "p/when": dt.datetime(2020, 1, 1, tzinfo=UTC)}]),
    Submit("req-~1", []),
    TxOk(3, 10, {"t": 101, -1: 102, "db/current-tx": TX0 + 10}),
    TxRejected(3, "db.error/unique-conflict", "Unique conflict: :p/name"),
    Resync("too far behind", 50),
    Ping(1, 5),
    Ping(2),
    Pong(1),
    Error("protocol/malformed", "bad"),
    Delta(5, TX0 + 5, dt.datetime(2020, 1, 1, tzinfo=UTC),
          ((TX0 + 5, "db/txInstant", dt.datetime(2020, 1, 1, tzinfo=UTC), True), (101, "p/n", 1 << 60, True),
           (101, "~odd", "~v", False), (102, "p/t", (1, None), True), (102, "p/d", 1.0, True),
           (103, "p/x", None, True))),
    Delta(6, TX0 + 6, dt.datetime(2020, 1, 1, tzinfo=UTC), (),
          SchemaDelta({"p/n": {"db/valueType": kw("db.type/long"), "db/tupleAttrs": ("a", "b"), "db/index": True},
                       "gone": None}, (("p/old", "p/new"),))),
    SnapshotBegin(5, TX0 + 5, 150, 1000, 2, "db-1"),
    Hello(None, 3, "db-1", "client-a"),
    Submit(2, [["db/add", "x", "p/name", "X"]], "client-a", 7),
    Delta(7, TX0 + 7, dt.datetime(2020, 1, 1, tzinfo=UTC), ((101, "p/n", 1, True),),
          origin=Origin("client-a", 7, {"x": 101, "db/current-tx": TX0 + 7})),
    SnapshotChunk(5, 0, ((1, "db/ident", kw("db/ident"), TX0), (101, "p/b", b"\x01", TX0 + 3))),
    SnapshotEnd(5, 2),
]


@pytest.mark.parametrize("m", MESSAGES, ids=lambda m: type(m).__name__)
def test_every_message_round_trips(m):
    data = encode(m)
    assert isinstance(data, bytes)
    back = decode(data)
    assert back == m and type(back) is type(m)
    obj = json.loads(data)
    assert obj["v"] == PROTOCOL_VERSION and obj["type"] == m.TYPE


def test_delta_bytes_are_encoded_once_and_reused():
    d = MESSAGES[16]
    data = encode(d)
    assert encode(d) == data and decode(data) == d
    assert receive(data) == Received(d)


def test_minimal_delta_omits_empty_schema_fields():
    obj = json.loads(encode(Delta(1, TX0 + 1, dt.datetime(2020, 1, 1, tzinfo=UTC), ())))
    assert "schema" not in obj and "renames" not in obj


# -- everything malformed is a ProtocolError with a code, never another exception

def raw(**fields) -> bytes:
    return json.dumps({"v": PROTOCOL_VERSION, **fields}).encode()


MALFORMED = [
    ("not bytes", 42, "protocol/malformed"),
    ("not utf-8", b"\xff\xfe{", "protocol/malformed"),
    ("not json", b"{", "protocol/malformed"),
    ("lone surrogate escape", b'{"v":2,"type":"submit","req":1,"tx":[["db/add",1,"a","\\ud800"]]}',
     "protocol/malformed"),
    ("lone surrogate in text", '{"v":2,"type":"submit","req":1,"tx":["\ud800"]}', "protocol/malformed"),
    ("trailing junk", b'{"v":2,"type":"ack","t":1} x', "protocol/malformed"),
    ("NaN literal", b'{"v":2,"type":"ping","n":NaN}', "protocol/malformed"),
    ("Infinity literal", b'{"v":2,"type":"hello","credentials":Infinity}', "protocol/malformed"),
    ("not an object", b"[1,2]", "protocol/malformed"),
    ("no version", json.dumps({"type": "ack", "t": 1}).encode(), "protocol/malformed"),
    ("string version", json.dumps({"v": "1", "type": "ack", "t": 1}).encode(), "protocol/malformed"),
    ("future version", json.dumps({"v": PROTOCOL_VERSION + 1, "type": "ack", "t": 1}).encode(), "protocol/version"),
    ("version 1", json.dumps({"v": 1, "type": "hello"}).encode(), "protocol/version"),
    ("old version", json.dumps({"v": 0, "type": "hello"}).encode(), "protocol/version"),
    ("no type", raw(t=1), "protocol/malformed"),
    ("unknown type", raw(type="frobnicate"), "protocol/malformed"),
    ("type not a string", raw(type=1), "protocol/malformed"),
    ("missing field", raw(type="ack"), "protocol/malformed"),
    ("negative t", raw(type="ack", t=-1), "protocol/malformed"),
    ("bool t", raw(type="ack", t=True), "protocol/malformed"),
    ("float t", raw(type="ack", t=1.0), "protocol/malformed"),
    ("string t", raw(type="sync", t="1"), "protocol/malformed"),
    ("bad welcome mode", raw(type="welcome", db_id="d", t=1, mode="sideways", ack_every=1), "protocol/malformed"),
    ("zero ack_every", raw(type="welcome", db_id="d", t=1, mode="resume", ack_every=0), "protocol/malformed"),
    ("code not a string", raw(type="error", code=1, message="m"), "protocol/malformed"),
    ("tagged string field", raw(type="error", code="~:kw", message="m"), "protocol/malformed"),
    ("req a list", raw(type="submit", req=[1], tx=[]), "protocol/malformed"),
    ("req too long", raw(type="submit", req="x" * 300, tx=[]), "protocol/malformed"),
    ("tx not a list", raw(type="submit", req=1, tx={"a": 1}), "protocol/malformed"),
    ("tempids not a map", raw(type="tx-ok", req=1, t=1, tempids=[1]), "protocol/malformed"),
    ("tempid value not int", raw(type="tx-ok", req=1, t=1, tempids={"a": "b"}), "protocol/malformed"),
    ("delta datoms not a list", raw(type="delta", t=1, tx=2, instant="~t2020-01-01T00:00:00", datoms={}),
     "protocol/malformed"),
    ("delta datom short", raw(type="delta", t=1, tx=2, instant="~t2020-01-01T00:00:00", datoms=[[1, "a", 1]]),
     "protocol/malformed"),
    ("delta datom e=0", raw(type="delta", t=1, tx=2, instant="~t2020-01-01T00:00:00", datoms=[[0, "a", 1, True]]),
     "protocol/malformed"),
    ("delta datom added not bool",
     raw(type="delta", t=1, tx=2, instant="~t2020-01-01T00:00:00", datoms=[[1, "a", 1, 1]]), "protocol/malformed"),
    ("delta datom attr empty", raw(type="delta", t=1, tx=2, instant="~t2020-01-01T00:00:00", datoms=[[1, "", 1, True]]),
     "protocol/malformed"),
    ("delta datom attr tagged",
     raw(type="delta", t=1, tx=2, instant="~t2020-01-01T00:00:00", datoms=[[1, "~:a", 1, True]]), "protocol/malformed"),
    ("delta instant not an instant", raw(type="delta", t=1, tx=2, instant="2020", datoms=[]), "protocol/malformed"),
    ("delta t=0", raw(type="delta", t=0, tx=2, instant="~t2020-01-01T00:00:00", datoms=[]), "protocol/malformed"),
    ("delta schema not a map", raw(type="delta", t=1, tx=2, instant="~t2020-01-01T00:00:00", datoms=[], schema=[]),
     "protocol/malformed"),
    ("delta schema props not a map",
     raw(type="delta", t=1, tx=2, instant="~t2020-01-01T00:00:00", datoms=[], schema={"a": 1}), "protocol/malformed"),
    ("delta renames bad", raw(type="delta", t=1, tx=2, instant="~t2020-01-01T00:00:00", datoms=[], renames=[["a"]]),
     "protocol/malformed"),
    ("delta datom value a map",
     raw(type="delta", t=1, tx=2, instant="~t2020-01-01T00:00:00", datoms=[[1, "a", {"x": 1}, True]]),
     "protocol/malformed"),
    ("chunk datom value a list", raw(type="snapshot-chunk", t=1, seq=0, datoms=[[1, "a", [1], 5]]),
     "protocol/malformed"),
    ("chunk datom tx not int", raw(type="snapshot-chunk", t=1, seq=0, datoms=[[1, "a", 1, "tx"]]),
     "protocol/malformed"),
    ("chunk datom tx negative", raw(type="snapshot-chunk", t=1, seq=0, datoms=[[1, "a", 1, -5]]),
     "protocol/malformed"),
    ("unknown tag", raw(type="submit", req=1, tx=["~zzz"]), "protocol/malformed"),
    ("bad instant", raw(type="submit", req=1, tx=["~tnot-a-date"]), "protocol/malformed"),
    ("bad uuid", raw(type="submit", req=1, tx=["~unot-a-uuid"]), "protocol/malformed"),
    ("bad bigint", raw(type="submit", req=1, tx=["~n12x"]), "protocol/malformed"),
    ("bigint with spaces", raw(type="submit", req=1, tx=["~n 1_000"]), "protocol/malformed"),
    ("bigint too long", raw(type="submit", req=1, tx=["~n" + "9" * 5000]), "protocol/malformed"),
    ("bad double", raw(type="submit", req=1, tx=["~dabc"]), "protocol/malformed"),
    ("bad special double", raw(type="submit", req=1, tx=["~fzero"]), "protocol/malformed"),
    ("bad decimal", raw(type="submit", req=1, tx=["~m1.2.3"]), "protocol/malformed"),
    ("non-finite decimal", raw(type="submit", req=1, tx=["~mNaN"]), "protocol/malformed"),
    ("signalling decimal", raw(type="submit", req=1, tx=["~msNaN"]), "protocol/malformed"),
    ("bad base64", raw(type="submit", req=1, tx=["~b!!!"]), "protocol/malformed"),
    ("unknown container tag", raw(type="submit", req=1, tx=[["~#q", 1]]), "protocol/malformed"),
    ("odd map", raw(type="submit", req=1, tx=[["~#m", 1]]), "protocol/malformed"),
    ("unhashable map key", raw(type="submit", req=1, tx=[["~#m", [1], 2]]), "protocol/malformed"),
    ("unhashable set element", raw(type="submit", req=1, tx=[["~#s", {"a": 1}]]), "protocol/malformed"),
    ("tagged object key", raw(type="submit", req=1, tx=[{"~:k": 1}]), "protocol/malformed"),
    ("json nested too deep", b'{"v":2,"type":"hello","credentials":' + b"[" * 100000 + b"]" * 100000 + b"}",
     "protocol/malformed"),
    ("value nested too deep", raw(type="submit", req=1, tx=[json.loads("[" * 200 + "]" * 200)]), "protocol/malformed"),
]


@pytest.mark.parametrize("name,data,code", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_input_is_a_protocol_error(name, data, code):
    with pytest.raises(ProtocolError) as e:
        decode(data)
    assert e.value.code == code
    assert e.value.message
    ev = receive(data)
    assert isinstance(ev, Malformed) and ev.code == code


def test_too_large_is_refused_before_parsing():
    data = encode(Hello("x" * 1000))
    with pytest.raises(ProtocolError) as e:
        decode(data, max_size=100)
    assert e.value.code == "protocol/too-large" and e.value.data["size"] == len(data)
    with pytest.raises(ProtocolError) as e:
        decode(data.decode(), max_size=100)
    assert e.value.code == "protocol/too-large"
    assert decode(data, max_size=len(data)) == Hello("x" * 1000)
    assert DEFAULT_MAX_SIZE == 16 << 20


def test_version_error_says_what_is_supported():
    with pytest.raises(ProtocolError) as e:
        decode(json.dumps({"v": 7, "type": "hello"}).encode())
    assert "7" in e.value.message and e.value.data["supported"] == [PROTOCOL_VERSION]


def test_unencodable_values_are_refused_with_a_code():
    for bad in (lambda: 1, object(), decimal.Decimal("NaN"), Submit(object(), [])):
        with pytest.raises(ProtocolError) as e:
            encode(bad if isinstance(bad, Submit) else Hello(bad))
        assert e.value.code == "protocol/unencodable"
    with pytest.raises(ProtocolError):
        encode("not a message")
    with pytest.raises(ProtocolError):
        encode(Hello("\ud800"))  # a lone surrogate is not UTF-8


def test_strings_are_accepted_as_input():
    assert decode(encode(Ack(3)).decode()) == Ack(3)
    assert decode(memoryview(encode(Ack(3)))) == Ack(3)


def test_a_submit_names_client_and_seq_together():
    for fields in ({"client": "a"}, {"seq": 1}, {"client": "a", "seq": 0}, {"client": "", "seq": 1},
                   {"client": "x" * 129, "seq": 1}):
        with pytest.raises(ProtocolError) as e:
            decode(raw(type="submit", req=1, tx=[], **fields))
        assert e.value.code == "protocol/malformed"


def test_a_peer_of_another_version_gets_an_error_it_can_read():
    event = receive(json.dumps({"v": 1, "type": "hello", "credentials": None}).encode())
    assert isinstance(event, Malformed) and event.code == "protocol/version"
    reply = json.loads(event.reply)
    assert reply["v"] == 1 and reply["type"] == "error" and reply["code"] == "protocol/version"
    assert "version 2" in reply["message"] and "upgrade" in reply["message"]
    assert receive(raw(type="ping", n="x")).reply is None


def test_keywords_read_off_the_wire_do_not_pile_up():
    import gc

    from datsync.core.values import Keyword

    before = len(Keyword._interned)
    decode(json.dumps({"v": PROTOCOL_VERSION, "type": "submit", "req": 1,
                       "tx": [f"~:unique-{i}" for i in range(5000)]}).encode())
    gc.collect()
    assert len(Keyword._interned) < before + 100  # interned while referenced, not for good
    k = kw("still/interned")
    assert Keyword("still/interned") is k
