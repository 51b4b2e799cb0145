"""A policy on a real server: `datsync serve --tokens --policy` with the todos example; replicas of
different users hold exactly their share, follow team moves live, and forbidden writes are refused."""

from __future__ import annotations

import pytest
import trio

from datsync.core import TxError, datoms, q
from datsync.core.policy import parse_policy, visible_datoms
from datsync.shell.client import open_replica
from datsync.shell.store_sqlite import SqliteStore
from tests.sync_server import ServerProcess, Servers
from tests.test_cli_commands import ok

from .test_policy_cli import POLICY, TODOS

TOKENS = str(TODOS / "tokens.edn")


@pytest.fixture
def servers(tmp_path):
    s = Servers(tmp_path)
    yield s
    s.close()


def titles(db) -> set:
    return set(q("[:find [?t ...] :where [_ :todo/title ?t]]", db) or ())


def held(db) -> set:
    return {(d.e, d.a, d.v) for d in datoms(db, "eavt")}


def server_share(store, principal, scopes=None, t=None) -> set:
    """What the server's database (at ``t``: default its last), read back from the store, holds for
    ``principal`` subscribed to ``scopes``."""
    from datsync.core.history import as_of
    from datsync.shell.connection import Connection

    st = SqliteStore(store)
    try:
        db = Connection.recover(st).db
    finally:
        st.close()
    with open(POLICY) as f:
        policy = parse_policy(f.read())
    return {(d.e, d.a, d.v) for d in visible_datoms(policy, db if t is None else as_of(db, t), principal, scopes)}


def test_replicas_hold_their_share_follow_moves_and_writes_are_checked(servers, tmp_path):
    store = tmp_path / "todos.sqlite"
    ok("import", str(store), str(TODOS / "schema.edn"))
    server = servers.start("todos.sqlite", "--tokens", TOKENS, "--policy", POLICY, schema=False)

    async def main() -> None:
        async with open_replica(server.url, token="alice-token") as a, \
                open_replica(server.url, token="bob-token") as b, \
                open_replica(server.url, token="root-token") as root:
            assert titles(a.db) == {"water the plants"} and titles(b.db) == {"fix the bike"}
            assert set(q("[:find [?m ...] :where [_ :user/email ?m]]", a.db)) == {"alice@example.com"}
            assert not q("[:find ?h . :where [_ :user/password-hash ?h]]", a.db)

            # a forbidden write is refused with the code, and changes nothing
            bike = q('[:find ?t . :where [?t :todo/title "fix the bike"]]', b.db)
            with pytest.raises(TxError) as err:
                await a.transact([["db/add", bike, "todo/done", True]])
            assert err.value.code == "sync.error/forbidden"
            # an allowed one: alice adds a todo to her team's list; bob does not get it
            red_list = q('[:find ?l . :where [?l :list/name "red chores"]]', a.db)
            me = q('[:find ?u . :where [?u :user/id "alice"]]', a.db)
            r = await a.transact([{"todo/title": "buy milk", "todo/list": red_list, "todo/owner": me}])
            await b.wait_for_t(r.t)
            assert "buy milk" in titles(a.db) and titles(b.db) == {"fix the bike"}

            # the administrator moves alice from red to blue: both replicas follow, live
            r = await root.transact([["db/retract", ("user/id", "alice"), "user/teams", ("team/name", "red")],
                                     ["db/add", ("user/id", "alice"), "user/teams", ("team/name", "blue")]])
            await a.wait_for_t(r.t)
            await b.wait_for_t(r.t)
            assert titles(a.db) == {"fix the bike"}
            assert "Alice" in set(q("[:find [?n ...] :where [_ :user/name ?n]]", b.db))
            assert a.stats.bootstraps == b.stats.bootstraps == 1
            shares.update(alice=held(a.db), bob=held(b.db))

    shares: dict = {}
    trio.run(main)
    server.stop()
    for user in ("alice", "bob"):  # datom for datom, nothing leaked, nothing missing
        assert shares[user] == server_share(store, {"user/id": user}), user


def test_a_replica_holds_the_scopes_it_asked_for(servers, tmp_path):
    store = tmp_path / "todos.sqlite"
    ok("import", str(store), str(TODOS / "schema.edn"))
    server = servers.start("todos.sqlite", "--tokens", TOKENS, "--policy", POLICY, schema=False)

    async def main() -> None:
        async with open_replica(server.url, token="carol-token", scopes=[("team", ["blue"])]) as blue, \
                open_replica(server.url, token="carol-token") as everything, \
                open_replica(server.url, token="alice-token", scopes=[("team", ["blue"])]) as alice, \
                open_replica(server.url, token="root-token") as root:
            assert titles(blue.db) == {"fix the bike"}
            assert titles(everything.db) == {"fix the bike", "water the plants"}
            assert titles(alice.db) == set()  # a scope never widens what the principal may read
            r = await root.transact([{"db/id": "l", "list/name": "more", "list/team": ("team/name", "blue")},
                                     {"todo/title": "new", "todo/list": "l"}])
            await blue.wait_for_t(r.t)
            await alice.wait_for_t(r.t)
            assert titles(blue.db) == {"fix the bike", "new"}  # reached from the team: list, then todo
            assert titles(alice.db) == set()
    trio.run(main)


def test_a_policy_that_does_not_check_is_refused_at_start(tmp_path):
    bad = tmp_path / "bad.edn"
    bad.write_text("{:principal [:user/id] :read {:rule nope}}")
    with pytest.raises(RuntimeError) as err:
        ServerProcess(tmp_path / "db.sqlite", "--policy", str(bad)).start()
    assert "policy/unknown-rule" in str(err.value)


def test_exactly_the_servers_share_after_a_run(servers, tmp_path):
    """Replica == the server's database at its t, filtered by the principal, datom for datom."""
    store = tmp_path / "todos.sqlite"
    ok("import", str(store), str(TODOS / "schema.edn"))
    server = servers.start("todos.sqlite", "--tokens", TOKENS, "--policy", POLICY, schema=False)
    shares = {}

    async def main() -> None:
        async with open_replica(server.url, token="carol-token") as c, \
                open_replica(server.url, token="root-token") as root:
            for i in range(5):
                team = "red" if i % 2 else "blue"
                await root.transact([{"db/id": "l", "list/name": f"list {i}", "list/team": ("team/name", team)},
                                     {"todo/title": f"t{i}", "todo/list": "l"}])
            r = await root.transact([["db/retract", ("user/id", "carol"), "user/teams", ("team/name", "company")],
                                     ["db/add", ("user/id", "carol"), "user/teams", ("team/name", "red")]])
            await c.wait_for_t(r.t)
            shares["carol"] = held(c.db)

    trio.run(main)
    server.stop()
    want = server_share(store, {"user/id": "carol"})
    assert shares["carol"] == want
    assert {"t1", "t3"} <= {v for _, a, v in want if a == "todo/title"}
    assert not {"t0", "t2", "t4"} & {v for _, a, v in want if a == "todo/title"}


def test_scopes_added_and_dropped_while_live(servers, tmp_path):
    """A live replica changes its scopes: the datoms that enter and leave arrive at the same t, no
    bootstrap; it then holds exactly the server's share under the new scopes and follows them."""
    from datsync.shell.client import ScopesRefused

    store = tmp_path / "todos.sqlite"
    ok("import", str(store), str(TODOS / "schema.edn"))
    server = servers.start("todos.sqlite", "--tokens", TOKENS, "--policy", POLICY, schema=False)
    shares = {}

    async def main() -> None:
        async with open_replica(server.url, token="carol-token", scopes=[("team", ["blue"])]) as c, \
                open_replica(server.url, token="root-token") as root:
            assert titles(c.db) == {"fix the bike"}
            t = c.t
            came = await c.set_scopes([("team", ["blue"]), ("team", ["red"])])
            assert c.t == t and titles(c.db) == {"fix the bike", "water the plants"}
            assert any(d.a == "todo/title" and d.v == "water the plants" and d.added for d in came)
            shares["both"] = (c.t, held(c.db))

            gone = await c.set_scopes([("team", ["red"])])
            assert c.t == t and titles(c.db) == {"water the plants"}
            assert any(d.a == "todo/title" and d.v == "fix the bike" and not d.added for d in gone)
            shares["red"] = (c.t, held(c.db))

            with pytest.raises(ScopesRefused) as err:
                await c.set_scopes([("no-such-scope", [])])
            assert err.value.code == "policy/unknown-scope"
            assert titles(c.db) == {"water the plants"}

            # the new scopes are followed: a blue todo does not arrive, a red one does
            r = await root.transact([{"db/id": "l", "list/name": "b2", "list/team": ("team/name", "blue")},
                                     {"todo/title": "blue one", "todo/list": "l"},
                                     {"db/id": "m", "list/name": "r2", "list/team": ("team/name", "red")},
                                     {"todo/title": "red one", "todo/list": "m"}])
            await c.wait_for_t(r.t)
            assert titles(c.db) == {"water the plants", "red one"}
            assert c.stats.bootstraps == 1
            shares["after"] = (c.t, held(c.db))

    trio.run(main)
    server.stop()
    for name, scopes in (("both", [("team", ("blue",)), ("team", ("red",))]), ("red", [("team", ("red",))]),
                         ("after", [("team", ("red",))])):
        t, have = shares[name]
        assert have == server_share(store, {"user/id": "carol"}, scopes, t), name


def test_a_reconnecting_replica_resumes_through_the_filtered_log(servers, tmp_path):
    """Under a policy a replica that reconnects with its t catches up from the commits it missed,
    filtered for it (team moves included), instead of a new snapshot."""
    store = tmp_path / "todos.sqlite"
    ok("import", str(store), str(TODOS / "schema.edn"))
    server = servers.start("todos.sqlite", "--tokens", TOKENS, "--policy", POLICY, schema=False)
    shares = {}

    async def main() -> None:
        async with open_replica(server.url, token="alice-token", backoff=(0.5, 0.5)) as a, \
                open_replica(server.url, token="carol-token", scopes=[("team", ["blue"])], backoff=(0.5, 0.5)) as c, \
                open_replica(server.url, token="root-token") as root:
            a._cancel_conn()
            c._cancel_conn()
            await root.transact([{"db/id": "l", "list/name": "b2", "list/team": ("team/name", "blue")},
                                 {"todo/title": "blue one", "todo/list": "l"}])
            r = await root.transact([["db/retract", ("user/id", "alice"), "user/teams", ("team/name", "red")],
                                     ["db/add", ("user/id", "alice"), "user/teams", ("team/name", "blue")]])
            await a.wait_for_t(r.t)
            await c.wait_for_t(r.t)
            assert titles(a.db) == {"fix the bike", "blue one"}
            assert titles(c.db) == {"fix the bike", "blue one"}
            for rep in (a, c):
                assert rep.stats.bootstraps == 1 and rep.stats.resumes == 1 and rep.stats.last_mode == "resume"
            shares.update(alice=(r.t, held(a.db)), carol=(r.t, held(c.db)))

    trio.run(main)
    server.stop()
    t, have = shares["alice"]
    assert have == server_share(store, {"user/id": "alice"}, None, t)
    t, have = shares["carol"]
    assert have == server_share(store, {"user/id": "carol"}, [("team", ("blue",))], t)


async def connected(rep) -> None:
    """Wait for a replica opened from its store (usable at once) to be welcomed by the server."""
    with trio.fail_after(10):
        while rep.stats.last_mode is None or rep.stats.resumes + rep.stats.bootstraps == 0:
            await trio.sleep(0.02)


def test_a_stored_replica_resumes_only_under_the_credentials_it_was_synced_with(servers, tmp_path):
    store = tmp_path / "todos.sqlite"
    ok("import", str(store), str(TODOS / "schema.edn"))
    server = servers.start("todos.sqlite", "--tokens", TOKENS, "--policy", POLICY, schema=False)
    kept = tmp_path / "replica.db"

    async def main() -> None:
        async with open_replica(server.url, token="alice-token", store=kept) as a:
            assert titles(a.db) == {"water the plants"}
            await trio.sleep(0.3)  # the base is written in a worker thread
        async with open_replica(server.url, token="alice-token", store=kept) as a:
            await connected(a)
            assert a.stats.resumes == 1 and a.stats.bootstraps == 0 and titles(a.db) == {"water the plants"}
        async with open_replica(server.url, token="bob-token", store=kept) as b:  # another principal
            await connected(b)
            await b.wait_for_t(1)
            assert b.stats.bootstraps == 1 and b.stats.resumes == 0 and titles(b.db) == {"fix the bike"}
            shares["bob"] = held(b.db)

    shares = {}
    trio.run(main)
    server.stop()
    assert shares["bob"] == server_share(store, {"user/id": "bob"})


def test_jwt_claims_are_the_principal_the_policy_sees(servers, tmp_path):
    """A JWT user holds exactly the share of ``{"user/id": sub}`` and its writes pass the write rule as
    that user; a claim cannot name another user; the tokens file still works beside JWTs."""
    import time

    import jwt

    secret = b"an HS256 secret of at least thirty-two bytes"
    (tmp_path / "jwt.secret").write_bytes(secret)
    store = tmp_path / "todos.sqlite"
    ok("import", str(store), str(TODOS / "schema.edn"))
    server = servers.start("todos.sqlite", "--tokens", TOKENS, "--policy", POLICY, "--jwt-secret-file",
                           str(tmp_path / "jwt.secret"), "--jwt-audience", "datsync", schema=False)

    def token(**claims: object) -> str:
        return jwt.encode({"aud": "datsync", "exp": int(time.time()) + 300, **claims}, secret, algorithm="HS256")

    async def main() -> None:
        async with open_replica(server.url, token=token(sub="alice", roles=["editor"])) as a, \
                open_replica(server.url, token=token(sub="carol", **{"user/id": "bob"})) as c, \
                open_replica(server.url, token=token(roles=["admin"])) as nobody, \
                open_replica(server.url, token="bob-token") as b:
            assert titles(a.db) == {"water the plants"} and titles(b.db) == {"fix the bike"}
            assert not q("[:find ?h . :where [_ :user/password-hash ?h]]", a.db)
            assert titles(nobody.db) == set()  # no sub: no user/id, nothing the rules grant

            bike = q('[:find ?t . :where [?t :todo/title "fix the bike"]]', b.db)
            with pytest.raises(TxError) as err:
                await a.transact([["db/add", bike, "todo/done", True]])
            assert err.value.code == "sync.error/forbidden"
            red_list = q('[:find ?l . :where [?l :list/name "red chores"]]', a.db)
            me = q('[:find ?u . :where [?u :user/id "alice"]]', a.db)
            r = await a.transact([{"todo/title": "buy milk", "todo/list": red_list, "todo/owner": me}])
            await b.wait_for_t(r.t)
            await c.wait_for_t(r.t)
            await nobody.wait_for_t(r.t)  # its share holds the transaction entity too
            assert "buy milk" in titles(a.db) and titles(b.db) == {"fix the bike"}
            shares.update(alice=held(a.db), carol=held(c.db), nobody=held(nobody.db))

    shares: dict = {}
    trio.run(main)
    server.stop()
    assert shares["alice"] == server_share(store, {"user/id": "alice"})
    assert shares["carol"] == server_share(store, {"user/id": "carol"})  # sub wins over a "user/id" claim
    assert shares["carol"] != server_share(store, {"user/id": "bob"})
    assert shares["nobody"] == server_share(store, {})
