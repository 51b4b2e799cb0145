"""Conformance of the browser client on the real DataScript (in Node.js) with the Python replica: both
follow a real `datsync serve` through random transaction streams (every value type, schema changes
mid-stream: new attributes, renames, cardinality changes; writes from both clients; a server
restart), and at every checked ``t`` the DataScript database holds the Python replica's datoms
(e, a, v, tx) exactly, and the same queries give the same answers."""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import json
import queue
import random
import socket
import subprocess
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest

from datsync.core import kw, q
from datsync.core.sync import encode_value, server_datoms
from datsync.core.values import Symbol
from datsync.shell import connect
from tests.sync_server import FAST_RECONNECT, ROOT, Servers, wait_until
from tests.test_web_client import require_node

ONE, MANY = kw("db.cardinality/one"), kw("db.cardinality/many")


def _attr(ident: str, vtype: str, card: Any = ONE, **more: Any) -> dict:
    return {"db/ident": kw(ident), "db/valueType": kw(f"db.type/{vtype}"), "db/cardinality": card, **more}


SCHEMA_TX = [
    _attr("p/name", "string") | {"db/unique": kw("db.unique/identity")},
    _attr("p/n", "long"),
    _attr("p/score", "double"),
    _attr("p/ok", "boolean"),
    _attr("p/kind", "keyword"),
    _attr("p/at", "instant"),
    _attr("p/id", "uuid") | {"db/unique": kw("db.unique/value")},
    _attr("p/price", "bigdec"),
    _attr("p/big", "bigint"),
    _attr("p/sym", "symbol"),
    _attr("p/bytes", "bytes"),
    _attr("p/friend", "ref", MANY),
    _attr("p/best", "ref"),
    _attr("p/tags", "string", MANY, **{"db/index": True}),
    _attr("p/pos", "tuple", **{"db/tupleTypes": [kw("db.type/long"), kw("db.type/long")]}),
]
COMPOSITE_TX = [_attr("p/name+n", "tuple", **{"db/tupleAttrs": [kw("p/name"), kw("p/n")]})]

QUERIES = [
    ("[:find ?e ?n :where [?e :p/name ?n]]", '[:find ?e ?n :where [?e "p/name" ?n]]'),
    ("[:find ?n ?m :where [?e :p/name ?n] [?e :p/friend ?f] [?f :p/name ?m]]",
     '[:find ?n ?m :where [?e "p/name" ?n] [?e "p/friend" ?f] [?f "p/name" ?m]]'),
    ("[:find ?e ?k :where [?e :p/kind ?k]]", '[:find ?e ?k :where [?e "p/kind" ?k]]'),
    ("[:find ?e ?t :where [?e :p/tags ?t]]", '[:find ?e ?t :where [?e "p/tags" ?t]]'),
    ("[:find ?e ?tx :where [?e :p/name _ ?tx]]", '[:find ?e ?tx :where [?e "p/name" _ ?tx]]'),
]


class NodeReplica:
    """tests/web/conformance.mjs: the browser client in Node, driven over stdin/stdout."""

    def __init__(self, node: str, url: str, token: str | None = None, scopes: list | None = None):
        probe = subprocess.run([node, "-e", "process.exit(typeof WebSocket === 'function' ? 0 : 1)"])
        flags = [] if probe.returncode == 0 else ["--experimental-websocket"]
        self.proc = subprocess.Popen([node, *flags, str(ROOT / "tests" / "web" / "conformance.mjs"), url,
                                      token or "", *([json.dumps(scopes)] if scopes else [])],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, cwd=ROOT)
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def ask(self, request: dict, timeout: float = 30.0) -> dict:
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no answer to {request['cmd']} within {timeout} s") from None
        assert line is not None, "the Node replica exited:\n" + self.proc.stderr.read()[-4000:]
        answer = json.loads(line)
        if "error" in answer and "code" in answer and answer["code"] is None:
            self.proc.kill()
            raise AssertionError(f"{answer['error']}\n{self.proc.stderr.read()[-4000:]}")
        return answer

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(AssertionError, OSError, ValueError):
                self.ask({"cmd": "close"}, timeout=10)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


class Stream:
    """A random server transaction stream over the schema above (with its schema changes)."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.names: list[str] = []
        self.count = 0
        self.attrs = {"n": "p/n", "tags": "p/tags", "kind": "p/kind", "score": "p/score"}
        self.extra: list[str] = []
        self.pool: list[str] = []

    def value(self, kind: str) -> Any:
        r = self.rng
        return {
            "p/n": lambda: r.choice([0, -3, 7, 2**40, r.randrange(1000)]),
            "p/score": lambda: r.choice([1.0, 2.5, -0.125, 3.0, 1e20]),
            "p/ok": lambda: r.random() < 0.5,
            "p/kind": lambda: kw(r.choice(["kind/a", "kind/b", "kind/c"])),
            "p/at": lambda: dt.datetime(2024, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=r.randrange(10**7),
                                                                                 microseconds=r.randrange(10**6)),
            "p/id": lambda: uuid.UUID(int=r.getrandbits(128)),
            "p/price": lambda: decimal.Decimal(r.choice(["1.50", "-0.001", "12345678901234567890.1", "0E+2"])),
            "p/big": lambda: r.choice([5, 2**70, -(2**64) - 1]),
            "p/sym": lambda: Symbol(r.choice(["s", "ns/s"])),
            "p/bytes": lambda: bytes(r.randrange(256) for _ in range(r.randrange(5))),
            "p/tags": lambda: r.choice(["red", "green", "~tilde", "blue"]),
            "p/pos": lambda: (r.randrange(9), r.randrange(9)),
        }[kind]()

    def entity(self) -> dict:
        self.count += 1
        name = f"n{self.count}"
        ent: dict[str, Any] = {"db/id": name, "p/name": name}
        for a in ("p/n", "p/score", "p/ok", "p/kind", "p/at", "p/id", "p/price", "p/big", "p/sym", "p/bytes",
                  "p/tags", "p/pos"):
            if self.rng.random() < 0.5:
                cur = self.attrs.get(a.split("/")[1], a)
                ent[cur] = self.value(a)
        if self.pool and self.rng.random() < 0.6:
            ent["p/friend"] = [("p/name", self.rng.choice(self.pool))]
        if self.pool and self.rng.random() < 0.3:
            ent["p/best"] = ("p/name", self.rng.choice(self.pool))
        self.names.append(name)
        return ent

    def tx(self, step: int) -> list:
        r = self.rng
        self.pool = list(self.names)  # entities committed before this transaction
        if step % 7 == 6:
            return self.schema_change()
        if not self.names or r.random() < 0.35:
            return [self.entity() for _ in range(r.randrange(1, 4))]
        who = ("p/name", r.choice(self.names))
        roll = r.random()
        if roll < 0.3:
            a = r.choice(["p/n", "p/kind", "p/score", "p/at", "p/price", "p/pos", "p/id"])
            return [["db/add", who, self.attrs.get(a.split("/")[1], a), self.value(a)]]
        if roll < 0.45:
            return [["db/add", who, self.attrs["tags"], self.value("p/tags")],
                    ["db/add", who, "p/friend", ("p/name", r.choice(self.names))]]
        if roll < 0.6 and len(self.names) > 3:
            self.names.remove(who[1])
            return [["db/retractEntity", who]]
        if roll < 0.75 and self.extra:
            return [["db/add", who, r.choice(self.extra), r.randrange(100)]]
        return [self.entity()]

    def schema_change(self) -> list:
        r = self.rng
        roll = r.random()
        if roll < 0.4 or not self.extra:
            name = f"x/a{len(self.extra)}"
            self.extra.append(name)
            return [_attr(name, "long", r.choice([ONE, MANY]))]
        if roll < 0.7:
            key = r.choice(["n", "tags", "kind"])
            old = self.attrs[key]
            new = f"r{self.count}/{key}"
            self.attrs[key] = new
            return [{"db/id": kw(old), "db/ident": kw(new)}]
        return [{"db/id": kw(r.choice(self.extra)), "db/cardinality": MANY}]


def js_entity(i: int, names: list[str]) -> dict:
    """An entity written through the browser client, in DataScript's JS spelling (JSON values typed by
    the schema: keyword, instant, uuid, bigdec, bigint, double, tuple, lookup refs)."""
    ent: dict[str, Any] = {":db/id": "js", "p/name": f"js{i}", "p/score": 2, "p/kind": ":kind/js",
                           "p/at": "2024-05-01T10:00:00.250Z", "p/id": str(uuid.UUID(int=i + 7)),
                           "p/price": "1.50", "p/big": "123456789012345678901", "p/pos": [i, 1]}
    if names:
        ent["p/friend"] = [["p/name", names[0]]]
    return ent


def offline_todo(tag: str) -> dict:
    """An entity with no unique attribute: committed twice, it would be two entities."""
    return {":db/id": "w", "p/tags": [tag], "p/n": 1}


def encoded(datoms: Any) -> list:
    return sorted(json.dumps([e, a, encode_value(v), tx], sort_keys=True) for e, a, v, tx in datoms)


def check(rep: Any, node: NodeReplica, t: int) -> None:
    rep.wait_for_t(t, timeout=20)
    answer = node.ask({"cmd": "wait", "t": t, "queries": [js for _, js in QUERIES]})
    assert answer.get("t") == t, answer
    assert rep.t == t
    assert answer["view"] in (True, None), f"only in the conn's view / only confirmed: {answer['view']}"
    py = encoded(server_datoms(rep.replica))
    js = sorted(json.dumps(d, sort_keys=True) for d in answer["datoms"])
    assert js == py, f"datoms differ at t={t}: only JS {sorted(set(js) - set(py))[:5]}, only Python " \
                     f"{sorted(set(py) - set(js))[:5]}"
    for (py_q, _), rows in zip(QUERIES, answer["q"]):
        expected = sorted(json.dumps([encode_value(v) for v in row]) for row in q(py_q, rep.db))
        assert sorted(json.dumps(row) for row in rows) == expected, py_q


@pytest.fixture
def servers(tmp_path):
    s = Servers(tmp_path)
    yield s
    s.close()


@pytest.mark.parametrize("seed", [1, 2])
def test_browser_client_follows_the_server_like_the_python_replica(servers, seed):
    node_exe = require_node()
    rng = random.Random(seed)
    server = servers.start(schema=False)
    port = server.port
    stream = Stream(rng)
    with connect(server.url, **FAST_RECONNECT) as rep:
        rep.transact(SCHEMA_TX)
        t = rep.transact(COMPOSITE_TX).t
        node = NodeReplica(node_exe, server.url)
        try:
            check(rep, node, t)
            for step in range(36):
                if step % 5 == 4:  # a write through the browser client
                    r = node.ask({"cmd": "transact", "tx": [js_entity(step, stream.names)]})
                    assert "error" not in r, r
                    t = r["t"]
                    rep.wait_for_t(t, timeout=20)
                    e = r["tempids"]["js"]
                    assert q("[:find ?n . :in $ ?e :where [?e :p/name ?n]]", rep.db, e) == f"js{step}"
                    assert r["tx"] == r["tempids"][":db/current-tx"] == 0x20000000 + t
                else:
                    t = rep.transact(stream.tx(step)).t
                if step == 20:  # the server restarts: both replicas reconnect and resume from t
                    # a write sent just before a reload (its answer may be lost) and one made offline
                    queued = node.ask({"cmd": "transact", "nowait": True, "tx": [offline_todo("sent")]})
                    assert queued["pending"] == 1
                    assert node.ask({"cmd": "reload"})["pending"] in (0, 1)
                    assert server.stop() == 0
                    queued = node.ask({"cmd": "transact", "nowait": True, "tx": [offline_todo("offline")]})
                    assert queued["pending"] >= 1
                    assert node.ask({"cmd": "reload"})["pending"] >= 1
                    # offline, the queued write shows in what the application reads, not in the server's
                    tagged = '[:find ?e :where [?e "p/tags" "offline"]]'
                    seen = node.ask({"cmd": "view", "q": tagged})
                    assert len(seen["view"]) == 1 and seen["confirmed"] == [], seen
                    assert [w["conflict"] for w in seen["pending"]] == [None] * len(seen["pending"]), seen
                    server = servers.start(server.store.name, port=port, schema=False)
                    wait_until(lambda: node.ask({"cmd": "pending"})["pending"] == 0, timeout=20)
                    t = max(t, node.ask({"cmd": "wait", "t": t})["t"])
                    rep.wait_for_t(t, timeout=20)
                    for tag in ("sent", "offline"):  # each committed exactly once
                        assert q("[:find (count ?e) . :in $ ?g :where [?e :p/tags ?g]]", rep.db, tag) == 1
                if step % 3 == 2 or step == 20:
                    check(rep, node, t)
            check(rep, node, t)
            late = NodeReplica(node_exe, server.url)  # bootstraps after the renames (aliases in the snapshot)
            try:
                check(rep, late, t)
                r = late.ask({"cmd": "transact", "tx": [[":db/add", ["p/name", "n1"], "p/tags", "late"]]})
                assert "error" not in r, r
                t = r["t"]
                check(rep, late, t)
                check(rep, node, t)
            finally:
                late.close()
            rejected = node.ask({"cmd": "transact", "tx": [{":db/id": "x", "p/id": str(uuid.UUID(int=11))}]})
            assert rejected.get("code", "").startswith("db.error/"), rejected
        finally:
            node.close()


def test_browser_client_reports_the_net_change_while_writes_are_queued(servers):
    """With writes of its own queued, each server change reaches the conn's d.listen as its datoms and
    the queued layer's difference, never as the whole database again; the conn then equals the server."""
    node_exe = require_node()
    server = servers.start("net.sqlite")
    with connect(server.url, **FAST_RECONNECT) as rep:
        t = rep.transact([{"person/name": f"p{i}", "person/n": i} for i in range(300)]).t  # 600 datoms
        node = NodeReplica(node_exe, server.url)
        try:
            node.ask({"cmd": "wait", "t": t})
            node.ask({"cmd": "reports"})
            for i in range(15):
                node.ask({"cmd": "transact", "nowait": True, "tx": [{"person/name": f"js{i}", "person/n": 1000 + i}]})
                t = rep.transact([{"person/name": f"py{i}", "person/n": 2000 + i}]).t
            wait_until(lambda: node.ask({"cmd": "pending"})["pending"] == 0, timeout=20)
            t = max(t, node.ask({"cmd": "wait", "t": t})["t"])
            check(rep, node, t)
            names = "[:find (count ?e) . :where [?e :person/name]]"
            assert q(names, rep.db) == 330
            sizes = node.ask({"cmd": "reports"})["sizes"]
            assert len(sizes) >= 30 and max(sizes) <= 8, sizes  # a full report would hold 1,200+ datoms
        finally:
            node.close()


def test_browser_client_moves_to_the_next_server_and_presents_its_token(servers, tmp_path):
    node_exe = require_node()
    server = servers.start("token.sqlite", "--token", "s3cret")
    dead = f"ws://127.0.0.1:{free_port()}/"
    node = NodeReplica(node_exe, f"{dead},{server.url}", token="s3cret")
    try:
        r = node.ask({"cmd": "transact", "tx": [{":db/id": "a", "person/name": "Ann", "person/n": 1}]})
        assert r["t"] == 2 and r["tempids"]["a"] > 0, r
        assert node.ask({"cmd": "wait", "t": 2})["t"] == 2
    finally:
        node.close()
    wrong = NodeReplica(node_exe, server.url, token="wrong")
    try:
        r = wrong.ask({"cmd": "transact", "tx": [{"person/name": "Bob"}]})
        assert r.get("code") == "protocol/unauthorized", r
    finally:
        wrong.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_browser_client_holds_its_share_under_a_policy(servers, tmp_path):
    """Under `datsync serve --tokens --policy` (the todos example) the browser replica holds exactly what
    the Python replica of the same principal holds, follows a membership change live, subscribes to a
    scope, and its forbidden writes are refused with the policy's code."""
    from datsync.core.policy import parse_policy, visible_datoms
    from datsync.shell.connection import Connection
    from datsync.shell.store_sqlite import SqliteStore
    from tests.test_cli_commands import ok
    from tests.test_policy_cli import POLICY, TODOS

    node_exe = require_node()
    store = tmp_path / "todos.sqlite"
    ok("import", str(store), str(TODOS / "schema.edn"))
    server = servers.start("todos.sqlite", "--tokens", str(TODOS / "tokens.edn"), "--policy", POLICY, schema=False)
    node = NodeReplica(node_exe, server.url, token="alice-token")
    scoped = NodeReplica(node_exe, server.url, token="carol-token", scopes=[["team", ["blue"]]])
    try:
        with connect(server.url, token="alice-token", **FAST_RECONNECT) as alice, \
                connect(server.url, token="bob-token", **FAST_RECONNECT) as bob, \
                connect(server.url, token="root-token", **FAST_RECONNECT) as root:
            check(alice, node, alice.t)
            titles = '[:find ?t :where [_ "todo/title" ?t]]'
            assert node.ask({"cmd": "view", "q": titles})["confirmed"] == [["water the plants"]]
            bike = q('[:find ?t . :where [?t :todo/title "fix the bike"]]', bob.db)
            refused = node.ask({"cmd": "transact", "tx": [[":db/add", bike, "todo/done", True]]})
            assert refused.get("code") == "sync.error/forbidden", refused
            red = q('[:find ?l . :where [?l :list/name "red chores"]]', alice.db)
            r = node.ask({"cmd": "transact", "tx": [{"todo/title": "buy milk", "todo/list": red,
                                                      "todo/owner": ["user/id", "alice"]}]})
            assert "error" not in r, r
            check(alice, node, r["t"])
            t = root.transact([["db/retract", ("user/id", "alice"), "user/teams", ("team/name", "red")],
                               ["db/add", ("user/id", "alice"), "user/teams", ("team/name", "blue")]]).t
            check(alice, node, t)
            assert node.ask({"cmd": "view", "q": titles})["confirmed"] == [["fix the bike"]]

            # carol (a member of the parent team) asked for the blue team's scope only
            answer = scoped.ask({"cmd": "wait", "t": t})
            st = SqliteStore(store)
            try:
                db = Connection.recover(st).db
            finally:
                st.close()
            policy = parse_policy(Path(POLICY).read_text())
            share = visible_datoms(policy, db, {"user/id": "carol"}, [("team", ("blue",))])
            assert sorted(json.dumps([d.e, d.a, encode_value(d.v), d.tx]) for d in share) == \
                sorted(json.dumps(x) for x in answer["datoms"])
    finally:
        node.close()
        scoped.close()


def test_browser_client_changes_its_scopes_live(servers, tmp_path):
    """replica.setScopes under a policy: the datoms that enter and leave arrive at the replica's t (no
    new bootstrap); the DataScript database then holds exactly the server's share for the new scopes
    at that t, the same datoms (tx ids included) as a Python replica that made the same change; an
    unknown scope is refused with the policy's code and changes nothing; later commits follow the
    new scopes."""
    from datsync.core.policy import parse_policy, visible_datoms
    from datsync.shell.connection import Connection
    from datsync.shell.store_sqlite import SqliteStore
    from tests.test_cli_commands import ok
    from tests.test_policy_cli import POLICY, TODOS

    node_exe = require_node()
    store = tmp_path / "todos.sqlite"
    ok("import", str(store), str(TODOS / "schema.edn"))
    server = servers.start("todos.sqlite", "--tokens", str(TODOS / "tokens.edn"), "--policy", POLICY, schema=False)
    policy = parse_policy(Path(POLICY).read_text())
    titles = '[:find ?t :where [_ "todo/title" ?t]]'

    def share(scopes: list, t: int) -> list:
        from datsync.core.history import as_of

        st = SqliteStore(store)
        try:
            db = Connection.recover(st).db
        finally:
            st.close()
        held = visible_datoms(policy, as_of(db, t), {"user/id": "carol"}, [(n, tuple(a)) for n, a in scopes])
        return sorted(json.dumps([d.e, d.a, encode_value(d.v)]) for d in held)

    def held(answer: dict) -> list:
        return sorted(json.dumps([e, a, v]) for e, a, v, _ in answer["datoms"])

    node = NodeReplica(node_exe, server.url, token="carol-token", scopes=[["team", ["blue"]]])
    try:
        with connect(server.url, token="carol-token", scopes=[("team", ["blue"])], **FAST_RECONNECT) as py, \
                connect(server.url, token="root-token", **FAST_RECONNECT) as root:
            t = root.transact([{"db/id": "l", "list/name": "red errands", "list/team": ("team/name", "red")},
                               {"todo/title": "post the letter", "todo/list": "l"}]).t
            before = node.ask({"cmd": "wait", "t": t})
            assert held(before) == share([["team", ["blue"]]], t)
            assert node.ask({"cmd": "view", "q": titles})["confirmed"] == [["fix the bike"]]

            both = [["team", ["blue"]], ["team", ["red"]]]
            came = node.ask({"cmd": "scopes", "scopes": both})
            assert came["t"] == t, came  # applied at the replica's t: no new bootstrap
            assert ["todo/title", "water the plants", True] in [x[1:] for x in came["came"]], came
            py.set_scopes([(n, a) for n, a in both])
            check(py, node, t)  # the same datoms as the Python replica, tx ids included
            assert held(node.ask({"cmd": "wait", "t": t})) == share(both, t)

            gone = node.ask({"cmd": "scopes", "scopes": [["team", ["red"]]]})
            assert ["todo/title", "fix the bike", False] in [x[1:] for x in gone["came"]], gone
            py.set_scopes([("team", ["red"])])
            check(py, node, t)
            assert held(node.ask({"cmd": "wait", "t": t})) == share([["team", ["red"]]], t)
            assert sorted(node.ask({"cmd": "view", "q": titles})["confirmed"]) == [["post the letter"],
                                                                                   ["water the plants"]]

            refused = node.ask({"cmd": "scopes", "scopes": [["no-such-scope", []]]})
            assert refused.get("code") == "policy/unknown-scope", refused
            assert held(node.ask({"cmd": "wait", "t": t})) == share([["team", ["red"]]], t)

            # the new scopes are followed: a blue todo does not arrive, a red one does
            t = root.transact([{"db/id": "b", "list/name": "b2", "list/team": ("team/name", "blue")},
                               {"todo/title": "blue one", "todo/list": "b"},
                               {"db/id": "r", "list/name": "r2", "list/team": ("team/name", "red")},
                               {"todo/title": "red one", "todo/list": "r"}]).t
            check(py, node, t)
            assert held(node.ask({"cmd": "wait", "t": t})) == share([["team", ["red"]]], t)
            # after a server restart the replica reconnects with the scopes in force, not those it began with
            port = server.port
            assert server.stop() == 0
            server = servers.start(store.name, "--tokens", str(TODOS / "tokens.edn"), "--policy", POLICY,
                                   schema=False, port=port)
            t = root.transact([{"db/id": "b", "list/name": "b3", "list/team": ("team/name", "blue")},
                               {"todo/title": "blue two", "todo/list": "b"}]).t
            assert held(node.ask({"cmd": "wait", "t": t})) == share([["team", ["red"]]], t)

            # a change asked while the server is away waits, and is made once the replica is live again
            assert server.stop() == 0
            wait_until(lambda: node.ask({"cmd": "pending"})["status"] == "offline", timeout=20)
            assert node.ask({"cmd": "scopes", "nowait": True, "scopes": [["team", ["blue"]]]})["status"] == "offline"
            server = servers.start(store.name, "--tokens", str(TODOS / "tokens.edn"), "--policy", POLICY,
                                   schema=False, port=port)
            [settled] = node.ask({"cmd": "settle"})["answers"]
            assert settled["t"] >= t and settled["came"] > 0, settled
            t = settled["t"]
            assert held(node.ask({"cmd": "wait", "t": t})) == share([["team", ["blue"]]], t)
    finally:
        node.close()
