"""Transactions that go together: a group commit delivered to a session in one step (and one
``deltas`` message), a ``deltas`` message applied by a replica with pending writes (re-based once),
the answers of a batch handed over in one go; each gives what one after another gives."""

from __future__ import annotations

import dataclasses
import datetime as dt
from unittest import mock

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from datsync.core import TX0, kw
from datsync.core.sync import (
    AuthDecision,
    ClientConfig,
    Deltas,
    Hello,
    Notify,
    Opened,
    Received,
    Send,
    ServerConfig,
    SubmitTx,
    TxCommitted,
    TxCommittedBatch,
    Welcome,
    client_step,
    decode,
    encode,
    new_client_session,
    new_server_session,
    replica_of,
    server_step,
)
from datsync.core.sync.codec import with_origin
from datsync.core.sync.delta import Delta, Origin
from datsync.core.sync.pending import needs_rebase, rebase
from datsync.shell.client import ReplicaConnection
from datsync.shell.connection import Connection
from datsync.shell.store import open_store
from tests.test_sync_pending import ONE, Server

T = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
ME = "me"


# -- the server session: a group commit in one step


def fake_delta(t: int, origin: Origin | None = None) -> Delta:
    return Delta(t, TX0 + t, T, ((TX0 + t, "db/txInstant", T, True), (101, "p/n", t, True)), origin=origin)


def live_server_session(client: str | None, batch: bool, **cfg):
    s = new_server_session(ServerConfig(db_id="d", **cfg), 0)
    s, _ = server_step(s, Opened(0.0))
    s, _ = server_step(s, Received(Hello(None, 0, "d", client, batch=batch)))
    s, _ = server_step(s, AuthDecision("anyone"))
    return s


def commits(ts, origin_client: str = ME):
    out = []
    for t in ts:
        d = fake_delta(t, Origin(origin_client, t, {"x": 100 + t}) if t % 2 else None)
        out.append(TxCommitted(d, encode(dataclasses.replace(d, origin=None))))
    return out


def sent_deltas(fx) -> list:
    """The deltas the effects send, a ``deltas`` message's one by one."""
    out = []
    for f in fx:
        if type(f) is Send:
            m = decode(f.data)
            out += list(m.deltas) if type(m) is Deltas else [m]
    return out


@pytest.mark.parametrize("batch", [True, False])
@pytest.mark.parametrize("client", [ME, "other"])
@pytest.mark.parametrize("cfg", [{}, {"window": 3}, {"window": 2, "max_buffered": 5}])
def test_a_group_commit_reaches_a_session_as_its_commits_one_after_another_would(batch, client, cfg):
    events = commits(range(1, 8))
    one = live_server_session(client, batch, **cfg)
    fx_one: list = []
    for e in events:
        one, fx = server_step(one, e)
        fx_one += fx
    together, fx_together = server_step(live_server_session(client, batch, **cfg), TxCommittedBatch(tuple(events)))
    assert together == one
    assert sent_deltas(fx_together) == sent_deltas(fx_one)
    if batch and together.phase == "live":  # a client that reads batches gets one message
        assert len([f for f in fx_together if type(f) is Send]) == 1


def test_a_group_commit_after_a_gap_catches_up_as_one_after_another_would():
    s = live_server_session(ME, True)
    s, _ = server_step(s, TxCommitted(fake_delta(1)))
    events = commits([3, 4])  # t=2 never reached this session: it reads the log
    one, fx_one = s, []
    for e in events:
        one, fx = server_step(one, e)
        fx_one += fx
    together, fx_together = server_step(s, TxCommittedBatch(tuple(events)))
    assert together == one and fx_together == fx_one and together.phase == "catching-up"


def test_a_delta_with_its_origin_is_the_shared_bytes_with_the_origin_added():
    for origin in (Origin("c", 3, {"x": 101, "y": 102}), Origin("ç-ü", 1, {}), Origin("c", 2, None)):
        d = fake_delta(7, origin)
        assert with_origin(encode(dataclasses.replace(d, origin=None)), origin) == encode(d)


# -- the replica: a `deltas` message with pending writes


def live_client(db):
    c = new_client_session(ClientConfig(credentials="me", client_id=ME), replica_of(db, db_id="db"))
    c, _ = client_step(c, Opened(0.0))
    c, _ = client_step(c, Received(Welcome("db", c.replica.t, "resume", 100)))
    return c


def scenario():
    """A replica with five pending writes (new entities, a reference to an earlier one's new entity, a
    compare-and-swap, an upsert by a unique name), and the deltas that follow: its own submissions
    confirmed, other clients' transactions that make some of them conflict and apply again."""
    srv = Server()
    c = live_client(srv.db)
    txs = [[{"db/id": "b", "p/name": "B", "p/n": 1}],
           [{"db/id": "c", "p/name": "C", "p/boss": "b"}],
           [["db/cas", ("p/name", "A"), "p/n", 0, 10]],
           [{"db/id": "u", "p/name": "U", "p/n": 5}],
           [{"db/id": "d", "p/name": "D"}]]
    for i, tx in enumerate(txs, 1):
        c, _ = client_step(c, SubmitTx(i, tx))
    deltas = [
        srv.commit([{"db/id": "b", "p/name": "B", "p/n": 1}], (ME, 1)),     # mine: b confirmed
        srv.commit([{"p/name": "A", "p/n": 3}]),                            # the cas no longer applies
        srv.commit([{"db/id": "u", "p/name": "U", "p/n": 7}]),              # my upsert now finds U
        srv.commit([{"db/id": "c", "p/name": "C", "p/boss": ("p/name", "B")}], (ME, 2)),
        srv.commit([{"p/name": "A", "p/n": 0}]),                            # the cas applies again
        srv.commit([["db/retractEntity", ("p/name", "U")]]),                # the upsert creates U again
        srv.commit([{"db/id": "x", "p/name": "X"}]),
    ]
    return c, deltas


def replica_seen(r):
    """What an application sees of a notified replica (re-based as the shell does before showing it)."""
    if r is None:
        return None
    if needs_rebase(r):
        r = rebase(r)
    pending = [(p.client, p.seq, p.tx_data, dict(p.tempids), p.conflict) for p in r.pending]
    return (r.t, list(r.db.eavt), list(r.view.eavt), pending, dict(r.resolved), r.db.heavt and list(r.db.heavt))


def effects_seen(fx) -> list:
    out = []
    for f in fx:
        if type(f) is Notify:
            data = {k: (replica_seen(v) if k == "replica" else v) for k, v in f.data.items()}
            out.append(("notify", f.kind, data))
        elif type(f) is Send:
            out.append(("send", f.data))
        else:
            out.append(f)
    return out


@pytest.mark.parametrize("groups", [[7], [1, 6], [3, 4], [2, 2, 3], [6, 1]])
def test_a_deltas_message_gives_the_replica_and_the_notifications_one_delta_after_another_gives(groups):
    c, deltas = scenario()
    one, fx_one = c, []
    for d in deltas:
        one, fx = client_step(one, Received(d))
        fx_one += fx
    together, fx_together, i = c, [], 0
    for n in groups:
        together, fx = client_step(together, Received(Deltas(tuple(deltas[i:i + n]))))
        fx_together += fx
        i += n
    assert replica_seen(together.replica) == replica_seen(one.replica)
    assert not needs_rebase(together.replica)
    assert together.replica.next_provisional == one.replica.next_provisional
    assert effects_seen(fx_together) == effects_seen(fx_one)
    assert [f.kind for f in fx_one if type(f) is Notify].count("tx-ok") == 2
    assert any(p.conflict for p in one.replica.pending) is False and len(one.replica.pending) == 3


def test_a_replica_notified_inside_a_deltas_message_shows_its_view_re_based():
    c, deltas = scenario()
    _, fx = client_step(c, Received(Deltas(tuple(deltas))))
    replicas = [f.data["replica"] for f in fx if type(f) is Notify and f.kind == "delta"]
    assert [needs_rebase(r) for r in replicas] == [True] * 6 + [False]
    for r in replicas:
        assert list(r.view.eavt) == list(rebase(r).view.eavt)


def test_listeners_see_the_same_changes_from_a_deltas_message_as_from_its_deltas_one_by_one():
    c, deltas = scenario()

    def changes(messages) -> list:
        seen: list = []

        async def main() -> None:
            rep = ReplicaConnection("ws://127.0.0.1:9/", client_id=ME)
            rep.session = c
            for i, tx in enumerate(q.tx_data for q in c.queue):  # the application's handles
                from datsync.shell.client import PendingTx

                rep._pending[i + 1] = PendingTx(i + 1, tx, i + 1)
            rep.listen(seen.append)
            for m in messages:
                rep._feed(Received(m))

        trio.run(main)
        return [(ch.kind, ch.t, list(ch.db_before.eavt), list(ch.db_after.eavt), ch.tx_data,
                 ch.pending and ch.pending.seq) for ch in seen]

    one = changes(deltas)
    assert [k for k, *_ in one] == ["confirmed", "rebased", "rebased", "confirmed", "rebased", "rebased", "rebased"]
    assert changes([Deltas(tuple(deltas))]) == one
    assert changes([Deltas(tuple(deltas[:3])), Deltas(tuple(deltas[3:]))]) == one


# -- the connection: a group commit, its answers handed over together


def test_transactions_waiting_together_commit_in_one_durable_append_and_are_answered_together(tmp_path):
    store = open_store(tmp_path / "s.sqlite")
    conn = Connection.recover(store)
    handed: list = []
    conn.on_answers = lambda tickets: handed.append([t.context for t in tickets])

    async def main() -> None:
        tickets = [conn.enqueue([{"db/ident": kw("p/n"), "db/valueType": kw("db.type/long"),
                                  "db/cardinality": ONE}], context="schema")]
        tickets += [conn.enqueue([{"p/n": i}], ("c", i), context=i) for i in range(1, 5)]
        tickets.append(conn.enqueue([{"p/n": "not a long"}], ("c", 5), context=5))
        tickets.append(conn.enqueue([{"p/n": 9}]))  # no context: answered through outcome only
        async with trio.open_nursery() as n:
            await n.start(conn.run_writer)
            assert [(await conn.outcome(t)).t for t in tickets[:5]] == [1, 2, 3, 4, 5]
            with pytest.raises(Exception, match="long"):
                await conn.outcome(tickets[5])
            assert (await conn.outcome(tickets[6])).t == 6
            n.cancel_scope.cancel()

    trio.run(main)
    assert conn.appends == 1 and conn.t == 6
    assert handed == [["schema", 1, 2, 3, 4, 5]]
    assert [e.t for e in store.read_log(0)] == [1, 2, 3, 4, 5, 6]
    store.close()


# -- a re-base that writes the pending transactions' datoms again is the re-base that transacts them


FORMS = st.one_of(
    st.builds(lambda n, k: [{"db/id": f"t{k}", "p/n": n}], st.integers(0, 3), st.integers(0, 1)),
    st.builds(lambda n: [{"db/id": "a", "p/n": n}, {"db/id": "b", "p/n": n + 1}], st.integers(0, 3)),
    st.builds(lambda name, n: [{"db/id": "u", "p/name": name, "p/n": n}], st.sampled_from("ABU"), st.integers(0, 3)),
    st.builds(lambda n: [["db/cas", ("p/name", "A"), "p/n", n, n + 1]], st.integers(0, 3)),
    st.builds(lambda n: [{"db/id": "c", "p/boss": ("p/name", "A"), "p/n": n}], st.integers(0, 3)),
    st.builds(lambda n: [["db/add", "x", "p/n", n]], st.integers(0, 3)),
)
SERVER_TXS = st.one_of(
    st.builds(lambda name, n: [{"p/name": name, "p/n": n}], st.sampled_from("ABU"), st.integers(0, 3)),
    st.builds(lambda name: [["db/retractEntity", ("p/name", name)]], st.sampled_from("BU")),
)


def transacted_again(r):
    """``rebase`` with every pending transaction transacted again."""
    return rebase(r.replace(pending=tuple(dataclasses.replace(p, view_datoms=None) for p in r.pending)))


def rebased_values(r) -> tuple:
    v = r.view
    return (list(v.eavt), list(v.aevt), list(v.avet), list(v.vaet), v.max_tx, v.max_eid, r.next_provisional,
            [(p.tempids, p.provisional, p.conflict) for p in r.pending])


@settings(max_examples=200, deadline=None)
@given(st.lists(FORMS, min_size=1, max_size=5), st.lists(SERVER_TXS, max_size=4))
def test_writing_the_pending_datoms_again_gives_the_view_transacting_them_again_gives(pending, server_txs):
    from datsync.core.sync import add_pending, apply_delta

    srv = Server()
    r = replica_of(srv.db)
    for seq, tx in enumerate(pending, 1):
        r, _ = add_pending(r, tx, ME, seq)
    for tx in server_txs:
        try:
            d = srv.commit(tx)
        except Exception:  # the server refuses it (a retractEntity of nothing is fine; others may not be)
            continue
        r, _ = apply_delta(r, d)
        assert rebased_values(r) == rebased_values(transacted_again(r))
    assert rebased_values(rebase(r)) == rebased_values(transacted_again(r))


# -- a pending transaction written at its provisional ids at once is the one relabelled afterwards


PENDING_FORMS = st.one_of(
    FORMS,
    st.builds(lambda n: [{"db/id": "a", "p/n": n, "p/boss": "b"}, {"db/id": "b", "p/n": n, "p/boss": "a"}],
              st.integers(0, 3)),
    st.builds(lambda name, n: [["db/add", "x", "p/name", name], ["db/add", "y", "p/boss", "x"],
                               {"db/id": "x", "p/n": n}], st.sampled_from("ABUV"), st.integers(0, 3)),
    st.builds(lambda name, n: [{"db/id": "t0", "p/boss": {"p/name": name, "p/n": n}}], st.sampled_from("AUV"),
              st.integers(0, 3)),
    st.builds(lambda n: [{"p/n": n}, {"p/n": n + 1, "p/boss": ("p/name", "U")}], st.integers(0, 3)),
    st.builds(lambda n: [["db/add", 4000 + n, "p/n", n], {"db/id": "t1", "p/n": n}], st.integers(0, 1)),
)
STEPS = st.lists(st.one_of(
    st.tuples(st.just("add"), PENDING_FORMS),
    st.tuples(st.just("server"), SERVER_TXS),
    st.tuples(st.just("confirm"), st.integers(0, 4)),
    st.tuples(st.just("reject"), st.integers(0, 4)),
), min_size=1, max_size=8)


def run_pending_steps(steps) -> list:
    """The replica's view, provisional ids and pending transactions after each step."""
    from datsync.core.sync import add_pending, apply_delta, reject

    srv = Server()
    r = replica_of(srv.db)
    seen = []
    for seq, (kind, arg) in enumerate(steps, 1):
        if kind == "add":
            r, p = add_pending(r, arg, ME, seq)
            seen.append((p.tempids, p.provisional, p.conflict))
        elif kind in ("confirm", "reject") and r.pending:
            p = r.pending[arg % len(r.pending)]
            if kind == "reject":
                r, _ = reject(r, p.client, p.seq)
            else:
                try:
                    d = srv.submit(r, p)
                except Exception:
                    continue
                r, _ = apply_delta(r, d)
        elif kind == "server":
            try:
                d = srv.commit(arg)
            except Exception:
                continue
            r, _ = apply_delta(r, d)
        seen.append(rebased_values(r))
    return seen


@settings(max_examples=300, deadline=None)
@given(STEPS)
def test_pending_transactions_written_at_their_provisional_ids_give_what_relabelling_gives(steps):
    from datsync.core.sync import pending

    at_once = run_pending_steps(steps)
    with mock.patch.object(pending, "_transact_at_provisional_ids", lambda *_: None):
        relabelled = run_pending_steps(steps)
    assert at_once == relabelled


# -- nobody looks at the databases in between: a `deltas` message applied in one go


def test_deltas_applied_in_one_go_give_the_replica_one_by_one_gives():
    from datsync.core.sync import EidMap, apply_delta
    from datsync.core.sync.replica import apply_deltas

    for eids in (None, EidMap.capped(low=101, start=5000)):
        c, deltas = scenario()
        r0 = c.replica if eids is None else replica_of(Server().db, eids).replace(pending=c.replica.pending)
        r0 = rebase(r0)
        one, confirmed_one = r0, []
        for d in deltas:
            one, out = apply_delta(one, d)
            confirmed_one.append(out.confirmed)
        together, confirmed = apply_deltas(r0, deltas)
        assert replica_seen(together) == replica_seen(one) and together.eids == one.eids
        assert together.next_provisional == one.next_provisional
        assert confirmed == confirmed_one and sum(x is not None for x in confirmed) == 2
    assert apply_deltas(r0, deltas[1:]) is None  # not the next ones: one by one


def test_a_session_nobody_watches_applies_a_deltas_message_in_one_go_and_settles_the_same():
    c, deltas = scenario()
    quiet = dataclasses.replace(c, config=dataclasses.replace(c.config, each_delta=False))
    one, fx_one = c, []
    for d in deltas:
        one, fx = client_step(one, Received(d))
        fx_one += fx
    together, fx_together = client_step(quiet, Received(Deltas(tuple(deltas))))
    assert replica_seen(together.replica) == replica_seen(one.replica)
    assert together.queue == one.queue and together.submitted == one.submitted and together.answers == one.answers

    def settled(fx) -> list:
        return [(f.data["req"], f.data["seq"], f.data["t"], f.data["tempids"]) for f in fx
                if type(f) is Notify and f.kind == "tx-ok"]

    def submits(fx) -> list:
        return [f.data for f in fx if type(f) is Send and b'"submit"' in f.data]

    assert settled(fx_together) == settled(fx_one) and len(settled(fx_one)) == 2
    assert submits(fx_together) == submits(fx_one)
    notified = [f.data for f in fx_together if type(f) is Notify and f.kind == "delta"]
    assert [n["t"] for n in notified] == [d.t for d in deltas]
    assert [n["replica"] is None for n in notified] == [True] * 6 + [False]
    assert notified[-1]["replica"] is together.replica
