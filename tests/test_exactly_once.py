"""Exactly-once submission: the bookkeeping, the connection's durable record, the origin a delta
carries only to its submitter, and a real server answering resubmissions after a reconnect and after
``kill -9`` between commit and answer."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3

import pytest
import trio
import trio_websocket

from datsync.core import TX0, TxError, datoms, kw, transact
from datsync.core.sync import (
    Closed,
    Notify,
    Opened,
    Received,
    Send,
    SubmitTx,
    Timer,
    TxCommitted,
    TxOk,
    TxRejected,
    Welcome,
    answer_tempids,
    client_step,
    decode,
    delta_from_report,
    new_client_session,
    replica_of,
)
from datsync.core.sync.client import LIVE, Queued
from datsync.core.sync.delta import Delta, Origin
from datsync.core.sync.messages import Hello, Submit
from datsync.core.sync.server import ServerConfig, new_server_session, server_step
from datsync.core.sync.submissions import (
    EXPIRED_ANSWER,
    Answer,
    Submissions,
    origin_at,
    recall,
    record,
    submissions_from_rows,
)
from datsync.shell.connection import Connection
from datsync.shell.store import open_store
from tests.sync_server import bootstrap_raw, expect, msg, wait_until
from tests.test_sync_sessions import T, client, msgs, of, run, server_db

SCHEMA_TX = [{"db/ident": kw("person/name"), "db/valueType": kw("db.type/string"),
              "db/cardinality": kw("db.cardinality/one"), "db/unique": kw("db.unique/identity")}]

# -- the pure bookkeeping


def test_record_recall_and_the_floor():
    subs = Submissions(keep=3)
    assert recall(subs, "a", 1) is None
    for seq in range(1, 4):
        subs, rec = record(subs, "a", seq, Answer(10 + seq, {"x": 100 + seq}))
        assert rec.floor is None
    assert recall(subs, "a", 2) == Answer(12, {"x": 102})
    assert origin_at(subs, 13) == Origin("a", 3, {"x": 103})
    subs, rec = record(subs, "a", 4, Answer(14, {}))
    assert rec.floor == 1                                  # the oldest is forgotten, the floor rises
    assert recall(subs, "a", 1) is EXPIRED_ANSWER and origin_at(subs, 11) is None
    assert recall(subs, "a", 5) is None                    # above the floor: never committed
    assert recall(subs, "b", 1) is None                    # clients are independent
    rows = [(c, seq, a.t, a.tempids) for c, cs in subs.clients.items() for seq, a in cs.answers.items()]
    again = submissions_from_rows(rows, {"a": 1}, keep=3)
    for seq in range(1, 6):
        assert recall(again, "a", seq) == recall(subs, "a", seq)
    assert origin_at(again, 14) == origin_at(subs, 14)


# -- the connection: recorded in the same commit, remembered across a restart


def _run_conn(path, body, keep: int = 1000):
    async def main():
        store = open_store(path)
        conn = Connection.recover(store, keep_submissions=keep)
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(conn.run_writer)
                result = await body(conn)
                nursery.cancel_scope.cancel()
        finally:
            store.close()
        return result

    return trio.run(main)


def test_a_resubmission_gets_the_original_answer_and_commits_nothing(store_location):
    path = store_location

    async def first(conn: Connection):
        await conn.transact(SCHEMA_TX)
        a = await conn.submit([{"db/id": "ann", "person/name": "Ann"}], ("client-1", 1))
        b = await conn.submit([{"db/id": "ann", "person/name": "Ann"}], ("client-1", 1))
        assert not a.duplicate and b.duplicate and (b.t, b.tempids) == (a.t, a.tempids)
        assert conn.t == a.t                                       # nothing committed the second time
        # two copies in one batch: one commit, both answered alike
        c, d = [None], [None]

        async def sub(box):
            box[0] = await conn.submit([{"db/id": "bob", "person/name": "Bob"}], ("client-1", 2))

        async with trio.open_nursery() as n:
            n.start_soon(sub, c)
            n.start_soon(sub, d)
        assert c[0].t == d[0].t == conn.t == a.t + 1 and {c[0].duplicate, d[0].duplicate} == {False, True}
        # a rejection is not recorded: the same submission can be tried again
        with pytest.raises(TxError):
            await conn.submit([["db/add", -1, "person/name", 5]], ("client-1", 3))
        e = await conn.submit([{"person/name": "Cy"}], ("client-1", 3))
        assert not e.duplicate and e.t == conn.t
        return a

    a = _run_conn(path, first)

    async def after_restart(conn: Connection):
        again = await conn.submit([{"db/id": "ann", "person/name": "Ann"}], ("client-1", 1))
        assert again.duplicate and (again.t, again.tempids) == (a.t, a.tempids)
        assert conn.origin_at(a.t) == Origin("client-1", 1, a.tempids)
        return conn.t

    t = _run_conn(path, after_restart)
    assert t == a.t + 2


def test_past_what_is_remembered_a_resubmission_expires(store_location):
    async def body(conn: Connection):
        await conn.transact(SCHEMA_TX)
        for seq in range(1, 6):
            await conn.submit([{"person/name": f"p{seq}"}], ("c", seq))
        t = conn.t
        with pytest.raises(TxError) as e:
            await conn.submit([{"person/name": "p1"}], ("c", 1))
        assert e.value.code == "sync/submission-expired" and conn.t == t
        assert (await conn.submit([{"person/name": "p5"}], ("c", 5))).duplicate
        return t

    _run_conn(store_location, body, keep=2)
    store = open_store(store_location)
    rows, floors = store.read_submissions()
    store.close()
    assert sorted((c, seq) for c, seq, _, _ in rows) == [("c", 4), ("c", 5)] and floors == {"c": 3}


def test_processes_sharing_a_store_answer_each_others_submissions(pg_url):
    """A submission committed through one process and resubmitted to another (the client reconnected
    elsewhere) gets the original answer there too."""

    async def main() -> None:
        a = Connection.recover(open_store(pg_url))
        b = Connection.recover(open_store(pg_url))
        async with trio.open_nursery() as nursery:
            for conn in (a, b):
                await nursery.start(conn.run_writer)
            await a.transact(SCHEMA_TX)
            first = await a.submit([{"db/id": "x", "person/name": "X"}], ("roamer", 1))
            again = await b.submit([{"db/id": "x", "person/name": "X"}], ("roamer", 1))
            assert again.duplicate and (again.t, again.tempids) == (first.t, first.tempids)
            assert a.store.last_t() == first.t and b.origin_at(first.t).client == "roamer"
            nursery.cancel_scope.cancel()

    trio.run(main)


# -- the session: a delta's origin goes to its submitter only


def _live_session(client):
    s = new_server_session(ServerConfig(db_id="d"), 0)
    s, _ = server_step(s, Opened(0.0))
    s, _ = server_step(s, Received(Hello(None, 0, "d", client)))
    from datsync.core.sync import AuthDecision

    s, _ = server_step(s, AuthDecision("anyone"))
    return s


def test_the_origin_is_sent_to_its_client_only():
    from datsync.core.sync import encode

    delta = Delta(1, TX0 + 1, dt.datetime(2026, 1, 1, tzinfo=dt.UTC), ((TX0 + 1, "db/txInstant",
                  dt.datetime(2026, 1, 1, tzinfo=dt.UTC), True), (101, "p/n", 1, True)),
                  origin=Origin("mine", 4, {"x": 101}))
    shared = encode(Delta(delta.t, delta.tx, delta.instant, delta.datoms))
    seen = {}
    for who in ("mine", "other", None):
        s = _live_session(who)
        s, fx = server_step(s, TxCommitted(delta, shared))
        (sent,) = [decode(f.data) for f in fx if type(f) is Send]
        seen[who] = sent.origin
        server_step(s, Closed())
    assert seen == {"mine": Origin("mine", 4, {"x": 101}), "other": None, None: None}


# -- a real server


def _submit(req, seq, name, client="client-e2e"):
    return msg("submit", req=req, tx=[{"db/id": "p", "person/name": name}], client=client, seq=seq)


async def _answer_and_delta(ws, req):
    """The ``tx-ok`` for ``req`` and the delta of its ``t`` (in whichever order they come)."""
    got: dict = {}
    with trio.fail_after(10):
        while "tx-ok" not in got or "delta" not in got or got["delta"]["t"] != got["tx-ok"]["t"]:
            m = json.loads(await ws.get_message())
            if (m["type"] == "tx-ok" and m["req"] == req) or m["type"] == "delta":
                got[m["type"]] = m
    return got["tx-ok"], got["delta"]


def _hello(client):
    return msg("hello", credentials=None, t=None, db_id=None, client=client)


def test_a_resubmission_after_a_reconnect_gets_the_original_t(servers):
    server = servers.start()

    async def main():
        async with trio_websocket.open_websocket_url(server.url) as ws, \
                trio_websocket.open_websocket_url(server.url) as other:
            await bootstrap_raw(ws, _hello("client-e2e"))
            await bootstrap_raw(other, _hello("someone-else"))
            await ws.send_message(_submit(1, 1, "Ann"))
            ok, own = await _answer_and_delta(ws, 1)
            assert own["origin"] == {"client": "client-e2e", "seq": 1, "tempids": ok["tempids"]}
            theirs = await expect(other, "delta", t=ok["t"])
            assert "origin" not in theirs                     # nobody else learns who, nor the tempids
        async with trio_websocket.open_websocket_url(server.url) as ws:
            await bootstrap_raw(ws, _hello("client-e2e"))
            await ws.send_message(_submit(9, 1, "Ann"))
            again = await expect(ws, "tx-ok", req=9)
            assert (again["t"], again["tempids"]) == (ok["t"], ok["tempids"])
        assert server.health()["t"] == ok["t"]
        # a replica resuming from before the submission sees its origin in the catch-up from the log
        async with trio_websocket.open_websocket_url(server.url) as ws:
            await ws.send_message(msg("hello", credentials=None, t=ok["t"] - 1, db_id=server.health()["db_id"],
                                      client="client-e2e"))
            delta = await expect(ws, "delta", t=ok["t"])
            assert delta["origin"]["seq"] == 1

    trio.run(main)


def test_kill_9_between_commit_and_answer_the_resubmission_gets_the_original_t(servers):
    server = servers.start()
    store = server.store

    def committed() -> int | None:
        with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as db:
            row = db.execute("SELECT t FROM submission WHERE client = 'client-e2e' AND seq = 1").fetchone()
        return None if row is None else row[0]

    async def main():
        async with trio_websocket.open_websocket_url(server.url) as ws:
            await bootstrap_raw(ws, _hello("client-e2e"))
            await ws.send_message(_submit(1, 1, "Ann"))
            # the commit is on disk: kill the server before this client reads any answer
            t = await trio.to_thread.run_sync(lambda: wait_until(committed))
            server.kill()
        restarted = await trio.to_thread.run_sync(lambda: servers.start(store.name, port=server.port))
        async with trio_websocket.open_websocket_url(restarted.url) as ws:
            await bootstrap_raw(ws, _hello("client-e2e"))
            await ws.send_message(_submit(2, 1, "Ann"))
            again = await expect(ws, "tx-ok", req=2)
            assert again["t"] == t
            await ws.send_message(_submit(3, 2, "Bob"))
            assert (await expect(ws, "tx-ok", req=3))["t"] == t + 1
        assert restarted.health()["t"] == t + 1

    trio.run(main)


def test_an_old_peer_is_told_to_upgrade(servers):
    server = servers.start()

    async def main():
        async with trio_websocket.open_websocket_url(server.url) as ws:
            await ws.send_message(json.dumps({"v": 1, "type": "hello", "credentials": None, "t": None,
                                              "db_id": None}))
            m = json.loads(await ws.get_message())
            assert m["v"] == 1 and m["code"] == "protocol/version" and "upgrade" in m["message"]

    trio.run(main)



# -- the client session: a queue of submissions, resent until answered


def test_the_client_queues_offline_resends_after_reconnects_and_settles_on_its_own_delta():
    db, _ = server_db(1)
    t0 = db.max_tx - TX0
    c, fx = client(replica_of(db, db_id="db"), client_id="me")
    assert msgs(fx) == [Hello("me", t0, "db", "me", batch=True)]
    # written before the server answered the hello: queued, not refused
    c, fx = run(client_step, c, SubmitTx("a", [{"db/id": "x", "p/name": "A"}]), SubmitTx("b", [{"p/name": "B"}]))
    assert [n.kind for n in of(Notify, fx)] == ["tx-queued", "tx-queued"] and not msgs(fx)
    assert [(q.req, q.seq) for q in c.queue] == [("a", 1), ("b", 2)]
    c, fx = run(client_step, c, Received(Welcome("db", t0, "resume", 1)))
    sent = [m for m in msgs(fx) if type(m) is Submit]
    assert [(m.req, m.client, m.seq) for m in sent] == [("a", "me", 1), ("b", "me", 2)] and c.phase == LIVE
    # the connection drops before any answer: nothing is unknown, both are sent again in order
    c, fx = run(client_step, c, Closed("gone"))
    assert [n.kind for n in of(Notify, fx)] == ["closed"] and len(c.queue) == 2
    c, _ = run(client_step, c, Opened(1.0))
    c, fx = run(client_step, c, Received(Welcome("db", t0, "resume", 1)))
    assert [(m.req, m.seq) for m in msgs(fx) if type(m) is Submit] == [("a", 1), ("b", 2)]
    # the server commits "a"; its delta (with the origin) settles it before the answer comes
    r = transact(db, sent[0].tx_data, instant=T)
    d = delta_from_report(r)
    mine = Delta(d.t, d.tx, d.instant, d.datoms, d.schema, Origin("me", 1, answer_tempids(r)))
    c, fx = run(client_step, c, Received(mine))
    (ok,) = [n for n in of(Notify, fx) if n.kind == "tx-ok"]
    assert ok.data["req"] == "a" and ok.data["t"] == d.t and ok.data["tempids"]["x"] == answer_tempids(r)["x"]
    assert [q.req for q in c.queue] == ["b"]
    _, fx = run(client_step, c, Received(TxOk("a", d.t, answer_tempids(r))))
    assert fx == []                                   # the late answer is a duplicate
    # a session restored with its queue never reuses a seq
    restored = new_client_session(c.config, c.replica, c.queue, 1)
    assert restored.next_seq == 3 and restored.queue == (Queued("b", 2, [{"p/name": "B"}]),)



# -- the replica: submit, offline, pending, listen


def test_submit_works_offline_and_every_write_lands_once_when_the_server_is_back(servers):
    from datsync.shell import open_replica
    from tests.sync_server import FAST_RECONNECT

    server = servers.start()

    async def main():
        async with open_replica(server.url, **FAST_RECONNECT) as rep:
            t0 = rep.t
            assert await trio.to_thread.run_sync(server.stop) == 0
            await rep._changes.until(lambda: not rep.connected)
            kinds = []
            rep.listen(lambda c: kinds.append((c.kind, c.pending and c.pending.req)))
            ps = [await rep.submit([{"db/id": "p", "person/name": f"off{i}"}]) for i in range(3)]
            assert rep.pending == tuple(ps) and [p.status for p in ps] == ["pending"] * 3
            assert [k for k, _ in kinds] == ["local"] * 3
            # applied here at once, under provisional ids; the confirmed database is the server's
            provisional = [p.tempids["p"] for p in ps]
            assert [datoms(rep.db, "eavt", e, "person/name")[0].v for e in provisional] == ["off0", "off1", "off2"]
            assert not datoms(rep.confirmed_db, "avet", "person/name", "off0") and rep.t == t0
            await trio.to_thread.run_sync(lambda: servers.start(server.store.name, port=server.port))
            results = [await p.result() for p in ps]
            assert [r.t for r in results] == [t0 + 1, t0 + 2, t0 + 3]  # in the order submitted
            assert rep.pending == () and [p.status for p in ps] == ["confirmed"] * 3
            assert [k for k, _ in kinds].count("confirmed") == 3
            for i, r in enumerate(results):
                (d,) = datoms(rep.db, "avet", "person/name", f"off{i}")   # one entity, under one id
                assert d.e == r.tempids["p"] == rep.resolve(provisional[i]) and d.e != provisional[i]

    trio.run(main)


def test_a_rejected_submission_is_reported_with_its_code(servers):
    from datsync.shell import open_replica

    server = servers.start()

    async def main():
        async with open_replica(server.url) as rep:
            ann = (await rep.transact([{"db/id": "a", "person/name": "Ann"}])).tempids["a"]
            await rep.transact([{"person/name": "Bob"}])
            changes = []
            rep.listen(changes.append)
            p = await rep.submit([["db/add", ann, "person/name", "Bob"]])  # Bob's name is taken
            assert p.conflict is not None and p.conflict[0] == "transact/unique"  # nor does it apply here
            with pytest.raises(TxError) as e:
                await p.result()
            assert e.value.code == "db.error/unique-conflict" and p.status == "rejected"
            (rejected,) = [c for c in changes if c.kind == "rejected"]
            assert rejected.pending is p and rejected.error.code == "db.error/unique-conflict"
            assert rejected.pending.tx_data == [["db/add", ann, "person/name", "Bob"]]
            assert datoms(rep.db, "eavt", ann, "person/name")[0].v == "Ann" and rep.pending == ()

    trio.run(main)



def test_a_long_queue_is_sent_a_window_at_a_time_and_passing_refusals_are_retried():
    db, _ = server_db(1)
    t0 = db.max_tx - TX0
    c, _ = client(replica_of(db, db_id="db"), client_id="me", max_inflight=3)
    c, _ = run(client_step, c, *[SubmitTx(i, [{"db/id": "x", "p/name": f"q{i}"}]) for i in range(5)])
    c, fx = run(client_step, c, Received(Welcome("db", t0, "resume", 1)))
    assert [m.seq for m in msgs(fx) if type(m) is Submit] == [1, 2, 3]        # a window of 3
    c, fx = run(client_step, c, Received(TxRejected(0, "sync/overloaded", "busy")))
    assert not of(Notify, fx) and len(c.queue) == 5                            # kept, not rejected
    assert [m.seq for m in msgs(fx) if type(m) is Submit] == []
    c, fx = run(client_step, c, Received(TxRejected(1, "db.error/cas-failed", "no")))
    assert [n.data["seq"] for n in of(Notify, fx) if n.kind == "tx-rejected"] == [2]
    assert sorted(m.seq for m in msgs(fx) if type(m) is Submit) == [1, 4]      # room again: the next ones
    c, fx = run(client_step, c, Timer(5.0))
    assert [m.seq for m in msgs(fx) if type(m) is Submit] == []                # the window is full again
