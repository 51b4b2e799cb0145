"""A deterministic simulation of the sync protocol: one server, N replicas, an in-memory network.

With ``Schedule.exactly_once`` the clients have ids and queue their submissions (the queue, the
confirmed replica and the next ``seq`` survive a client restart, as a replica store keeps them), go
offline for a while and keep writing, and the server crashes between a commit and its answer. Then
every submitted transaction commits at most once, every one a client was told committed did so
exactly once, and after the calm every queue is empty.

Everything is driven by a ``Schedule`` (``datsync.core.sync.strategies``) and its ``seed``: the
server's and the clients' transactions, message delays, duplicates, reordering, disconnects,
client restarts, slow clients. The shell's part (carrying out effects, the transaction log,
snapshots, the clock) is played by ``Sim``; the protocol is the real ``ServerSession`` and
``ClientSession``, and every message goes through the real codec as bytes.

``simulate(schedule)`` runs the chaotic phase, checking invariants after every event, then calms the
network and runs until every replica is live, and checks convergence. A failure raises
``SimFailure`` naming the schedule: ``simulate(Schedule(seed=..., ...))`` replays it exactly.
"""

from __future__ import annotations

import datetime as _dt
import decimal
import random
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from pyrsistent import pmap

from datsync.core import TxError, basis_t, empty_db, kw, sym, transact
from datsync.core.datomic import EPOCH
from datsync.core.sync import (
    APPLIED,
    AuthDecision,
    Authorize,
    ClientConfig,
    ClientSession,
    Close,
    Closed,
    EidMap,
    LogRead,
    Notify,
    Opened,
    Replica,
    RequestLogRead,
    RequestSnapshot,
    RequestTransact,
    Send,
    SendStream,
    ServerConfig,
    ServerSession,
    SetTimer,
    SnapshotReady,
    SubmitTx,
    Sync,
    Timer,
    TxAccepted,
    TxCommitted,
    TxFailed,
    answer_tempids,
    apply_delta,
    client_step,
    delta_from_report,
    encode,
    encode_snapshot,
    new_client_session,
    new_server_session,
    receive,
    replica_schema,
    server_datoms,
    server_step,
)
from datsync.core.sync.client import LIVE
from datsync.core.sync.delta import Origin
from datsync.core.sync.eids import PROVISIONAL_BASE
from datsync.core.sync.evolve import evolve
from datsync.core.sync.strategies import (
    LABELS,
    RENAMED,
    SCHEMA_ALTERATIONS,
    SYNC_SCHEMA,
    Schedule,
    schedules,
)
from datsync.core.sync.submissions import EXPIRED, EXPIRED_ANSWER, Answer, Submissions, recall, record
from datsync.core.values import value_rank

SERVER_CONFIG = ServerConfig(
    db_id="sim", window=4, max_buffered=10, chunk_size=40, heartbeat_interval=1.0, heartbeat_timeout=6.0,
    handshake_timeout=5.0,
)
CAPPED = EidMap.capped(1 << 29, low=101, start=100_000)


class SimFailure(AssertionError):
    """An invariant failed; the message says which and how to replay."""


def typed(ds: Any) -> set:
    """Datoms ``(e, a, v, tx)`` keyed with their value's type (so 1, 1.0 and True differ)."""
    return {(d[0], d[1], _type_name(d[2]), value_rank(d[2]), d[2], d[3]) for d in ds}


def _type_name(v: Any) -> str:
    return "tuple" if isinstance(v, tuple) else type(v).__name__


def server_view(db: Any) -> set:
    return typed((k[0], k[1], k[3], k[4]) for k in db.eavt)


def check_replica(replica: Replica, db: Any, where: str) -> None:
    """The replica equals the server database ``db`` through its translation, and its own four
    indexes agree."""
    if replica.t != basis_t(db):
        raise SimFailure(f"{where}: replica t={replica.t} but server db t={basis_t(db)}")
    got, want = typed(server_datoms(replica)), server_view(db)
    if got != want:
        raise SimFailure(f"{where}: replica differs from the server at t={replica.t}: "
                         f"missing {sorted(map(repr, want - got))[:5]} extra {sorted(map(repr, got - want))[:5]}")
    if replica.server_schema != db.schema:
        raise SimFailure(f"{where}: server schema not propagated at t={replica.t}")
    if replica.db.schema != replica_schema(db.schema):
        raise SimFailure(f"{where}: replica schema not derived from the server schema at t={replica.t}")
    r = replica.db
    eav = set(r.eavt)
    if list(r.aevt) != sorted(eav, key=lambda k: (k[1], k[0], *k[2:])) or len(r.aevt) != len(eav):
        raise SimFailure(f"{where}: AEVT disagrees with EAVT")
    avet = {(k[0], k[1], k[2], k[3], k[4]) for k in r.avet}
    if avet != {(a, rk, v, e, tx) for e, a, rk, v, tx in eav if a in r.props.indexed}:
        raise SimFailure(f"{where}: AVET disagrees with EAVT and the schema")
    if set(r.vaet) != {(v, a, e, tx) for e, a, _, v, tx in eav if a in r.props.ref}:
        raise SimFailure(f"{where}: VAET disagrees with EAVT and the schema")


@dataclass
class Conn:
    """One connection: its server session, and the messages in flight each way."""

    id: int
    node: int
    server: ServerSession
    to_server: list = field(default_factory=list)
    to_client: list = field(default_factory=list)
    server_timer: float | None = None
    open: bool = True
    last_to_server: float = 0.0
    last_to_client: float = 0.0


@dataclass
class Node:
    """One client process: its session, connection, timer and bookkeeping for the checks."""

    index: int
    session: ClientSession
    conn: Conn | None = None
    timer: float | None = None
    slow_until: float = 0.0
    down_until: float = 0.0
    submitted: dict = field(default_factory=dict)
    counter: int = 0
    ok: int = 0
    rejected: int = 0


class Sim:
    """The shell of a server and ``schedule.clients`` replicas over an in-memory network."""

    def __init__(self, schedule: Schedule):
        self.s = schedule
        self.rng = random.Random(schedule.seed)
        self.now = 0.0
        self.seq = 0
        self.calm = False
        db = empty_db(SYNC_SCHEMA, flavor="datomic")
        self.db = db
        self.dbs: dict[int, Any] = {basis_t(db): db}
        self.log: dict[int, tuple] = {}
        self.conns: list[Conn] = []
        self.alterations = list(SCHEMA_ALTERATIONS)
        self.nodes = [
            Node(i, new_client_session(self._client_config(i))) for i in range(schedule.clients)
        ]
        self.stats: dict[str, int] = {}
        self.subs = Submissions()
        self.commits: dict[str, int] = {}

    def _client_config(self, i: int) -> ClientConfig:
        capped = self.s.capped[i] if i < len(self.s.capped) else False
        return ClientConfig(credentials=f"ok-{i}", eids=CAPPED if capped else EidMap.identity(),
                            heartbeat_interval=1.0, heartbeat_timeout=6.0,
                            client_id=f"client-{i}" if self.s.exactly_once else None)

    def count(self, what: str) -> None:
        self.stats[what] = self.stats.get(what, 0) + 1

    # -- the network

    def _enqueue(self, link: list, conn: Conn, data: bytes, to_client: bool) -> None:
        rng, s = self.rng, self.s
        delay = 0.0 if self.calm else rng.uniform(0, s.max_delay)
        at = self.now + delay
        last = conn.last_to_client if to_client else conn.last_to_server
        if self.calm or rng.random() >= s.reorder:
            at = max(at, last)  # FIFO, as a WebSocket
        if to_client:
            conn.last_to_client = max(last, at)
        else:
            conn.last_to_server = max(last, at)
        self.seq += 1
        link.append((at, self.seq, data))
        if not self.calm and rng.random() < s.duplicate:
            self.seq += 1
            link.append((at + rng.uniform(0, s.max_delay), self.seq, data))
            self.count("duplicated")

    def _next_due(self) -> tuple | None:
        best = None
        for node in self.nodes:
            if node.timer is not None and node.timer <= self.now and node.slow_until <= self.now:
                cand = (node.timer, 0, "client-timer", node)
                best = cand if best is None or cand[:2] < best[:2] else best
            c = node.conn
            if c is None or not c.open:
                continue
            if c.server_timer is not None and c.server_timer <= self.now:
                cand = (c.server_timer, 0, "server-timer", c)
                best = cand if best is None or cand[:2] < best[:2] else best
            for item in c.to_server:
                if item[0] <= self.now:
                    cand = (item[0], item[1], "to-server", c, item)
                    best = cand if best is None or cand[:2] < best[:2] else best
            if node.slow_until <= self.now:
                for item in c.to_client:
                    if item[0] <= self.now:
                        cand = (item[0], item[1], "to-client", c, item)
                        best = cand if best is None or cand[:2] < best[:2] else best
        return best

    def deliver_due(self) -> None:
        for _ in range(100_000):
            due = self._next_due()
            if due is None:
                return
            kind = due[2]
            if kind == "client-timer":
                node = due[3]
                node.timer = None
                self.client_event(node, Timer(self.now))
            elif kind == "server-timer":
                c = due[3]
                c.server_timer = None
                self.server_event(c, Timer(self.now))
            elif kind == "to-server":
                c, item = due[3], due[4]
                c.to_server.remove(item)
                self.server_event(c, receive(item[2]))
            else:
                c, item = due[3], due[4]
                c.to_client.remove(item)
                self.client_event(self.nodes[c.node], receive(item[2]))
        raise SimFailure("the network does not settle (a message storm)")

    # -- the server's shell

    def instant(self) -> _dt.datetime:
        return EPOCH + _dt.timedelta(days=1, seconds=self.now)

    def commit(self, tx: list, submission: tuple[str, int] | None = None) -> Any:
        """Transact on the server (recording the submission with it); on success broadcast the delta
        (encoded once, without its origin). Returns the report or the ``TxError``."""
        try:
            report = transact(self.db, tx, instant=self.instant())
        except TxError as e:
            self.count("server-tx-failed")
            return e
        self.db = report.db_after
        delta = delta_from_report(report)
        data = encode(delta)
        if submission is not None:
            answer = Answer(delta.t, answer_tempids(report))
            self.subs, _ = record(self.subs, submission[0], submission[1], answer)
            delta = evolve(delta, origin=Origin(submission[0], submission[1], answer.tempids))
        marker = _marker(tx)
        if marker is not None:
            self.commits[marker] = self.commits.get(marker, 0) + 1
            if self.commits[marker] > 1 and self.s.exactly_once:  # without ids a duplicated submit may commit again
                raise SimFailure(f"the submission labelled {marker!r} committed twice")
        self.dbs[delta.t] = self.db
        self.log[delta.t] = (delta, data)
        self.count("committed")
        for c in list(self.conns):
            if c.open:
                self.server_event(c, TxCommitted(delta, data))
        return report

    def server_event(self, c: Conn, event: Any) -> None:
        if not c.open:
            return
        c.server, fx = server_step(c.server, event)
        for f in fx:
            if not c.open or not self.server_effect(c, f):
                return

    def server_effect(self, c: Conn, f: Any) -> bool:
        """Carry out one effect of ``c``'s server session (False: the server crashed)."""
        t = type(f)
        if t is Send:
            self._enqueue(c.to_client, c, f.data, True)
        elif t is SendStream:
            for data in f.messages:
                self._enqueue(c.to_client, c, data, True)
        elif t is SetTimer:
            c.server_timer = f.at
        elif t is Close:
            self.close(c, f"server closed: {f.code} {f.reason}", from_server=True)
        elif t is Authorize:
            ok = isinstance(f.credentials, str) and f.credentials.startswith("ok")
            self.server_event(c, AuthDecision(f.credentials if ok else None))
        elif t is RequestLogRead:
            self.count("log-reads")
            deltas = tuple(self.log[t_] for t_ in range(f.from_t + 1, f.to_t + 1) if t_ in self.log)
            self.server_event(c, LogRead(f.seq, f.from_t, deltas))
        elif t is RequestSnapshot:
            snap_t, msgs = encode_snapshot(self.db, f.chunk_size, db_id=SERVER_CONFIG.db_id)
            self.count("snapshots")
            self.server_event(c, SnapshotReady(f.seq, snap_t, msgs))
        elif t is RequestTransact:
            sub = f.submission
            prior = None if sub is None else recall(self.subs, *sub)
            if prior is EXPIRED_ANSWER:
                self.server_event(c, TxFailed(f.req, EXPIRED, "too old"))
                return True
            if prior is not None:
                self.count("resubmissions-answered")
                self.server_event(c, TxAccepted(f.req, prior.t, prior.tempids))  # type: ignore[union-attr]
                return True
            res = self.commit(f.tx_data, sub)
            if isinstance(res, TxError):
                self.server_event(c, TxFailed(f.req, res.code, res.message))
            elif not self.calm and self.rng.random() < self.s.server_crash:
                self.crash()  # committed and durable; the answer is never sent
                return False
            else:
                self.server_event(c, TxAccepted(f.req, basis_t(res.db_after), answer_tempids(res)))
        else:
            raise SimFailure(f"unknown server effect {f!r}")
        return True

    def crash(self) -> None:
        """The server process dies (what it committed is durable): every connection drops."""
        self.count("server-crashes")
        for c in list(self.conns):
            if c.open:
                self.close(c, "server crashed", from_server=True)

    def close(self, c: Conn, reason: str, *, from_server: bool) -> None:
        if not c.open:
            return
        c.open = False
        c.to_client.clear()
        c.to_server.clear()
        node = self.nodes[c.node]
        if from_server:
            self.client_event(node, Closed(reason))
        else:
            c.server, _ = server_step(c.server, Closed(reason))
        if node.conn is c:
            node.conn = None
        self.count("closed")

    # -- the clients' shell

    def client_event(self, node: Node, event: Any) -> None:
        before = node.session.replica
        node.session, fx = client_step(node.session, event)
        for f in fx:
            t = type(f)
            c = node.conn
            if t is Send:
                if type(f.message) is Sync:
                    self.count("gap-syncs" if f.message.t is not None else "snapshot-requests")
                if c is not None and c.open:
                    self._enqueue(c.to_server, c, f.data, False)
            elif t is SetTimer:
                node.timer = f.at
            elif t is Close:
                if c is not None:
                    self.close(c, f"client closed: {f.code} {f.reason}", from_server=False)
                    node.conn = None
            elif t is Notify:
                self.on_notify(node, f, before)
                if f.kind == "delta":  # a `deltas` message notifies one delta after another
                    before = f.data["replica"]
            else:
                raise SimFailure(f"unknown client effect {f!r}")

    def on_notify(self, node: Node, n: Notify, before: Replica | None) -> None:
        where = f"client {node.index}"
        self.count(f"notify-{n.kind}")
        if n.kind == "delta":
            r = n.data["replica"]
            prev_t = None if before is None else before.t
            if before is not None and r.t != before.t + 1:
                raise SimFailure(f"{where}: a delta took the replica from t={prev_t} to t={r.t} (a gap skipped)")
            check_replica(r, self.dbs[r.t], where)
            again, out = apply_delta(r, n.data["delta"])
            if again is not r or out.kind == APPLIED:
                raise SimFailure(f"{where}: applying the delta at t={r.t} twice changed the replica")
        elif n.kind == "synced":
            r = n.data["replica"]
            check_replica(r, self.dbs[r.t], where)
        elif n.kind == "tx-ok":
            req = n.data["req"]
            marker, kind = node.submitted.pop(req)
            t = n.data["t"]
            r = node.session.replica
            if kind == "forbidden":
                raise SimFailure(f"{where}: a forbidden transaction was accepted")
            local = n.data["tempids"].get("new")
            if local is None:
                raise SimFailure(f"{where}: tx-ok for {req} without the tempid 'new': {n.data['tempids']}")
            remote = r.eids.to_remote(local)
            db = self.dbs[t]
            if db.eavt.first((remote, "item/label", value_rank(marker), marker)) is None:
                raise SimFailure(f"{where}: tempid 'new' -> local {local} -> server {remote}, "
                                 f"which does not hold item/label {marker!r} at t={t}")
            if r.t < t:
                raise SimFailure(f"{where}: tx-ok notified before the replica reached t={t}")
            if self.s.exactly_once and self.commits.get(marker) != 1:
                raise SimFailure(f"{where}: told {marker!r} committed, but it committed {self.commits.get(marker, 0)}"
                                 " times")
            node.ok += 1
        elif n.kind == "tx-rejected":
            req = n.data["req"]
            entry = node.submitted.pop(req, None)
            node.rejected += 1
            if entry is not None and entry[1] == "forbidden" and n.data["code"] != "sync/forbidden-op":
                raise SimFailure(f"{where}: a forbidden op was rejected with {n.data['code']}")
        elif n.kind == "tx-unknown":
            if self.s.exactly_once:
                raise SimFailure(f"{where}: a queued submission's outcome was reported unknown")
            node.submitted.pop(n.data["req"], None)

    # -- actions

    def connect(self, node: Node) -> None:
        c = Conn(len(self.conns), node.index, new_server_session(SERVER_CONFIG, basis_t(self.db)))
        self.conns.append(c)
        node.conn = c
        self.count("connects")
        self.server_event(c, Opened(self.now))
        self.client_event(node, Opened(self.now))

    def restart(self, node: Node) -> None:
        """The client process dies and comes back with the replica it had (its last t)."""
        if node.conn is not None:
            c = node.conn
            node.conn = None
            c.open = False
            c.server, _ = server_step(c.server, Closed("client process died"))
        s = node.session
        replica = s.replica
        if self.s.exactly_once:  # what a replica store keeps: the confirmed replica, the queue, the next seq
            if replica is not None:
                replica = replica.replace(pending=(), pending_db=None, resolved=pmap(),
                                          next_provisional=PROVISIONAL_BASE)
            node.session = new_client_session(self._client_config(node.index), replica, s.queue, s.next_seq)
        else:
            node.session = new_client_session(self._client_config(node.index), replica)
            node.submitted.clear()
        node.timer = None
        node.down_until = self.now + self.rng.uniform(0, 2)
        self.count("restarts")

    def server_tx(self) -> None:
        rng = self.rng
        if self.alterations and rng.random() < 0.08:
            self.commit(self.alterations.pop(0))
            return
        self.commit(random_tx(rng, self.db))

    def client_tx(self, node: Node) -> None:
        s = node.session
        if s.replica is None or (s.phase != LIVE and not self.s.exactly_once):
            return
        node.counter += 1
        req = f"r{node.counter}"
        marker = f"c{node.index}-{node.counter}"
        tx, kind = client_tx(self.rng, s.replica, marker)
        node.submitted[req] = (marker, kind)
        self.client_event(node, SubmitTx(req, tx))

    def step(self) -> None:
        rng, s = self.rng, self.s
        self.now += rng.uniform(0.01, 0.2)
        self.deliver_due()
        if rng.random() < s.server_tx:
            self.server_tx()
        for node in self.nodes:
            if node.conn is None and node.down_until <= self.now and rng.random() < 0.3:
                self.connect(node)
            elif rng.random() < s.client_tx:
                self.client_tx(node)
            if rng.random() < s.disconnect and node.conn is not None:
                self.close(node.conn, "network", from_server=True)
            if rng.random() < s.restart:
                self.restart(node)
            if s.offline and rng.random() < s.offline and node.conn is not None:
                self.close(node.conn, "offline", from_server=True)
                node.down_until = self.now + rng.uniform(2, 10)
                self.count("offline")
            if rng.random() < s.slow and node.slow_until <= self.now:
                node.slow_until = self.now + rng.uniform(1, 8)
                self.count("slowed")
                for _ in range(rng.randint(4, 14)):
                    self.server_tx()

    def settle(self, max_seconds: float = 300.0) -> None:
        """Calm the network and run until every replica is live at the server's t."""
        self.calm = True
        for node in self.nodes:
            node.slow_until = node.down_until = 0.0
        start = self.now
        while self.now - start < max_seconds:
            for node in self.nodes:
                if node.conn is None:
                    self.connect(node)
            self.deliver_due()
            if self.converged():
                return
            self.now += 0.25
        states = [(n.index, n.session.phase, n.session.t) for n in self.nodes]
        raise SimFailure(f"no convergence after {max_seconds}s of calm: server t={basis_t(self.db)}, clients {states}")

    def converged(self) -> bool:
        t = basis_t(self.db)
        for node in self.nodes:
            s = node.session
            if s.phase != LIVE or s.replica is None or s.replica.t != t or node.submitted or s.queue:
                return False
            c = node.conn
            if c is None or c.to_client or c.to_server:
                return False
        return True

    def check_convergence(self) -> None:
        for node in self.nodes:
            check_replica(node.session.replica, self.db, f"client {node.index} at quiescence")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------
# Random transactions (from the schedule's seed)


def _marker(tx: list) -> str | None:
    """The label of a client transaction's new entity (tempid ``"new"``), if ``tx`` is one."""
    for form in tx:
        if isinstance(form, dict) and form.get("db/id") == "new":
            return form.get("item/label")
    return None


def _label(rng: random.Random) -> str:
    return rng.choice(LABELS)


def random_tx(rng: random.Random, db: Any) -> list:
    """A server transaction over ``SYNC_SCHEMA`` (and the attributes the alterations add)."""
    label = _label(rng)
    lookup = ("item/label", _label(rng))
    k = rng.randrange(10)
    if k < 4:
        m: dict[str, Any] = {"item/label": label, "item/n": rng.randint(-3, 3)}
        if rng.random() < 0.4:
            m["item/ref"] = lookup
        if rng.random() < 0.3:
            m["item/refs"] = [("item/label", _label(rng))]
        if rng.random() < 0.3:
            m["item/tags"] = rng.sample(["red", "green", "~blue"], rng.randint(1, 2))
        if rng.random() < 0.3:
            m["item/when"] = EPOCH + _dt.timedelta(seconds=rng.randint(0, 10**9))
        if rng.random() < 0.2:
            m["item/price"] = rng.choice([decimal.Decimal("1.50"), decimal.Decimal("-0")])
            m["item/big"] = rng.choice([2**70, -(2**60), 7])
            m["item/ratio"] = rng.choice([1.0, 0.5, -2.0, 1e300])
        if rng.random() < 0.2:
            m["item/part"] = [{"item/label": _label(rng), "item/flag": rng.random() < 0.5}]
        if rng.random() < 0.2:
            m["item/blob"] = bytes(rng.randrange(256) for _ in range(3))
            m["item/sym"] = sym("?x")
            m["item/uri"] = "http://a.example/~x"
        if rng.random() < 0.2 and db.max_eid > 101:
            m["item/pair"] = (rng.randint(0, 3), rng.randint(101, db.max_eid))
        if "extra/note" in db.schema and rng.random() < 0.3:
            m["extra/note"] = rng.choice(["n", "~n"])
        if "extra/link" in db.schema and rng.random() < 0.3:
            m["extra/link"] = [lookup]
        return [m]
    if k == 4:
        return [["db/retractEntity", lookup]]
    if k == 5:
        return [["db/retract", lookup, "item/n", rng.randint(-3, 3)]]
    if k == 6:
        return [["db/cas", lookup, "item/n", rng.choice([None, 0, 1]), rng.randint(-3, 3)]]
    if k == 7:
        return [["db.fn/retractAttribute", lookup, "item/tags"], ["db/add", lookup, "item/code", rng.choice("xyz")]]
    if k == 8:
        attr = rng.choice([a for a in ("item/kind", "item/category", "item/sort") if kw(a) in db.idents])
        return [{"item/label": label, attr: kw(rng.choice(["k/a", "k/b"]))}]
    return [{"db/id": "x", "item/label": label}, {"item/label": _label(rng), "item/ref": "x"},
            {"db/id": "x", "item/_refs": lookup}]


def client_tx(rng: random.Random, replica: Replica, marker: str) -> tuple[list, str]:
    """A client's transaction in *local* ids: it always creates an entity under tempid ``"new"``
    labelled ``marker`` (so its tempid answer can be checked), and refers to existing entities by
    their local ids (so the translation is exercised), by the old or the new name of a renamed
    attribute."""
    db = replica.db

    def name(old: str) -> str:
        new = RENAMED[old]
        return new if new in replica.server_schema and rng.random() < 0.5 else old

    items = [k[0] for k in db.aevt.prefix_list(("item/label",))]
    other = rng.choice(items) if items else None
    k = rng.randrange(9)
    if k == 0:
        return [["db.fn/call", "my/fn"], {"db/id": "new", "item/label": marker}], "forbidden"
    m: dict[str, Any] = {"db/id": "new", "item/label": marker, "item/n": rng.randint(-3, 3)}
    tx: list = [m]
    if other is not None:
        if k == 1:
            m[name("item/ref")] = other
        elif k == 2:
            m["item/refs"] = [other, ("item/label", _label(rng))]
        elif k == 3:
            m[name("item/pair")] = (1, other)
        elif k == 4:
            m[name("item/ref").replace("/", "/_")] = other
        elif k == 5:
            tx.append(["db/add", other, "item/refs", "new"])
        elif k == 6:
            tx.append(["db/retractEntity", other])
        elif k == 7:
            tx.append({"db/id": other, "item/part": [{"item/label": marker + "-part"}]})
        else:
            tx.append(["db/cas", other, "item/n", None, 1])
    return tx, "normal"


def simulate(schedule: Schedule, sim_class: type[Sim] = Sim) -> Sim:
    """Run ``schedule`` (with ``sim_class``: a ``Sim`` or one that adds to it); ``SimFailure``
    (naming the schedule, to replay) if an invariant breaks."""
    sim = sim_class(schedule)
    try:
        for _ in range(schedule.steps):
            sim.step()
        sim.settle()
        sim.check_convergence()
    except SimFailure as e:
        raise SimFailure(f"{e}\n  replay: simulate({schedule!r})") from None
    return sim

# ------------------------------------------------------------------------------------------------
# The properties


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schedules(max_clients=4, max_steps=400))
def test_replicas_converge_under_any_schedule(schedule):
    """Convergence, idempotence, gap detection, schema propagation and tempid resolution (checked
    after every event by ``Sim``) for any delivery schedule; the failure message says how to replay."""
    simulate(schedule)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schedules(min_clients=3, max_clients=4, min_steps=250, max_steps=400))
def test_replicas_converge_under_long_busy_schedules(schedule):
    simulate(schedule)


def soak_schedule(seed: int) -> Schedule:
    """A schedule drawn from ``seed`` alone (for the seed sweep: ``simulate(soak_schedule(seed))``)."""
    r = random.Random(seed * 7 + 1)
    n = r.randint(1, 4)
    return Schedule(
        seed=seed, clients=n, capped=tuple(r.random() < 0.5 for _ in range(n)), steps=r.randint(100, 400),
        max_delay=r.choice([0.0, 0.05, 0.3, 1.0]), duplicate=r.choice([0, 0.05, 0.2]),
        reorder=r.choice([0, 0, 0.05, 0.2]), disconnect=r.choice([0, 0.01, 0.03]),
        restart=r.choice([0, 0.005, 0.02]), slow=r.choice([0, 0.005, 0.02]), server_tx=r.choice([0.05, 0.15, 0.4]),
        client_tx=r.choice([0, 0.05, 0.15]),
    )


@pytest.mark.parametrize("seed", range(12))
def test_seed_sweep(seed):
    simulate(soak_schedule(seed))


CHAOS = [
    Schedule(seed=1, clients=4, capped=(True, False, True, False), steps=300, max_delay=1.0, duplicate=0.2,
             reorder=0.2, disconnect=0.03, restart=0.02, slow=0.02, server_tx=0.4, client_tx=0.15),
    Schedule(seed=2, clients=3, capped=(False, True, False), steps=300, max_delay=0.05, duplicate=0.05,
             reorder=0.0, disconnect=0.01, restart=0.005, slow=0.03, server_tx=0.4, client_tx=0.1),
    Schedule(seed=3, clients=2, capped=(True, True), steps=250, max_delay=0.3, duplicate=0.0, reorder=0.05,
             disconnect=0.0, restart=0.03, slow=0.0, server_tx=0.15, client_tx=0.15),
    Schedule(seed=4, clients=4, capped=(False, True, True, False), steps=400, max_delay=0.3, duplicate=0.05,
             reorder=0.02, disconnect=0.02, restart=0.01, slow=0.01, server_tx=0.3, client_tx=0.1),
    Schedule(seed=5, clients=1, capped=(False,), steps=400, max_delay=0.0, duplicate=0.0, reorder=0.0,
             disconnect=0.0, restart=0.0, slow=0.04, server_tx=0.4, client_tx=0.05),
]


@pytest.mark.parametrize("schedule", CHAOS, ids=lambda s: f"seed={s.seed}")
def test_replicas_converge_under_chaos(schedule):
    sim = simulate(schedule)
    stats = sim.stats
    assert stats.get("committed", 0) > 20
    assert sum(n.ok for n in sim.nodes) > 0 or schedule.client_tx == 0


def test_every_path_is_exercised():
    """Across the fixed schedules the simulation reaches every recovery path at least once."""
    seen: dict[str, int] = {}
    for schedule in CHAOS:
        for k, v in simulate(schedule).stats.items():
            seen[k] = seen.get(k, 0) + v
    for path in ("notify-resync", "notify-tx-ok", "notify-tx-rejected", "notify-tx-unknown", "restarts",
                 "duplicated", "snapshots", "log-reads", "gap-syncs"):
        assert seen.get(path, 0) > 0, path


# ------------------------------------------------------------------------------------------------
# Exactly once


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schedules(max_clients=4, max_steps=400, exactly_once=True))
def test_submissions_commit_exactly_once_under_any_schedule(schedule):
    """Queued submissions across offline periods, client restarts, server crashes between commit and
    answer and duplicated messages: at most once always, exactly once when told, queues empty at the
    end, replicas converged."""
    simulate(schedule)


EXACTLY_ONCE = [
    Schedule(seed=11, clients=3, capped=(False, True, False), steps=350, max_delay=0.3, duplicate=0.2,
             reorder=0.05, disconnect=0.02, restart=0.02, slow=0.01, server_tx=0.15, client_tx=0.2,
             exactly_once=True, offline=0.02, server_crash=0.2),
    Schedule(seed=12, clients=2, capped=(True, False), steps=300, max_delay=1.0, duplicate=0.05, reorder=0.0,
             disconnect=0.03, restart=0.03, slow=0.0, server_tx=0.1, client_tx=0.25, exactly_once=True,
             offline=0.03, server_crash=0.1),
]


@pytest.mark.parametrize("schedule", EXACTLY_ONCE, ids=lambda s: f"seed={s.seed}")
def test_exactly_once_paths_are_exercised(schedule):
    sim = simulate(schedule)
    stats = sim.stats
    for path in ("server-crashes", "resubmissions-answered", "offline", "restarts", "notify-tx-queued"):
        assert stats.get(path, 0) > 0, (path, stats)
    assert sum(n.ok for n in sim.nodes) > 5 and all(not n.session.queue for n in sim.nodes)
