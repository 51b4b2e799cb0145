"""Hypothesis strategies for property-testing sync logic (install ``datsync[testing]``).

* ``wire_values()``: every value type the codec carries (each Datomic value type, tuples vs lists,
  sets, maps with any keys, strings that look like tags), nested.
* ``datomic_values(vt)``: values of one Datomic value type (``"long"``, ``"instant"``, ...);
  ``datom_values()``: anything a datom can hold (atoms and tuples).
* ``messages()``: protocol messages of every type with random content (codec round trips).
* ``eid_maps()``: the identity translation or a capped one with some ids already assigned.
* ``SYNC_SCHEMA``/``server_tx_streams()``: a Datomic schema covering every value type (refs, ref
  tuples, a composite over a ref) and streams of server transactions over it, schema alterations
  mid-stream included (new attributes, cardinality one -> many, an index, uniqueness, ident
  renames whose old names stay in use). Some transactions fail on purpose (a lookup ref that
  misses, a conflict): a stream is what clients would send, not only what succeeds.
* ``random_schemas()``: random Datomic schemas (with the DataScript schema that
  ``datsync.core.strategies`` draws transactions over).
* ``schedules()``: delivery schedules for a simulation: a seed for the delivery decisions, the number
  of clients and which have a capped id space, message delay, duplication, reordering, disconnects,
  client restarts, clients that fall too far behind.

Example, a codec property::

    from hypothesis import given
    from datsync.core.sync import Submit, decode, encode
    from datsync.core.sync.strategies import wire_values

    @given(wire_values())
    def test_round_trip(v):
        assert decode(encode(Submit(1, [v]))).tx_data == [v]

properties/test_sync_simulation.py shows ``schedules()`` and ``server_tx_streams()`` driving a whole
network of replicas.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from ..db import TX0
from ..values import kw, sym
from .delta import Delta
from .eids import EidMap
from .messages import Ack, Error, Hello, Ping, Pong, Resync, Submit, Sync, TxOk, TxRejected, Welcome
from .schema import SchemaDelta
from .snapshot import SnapshotBegin, SnapshotChunk, SnapshotEnd

UTC = _dt.UTC

# ------------------------------------------------------------------------------------------------
# Values

_TEXT = st.text(alphabet=st.sampled_from("ab~#:$ é\u2603\n\"\\"), max_size=6)
_tag_like = st.sampled_from(["~", "~~", "~:a", "~#t", "~#m", "~t2020", "~n1", "~d1.0", "~b", "~u", "~$x", "~m1"])
strings = st.one_of(_TEXT, _tag_like)
"""Strings, including ones that look like the codec's tags."""

keywords = st.builds(kw, st.sampled_from(["a", "a/b", "db.type/ref", "x.y/z-w", "k?"]))
symbols = st.builds(sym, st.sampled_from(["?e", "...", "pull", "ns/f", "_"]))
instants = st.datetimes(
    min_value=_dt.datetime(1, 1, 2), max_value=_dt.datetime(9999, 12, 30), timezones=st.just(UTC)
)
naive_instants = st.datetimes(min_value=_dt.datetime(1, 1, 2), max_value=_dt.datetime(9999, 12, 30))
_OFFSETS = [UTC, _dt.timezone(_dt.timedelta(hours=2)), _dt.timezone(_dt.timedelta(hours=-5, minutes=-30))]
offset_instants = st.datetimes(
    min_value=_dt.datetime(1, 1, 2), max_value=_dt.datetime(9999, 12, 30), timezones=st.sampled_from(_OFFSETS),
)
longs = st.integers(-(1 << 63), (1 << 63) - 1)
bigints = st.one_of(st.integers(), st.integers(-(10 ** 60), 10 ** 60))
doubles = st.one_of(st.floats(allow_nan=False), st.integers(-(1 << 60), 1 << 60).map(float))
bigdecs = st.decimals(allow_nan=False, allow_infinity=False)

_DATOMIC: dict[str, st.SearchStrategy[Any]] = {
    "string": strings,
    "keyword": keywords,
    "long": longs,
    "bigint": bigints,
    "double": doubles,
    "float": doubles,
    "boolean": st.booleans(),
    "instant": instants,
    "uuid": st.uuids(),
    "uri": st.sampled_from(["http://example.com/a?b=c", "urn:isbn:0451450523", "~weird:uri"]),
    "bytes": st.binary(max_size=12),
    "bigdec": bigdecs,
    "symbol": symbols,
    "tuple": st.tuples(longs, strings),
}


def datomic_values(vt: str) -> st.SearchStrategy[Any]:
    """Values of the Datomic value type ``vt`` (its local name: ``"long"``, ``"instant"`` ...)."""
    return _DATOMIC[vt]


_ATOMS = st.one_of(
    st.none(), st.booleans(), longs, bigints, doubles, st.sampled_from([float("inf"), float("-inf")]), strings,
    keywords, symbols, instants, naive_instants, offset_instants, st.uuids(), bigdecs, st.binary(max_size=8),
)
_HASHABLE = st.one_of(st.none(), st.booleans(), longs, strings, keywords, st.uuids(), st.binary(max_size=4))


def wire_values(max_leaves: int = 12) -> st.SearchStrategy[Any]:
    """Any value the codec carries, nested (lists, tuples, frozensets, maps with str or other keys)."""
    return st.recursive(
        _ATOMS,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3),
            st.lists(inner, max_size=3).map(tuple),
            st.frozensets(_HASHABLE, max_size=3),
            st.dictionaries(strings, inner, max_size=3),
            st.dictionaries(_HASHABLE, inner, max_size=3),
        ),
        max_leaves=max_leaves,
    )


def json_values(max_leaves: int = 8) -> st.SearchStrategy[Any]:
    """Plain JSON data (what a hello's credentials are): strings (``~`` ones too), finite numbers,
    booleans, null, lists, maps with string keys."""
    return st.recursive(
        st.one_of(st.none(), st.booleans(), st.integers(-(1 << 53) + 1, (1 << 53) - 1), st.floats(allow_nan=False,
                  allow_infinity=False), strings),
        lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(strings, inner, max_size=3)),
        max_leaves=max_leaves,
    )


def datom_values() -> st.SearchStrategy[Any]:
    """Values a datom can hold: atoms and (nested) tuples of them."""
    return st.recursive(_ATOMS, lambda inner: st.lists(inner, max_size=3).map(tuple), max_leaves=6)


# ------------------------------------------------------------------------------------------------
# Messages

_eids = st.integers(1, (1 << 31) - 1)
_ts = st.integers(0, 1 << 30)
_attrs = st.sampled_from(["person/name", "db/ident", "~odd/attr", "a", "item/pair"])
_reqs = st.one_of(st.integers(-(1 << 53) + 1, (1 << 53) - 1), st.text(max_size=8))
_props = st.dictionaries(
    st.sampled_from(["db/valueType", "db/cardinality", "db/unique", "db/index", "db/doc", "db/tupleAttrs"]),
    st.one_of(keywords, st.booleans(), strings, st.tuples(_attrs, _attrs)),
    max_size=3,
)


@st.composite
def deltas(draw: st.DrawFn) -> Delta:
    """A ``Delta`` message with random datoms and maybe schema changes and renames."""
    t = draw(st.integers(1, 1 << 30))
    datoms = draw(st.lists(st.tuples(_eids, _attrs, datom_values(), st.booleans()), max_size=6))
    changes = draw(st.dictionaries(_attrs, st.one_of(st.none(), _props), max_size=2))
    renames = draw(st.lists(st.tuples(_attrs, _attrs), max_size=2))
    return Delta(t, TX0 + t, draw(instants), tuple(datoms), SchemaDelta(changes, tuple(renames)))


def messages() -> st.SearchStrategy[Any]:
    """A protocol message of any type."""
    opt_t = st.one_of(st.none(), _ts)
    return st.one_of(
        st.builds(Hello, json_values(6), opt_t, st.one_of(st.none(), strings)),
        st.builds(Welcome, strings, _ts, st.sampled_from(["resume", "bootstrap"]), st.integers(1, 100)),
        st.builds(Sync, opt_t),
        st.builds(Ack, _ts),
        st.builds(Submit, _reqs, st.lists(st.lists(wire_values(3), max_size=4), max_size=3)),
        st.builds(TxOk, _reqs, _ts, st.dictionaries(st.one_of(st.text(max_size=4), st.integers(-9, -1)), _eids)),
        st.builds(TxRejected, _reqs, strings, strings),
        st.builds(Resync, strings, _ts),
        st.builds(Ping, st.integers(0, 1 << 40), opt_t),
        st.builds(Pong, st.integers(0, 1 << 40)),
        st.builds(Error, strings, strings),
        deltas(),
        st.builds(SnapshotBegin, _ts, _eids, _eids, st.integers(0, 10**6), st.integers(0, 1000),
                  st.one_of(st.none(), strings), st.lists(st.tuples(_attrs, _attrs), max_size=2).map(tuple)),
        st.builds(SnapshotChunk, _ts, st.integers(0, 1000),
                  st.lists(st.tuples(_eids, _attrs, datom_values(), _eids), max_size=5).map(tuple)),
        st.builds(SnapshotEnd, _ts, st.integers(0, 1000)),
    )


# ------------------------------------------------------------------------------------------------
# Id translation


@st.composite
def eid_maps(draw: st.DrawFn) -> EidMap:
    """The identity translation, or a capped one (small band) with some server ids already assigned."""
    if draw(st.booleans()):
        return EidMap.identity()
    low = draw(st.integers(2, 1000))
    start = low + draw(st.integers(0, 1000))
    cap = start + draw(st.integers(50, 5000))
    m = EidMap.capped(cap, low=low, start=start)
    return m.assign(draw(st.lists(remote_ids(low), max_size=20)))


def remote_ids(low: int = 101) -> st.SearchStrategy[int]:
    """Server ids: small (held as themselves), translated (from ``low``), huge, and tx ids."""
    return st.one_of(
        st.integers(1, max(1, low - 1)), st.integers(low, low + 40), st.integers(low, TX0 - 1),
        st.integers(TX0, TX0 + 1000),
    )


# ------------------------------------------------------------------------------------------------
# A schema and server transaction streams

ONE, MANY = kw("db.cardinality/one"), kw("db.cardinality/many")


def _attr(vt: str, card: Any = ONE, **extra: Any) -> dict[str, Any]:
    return {"db/valueType": kw(f"db.type/{vt}"), "db/cardinality": card, **extra}


SYNC_SCHEMA: dict[str, dict[str, Any]] = {
    "item/label": _attr("string", **{"db/unique": kw("db.unique/identity")}),
    "item/n": _attr("long"),
    "item/code": _attr("string", **{"db/index": True}),
    "item/tags": _attr("string", MANY),
    "item/ref": _attr("ref"),
    "item/refs": _attr("ref", MANY),
    "item/part": _attr("ref", MANY, **{"db/isComponent": True}),
    "item/when": _attr("instant"),
    "item/price": _attr("bigdec"),
    "item/big": _attr("bigint"),
    "item/ratio": _attr("double"),
    "item/flag": _attr("boolean"),
    "item/kind": _attr("keyword"),
    "item/uuid": _attr("uuid"),
    "item/blob": _attr("bytes"),
    "item/sym": _attr("symbol"),
    "item/uri": _attr("uri"),
    "item/pair": _attr("tuple", **{"db/tupleTypes": (kw("db.type/long"), kw("db.type/ref"))}),
    "item/n+ref": _attr("tuple", **{"db/tupleAttrs": (kw("item/n"), kw("item/ref"))}),
}
"""A Datomic schema (``empty_db(SYNC_SCHEMA, flavor="datomic")`` installs it by a transaction) with
every value type, refs of both cardinalities, a component, a ref tuple and a composite over a ref."""

_RANDOM_TYPES = {"name": "string", "email": "string", "tags": "string", "age": "long", "score": "long",
                 "friend": "ref", "friends": "ref", "child": "ref"}


@st.composite
def random_schemas(draw: st.DrawFn) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """``(Datomic schema, DataScript schema)``: a schema of ``datsync.core.strategies.schemas()``
    (uniqueness, cardinality, an index, a component, a composite, each drawn) with the value types a
    Datomic server needs; ``datsync.core.strategies.tx_streams``/``tx_forms`` over the second give
    server streams and client transactions over the first."""
    from ..strategies import schemas

    ds = draw(schemas())
    out: dict[str, dict[str, Any]] = {}
    for name, vt in _RANDOM_TYPES.items():
        props = ds.get(name)
        if props is None and name == "child":
            continue
        props = dict(props or {})
        out[name] = {**props, "db/valueType": kw(f"db.type/{vt}"), "db/cardinality": props.get("db/cardinality", ONE)}
    if "age+score" in ds:
        out["age+score"] = _attr("tuple", **{"db/tupleAttrs": (kw("age"), kw("score"))})
    return out, ds


LABELS = tuple(f"L{i}" for i in range(8))
_VALUE_ATTRS = {
    "item/n": st.integers(-3, 3), "item/code": st.sampled_from(["x", "y", "z", "~w"]),
    "item/tags": st.sampled_from(["red", "green", "~blue"]), "item/when": instants, "item/price": bigdecs,
    "item/big": bigints, "item/ratio": doubles, "item/flag": st.booleans(), "item/kind": keywords,
    "item/uuid": st.uuids(), "item/blob": st.binary(max_size=6), "item/sym": symbols,
    "item/uri": st.sampled_from(["http://a.example/", "urn:x:y"]),
}
_lookup = st.sampled_from(LABELS).map(lambda label: ("item/label", label))


@st.composite
def _entity_map(draw: st.DrawFn, depth: int = 0) -> dict[str, Any]:
    m: dict[str, Any] = {"item/label": draw(st.sampled_from(LABELS))}
    if draw(st.booleans()):
        m["db/id"] = draw(st.sampled_from(["a", "b", "c"]))
    for a in draw(st.lists(st.sampled_from(sorted(_VALUE_ATTRS)), max_size=3, unique=True)):
        m[a] = draw(_VALUE_ATTRS[a])
    if draw(st.integers(0, 3)) == 0:
        m["item/ref"] = draw(st.one_of(_lookup, st.sampled_from(["a", "b", "c"])))
    if draw(st.integers(0, 4)) == 0:
        m["item/refs"] = draw(st.lists(_lookup, min_size=1, max_size=2))
    if depth == 0 and draw(st.integers(0, 5)) == 0:
        m["item/part"] = [draw(_entity_map(depth + 1))]
    if draw(st.integers(0, 6)) == 0:
        m["item/pair"] = (draw(st.integers(0, 5)), draw(st.integers(101, 125)))  # tuple refs are eids
    if draw(st.integers(0, 8)) == 0:
        m["item/_ref"] = draw(_lookup)
    return m


@st.composite
def server_txs(draw: st.DrawFn) -> list[Any]:
    """One server transaction over ``SYNC_SCHEMA`` (data forms only)."""
    out: list[Any] = []
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["map", "map", "map", "add", "retract", "retract-entity", "cas", "retract-attr"]))
        if kind == "map":
            out.append(draw(_entity_map()))
        elif kind == "add":
            a = draw(st.sampled_from(sorted(_VALUE_ATTRS)))
            out.append(["db/add", draw(_lookup), a, draw(_VALUE_ATTRS[a])])
        elif kind == "retract":
            a = draw(st.sampled_from(sorted(_VALUE_ATTRS)))
            out.append(["db/retract", draw(_lookup), a, draw(_VALUE_ATTRS[a])])
        elif kind == "retract-entity":
            out.append(["db/retractEntity", draw(_lookup)])
        elif kind == "cas":
            out.append(["db/cas", draw(_lookup), "item/n", draw(st.one_of(st.none(), st.integers(-3, 3))),
                        draw(st.integers(-3, 3))])
        else:
            out.append(["db.fn/retractAttribute", draw(_lookup), draw(st.sampled_from(sorted(_VALUE_ATTRS)))])
    return out


SCHEMA_ALTERATIONS: tuple[list[Any], ...] = (
    [{"db/ident": kw("extra/note"), "db/valueType": kw("db.type/string"), "db/cardinality": ONE}],
    [{"db/id": kw("item/n"), "db/index": True}],
    [{"db/id": kw("item/code"), "db/unique": kw("db.unique/value")}],
    [{"db/id": kw("item/ref"), "db/cardinality": MANY}],
    [{"db/id": kw("item/kind"), "db/ident": kw("item/category")}],
    [{"db/id": kw("item/uri"), "db/doc": "where it lives"}],
    [{"db/ident": kw("extra/link"), "db/valueType": kw("db.type/ref"), "db/cardinality": MANY}],
    [{"db/id": kw("item/ref"), "db/ident": kw("item/target")}],
    [{"db/id": kw("item/pair"), "db/ident": kw("item/couple")}],
    [{"db/id": kw("item/kind"), "db/ident": kw("item/sort")}],
)
"""Schema changes a stream makes mid-way: a new attribute, an index, uniqueness added, cardinality
one -> many, ident renames (of a ref that is a composite's member, of a ref tuple, and one renamed
twice: the old names keep resolving and streams keep using them), a doc string, a new ref attribute."""

RENAMED: dict[str, str] = {"item/ref": "item/target", "item/pair": "item/couple", "item/kind": "item/sort"}
"""The attributes ``SCHEMA_ALTERATIONS`` renames, old name -> last name."""


def _uses_of_new_attrs(draw: st.DrawFn, names: set[str]) -> list[list[Any]]:
    """Transactions that use attributes the alterations made so far (``names``) introduced."""
    label = st.sampled_from(LABELS)
    out: list[list[Any]] = []
    if "extra/note" in names and draw(st.integers(0, 5)) == 0:
        out.append([{"item/label": draw(label), "extra/note": draw(strings)}])
    if "extra/link" in names and draw(st.integers(0, 5)) == 0:
        out.append([{"item/label": draw(label), "extra/link": [draw(_lookup)]}])
    if "item/target" in names and draw(st.integers(0, 4)) == 0:
        out.append([["db/add", draw(_lookup), "item/target", draw(_lookup)]])
    if "item/couple" in names and draw(st.integers(0, 4)) == 0:
        out.append([{"item/label": draw(label), "item/couple": (draw(st.integers(0, 5)), draw(st.integers(101, 125)))}])
    if "item/sort" in names and draw(st.integers(0, 4)) == 0:
        out.append([{"item/label": draw(label), "item/sort": draw(keywords)}])
    return out


@st.composite
def server_tx_streams(draw: st.DrawFn, max_txs: int = 40) -> list[list[Any]]:
    """Server transactions over ``SYNC_SCHEMA`` with the ``SCHEMA_ALTERATIONS`` spread through them
    (in order), plus uses of the new attributes and names after they appear (the old names of renamed
    attributes stay in use)."""
    txs = draw(st.lists(server_txs(), min_size=1, max_size=max_txs))
    positions = sorted(draw(st.lists(st.integers(0, len(txs)), min_size=len(SCHEMA_ALTERATIONS),
                                     max_size=len(SCHEMA_ALTERATIONS))))
    out: list[list[Any]] = []
    alts = list(SCHEMA_ALTERATIONS)
    names: set[str] = set()
    j = 0
    for i, tx in enumerate(txs):
        while j < len(positions) and positions[j] == i:
            out.append(alts[j])
            names.add(alts[j][0].get("db/ident", kw("_")).name)
            j += 1
        out.extend(_uses_of_new_attrs(draw, names))
        out.append(tx)
    out.extend(alts[j:])
    return out


# ------------------------------------------------------------------------------------------------
# Delivery schedules


@dataclass(frozen=True)
class Schedule:
    """How a simulated network behaves. ``seed`` drives every delivery decision (a failure replays
    from it); probabilities are per message (``duplicate``, ``reorder``) or per step (the rest)."""

    seed: int
    clients: int = 3
    capped: tuple[bool, ...] = (False, True, False)
    steps: int = 300
    max_delay: float = 0.3
    duplicate: float = 0.0
    reorder: float = 0.0
    disconnect: float = 0.01
    restart: float = 0.005
    slow: float = 0.005
    server_tx: float = 0.15
    client_tx: float = 0.1
    exactly_once: bool = False
    """Clients have ids and queue their submissions (kept across restarts), the server records them."""
    offline: float = 0.0
    """Per step: a client goes offline for a while (it keeps writing: queued)."""
    server_crash: float = 0.0
    """Per submission: the server crashes after the commit, before the answer (every connection drops)."""


@st.composite
def schedules(draw: st.DrawFn, max_clients: int = 4, max_steps: int = 400, *, min_clients: int = 1,
              min_steps: int = 50, exactly_once: bool = False) -> Schedule:
    """A delivery schedule: seed, clients (some with a capped id space), delays, duplication,
    reordering, disconnects, restarts, slow clients, transaction rates; with ``exactly_once``, clients
    that queue their submissions, offline periods and server crashes between commit and answer."""
    n = draw(st.integers(min_clients, max_clients))
    extra = {}
    if exactly_once:
        extra = {"exactly_once": True, "offline": draw(st.sampled_from([0.0, 0.01, 0.03])),
                 "server_crash": draw(st.sampled_from([0.0, 0.05, 0.2]))}
    return Schedule(**extra,
        seed=draw(st.integers(0, 2**32 - 1)),
        clients=n,
        capped=tuple(draw(st.lists(st.booleans(), min_size=n, max_size=n))),
        steps=draw(st.integers(min_steps, max_steps)),
        max_delay=draw(st.sampled_from([0.0, 0.05, 0.3, 1.0])),
        duplicate=draw(st.sampled_from([0.0, 0.0, 0.05, 0.2])),
        reorder=draw(st.sampled_from([0.0, 0.0, 0.0, 0.05])),
        disconnect=draw(st.sampled_from([0.0, 0.01, 0.03])),
        restart=draw(st.sampled_from([0.0, 0.005, 0.02])),
        slow=draw(st.sampled_from([0.0, 0.005, 0.02])),
        server_tx=draw(st.sampled_from([0.05, 0.15, 0.4])),
        client_tx=draw(st.sampled_from([0.0, 0.05, 0.15])),
    )


__all__ = [
    "LABELS",
    "RENAMED",
    "SCHEMA_ALTERATIONS",
    "SYNC_SCHEMA",
    "Schedule",
    "bigdecs",
    "bigints",
    "datom_values",
    "datomic_values",
    "deltas",
    "doubles",
    "eid_maps",
    "instants",
    "keywords",
    "longs",
    "messages",
    "random_schemas",
    "remote_ids",
    "schedules",
    "server_tx_streams",
    "server_txs",
    "strings",
    "symbols",
    "json_values",
    "wire_values",
]
