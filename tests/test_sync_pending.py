"""Pending transactions on a replica: the view, provisional ids, confirmation, rejection, rebase,
local conflicts, a queue kept across a new bootstrap."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from datsync.core import empty_db, kw, transact
from datsync.core.sync import (
    PROVISIONAL_BASE,
    EidMap,
    SyncError,
    add_pending,
    apply_delta,
    carry_pending,
    delta_from_report,
    pending_tx_for_server,
    reject,
    replica_of,
    resolve,
)
from datsync.core.sync.delta import Origin

ONE = kw("db.cardinality/one")
SCHEMA = {
    "p/name": {"db/valueType": kw("db.type/string"), "db/cardinality": ONE, "db/unique": kw("db.unique/identity")},
    "p/boss": {"db/valueType": kw("db.type/ref"), "db/cardinality": ONE},
    "p/n": {"db/valueType": kw("db.type/long"), "db/cardinality": ONE},
}
EIDS = [EidMap.identity(), EidMap.capped(low=101, start=5000)]


class Server:
    """A server database and the deltas of what it commits (with their origin when submitted)."""

    def __init__(self) -> None:
        self.db = transact(empty_db(SCHEMA, flavor="datomic"), [{"p/name": "A", "p/n": 0}]).db_after

    def commit(self, tx, origin: tuple[str, int] | None = None):
        r = transact(self.db, tx, instant=dt.datetime(2021, 1, 1, tzinfo=dt.UTC))
        self.db = r.db_after
        d = delta_from_report(r)
        if origin is not None:
            tempids = {k: v for k, v in r.tempids.items() if type(k) in (int, str)}
            d = dataclasses.replace(d, origin=Origin(*origin, tempids))
        return d

    def submit(self, replica, p):
        """Commit the pending transaction ``p`` as the server would (its delta, origin included)."""
        return self.commit(pending_tx_for_server(replica, p), (p.client, p.seq))


def names(db) -> dict:
    return {k[3]: k[0] for k in db.aevt.prefix_list(("p/name",))}


def view_attrs(replica, e) -> dict:
    return {k[1]: k[3] for k in replica.view.eavt.prefix_list((e,))}


@pytest.mark.parametrize("eids", EIDS)
def test_a_pending_write_is_seen_at_once_with_a_provisional_id(eids):
    srv = Server()
    rep = replica_of(srv.db, eids)
    rep, p = add_pending(rep, [{"db/id": "b", "p/name": "B", "p/boss": ("p/name", "A")}], "c", 1)
    b = p.tempids["b"]
    assert b >= PROVISIONAL_BASE and p.conflict is None and rep.pending == (p,)
    assert "B" not in names(rep.db)  # the confirmed database stays the server's
    assert names(rep.view)["B"] == b and view_attrs(rep, b)["p/boss"] == names(rep.db)["A"]


@pytest.mark.parametrize("eids", EIDS)
def test_confirmation_maps_provisional_ids_everywhere(eids):
    srv = Server()
    rep = replica_of(srv.db, eids)
    rep, p1 = add_pending(rep, [{"db/id": "b", "p/name": "B"}], "c", 1)
    b = p1.tempids["b"]
    rep, p2 = add_pending(rep, [["db/add", b, "p/n", 7], {"p/name": "C", "p/boss": b}], "c", 2)
    # the second refers to a provisional id the server has not confirmed: not submittable yet
    with pytest.raises(SyncError) as e:
        pending_tx_for_server(rep, p2)
    assert e.value.code == "sync/provisional-id"
    rep, out = apply_delta(rep, srv.submit(rep, p1))
    real = names(rep.db)["B"]
    assert out.confirmed.key == ("c", 1) and out.confirmed.tempids["b"] == real
    assert resolve(rep, b) == real and real < PROVISIONAL_BASE
    assert [p.key for p in rep.pending] == [("c", 2)]
    assert rep.pending[0].tx_data[0] == ["db/add", real, "p/n", 7]  # later pending txs refer to it now
    c = rep.pending[0].tempids[next(iter(rep.pending[0].tempids))]
    assert view_attrs(rep, real)["p/n"] == 7 and view_attrs(rep, c)["p/boss"] == real
    assert not any(k[0] == b for k in rep.view.eavt)  # never one entity under two ids
    rep, out = apply_delta(rep, srv.submit(rep, rep.pending[0]))
    assert out.confirmed.key == ("c", 2) and rep.pending == () and rep.view is rep.db
    assert resolve(rep, c) == names(rep.db)["C"]


@pytest.mark.parametrize("eids", EIDS)
def test_rebase_on_another_clients_delta_keeps_provisional_ids(eids):
    srv = Server()
    rep = replica_of(srv.db, eids)
    rep, p = add_pending(rep, [{"db/id": "b", "p/name": "B", "p/n": 1}], "c", 1)
    for i in range(3):
        rep, out = apply_delta(rep, srv.commit([{"p/name": f"X{i}"}]))
        assert out.applied and out.confirmed is None
        assert rep.pending[0].tempids == p.tempids and names(rep.view)["B"] == p.tempids["b"]
        assert set(names(rep.view)) == {"A", "B", *(f"X{j}" for j in range(i + 1))}


@pytest.mark.parametrize("eids", EIDS)
def test_a_rejected_transaction_leaves_no_trace(eids):
    srv = Server()
    rep = replica_of(srv.db, eids)
    base = rep
    rep, p1 = add_pending(rep, [{"db/id": "b", "p/name": "B"}], "c", 1)
    rep, p2 = add_pending(rep, [{"db/id": "d", "p/name": "D"}], "c", 2)
    rep, dropped = reject(rep, "c", 1)
    assert dropped.key == ("c", 1) and [p.key for p in rep.pending] == [("c", 2)]
    assert "B" not in names(rep.view) and names(rep.view)["D"] == p2.tempids["d"]
    assert resolve(rep, p1.tempids["b"]) == p1.tempids["b"]  # a provisional id that never resolves
    rep, _ = reject(rep, "c", 2)
    assert rep.view is rep.db and set(rep.view.eavt) == set(base.db.eavt)
    assert reject(rep, "c", 2) == (rep, None)


def test_a_pending_transaction_that_no_longer_applies_stays_queued_and_is_flagged():
    srv = Server()
    rep = replica_of(srv.db)
    rep, p = add_pending(rep, [["db/cas", ("p/name", "A"), "p/n", 0, 1]], "c", 1)
    assert p.conflict is None and view_attrs(rep, names(rep.db)["A"])["p/n"] == 1
    rep, _ = apply_delta(rep, srv.commit([["db/add", ("p/name", "A"), "p/n", 5]]))
    [q] = rep.pending
    assert q.key == ("c", 1) and q.conflict is not None and q.conflict[0]
    assert view_attrs(rep, names(rep.db)["A"])["p/n"] == 5  # skipped in the view, still queued
    rep, _ = apply_delta(rep, srv.commit([["db/add", ("p/name", "A"), "p/n", 0]]))
    assert rep.pending[0].conflict is None and view_attrs(rep, names(rep.db)["A"])["p/n"] == 1


def test_a_duplicate_pending_id_is_refused():
    rep, _ = add_pending(replica_of(Server().db), [{"p/name": "B"}], "c", 1)
    with pytest.raises(SyncError) as e:
        add_pending(rep, [{"p/name": "C"}], "c", 1)
    assert e.value.code == "sync/duplicate-pending"


def test_a_renamed_attributes_old_name_applies_under_its_current_name():
    srv = Server()
    srv.commit([{"db/id": kw("p/boss"), "db/ident": kw("p/manager")}])
    rep = replica_of(srv.db, EIDS[1])
    a = names(rep.db)["A"]
    rep, p = add_pending(rep, [{"db/id": "b", "p/name": "B", "p/boss": a}], "c", 1)
    assert view_attrs(rep, p.tempids["b"])["p/manager"] == a
    rep, out = apply_delta(rep, srv.submit(rep, p))
    assert out.confirmed and view_attrs(rep, names(rep.db)["B"])["p/manager"] == a


@pytest.mark.parametrize("eids", EIDS)
def test_the_queue_survives_a_new_bootstrap(eids):
    srv = Server()
    old = replica_of(srv.db, eids)
    old, p1 = add_pending(old, [{"db/id": "b", "p/name": "B", "p/boss": names(old.db)["A"]}], "c", 1)
    old, _ = add_pending(old, [["db/add", p1.tempids["b"], "p/n", 3]], "c", 2)
    srv.commit([{"p/name": "X"}])
    new = carry_pending(old, replica_of(srv.db, EidMap.capped(low=101, start=9000)))
    assert [p.key for p in new.pending] == [("c", 1), ("c", 2)] and new.pending[0].tempids == p1.tempids
    b = p1.tempids["b"]
    assert view_attrs(new, b) == {"p/name": "B", "p/boss": names(new.db)["A"], "p/n": 3}
    assert new.next_provisional >= old.next_provisional
    new, out = apply_delta(new, srv.submit(new, new.pending[0]))
    assert out.confirmed.key == ("c", 1) and resolve(new, b) == names(new.db)["B"]


def test_resolved_ids_follow_a_new_bootstrap_with_another_id_map():
    srv = Server()
    rep = replica_of(srv.db, EIDS[1])
    rep, p = add_pending(rep, [{"db/id": "b", "p/name": "B"}], "c", 1)
    rep, _ = apply_delta(rep, srv.submit(rep, p))
    new = carry_pending(rep, replica_of(srv.db, EidMap.capped(low=101, start=9000)))
    assert resolve(new, p.tempids["b"]) == names(new.db)["B"] != names(rep.db)["B"]
