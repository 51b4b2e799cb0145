"""Hypothesis properties of the sync pieces: codec and translation round trips, hostile input,
and replicas fed any server stream in any order with duplicates."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json

import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from datsync.core import TX0, TxError, as_of, basis_t, datoms, empty_db, history, kw, since, transact
from datsync.core.schema import TYPE_REF
from datsync.core.strategies import entity_maps, tx_forms, tx_streams
from datsync.core.sync import (
    AuthDecision,
    ClientConfig,
    Close,
    EidMap,
    Hello,
    Opened,
    ProtocolError,
    Received,
    ServerConfig,
    Submit,
    SyncError,
    Welcome,
    add_pending,
    answer_tempids,
    apply_delta,
    carry_pending,
    client_step,
    datoms_to_local,
    datoms_to_remote,
    decode,
    delta_from_report,
    encode,
    is_provisional,
    new_client_session,
    new_server_session,
    pending_tx_for_server,
    rebase,
    ref_info,
    reject,
    replica_of,
    replica_schema,
    resolve,
    server_datoms,
    server_step,
    tx_for_server,
    tx_to_local,
    tx_to_remote,
)
from datsync.core.sync.replica import replica_as_of, replica_history, replica_since
from datsync.core.sync.snapshot import add_chunk, begin_snapshot, build_replica
from datsync.core.sync.strategies import (
    LABELS,
    RENAMED,
    SYNC_SCHEMA,
    eid_maps,
    json_values,
    messages,
    random_schemas,
    remote_ids,
    server_tx_streams,
    wire_values,
)

from .test_sync_simulation import check_replica, typed

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(wire_values())
def test_every_wire_value_round_trips(v):
    back = decode(encode(Submit(1, [v]))).tx_data[0]
    assert back == v or (v != v and back != back)
    assert type(back) is type(v) or (isinstance(v, set | frozenset) and type(back) is frozenset)


@FAST
@given(json_values())
def test_credentials_travel_verbatim(v):
    data = encode(Hello(v))
    assert json.loads(data)["credentials"] == v and decode(data).credentials == v


@FAST
@given(messages())
def test_every_message_round_trips(m):
    assert decode(encode(m)) == m


@FAST
@given(messages(), st.data())
def test_mangled_bytes_never_raise_anything_but_protocol_error(m, data):
    raw = bytearray(encode(m))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    try:
        decode(bytes(raw))
    except ProtocolError as e:
        assert e.code.startswith("protocol/")


json_like = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=5),
              st.sampled_from(["~", "~#t", "~#m", "~#s", "~:k", "~tx", "~n", "~b==", "delta", "hello"])),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=5), inner, max_size=4)),
    max_leaves=15,
)


@FAST
@given(st.sampled_from(["hello", "welcome", "sync", "ack", "submit", "tx-ok", "tx-rejected", "resync", "ping",
                        "pong", "error", "delta", "snapshot-begin", "snapshot-chunk", "snapshot-end", "?"]),
       st.dictionaries(st.sampled_from(["t", "tx", "n", "req", "code", "message", "datoms", "instant", "schema",
                                        "renames", "tempids", "mode", "db_id", "ack_every", "seq", "chunks",
                                        "max_eid", "credentials", "reason", "aliases"]), json_like, max_size=8))
def test_structured_garbage_never_raises_anything_but_protocol_error(kind, fields):
    with contextlib.suppress(ProtocolError):
        decode(json.dumps({"v": 1, "type": kind, **fields}).encode())


def _internal_errors(fx) -> list:
    return [f for f in fx if isinstance(f, Close) and f.code == "protocol/internal"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(messages(), max_size=8))
def test_sessions_survive_any_message_sequence(ms):
    """Any well-formed messages, in any order, in any phase: no exception and no internal error."""
    db = empty_db(SYNC_SCHEMA, flavor="datomic")
    cfg = ServerConfig(db_id="db", window=2, max_buffered=3)
    servers = [new_server_session(cfg, 1)]
    s, _ = server_step(servers[0], Opened(0.0))
    s, _ = server_step(s, Received(Hello("x", 1, "db")))
    servers.append(s)
    s, _ = server_step(s, AuthDecision("p"))
    servers.append(s)
    clients = [new_client_session(ClientConfig())]
    c, _ = client_step(clients[0], Opened(0.0))
    clients.append(c)
    c, _ = client_step(new_client_session(ClientConfig(), replica_of(db, db_id="db")), Opened(0.0))
    c, _ = client_step(c, Received(Welcome("db", 1, "resume", 1)))
    clients.append(c)
    c, _ = client_step(new_client_session(ClientConfig(eids=EidMap.capped(TX0, low=101)), replica_of(
        db, EidMap.capped(TX0, low=101), db_id="db")), Opened(0.0))
    clients.append(client_step(c, Received(Welcome("db", 1, "resume", 1)))[0])
    for s in servers:
        for m in ms:
            s, fx = server_step(s, Received(m))
            assert not _internal_errors(fx), fx
    for c in clients:
        for m in ms:
            c, fx = client_step(c, Received(m))
            assert not _internal_errors(fx), fx


# ------------------------------------------------------------------------------------------------
# Translation

REFS = ref_info(SYNC_SCHEMA)


@FAST
@given(eid_maps(), st.lists(st.tuples(remote_ids(), st.sampled_from(["item/ref", "item/n", "item/pair",
                                                                     "item/n+ref", "item/refs"]),
                                      remote_ids(), st.integers(TX0, TX0 + 100)), max_size=12))
def test_datom_translation_round_trips_and_is_a_bijection(m, raw):
    ds = [(e, a, (3, v) if "pair" in a or "+" in a else v, tx) for e, a, v, tx in raw]
    m2, local = datoms_to_local(m, REFS, ds)
    assert datoms_to_remote(m2, REFS, local) == ds
    pairs = dict(m2.items())
    assert len(set(pairs.values())) == len(pairs)  # no two server ids share a local id
    if not m2.is_identity:
        assert all(m2.start <= x < m2.cap for x in pairs.values())
        for e, _, _, _ in local:
            assert e < m2.cap or e >= TX0  # local entity ids fit the capped space


@FAST
@given(eid_maps(), st.lists(remote_ids(), min_size=3, max_size=3))
def test_tx_translation_round_trips(m, ids):
    a, b, c = ids
    tx = [["db/add", a, "item/ref", b], {"db/id": a, "item/refs": [b, c, ("item/label", "x")], "item/_ref": c,
                                         "item/part": [{"item/label": "p", "item/ref": a}]},
          ["db/cas", a, "item/ref", b, c], ["db/retractEntity", c], ["db/add", "t", "item/pair", (1, b)]]
    m2, local = tx_to_local(m, REFS, SYNC_SCHEMA, tx)
    assert tx_to_remote(m2, REFS, SYNC_SCHEMA, local) == tx


# ------------------------------------------------------------------------------------------------
# Replicas fed a whole stream, in any order, with duplicates


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(server_tx_streams(max_txs=25), st.randoms(use_true_random=False), st.booleans())
def test_any_delivery_order_with_duplicates_converges(stream, rnd, capped):
    steps = run_stream(stream)
    eids = EidMap.capped(TX0, low=101, start=300_000) if capped else EidMap.identity()
    replica = replica_of(steps[0][0], eids)
    dbs = {d.t: db for db, d in steps[1:]}
    wire = [encode(d) for _, d in steps[1:]]
    db = steps[-1][0]
    assume(wire)
    pending = wire + [rnd.choice(wire) for _ in range(len(wire) // 2)]
    rnd.shuffle(pending)
    for _ in range((len(pending) + 1) ** 2):
        if not pending:
            break
        data = pending.pop(0)
        before = replica
        replica, out = apply_delta(replica, decode(data))
        if out.is_gap:
            assert replica is before
            pending.append(data)  # asked again later: never skipped
        elif out.applied:
            check_replica(replica, dbs[replica.t], "stream")
        else:
            assert replica is before
    check_replica(replica, db, "end of stream")
    assert replica.db.schema == replica_schema(db.schema)
    assert sorted(server_datoms(replica)) == sorted((k[0], k[1], k[3], k[4]) for k in db.eavt)


def run_stream(stream, schema=SYNC_SCHEMA) -> list:
    """The server databases a stream goes through (from the empty one over ``schema``; failing
    transactions skipped) and the delta of each step: ``[(db, delta or None)]``."""
    db = empty_db(schema, flavor="datomic")
    out = [(db, None)]
    for i, tx in enumerate(stream):
        try:
            r = transact(db, tx, instant=dt.datetime(2020, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=i))
        except TxError:
            continue
        db = r.db_after
        out.append((db, delta_from_report(r)))
    return out


def bootstrap_over_the_wire(db, eids):
    """The replica of ``db`` built from its snapshot messages, through the codec."""
    head, chunks = encode_snapshot_messages(db)
    b = begin_snapshot(decode(head))
    for c in chunks:
        b = add_chunk(b, decode(c))
    return build_replica(b, eids)


def encode_snapshot_messages(db):
    from datsync.core.sync import snapshot

    head, chunks = snapshot(db, 17)
    return encode(head), [encode(c) for c in chunks]


def names_the_server_resolves(db) -> dict:
    """Every name of a user attribute holding ids in ``db`` (current and old) -> the attribute."""
    out = {}
    for k, e in db.idents.items():
        cur = db.idents.get(e) if getattr(k, "name", None) else None
        if cur is not None and cur.name in db.schema and cur.name.startswith("item/"):
            props = db.schema[cur.name]
            if props.get("db/valueType") == TYPE_REF or "db/tupleTypes" in props:
                out[k.name] = cur.name
    return out


def check_old_names_translate(replica, db) -> None:
    """A write naming an id-holding attribute by any name the server resolves (old names of renamed
    attributes included) reaches the server with the server's ids."""
    ents = [k[3] for k in db.aevt.prefix_list(("item/label",))][:3]
    if len(ents) < 2:
        return
    e, v = ents[0], ents[-1]
    loc = replica.eids.to_local
    for name, attr in names_the_server_resolves(db).items():
        val = v if db.schema[attr].get("db/valueType") == TYPE_REF else (1, v)
        lval = loc(v) if val is v else (1, loc(v))
        assert tx_for_server(replica, [["db/add", loc(e), name, lval]]) == [["db/add", e, name, val]], name
        assert tx_for_server(replica, [{"db/id": loc(e), name: lval}]) == [{"db/id": e, name: val}], name
        if val is v:
            rev = name.replace("/", "/_", 1)
            assert tx_for_server(replica, [{"db/id": loc(v), rev: [loc(e)]}]) == [{"db/id": v, rev: [e]}], name


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(server_tx_streams(max_txs=25), st.data(), st.booleans())
def test_bootstrap_at_any_t_then_follow_the_stream(stream, data, capped):
    """A replica bootstrapped at any point of a stream (attribute renames before or after it, old
    names still in use) equals the server from then on, schema included, and translates writes that
    use old attribute names exactly as the server resolves them."""
    steps = run_stream(stream)
    k = data.draw(st.integers(0, len(steps) - 1))
    eids = EidMap.capped(TX0, low=101, start=300_000) if capped else EidMap.identity()
    replica = bootstrap_over_the_wire(steps[k][0], eids)
    check_replica(replica, steps[k][0], "bootstrap")
    check_old_names_translate(replica, steps[k][0])
    for db, delta in steps[k + 1:]:
        replica, out = apply_delta(replica, decode(encode(delta)))
        assert out.applied
        check_replica(replica, db, "after bootstrap")
    check_old_names_translate(replica, steps[-1][0])
    assert dict(replica.aliases) == dict(bootstrap_over_the_wire(steps[-1][0], eids).aliases)


def test_streams_rename_attributes_and_keep_using_their_old_names():
    """The generated streams do reach the renames (a check on the strategy itself)."""
    from hypothesis import find

    stream = find(server_tx_streams(max_txs=10), lambda s: len(run_stream(s)) > 12)
    db = run_stream(stream)[-1][0]
    assert all(kw(old) in db.idents and new in db.schema for old, new in RENAMED.items())


# ------------------------------------------------------------------------------------------------
# Pending transactions: optimistic writes re-based on a moving server


def _client_tx(data, replica, n: int) -> list:
    """A client transaction in local ids over ``SYNC_SCHEMA``, referring to entities of the view
    (provisional ones included) by id or lookup ref."""
    ents = [k[0] for k in replica.view.aevt.prefix_list(("item/label",))]
    label = st.sampled_from(LABELS)
    ent = st.sampled_from(ents) if ents else st.just(("item/label", "L0"))
    kind = data.draw(st.sampled_from(["new", "upsert", "add", "cas", "ref", "auto", "retract"]))
    if kind == "new":
        return [{"db/id": "n", "item/label": f"c{n}", "item/n": data.draw(st.integers(-3, 3))}]
    if kind == "upsert":
        return [{"db/id": "u", "item/label": data.draw(label), "item/code": data.draw(st.sampled_from("xyz"))}]
    if kind == "add":
        return [["db/add", data.draw(ent), "item/n", data.draw(st.integers(-3, 3))]]
    if kind == "cas":
        return [["db/cas", data.draw(ent), "item/n", data.draw(st.sampled_from([None, 0, 1])),
                 data.draw(st.integers(-3, 3))]]
    if kind == "ref":
        name = data.draw(st.sampled_from(["item/ref", "item/target"]))
        name = name if name in replica.server_schema or name in replica.aliases else "item/ref"
        return [{"db/id": "r", "item/label": f"c{n}", name: data.draw(ent)},
                ["db/add", data.draw(ent), "item/refs", "r"]]
    if kind == "auto":
        return [{"item/label": f"c{n}", "item/ref": data.draw(ent)}]
    return [["db/retractEntity", data.draw(ent)]]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(server_tx_streams(max_txs=12), st.data(), st.booleans())
def test_pending_transactions_rebase_confirm_and_reject(stream, data, capped):
    """Whatever the server does meanwhile: the confirmed database is the server's at ``t``; the view is
    the confirmed database with the pending transactions applied in order (as a fresh queue of them
    would be); a rejected transaction leaves no trace; provisional ids are never shared and resolve
    exactly once, to the server's entity."""
    check_pending(empty_db(SYNC_SCHEMA, flavor="datomic"), stream, lambda rep, n: _client_tx(data, rep, n), data,
                  capped)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_schemas().flatmap(lambda s: st.tuples(st.just(s), tx_streams(s[1], max_txs=10))), st.data(),
       st.booleans())
def test_pending_transactions_on_random_schemas(case, data, capped):
    """The same over random schemas (uniqueness, cardinality, components, composites drawn), with
    server streams and client transactions of any form over them."""
    (schema, ds_schema), stream = case
    check_pending(empty_db(schema, flavor="datomic"), stream,
                  lambda _rep, _n: data.draw(st.one_of(st.lists(entity_maps(ds_schema), min_size=1, max_size=2),
                                                       st.lists(tx_forms(ds_schema), min_size=1, max_size=3))),
                  data, capped)


def check_pending(server, stream, client_tx, data, capped: bool) -> None:
    """Drive a replica of ``server`` through ``stream`` (server transactions) and ``client_tx(replica,
    seq)`` submissions, answered, rejected or re-bootstrapped as ``data`` draws, checking the pending
    properties after every step."""
    from datsync.core.sync import Origin

    eids = EidMap.capped(TX0, low=101, start=300_000) if capped else EidMap.identity()
    rep = replica_of(server, eids)
    owner: dict[int, tuple] = {}  # provisional id -> the pending transaction that got it
    resolved: dict[int, int] = {}  # provisional id -> the server id it resolved to
    server_txs = list(stream)
    seq = 0
    instant = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)

    def commit(tx, origin=None):
        nonlocal server, rep
        r = transact(server, tx, instant=instant)
        server = r.db_after
        d = delta_from_report(r)
        if origin is not None:
            d = dataclasses.replace(d, origin=Origin(*origin, answer_tempids(r)))
        rep, out = apply_delta(rep, decode(encode(d)))
        assert out.applied
        return r, out

    for _ in range(data.draw(st.integers(1, 25))):
        action = data.draw(st.sampled_from(["submit", "submit", "server", "answer", "answer", "reject", "bootstrap"]))
        if action == "submit":
            seq += 1
            rep, p = add_pending(rep, client_tx(rep, seq), "me", seq)
            assert rep.pending[-1] is p
        elif action == "bootstrap":  # a new bootstrap (another id map) keeps the queue
            keys = [p.key for p in rep.pending]
            rep = carry_pending(rep, replica_of(server, EidMap.capped(TX0, low=101, start=data.draw(
                st.sampled_from([300_000, 400_000]))) if capped else EidMap.identity()))
            assert [p.key for p in rep.pending] == keys
        elif action == "server" and server_txs:
            with contextlib.suppress(TxError):
                commit(server_txs.pop(0))
        elif action in ("answer", "reject") and rep.pending:
            p = rep.pending[0]
            try:
                if action == "reject":
                    raise TxError("test/refused", "refused", {})
                r, out = commit(pending_tx_for_server(rep, p), p.key)
            except (TxError, SyncError):  # refused by the server, or refers to a refused transaction's id
                before = rep
                event("rejected")
                rep, dropped = reject(rep, *p.key)
                assert dropped == p
                assert not any(x in dropped.provisional for x in rep.resolved)
                assert not any(k[0] in dropped.provisional for k in rep.view.eavt)
                assert before.db is rep.db
            else:
                event("confirmed")
                assert out.confirmed is not None and out.confirmed.key == p.key
                for t, e in p.tempids.items():
                    if e in p.provisional and t in r.tempids:
                        assert rep.resolved[e] == rep.eids.to_local(r.tempids[t]) == resolve(rep, e)
        if any(p.conflict for p in rep.pending):
            event("local conflict")
        # confirmed == the server at t
        check_replica(rep, server, "pending")
        # view == confirmed + pending in order, however it was reached (incrementally, re-based)
        again = rebase(rep.replace(pending_db=None, pending=tuple(
            dataclasses.replace(p, conflict=None) for p in rep.pending)))
        assert again.pending == rep.pending and set(again.view.eavt) == set(rep.view.eavt)
        # provisional ids: never shared, stable owners, resolved once and for good
        for p in rep.pending:
            for x in p.provisional:
                assert owner.setdefault(x, p.key) == p.key and x < rep.next_provisional
        assert not any(is_provisional(k[0]) for k in rep.db.eavt)  # never a server's id
        for x, e in rep.resolved.items():  # compared as server ids: a new bootstrap may change local ids
            assert resolved.setdefault(x, rep.eids.to_remote(e)) == rep.eids.to_remote(e) and not is_provisional(e)
        assert set(resolved) == set(rep.resolved)


# ------------------------------------------------------------------------------------------------
# Time travel over what a replica saw


def _in_server_ids(replica, view) -> set:
    ds = [(d.e, d.a, d.v, d.tx, d.added) for d in datoms(view, "eavt")]
    return _with_added(datoms_to_remote(replica.eids, replica.refs, ds))


def _server(view) -> set:
    return _with_added([(d.e, d.a, d.v, d.tx, d.added) for d in datoms(view, "eavt")])


def _with_added(ds) -> set:
    """``typed`` datoms ``(e, a, v, tx, added)``, keeping whether each was added or retracted."""
    return {(*k, d[4]) for d in ds for k in typed([d])}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(server_tx_streams(max_txs=15).map(lambda s: (SYNC_SCHEMA, s)),
                 random_schemas().flatmap(lambda s: st.tuples(st.just(s[0]), tx_streams(s[1], max_txs=12)))),
       st.data(), st.booleans())
def test_time_travel_on_a_replica_equals_the_servers(case, data, capped):
    """``as_of`` any ``t`` the replica saw, ``since`` any ``t``, and the history after its bootstrap
    equal the server's (renames included; random schemas too); an ``as_of`` before its bootstrap is
    refused."""
    schema, stream = case
    steps = run_stream(stream, schema)
    k = data.draw(st.integers(0, len(steps) - 1))
    eids = EidMap.capped(TX0, low=101, start=300_000) if capped else EidMap.identity()
    replica = replica_of(steps[k][0], eids)
    for _, delta in steps[k + 1:]:
        replica, _ = apply_delta(replica, decode(encode(delta)))
    server = steps[-1][0]
    base, end = basis_t(steps[k][0]), basis_t(server)
    for t in sorted({base, end, data.draw(st.integers(base, end))}):
        assert _in_server_ids(replica, replica_as_of(replica, t)) == _server(as_of(server, t))
    t = data.draw(st.integers(0, end))
    assert _in_server_ids(replica, replica_since(replica, t)) == _server(since(server, t))
    assert _in_server_ids(replica, since(replica_history(replica), base)) == _server(since(history(server), base))
    if base > 0:
        with pytest.raises(SyncError) as e:
            replica_as_of(replica, base - 1)
        assert e.value.code == "sync/before-history"
