"""Secrets never leak: a hello's credentials, whatever their shape (a token that looks like a wire tag,
a nested value, a lone surrogate), are never read as tagged values and never quoted in an error, a log
line or a close reason; the server's own token is accepted whatever its shape."""

from __future__ import annotations

import json

import pytest
import trio
import trio_websocket

from datsync.core.sync import PROTOCOL_VERSION, Hello, ProtocolError, decode, encode
from datsync.core.sync.client import ClientConfig
from datsync.core.sync.events import Authorize
from datsync.shell import Unauthorized, open_replica
from tests.sync_server import FAST_RECONNECT, Servers, expect

MARK = "S3CR3T"
"""Every secret in this file holds this marker: it must appear in no log, message or close reason."""

SHAPES = [
    f"~t{MARK}-not-an-instant",  # read as an instant before: quoted in "Bad instant ..."
    f"~u{MARK}",
    f"~n{MARK}",
    f"~m{MARK}",
    f"~b{MARK}!!",
    f"~f{MARK}",
    f"~z{MARK}",
    f"~~{MARK}",
    f"~#t{MARK}",
    f"~:{MARK}",
    f"plain-{MARK}",
    f"~t秘密{MARK}",
    f"{MARK}" * 2000,
]

CREDENTIALS = [
    *SHAPES,
    *({"token": s} for s in SHAPES[:4]),
    ["~#t", MARK],
    ["~#s", MARK, MARK],
    ["~#m", MARK, 1],
    {f"~:{MARK}": 1},
    {"token": [f"~t{MARK}"]},
]


MALFORMED = [f"\ud800{MARK}", {"token": f"~t{MARK}\udfff"}]
"""Credentials holding a lone surrogate (valid JSON, not Unicode): refused as malformed, never quoted."""


def hello(credentials: object, **fields: object) -> str:
    return json.dumps({"v": PROTOCOL_VERSION, "type": "hello", "credentials": credentials, "t": None, "db_id": None,
                       **fields})


# -- the codec ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("credentials", CREDENTIALS, ids=range(len(CREDENTIALS)))
def test_credentials_are_read_verbatim_never_as_tagged_values(credentials):
    m = decode(hello(credentials))
    assert m.credentials == credentials
    assert MARK not in repr(m)


@pytest.mark.parametrize("credentials", CREDENTIALS, ids=range(len(CREDENTIALS)))
def test_credentials_round_trip_verbatim(credentials):
    data = encode(Hello(credentials, 3, "db"))
    assert json.loads(data)["credentials"] == credentials  # on the wire as they are: no tags, no escapes
    assert decode(data) == Hello(credentials, 3, "db")


def test_errors_about_credentials_never_quote_them():
    deep: object = MARK
    for _ in range(200):
        deep = [deep]
    for bad in (deep, {"token": deep}, *MALFORMED):
        with pytest.raises(ProtocolError) as e:
            decode(hello(bad))
        assert e.value.code == "protocol/malformed" and MARK not in str(e.value) and MARK not in repr(e.value.data)
    for unsendable in ({MARK}, {1: MARK}, float("nan"), object()):
        with pytest.raises(ProtocolError) as e:
            encode(Hello(unsendable))
        assert e.value.code == "protocol/unencodable" and MARK not in str(e.value)
    # an error in another field of the hello quotes that field, not the credentials
    with pytest.raises(ProtocolError) as e:
        decode(hello(f"~t{MARK}", t="later"))
    assert "later" in str(e.value) and MARK not in str(e.value)


def test_values_holding_credentials_do_not_show_them():
    assert MARK not in repr(Hello({"token": MARK}))
    assert MARK not in repr(Authorize({"token": MARK}))
    assert MARK not in repr(ClientConfig(credentials={"token": MARK}))


# -- a real server -----------------------------------------------------------------------------------


@pytest.fixture
def servers(tmp_path):
    s = Servers(tmp_path)
    yield s
    s.close()


async def refused(url: str, data: str) -> tuple[list[dict], int, str]:
    """Send ``data`` as the first message; the messages received and the close code and reason."""
    got: list[dict] = []
    async with trio_websocket.open_websocket_url(url) as ws:
        await ws.send_message(data)
        with trio.fail_after(10):
            try:
                while True:
                    got.append(json.loads(await ws.get_message()))
            except trio_websocket.ConnectionClosed as e:
                return got, e.reason.code, e.reason.reason or ""
    raise AssertionError("unreachable")


def test_refused_credentials_of_any_shape_are_never_logged_or_sent_back(servers, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(f"~tright-{MARK}\n")
    server = servers.start("s.sqlite", "--token-file", str(token_file), "--log-level", "debug")

    async def main() -> None:
        for credentials in CREDENTIALS:
            got, code, reason = await refused(server.url, hello(credentials))
            assert [m["code"] for m in got] == ["protocol/unauthorized"], (credentials, got)  # one, saying why
            assert got[0]["message"] in ("Not authorized: wrong token", "Not authorized: missing token")
            assert code == 1008
            assert MARK not in json.dumps(got) and MARK not in reason
        for data in [hello(f"~t{MARK}", t="later"), *map(hello, MALFORMED)]:  # malformed hellos
            got, code, reason = await refused(server.url, data)
            assert [m["code"] for m in got] == ["protocol/malformed"] and code == 1002
            assert MARK not in json.dumps(got) and MARK not in reason

    trio.run(main)
    health = server.health()
    assert health["counters"]["refused"] == len(CREDENTIALS)
    assert server.stop() == 0
    log = server.log_text()
    assert "client refused" in log and "session error" in log  # the log has the events, not the secrets
    assert MARK not in log and MARK not in server.banner


def test_a_token_that_looks_like_a_wire_tag_is_accepted(servers, tmp_path):
    token = f"~t{MARK}"
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    server = servers.start("s.sqlite", "--token-file", str(token_file))

    async def main() -> None:
        with trio.fail_after(20):
            async with open_replica(server.url, token=token) as rep:
                assert (await rep.transact([{"person/name": "Ann"}])).t == 2
            with pytest.raises(Unauthorized) as e:
                async with open_replica(server.url, token=token[:-1], **FAST_RECONNECT):
                    pass
            assert MARK not in str(e.value)
            async with trio_websocket.open_websocket_url(server.url) as ws:  # a client that does not escape
                await ws.send_message(hello({"token": token}))
                assert (await expect(ws, "welcome"))["mode"] == "bootstrap"

    trio.run(main)
    assert server.get("/status", token=token)[0] == 200
    status, body = server.get("/status", token=token + "x")
    assert status == 401 and MARK not in body
    assert server.stop() == 0
    assert MARK not in server.log_text()
