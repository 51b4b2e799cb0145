"""The sans-I/O protocol state machines: every transition of the server and client sessions."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest

from datsync.core import TX0, datoms, empty_db, kw, transact
from datsync.core.sync import (
    Ack,
    AuthDecision,
    Authorize,
    ClientConfig,
    Close,
    Closed,
    Delta,
    Deltas,
    EidMap,
    Error,
    Hello,
    LogRead,
    Malformed,
    Notify,
    Opened,
    Ping,
    Pong,
    Received,
    RequestLogRead,
    RequestSnapshot,
    RequestTransact,
    Resync,
    SchemaDelta,
    Send,
    SendStream,
    ServerConfig,
    SetTimer,
    SnapshotChunk,
    SnapshotEnd,
    SnapshotReady,
    Submit,
    SubmitTx,
    Sync,
    Timer,
    TxAccepted,
    TxCommitted,
    TxFailed,
    TxOk,
    TxRejected,
    Welcome,
    answer_tempids,
    client_step,
    decode,
    delta_from_report,
    encode,
    encode_snapshot,
    new_client_session,
    new_server_session,
    receive,
    replica_of,
    server_step,
    snapshot,
)
from datsync.core.sync import client as cl
from datsync.core.sync import server as sv

ONE = kw("db.cardinality/one")
SCHEMA = {"p/name": {"db/valueType": kw("db.type/string"), "db/cardinality": ONE,
                     "db/unique": kw("db.unique/identity")},
          "p/n": {"db/valueType": kw("db.type/long"), "db/cardinality": ONE}}
T = dt.datetime(2022, 1, 1, tzinfo=dt.UTC)
CFG = ServerConfig(db_id="db", window=2, max_buffered=4, chunk_size=10, heartbeat_interval=1.0,
                   heartbeat_timeout=3.0, handshake_timeout=2.0, max_pending_tx=2, max_errors=2)


def fake_delta(t: int) -> Delta:
    return Delta(t, TX0 + t, T, ((TX0 + t, "db/txInstant", T, True), (101, "p/n", t, True)))


def run(step, s, *events):
    """Feed events; the final state and every effect, in order."""
    out: list = []
    for e in events:
        s, fx = step(s, e)
        out += fx
    return s, out


def msgs(fx) -> list:
    """The messages the effects send (decoded from the bytes that would go on the wire)."""
    out = []
    for f in fx:
        if isinstance(f, Send):
            out.append(decode(f.data))
        elif isinstance(f, SendStream):
            out += [decode(b) for b in f.messages]
    return out


def of(kind, fx) -> list:
    return [f for f in fx if isinstance(f, kind)]


def srv(t: int = 5, **cfg: Any):
    s = new_server_session(dataclasses.replace(CFG, **cfg), t)
    s, fx = server_step(s, Opened(0.0))
    assert fx == [SetTimer(1.0)]
    return s


def attached(t: int = 5, client_t: int | None = 5, **cfg: Any):
    """A server session past the handshake with a client at ``client_t``."""
    s = srv(t, **cfg)
    s, fx = run(server_step, s, Received(Hello("me", client_t, "db")))
    assert fx == [Authorize("me")] and s.phase == sv.AUTHORIZING
    s, fx = run(server_step, s, AuthDecision("principal"))
    return s, fx


# ------------------------------------------------------------------------------------------------
# Server


def test_handshake_resume_at_the_servers_t_goes_live():
    s, fx = attached(5, 5)
    assert msgs(fx) == [Welcome("db", 5, "resume", 1)]
    assert s.phase == sv.LIVE and s.principal == "principal" and s.cursor_t == 5


def test_handshake_resume_behind_reads_the_log_then_goes_live():
    s, fx = attached(5, 3)
    assert msgs(fx) == [Welcome("db", 5, "resume", 1)]
    (req,) = of(RequestLogRead, fx)
    assert (req.from_t, req.to_t) == (3, 5) and s.phase == sv.CATCHING_UP
    s, fx = run(server_step, s, LogRead(req.seq, 3, ((fake_delta(4), None), (fake_delta(5), encode(fake_delta(5))))))
    assert [m.t for m in msgs(fx)] == [4, 5] and s.phase == sv.LIVE and s.cursor_t == 5


def test_commits_during_a_log_read_are_read_next():
    s, fx = attached(5, 3)
    (req,) = of(RequestLogRead, fx)
    s, fx = run(server_step, s, TxCommitted(fake_delta(6)))
    assert fx == [] and s.server_t == 6
    s, fx = run(server_step, s, LogRead(req.seq, 3, ((fake_delta(4), None), (fake_delta(5), None))))
    (req2,) = of(RequestLogRead, fx)
    assert (req2.from_t, req2.to_t) == (5, 6) and s.phase == sv.CATCHING_UP
    s, fx = run(server_step, s, LogRead(req.seq, 3, ()))  # a stale answer is ignored
    assert fx == []


def test_bootstrap_when_no_replica_other_db_too_far_behind_or_ahead():
    for client_t, db_id in ((None, "db"), (3, "other"), (0, "db"), (9, "db")):
        s = srv(8)
        s, fx = run(server_step, s, Received(Hello("me", client_t, db_id)), AuthDecision(True))
        assert msgs(fx)[0] == Welcome("db", 8, "bootstrap", 1)
        (req,) = of(RequestSnapshot, fx)
        assert req.chunk_size == 10 and s.phase == sv.BOOTSTRAPPING


def test_snapshot_ready_streams_it_then_catches_up():
    s = srv(3)
    s, fx = run(server_step, s, Received(Hello("me")), AuthDecision(True))
    (req,) = of(RequestSnapshot, fx)
    s, _ = run(server_step, s, TxCommitted(fake_delta(4)))
    stream = iter([b"a", b"b"])
    s, fx = run(server_step, s, SnapshotReady(req.seq, 3, stream))
    assert fx[0] == SendStream(stream)
    (log,) = of(RequestLogRead, fx)
    assert (log.from_t, log.to_t) == (3, 4)
    s, fx = run(server_step, s, SnapshotReady(req.seq, 3, []))  # not waiting any more
    assert fx == []


def test_auth_denied_closes():
    s = srv()
    s, fx = run(server_step, s, Received(Hello("bad")), AuthDecision(None))
    assert msgs(fx) == [Error("protocol/unauthorized", "not authorized")]
    assert of(Close, fx)[0].code == "protocol/unauthorized" and s.phase == sv.CLOSED
    assert server_step(s, Received(Hello("again"))) == (s, [])


def test_live_deltas_respect_the_window_and_acks():
    s, _ = attached(5, 5)
    s, fx = run(server_step, s, *(TxCommitted(fake_delta(t)) for t in (6, 7, 8)))
    assert [m.t for m in msgs(fx)] == [6, 7] and len(s.queue) == 1 and len(s.inflight) == 2
    s, fx = run(server_step, s, Received(Ack(6)))
    assert [m.t for m in msgs(fx)] == [8] and s.acked_t == 6 and [t for t, _ in s.inflight] == [7, 8]
    s, fx = run(server_step, s, TxCommitted(fake_delta(8)))  # a duplicate commit event
    assert fx == []


def batched(t: int = 5, client_t: int | None = 5, **cfg: Any):
    """A server session past the handshake with a client that reads ``deltas`` messages."""
    s = srv(t, **cfg)
    s, _ = run(server_step, s, Received(Hello("me", client_t, "db", batch=True)), AuthDecision("principal"))
    return s


def test_deltas_going_out_together_go_in_one_message_to_a_client_that_asked():
    s = batched(5, 5, window=2, max_buffered=8)
    s, fx = run(server_step, s, *(TxCommitted(fake_delta(t)) for t in (6, 7, 8, 9, 10)))
    assert [m.t for m in msgs(fx)] == [6, 7] and len(s.queue) == 3  # live: each as it commits
    s, fx = run(server_step, s, Received(Ack(7)))
    (m,) = msgs(fx)  # the window opened for two: one message, one frame
    assert isinstance(m, Deltas) and [d.t for d in m.deltas] == [8, 9] and m.deltas[0] == fake_delta(8)
    assert [t for t, _ in s.inflight] == [8, 9] and [t for t, _ in s.queue] == [10]
    s, fx = run(server_step, s, Received(Ack(9)))
    assert msgs(fx) == [fake_delta(10)]  # a lone delta goes as it is
    # a catch-up from the log goes out batched too
    s = batched(5, 2, window=64)
    s, fx = run(server_step, s, LogRead(s.awaiting, 2, tuple(log_entry(t) for t in (3, 4, 5))))
    (m,) = msgs(fx)
    assert isinstance(m, Deltas) and [d.t for d in m.deltas] == [3, 4, 5] and s.phase == sv.LIVE


def log_entry(t: int) -> tuple[Delta, bytes]:
    return fake_delta(t), encode(fake_delta(t))


def test_a_client_that_did_not_ask_gets_one_delta_per_message():
    s, _ = attached(5, 5, window=2, max_buffered=8)
    s, _ = run(server_step, s, *(TxCommitted(fake_delta(t)) for t in (6, 7, 8, 9)))
    s, fx = run(server_step, s, Received(Ack(7)))
    assert msgs(fx) == [fake_delta(8), fake_delta(9)]


def test_a_batch_stays_under_its_byte_bound(monkeypatch):
    monkeypatch.setattr(sv, "BATCH_BYTES", 2 * len(encode(fake_delta(10))) + 2)
    s = batched(11, 6, window=64, max_buffered=16)
    s, fx = run(server_step, s, LogRead(s.awaiting, 6, tuple(log_entry(t) for t in range(7, 12))))
    out = msgs(fx)
    assert [[d.t for d in m.deltas] if isinstance(m, Deltas) else [m.t] for m in out] == [[7, 8], [9, 10], [11]]
    assert all(f.data == encode(m) for f, m in zip(of(Send, fx), out))


def test_a_client_too_far_behind_is_told_to_resync():
    s, _ = attached(5, 5)
    s, fx = run(server_step, s, *(TxCommitted(fake_delta(t)) for t in range(6, 10)))
    assert s.buffered == 4 and s.phase == sv.LIVE
    s, fx = run(server_step, s, TxCommitted(fake_delta(10)))
    assert isinstance(msgs(fx)[0], Resync) and of(RequestSnapshot, fx)
    assert s.phase == sv.BOOTSTRAPPING and s.buffered == 0 and s.queue_bytes == 0


def test_bytes_bound_too():
    s, _ = attached(5, 5, max_buffered_bytes=600)
    s, fx = run(server_step, s, *(TxCommitted(fake_delta(t)) for t in range(6, 12)))
    assert any(isinstance(m, Resync) for m in msgs(fx)) and s.phase == sv.BOOTSTRAPPING


def test_a_gap_in_the_feed_reads_the_log():
    s, _ = attached(5, 5)
    s, fx = run(server_step, s, TxCommitted(fake_delta(7)))
    (req,) = of(RequestLogRead, fx)
    assert (req.from_t, req.to_t) == (5, 7) and s.phase == sv.CATCHING_UP


def test_log_that_cannot_serve_or_skips_means_resync():
    s, fx = attached(5, 3)
    (req,) = of(RequestLogRead, fx)
    s2, fx = run(server_step, s, LogRead(req.seq, 3, None))
    assert isinstance(msgs(fx)[0], Resync) and s2.phase == sv.BOOTSTRAPPING
    s3, fx = run(server_step, s, LogRead(req.seq, 3, ((fake_delta(5), None),)))
    assert isinstance(msgs(fx)[0], Resync) and s3.phase == sv.BOOTSTRAPPING


def test_client_sync_requests():
    s, _ = attached(5, 5)
    s2, fx = run(server_step, s, Received(Sync(2)))
    (req,) = of(RequestLogRead, fx)
    assert (req.from_t, req.to_t) == (2, 5) and s2.cursor_t == 2
    s3, fx = run(server_step, s, Received(Sync(None)))
    assert of(RequestSnapshot, fx) and s3.phase == sv.BOOTSTRAPPING and not msgs(fx)
    _s4, fx = run(server_step, s, Received(Sync(99)))
    assert isinstance(msgs(fx)[0], Resync)
    s5, fx = run(server_step, s, Received(Sync(5)))
    assert fx == [] and s5.phase == sv.LIVE


def test_submit_is_validated_then_requested_then_answered():
    s, _ = attached()
    s, fx = run(server_step, s, Received(Submit(1, [["db/add", "t", "p/n", 1]])))
    assert fx == [RequestTransact(1, [["db/add", "t", "p/n", 1]], "principal")] and s.pending_tx == {1}
    s, fx = run(server_step, s, Received(Submit(1, [])))
    assert msgs(fx) == [TxRejected(1, "sync/duplicate-request", "Request 1 is already pending")]
    s, fx = run(server_step, s, Received(Submit(2, [["db.fn/call", "f"]])))
    assert msgs(fx)[0].code == "sync/forbidden-op" and s.pending_tx == {1}
    s, fx = run(server_step, s, Received(Submit(3, [["x"]])), Received(Submit(4, [])))
    assert msgs(fx)[0].code == "sync/forbidden-op" and of(RequestTransact, fx)[0].req == 4
    s, fx = run(server_step, s, TxAccepted(1, 6, {"t": 101, "db/current-tx": TX0 + 6}))
    assert msgs(fx) == [TxOk(1, 6, {"t": 101, "db/current-tx": TX0 + 6})] and 1 not in s.pending_tx
    s, fx = run(server_step, s, TxFailed(4, "db.error/cas-failed", "Compare failed"))
    assert msgs(fx) == [TxRejected(4, "db.error/cas-failed", "Compare failed")]
    s, fx = run(server_step, s, TxFailed(4, "x", "answered twice"))
    assert fx == []


def test_too_many_pending_transactions_are_refused():
    s, _ = attached()
    s, fx = run(server_step, s, *(Received(Submit(i, [])) for i in range(3)))
    assert len(of(RequestTransact, fx)) == 2 and msgs(fx)[-1].code == "sync/overloaded"


def test_malformed_and_unexpected_input():
    s = srv()
    s2, fx = run(server_step, s, Malformed("protocol/malformed", "bad json"))
    assert msgs(fx) == [Error("protocol/malformed", "bad json")] and s2.phase == sv.CLOSED  # during the handshake
    s2, fx = run(server_step, s, Received(Ack(1)))
    assert msgs(fx)[0].code == "protocol/unexpected" and s2.phase == sv.CLOSED
    s, _ = attached()
    s, fx = run(server_step, s, Malformed("protocol/too-large", "big"))
    assert msgs(fx) == [Error("protocol/too-large", "big")] and s.phase == sv.LIVE
    s, fx = run(server_step, s, Received(Hello("again")))
    assert msgs(fx)[0].code == "protocol/unexpected" and s.phase == sv.LIVE
    s, fx = run(server_step, s, Received(Welcome("x", 1, "resume", 1)))
    assert s.phase == sv.CLOSED and of(Close, fx)  # third error: max_errors=2


def test_version_mismatch_closes_even_when_attached():
    s, _ = attached()
    s, fx = run(server_step, s, Malformed("protocol/version", "Unsupported protocol version 2"))
    assert of(Close, fx) and s.phase == sv.CLOSED


def test_ping_pong_and_heartbeats():
    s, _ = attached()
    s, fx = run(server_step, s, Received(Ping(7)))
    assert msgs(fx) == [Pong(7)]
    s, fx = run(server_step, s, Timer(1.0))  # heard the ping, sent the pong: nothing to do
    assert fx == [SetTimer(2.0)]
    s, fx = run(server_step, s, Timer(2.0))  # idle: ping, with the t last sent
    assert msgs(fx) == [Ping(s.hb.n, 5)] and of(SetTimer, fx) == [SetTimer(3.0)]
    s, fx = run(server_step, s, Timer(3.0), Timer(4.0))
    assert s.phase == sv.CLOSED and of(Close, fx)[0].code == "protocol/timeout"


def test_handshake_timeout():
    s = srv()
    s, fx = run(server_step, s, Timer(1.0))
    assert s.phase == sv.HANDSHAKE
    s, fx = run(server_step, s, Timer(2.0))
    assert s.phase == sv.CLOSED and of(Close, fx)[0].reason == "handshake timeout"


def test_closed_ignores_everything():
    s, _ = attached()
    s, fx = run(server_step, s, Closed("gone"))
    assert s.phase == sv.CLOSED and fx == []
    for e in (TxCommitted(fake_delta(6)), Timer(9.0), Received(Ping(1)), TxAccepted(1, 1, {})):
        assert server_step(s, e) == (s, [])


def test_delta_filter_per_principal():
    def only_mine(principal, delta):
        if principal == "nobody":
            return None
        return Delta(delta.t, delta.tx, delta.instant, tuple(d for d in delta.datoms if d[1] != "p/n"))

    s, _ = attached(delta_filter=only_mine)
    s, fx = run(server_step, s, TxCommitted(fake_delta(6), encode(fake_delta(6))))
    (m,) = msgs(fx)
    assert m.t == 6 and [d[1] for d in m.datoms] == ["db/txInstant"]
    s = replace_principal(s, "nobody")
    s, fx = run(server_step, s, TxCommitted(fake_delta(7)))
    (m,) = msgs(fx)
    assert m.t == 7 and m.datoms == ()


def replace_principal(s, p):
    from dataclasses import replace

    return replace(s, principal=p)


def test_unknown_events_and_internal_errors_never_raise():
    s, _ = attached()
    assert server_step(s, object()) == (s, [])

    def boom(principal, delta):
        raise RuntimeError("bug")

    s, _ = attached(delta_filter=boom)
    s, fx = run(server_step, s, TxCommitted(fake_delta(6)))
    assert s.phase == sv.CLOSED and of(Close, fx)[0].code == "protocol/internal"


# ------------------------------------------------------------------------------------------------
# Client


def server_db(n: int = 3):
    db = empty_db(SCHEMA, flavor="datomic")
    reports = []
    for i in range(n):
        r = transact(db, [{"p/name": f"n{i}", "p/n": i}], instant=T)
        reports.append(r)
        db = r.db_after
    return db, reports


def client(replica=None, **cfg):
    c = new_client_session(ClientConfig(credentials="me", heartbeat_interval=1.0, heartbeat_timeout=3.0, **cfg),
                           replica)
    c, fx = client_step(c, Opened(0.0))
    return c, fx


def live_client():
    _db, reports = server_db()
    c, _fx = client(replica_of(reports[0].db_after, db_id="db"))
    c, _ = run(client_step, c, Received(Welcome("db", 4, "resume", 2)))
    return c, reports


def test_client_hello_carries_t_and_db_id():
    c, fx = client()
    assert msgs(fx) == [Hello("me", None, None, batch=True)] and c.phase == cl.HANDSHAKE and of(SetTimer, fx)
    db, _ = server_db()
    c, fx = client(replica_of(db, db_id="db"))
    assert msgs(fx) == [Hello("me", db.max_tx - TX0, "db", batch=True)]


def test_client_bootstraps_from_a_snapshot():
    db, _ = server_db()
    c, _ = client()
    c, fx = run(client_step, c, Received(Welcome("db", 4, "bootstrap", 2)))
    assert c.phase == cl.BOOTSTRAPPING and of(Notify, fx)[0].kind == "connected"
    t, stream = encode_snapshot(db, 10, db_id="db")
    c, fx = run(client_step, c, *(receive(b) for b in stream))
    assert c.phase == cl.LIVE and c.replica.t == t and c.replica.db_id == "db"
    assert [n.kind for n in of(Notify, fx)] == ["synced"] and msgs(fx) == [Ack(t)]
    assert datoms(c.replica.db, "avet", "p/name", "n2")


def test_client_snapshot_chunks_in_any_order_duplicated_or_stale():
    db, _ = server_db()
    head, chunks = snapshot(db, 10, db_id="db")
    chunks = list(chunks)
    assert len(chunks) >= 3
    c, _ = client()
    c, fx = run(client_step, c, Received(Welcome("db", 4, "bootstrap", 2)), Received(head), Received(head),
                Received(chunks[2]), Received(chunks[0]), Received(chunks[0]),
                Received(SnapshotEnd(head.t, head.chunks)))
    assert c.phase == cl.BOOTSTRAPPING and c.builder.received == 2 and not msgs(fx)  # waits for the rest
    c2, fx = run(client_step, c, Received(SnapshotChunk(head.t + 1, 1, ())))
    assert fx == [] and c2.builder is c.builder  # another snapshot's chunk: ignored
    c3, fx = run(client_step, c, Received(SnapshotEnd(head.t, head.chunks + 1)))
    assert msgs(fx) == [Sync(None)] and c3.builder is None  # an inconsistent snapshot: ask again
    c4, fx = run(client_step, c, Received(SnapshotChunk(head.t, 1, chunks[0].datoms * 50)))
    assert msgs(fx) == [Sync(None)] and c4.builder is None
    c, fx = run(client_step, c, *(Received(ch) for ch in chunks[3:]), Received(chunks[1]))
    assert c.phase == cl.LIVE and [n.kind for n in of(Notify, fx)] == ["synced"]
    c5, fx = run(client_step, c, Received(head), Received(chunks[0]))  # a late duplicate of the whole snapshot
    assert c5.phase == cl.LIVE and c5.replica is c.replica


def test_client_applies_deltas_acks_and_detects_gaps():
    c, reports = live_client()
    d2, d3 = delta_from_report(reports[1]), delta_from_report(reports[2])
    c2, fx = run(client_step, c, Received(d3))
    assert msgs(fx) == [Sync(c.replica.t)] and c2.sync_from == c.replica.t
    c2, fx = run(client_step, c2, Received(d3))
    assert fx == []  # asked once
    c3, fx = run(client_step, c2, Received(d2), Received(d3))
    assert [n.kind for n in of(Notify, fx)] == ["delta", "delta"] and c3.replica.t == d3.t
    assert msgs(fx) == [Ack(d3.t)] and c3.sync_from is None  # ack_every=2
    c4, fx = run(client_step, c3, Received(d2))
    assert fx == [] and c4.replica is c3.replica


def test_client_applies_a_deltas_message_delta_by_delta():
    c, reports = live_client()
    d2, d3 = delta_from_report(reports[1]), delta_from_report(reports[2])
    c2, fx = run(client_step, c, Received(Deltas((d2, d3))))
    assert [n.kind for n in of(Notify, fx)] == ["delta", "delta"] and c2.replica.t == d3.t
    assert msgs(fx) == [Ack(d3.t)]
    _, fx = run(client_step, c, Received(Deltas((d3,))))  # a gap inside a batch asks once
    assert msgs(fx) == [Sync(c.replica.t)]


def test_client_ping_with_a_newer_t_is_a_gap():
    c, _ = live_client()
    c, fx = run(client_step, c, Received(Ping(3, c.replica.t + 2)))
    assert msgs(fx) == [Pong(3), Sync(c.replica.t)]
    c, fx = run(client_step, c, Received(Ping(4, c.replica.t)))
    assert msgs(fx) == [Pong(4)]


def test_client_submit_and_answers_in_local_terms():
    db, _reports = server_db(1)
    for eids in (EidMap.identity(), EidMap.capped(TX0, low=101, start=70_000)):
        c, _ = client(replica_of(db, eids, db_id="db"), eids=eids)
        c, _ = run(client_step, c, Received(Welcome("db", db.max_tx - TX0, "resume", 1)))
        n0 = datoms(c.replica.db, "avet", "p/name", "n0")[0].e
        c, fx = run(client_step, c, SubmitTx("r1", [{"db/id": "new", "p/name": "x"}, ["db/add", n0, "p/n", 9]]))
        (sub,) = msgs(fx)
        assert sub.req == "r1" and sub.tx_data[1][1] == c.replica.eids.to_remote(n0)
        r = transact(db, sub.tx_data, instant=T)
        d = delta_from_report(r)
        c2, fx = run(client_step, c, Received(TxOk("r1", d.t, answer_tempids(r))))
        assert of(Notify, fx) == [] and c2.answers  # held until the replica has the transaction
        c2, fx = run(client_step, c2, Received(d))
        ok = next(n for n in of(Notify, fx) if n.kind == "tx-ok")
        new = ok.data["tempids"]["new"]
        assert datoms(c2.replica.db, "eavt", new, "p/name")[0].v == "x" and not c2.answers
        _c3, fx = run(client_step, c2, Received(TxOk("r1", d.t, answer_tempids(r))))
        assert fx == []  # a duplicate answer


def test_client_submit_rejections():
    c, _ = client()
    c, fx = run(client_step, c, SubmitTx(1, []))
    assert of(Notify, fx)[0].data["code"] == "sync/offline"
    c, _ = live_client()
    c, fx = run(client_step, c, SubmitTx(1, [["db/add", 1, "p/n", lambda: 1]]))
    assert of(Notify, fx)[0].data["code"] == "sync/invalid-tx"
    c, fx = run(client_step, c, SubmitTx(1, [["db.fn/call", "f"]]))
    assert of(Notify, fx)[0].data["code"] == "sync/forbidden-op" and not msgs(fx)
    c, fx = run(client_step, c, SubmitTx(1, {"not": "a list"}))
    assert of(Notify, fx)[0].data["code"] == "sync/invalid-tx"
    c, fx = run(client_step, c, SubmitTx([1], []))
    assert of(Notify, fx)[0].data["code"] == "sync/invalid-tx"
    c, fx = run(client_step, c, SubmitTx(2, []), SubmitTx(2, []))
    assert of(Notify, fx)[0].data["code"] == "sync/duplicate-request"
    c, fx = run(client_step, c, Received(TxRejected(2, "db.error/x", "no")))
    assert of(Notify, fx)[0].data == {"req": 2, "code": "db.error/x", "message": "no"}
    c, fx = run(client_step, c, SubmitTx(3, []), Closed("gone"))
    assert [n.kind for n in of(Notify, fx)] == ["tx-unknown", "closed"] and c.phase == cl.CLOSED


def test_client_resync_then_new_snapshot_keeps_ids_stable():
    db, reports = server_db()
    eids = EidMap.capped(TX0, low=101, start=70_000)
    c, _ = client(replica_of(reports[0].db_after, eids, db_id="db"), eids=eids)
    c, _ = run(client_step, c, Received(Welcome("db", 2, "resume", 1)))
    n0 = datoms(c.replica.db, "avet", "p/name", "n0")[0].e
    c, fx = run(client_step, c, Received(Resync("too far behind", 4)))
    assert c.phase == cl.BOOTSTRAPPING and of(Notify, fx)[0].kind == "resync"
    c, fx = run(client_step, c, *(receive(b) for b in encode_snapshot(db, 7, db_id="db")[1]))
    assert c.phase == cl.LIVE and datoms(c.replica.db, "avet", "p/name", "n0")[0].e == n0


def test_client_heartbeat_timeout_and_stall_recovery():
    c, _ = live_client()
    c, fx = run(client_step, c, Timer(1.0))
    assert msgs(fx) == [] and fx == [SetTimer(2.0)]  # the hello went out since the last tick
    c, fx = run(client_step, c, Timer(2.0))
    assert msgs(fx) == [Ping(1)]
    c, fx = run(client_step, c, Timer(3.0), Timer(4.0))
    assert c.phase == cl.CLOSED and of(Close, fx)[0].code == "protocol/timeout"
    c, _ = client()
    c, _ = run(client_step, c, Received(Welcome("db", 4, "bootstrap", 2)))
    c, fx = run(client_step, c, Received(Ping(1)), Timer(1.0), Received(Ping(2)), Timer(2.0), Received(Ping(3)),
                Timer(3.0))
    assert Sync(None) in msgs(fx)  # no snapshot started for two ticks: ask again


def test_client_malformed_from_the_server_closes():
    c, _ = live_client()
    c, fx = run(client_step, c, Malformed("protocol/malformed", "junk"))
    assert c.phase == cl.CLOSED and of(Close, fx) and c.replica is not None
    c2, fx = run(client_step, c, Opened(5.0))
    assert c2.phase == cl.HANDSHAKE and msgs(fx)[0].t == c.replica.t


def test_client_bad_deltas_and_unexpected_messages():
    c, _ = live_client()
    bad = Delta(c.replica.t + 1, TX0 + c.replica.t + 1, T, ((1, "p/n", 1, True),),
                SchemaDelta({"p/n": {"db/tupleAttrs": 5}}, ()))
    c2, fx = run(client_step, c, Received(bad))
    assert c2.phase == cl.CLOSED and of(Close, fx)
    c3, fx = run(client_step, c, Received(Hello()))
    assert msgs(fx)[0].code == "protocol/unexpected" and c3.phase == cl.LIVE
    _c4, fx = run(client_step, c, Received(Error("x", "y")))
    assert of(Notify, fx)[0].kind == "error"
    assert client_step(c, object()) == (c, [])


def test_welcome_resume_without_a_replica_is_refused():
    c, _ = client()
    c, _fx = run(client_step, c, Received(Welcome("db", 4, "resume", 2)))
    assert c.phase == cl.CLOSED


# ------------------------------------------------------------------------------------------------
# Both, wired together in memory


def test_end_to_end_bootstrap_live_submit_and_reconnect():
    db, _ = server_db(2)
    log: dict[int, tuple] = {}

    def serve(s, event):
        nonlocal db
        s, fx = server_step(s, event)
        to_client = []
        for f in fx:
            if isinstance(f, Send):
                to_client.append(f.data)
            elif isinstance(f, SendStream):
                to_client += list(f.messages)
            elif isinstance(f, Authorize):
                s, more = serve(s, AuthDecision(f.credentials == "me"))
                to_client += more
            elif isinstance(f, RequestSnapshot):
                t, stream = encode_snapshot(db, f.chunk_size, db_id="db")
                s, more = serve(s, SnapshotReady(f.seq, t, stream))
                to_client += more
            elif isinstance(f, RequestLogRead):
                s, more = serve(s, LogRead(f.seq, f.from_t, tuple(log[t] for t in range(f.from_t + 1, f.to_t + 1))))
                to_client += more
            elif isinstance(f, RequestTransact):
                r = transact(db, f.tx_data, instant=T)
                db = r.db_after
                d = delta_from_report(r)
                log[d.t] = (d, encode(d))
                s, more = serve(s, TxCommitted(d, log[d.t][1]))
                to_client += more
                s, more = serve(s, TxAccepted(f.req, d.t, answer_tempids(r)))
                to_client += more
        return s, to_client

    def pump(s, c, event_for_client):
        c, fx = client_step(c, event_for_client)
        notes = of(Notify, fx)
        queue = [f.data for f in fx if isinstance(f, Send)]
        while queue:
            s, back = serve(s, receive(queue.pop(0)))
            for data in back:
                c, fx = client_step(c, receive(data))
                notes += of(Notify, fx)
                queue += [f.data for f in fx if isinstance(f, Send)]
        return s, c, notes

    s, _ = server_step(new_server_session(CFG, db.max_tx - TX0), Opened(0.0))
    c = new_client_session(ClientConfig(credentials="me"))
    s, c, notes = pump(s, c, Opened(0.0))
    assert c.phase == cl.LIVE and s.phase == sv.LIVE and c.replica.t == db.max_tx - TX0
    s, c, notes = pump(s, c, SubmitTx("a", [{"db/id": "x", "p/name": "new"}]))
    ok = next(n for n in notes if n.kind == "tx-ok")
    assert datoms(c.replica.db, "eavt", ok.data["tempids"]["x"], "p/name")[0].v == "new"
    # the client goes away; the server moves on; the client comes back and resumes from the log
    replica = c.replica
    s, _ = server_step(s, Closed("bye"))
    r = transact(db, [{"p/name": "while away"}], instant=T)
    db = r.db_after
    d = delta_from_report(r)
    log[d.t] = (d, encode(d))
    s, _ = server_step(new_server_session(CFG, d.t), Opened(10.0))
    c = new_client_session(ClientConfig(credentials="me"), replica)
    s, c, notes = pump(s, c, Opened(10.0))
    assert [n.kind for n in notes] == ["connected", "delta"] and c.replica.t == d.t
    assert datoms(c.replica.db, "avet", "p/name", "while away")


def test_session_values_have_step_methods():
    s = srv()
    assert s.step(Timer(0.5))[0].phase == sv.HANDSHAKE
    c, _ = client()
    assert c.step(Timer(0.5))[0].phase == cl.HANDSHAKE
    with pytest.raises(AttributeError):
        s.phase = "x"  # values are immutable


# ------------------------------------------------------------------------------------------------
# Scopes changed while live


def test_scopes_answer_goes_out_after_the_deltas_queued_before_it():
    from datsync.core.sync import RequestScopes, Scopes, ScopesDecided, ScopesOk, ScopesRejected

    s, _ = attached(5, 5)
    s, fx = run(server_step, s, *(TxCommitted(fake_delta(t)) for t in (6, 7, 8)))
    assert len(s.queue) == 1  # t=8 waits for the window
    s, fx = run(server_step, s, Received(Scopes(1, (("team", ("red",)),))))
    assert fx == [RequestScopes(1, (("team", ("red",)),))]
    s, fx = run(server_step, s, ScopesDecided(1, 8, ((101, "p/name", "x", True),)))
    assert msgs(fx) == [] and [t for t, _ in s.queue] == [8, 8] and s.cursor_t == 8
    s, fx = run(server_step, s, Received(Ack(7)))
    assert msgs(fx) == [fake_delta(8), ScopesOk(1, 8, ((101, "p/name", "x", True),))]
    # refused, or computed at another t than the client's: a refusal, nothing queued
    s2, fx = run(server_step, s, ScopesDecided(2, code="policy/unknown-scope", message="No scope named 'x'"))
    assert msgs(fx) == [ScopesRejected(2, "policy/unknown-scope", "No scope named 'x'")] and s2.queue == s.queue
    s2, fx = run(server_step, s, ScopesDecided(3, 7, ()))
    assert [type(m) for m in msgs(fx)] == [ScopesRejected] and msgs(fx)[0].code == "sync/retry"


def test_a_scopes_answer_queued_between_deltas_is_not_batched_with_them():
    from datsync.core.sync import ScopesDecided, ScopesOk

    s = batched(5, 5, window=1, max_buffered=16)
    s, _ = run(server_step, s, *(TxCommitted(fake_delta(t)) for t in (6, 7, 8)))
    s, _ = run(server_step, s, ScopesDecided(1, 8, ((101, "p/name", "x", True),)))
    s, _ = run(server_step, s, *(TxCommitted(fake_delta(t)) for t in (9, 10)))
    assert [t for t, _ in s.queue] == [7, 8, 8, 9, 10]
    s = dataclasses.replace(s, config=dataclasses.replace(s.config, window=64))
    s, fx = run(server_step, s, Received(Ack(6)))
    out = [[d.t for d in m.deltas] if isinstance(m, Deltas) else m for m in msgs(fx)]
    assert out == [[7, 8], ScopesOk(1, 8, ((101, "p/name", "x", True),)), [9, 10]]


def test_client_applies_scopes_at_its_t_and_keeps_them_for_the_next_hello():
    from datsync.core.sync import ChangeScopes, Scopes, ScopesOk, ScopesRejected

    c, _ = live_client()
    c = dataclasses.replace(c, config=dataclasses.replace(c.config, credentials={"token": "me", "scopes": []}))
    t = c.replica.t
    c, fx = run(client_step, c, ChangeScopes(1, [("team", ["red"])]))
    assert msgs(fx) == [Scopes(1, (("team", ("red",)),))]
    c, fx = run(client_step, c, Received(ScopesOk(1, t, ((900, "p/name", "new", True), (900, "p/n", 9, True)))))
    assert c.replica.t == t and [n.kind for n in of(Notify, fx)] == ["scopes-ok"]
    assert datoms(c.replica.db, "avet", "p/name", "new")
    assert c.config.credentials == {"token": "me", "scopes": [["team", ["red"]]]}
    c, fx = run(client_step, c, ChangeScopes(2, []), Received(ScopesOk(2, t, ((900, "p/name", "new", False),))))
    assert not datoms(c.replica.db, "avet", "p/name", "new") and c.replica.t == t
    # refused: told, and the scopes stay; a change pending when the connection drops is refused too
    c, fx = run(client_step, c, ChangeScopes(3, [("x", [])]), Received(ScopesRejected(3, "policy/unknown-scope", "no")))
    assert [(n.kind, n.data["code"]) for n in of(Notify, fx)] == [("scopes-rejected", "policy/unknown-scope")]
    c, fx = run(client_step, c, ChangeScopes(4, []), Closed("gone"))
    assert [(n.kind, n.data.get("code")) for n in of(Notify, fx)] == [("scopes-rejected", "sync/not-connected"),
                                                                      ("closed", None)]
    c, fx = run(client_step, c, ChangeScopes(5, []))
    assert msgs(fx) == [] and of(Notify, fx)[0].data["code"] == "sync/not-connected"
    # datoms for another t than the replica's: a snapshot under the new scopes instead
    c, _ = live_client()
    c, fx = run(client_step, c, ChangeScopes(1, []), Received(ScopesOk(1, c.replica.t + 1, ())))
    assert msgs(fx)[-1] == Sync(None) and c.phase == cl.BOOTSTRAPPING
    # ...and no replica with it: the one at hand holds the old scopes' share until the snapshot
    (ok,) = [n for n in of(Notify, fx) if n.kind == "scopes-ok"]
    assert ok.data["replica"] is None and ok.data["datoms"] == ()


def test_a_scopes_answer_lost_in_a_resync_is_sent_again_before_the_snapshot():
    from datsync.core.sync import Scopes, ScopesDecided, ScopesOk

    s, _ = attached(5, 5)
    s, _ = run(server_step, s, Received(Scopes(1, (("team", ("red",)),))),
               ScopesDecided(1, 5, ((101, "p/n", 1, True),)))
    assert s.scopes_sent == ((1, 5),)
    s, fx = run(server_step, s, Received(Sync(None)))  # the client asks for a snapshot: the queue goes
    assert msgs(fx) == [ScopesOk(1, 5, ())] and of(RequestSnapshot, fx)
    s2, _ = run(server_step, s, Received(Ack(6)))
    assert s2.scopes_sent == ()  # a later delta applied: so was the answer
    # the client, bootstrapping, takes the resent answer as its scopes, without touching the replica
    from datsync.core.sync import ChangeScopes

    c, _ = live_client()
    c = dataclasses.replace(c, config=dataclasses.replace(c.config, credentials={"token": "me", "scopes": None}))
    c, _ = run(client_step, c, ChangeScopes(1, [("team", ["red"])]), Received(Resync("behind", 9)))
    before = c.replica
    c, fx = run(client_step, c, Received(ScopesOk(1, 5, ())))
    assert msgs(fx) == [] and c.replica is before and c.phase == cl.BOOTSTRAPPING
    assert c.config.credentials["scopes"] == [["team", ["red"]]]
