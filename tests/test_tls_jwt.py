"""TLS and JWT with real processes: wss:// end to end with a CA option, plain connections refused
where TLS is required, an untrusted certificate failing at once; JWT bearer tokens (HS256, RS256)
accepted, and expired, not-yet-valid, wrong-audience, wrong-issuer, wrongly signed and missing ones
refused; `datsync serve` refuses to listen beyond loopback without authentication or TLS."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request

import jwt
import pytest
import trio
import trio_websocket
import trustme
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from datsync.shell import ReplicaConnectionError, Unauthorized, open_replica
from datsync.shell.jwt_auth import JwtAuth, principal_of
from datsync.shell.serve_command import exposure_refusal
from tests.sync_server import FAST_RECONNECT, ROOT, Servers

SECRET = b"an HS256 secret of at least thirty-two bytes"


@pytest.fixture
def servers(tmp_path):
    s = Servers(tmp_path)
    yield s
    s.close()


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


@pytest.fixture
def tls_files(ca, tmp_path):
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "server.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    return tmp_path / "server.pem", tmp_path / "ca.pem"


def https_get(url: str, cafile: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=10, context=ssl.create_default_context(cafile=cafile)) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, {}


def test_tls_end_to_end_and_plain_connections_refused(servers, tls_files):
    pem, ca_pem = tls_files
    server = servers.start("tls.sqlite", "--tls-cert", str(pem))
    assert server.url.startswith("wss://127.0.0.1:")
    https = server.url.replace("wss://", "https://")
    status, health = https_get(https + "health", str(ca_pem))
    assert status == 200 and health["tls"] is True

    async def main() -> None:
        with trio.fail_after(20):
            async with open_replica(server.url, ca=str(ca_pem)) as a, open_replica(server.url, ca=str(ca_pem)) as b:
                r = await a.transact([{"person/name": "over TLS"}])
                await b.wait_for_t(r.t)
                assert b.t == r.t
            plain = server.url.replace("wss://", "ws://")
            with pytest.raises(trio_websocket.ConnectionRejected) as e:
                async with trio_websocket.open_websocket_url(plain):
                    pass
            assert e.value.status_code == 400 and b"TLS only" in e.value.body

    trio.run(main)
    for cmd in (["status", server.url], ["q", server.url, "[:find ?n . :where [_ :person/name ?n]]"]):
        r = subprocess.run([sys.executable, "-m", "datsync.shell", *cmd, "--ca", str(ca_pem)], cwd=ROOT,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
    assert '"over TLS"' in r.stdout
    assert server.stop() == 0
    assert "plain connection refused: this server speaks TLS only" in server.log_text()


def test_an_untrusted_certificate_fails_at_once_without_retrying(servers, tls_files):
    pem, _ = tls_files
    server = servers.start("tls.sqlite", "--tls-cert", str(pem))

    async def main() -> None:
        start = time.monotonic()
        with trio.fail_after(20), pytest.raises(ReplicaConnectionError) as e:
            async with open_replica(server.url, connect_timeout=10, **FAST_RECONNECT):  # the system's CAs only
                pass
        assert e.value.code == "sync/untrusted-certificate" and "certificate" in str(e.value)
        assert time.monotonic() - start < 5  # not the connect timeout, not a reconnect loop

    trio.run(main)
    assert https_get(server.url.replace("wss://", "https://") + "health", str(tls_files[1]))[0] == 200


def hs256(secret: bytes = SECRET, **claims: object) -> str:
    now = int(time.time())
    return jwt.encode({"sub": "alice", "aud": "datsync", "iss": "test-issuer", "iat": now, "exp": now + 300,
                       "roles": ["editor"], **claims}, secret, algorithm="HS256")


def test_jwt_hs256_tokens_are_checked(servers, tmp_path):
    secret = tmp_path / "jwt.secret"
    secret.write_bytes(SECRET)
    server = servers.start("jwt.sqlite", "--jwt-secret-file", str(secret), "--jwt-audience", "datsync",
                           "--jwt-issuer", "test-issuer")
    now = int(time.time())
    refused = {
        "expired token": hs256(exp=now - 3600),
        "token not yet valid (nbf)": hs256(nbf=now + 3600),
        "token for another audience": hs256(aud="elsewhere"),
        "token from another issuer": hs256(iss="mallory"),
        "token signature does not verify": hs256(b"another secret of at least thirty-two bytes"),
        "malformed token": "not.a.jwt",
        "token without the 'exp' claim": jwt.encode({"sub": "alice", "aud": "datsync", "iss": "test-issuer"},
                                                    SECRET, algorithm="HS256"),
    }

    async def main() -> None:
        with trio.fail_after(30):
            async with open_replica(server.url, token=hs256()) as rep:
                assert (await rep.transact([{"person/name": "Alice"}])).t == 2
            for why, token in refused.items():
                with pytest.raises(Unauthorized) as e:
                    async with open_replica(server.url, token=token, **FAST_RECONNECT):
                        pass
                assert why in str(e.value) and token not in str(e.value), (why, str(e.value))
            with pytest.raises(Unauthorized) as e:
                async with open_replica(server.url, **FAST_RECONNECT):
                    pass
            assert "missing token" in str(e.value)

    trio.run(main)
    health = server.health()
    assert health["auth"] == "jwt" and health["counters"]["refused"] == len(refused) + 1
    assert server.get("/status", token=hs256())[0] == 200
    assert server.get("/status", token=hs256(exp=now - 3600))[0] == 401
    assert server.stop() == 0
    log = server.log_text()
    assert "expired token" in log and not any(token in log for token in refused.values())


def test_jwt_rs256_and_no_algorithm_confusion(servers, tmp_path):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    (tmp_path / "issuer.pem").write_bytes(public_pem)
    server = servers.start("rs.sqlite", "--jwt-public-key", str(tmp_path / "issuer.pem"))
    now = int(time.time())
    good = jwt.encode({"sub": "bob", "exp": now + 300}, key, algorithm="RS256")
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode({"sub": "bob", "exp": now + 300}, other, algorithm="RS256")
    confused = hmac_signed(public_pem, {"sub": "bob", "exp": now + 300})  # HS256 with the public key as secret

    async def main() -> None:
        with trio.fail_after(30):
            async with open_replica(server.url, token=good) as rep:
                assert rep.t == 1
            with pytest.raises(Unauthorized) as e:
                async with open_replica(server.url, token=forged, **FAST_RECONNECT):
                    pass
            assert "signature" in str(e.value)
            with pytest.raises(Unauthorized) as e:
                async with open_replica(server.url, token=confused, **FAST_RECONNECT):
                    pass
            assert "not signed with RS256" in str(e.value)

    trio.run(main)


def hmac_signed(secret: bytes, claims: dict) -> str:
    """A JWT signed HS256 by hand (PyJWT rightly refuses to use a PEM key as an HMAC secret)."""
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + "." + b64(json.dumps(claims).encode())
    return head + "." + b64(hmac.new(secret, head.encode(), hashlib.sha256).digest())


def test_claims_map_to_a_principal():
    p = principal_of({"sub": "alice", "roles": ["editor", "admin"], "aud": ["a", "b"], "exp": 1})
    assert p["user/id"] == "alice" and p["user/roles"] == frozenset({"editor", "admin"})
    assert p["jwt/aud"] == ("a", "b") and p["auth"] == "jwt"
    assert "user/roles" not in principal_of({"sub": "x", "roles": "admin"})
    assert "S3CR3T" not in repr(JwtAuth(b"S3CR3T" * 8, ("HS256",)))


def test_serve_refuses_to_listen_beyond_loopback_without_auth_or_tls(tmp_path):
    assert exposure_refusal("127.0.0.1", False, False, False) is None
    assert exposure_refusal("localhost", False, False, False) is None
    assert "without authentication" in exposure_refusal("0.0.0.0", False, True, False)
    assert "without TLS" in exposure_refusal("0.0.0.0", True, False, False)
    assert exposure_refusal("0.0.0.0", True, False, True) is None
    assert exposure_refusal("::", True, True, False) is None
    for extra in ([], ["--token", "t"]):  # refused before binding anything
        cmd = [sys.executable, "-m", "datsync.shell", "serve", "--host", "0.0.0.0", "--port", "0",
               "--store", str(tmp_path / "x.sqlite"), *extra]
        r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert r.returncode == 2 and "refusing to listen on 0.0.0.0" in r.stderr, r.stderr


def test_a_fatal_error_after_going_live_stops_reconnecting_and_reaches_the_application(servers, tmp_path):
    first = tmp_path / "first.token"
    first.write_text("first-token\n")
    second = tmp_path / "second.token"
    second.write_text("second-token\n")
    server = servers.start("fatal.sqlite", "--token-file", str(first))

    async def main() -> None:
        changes = []
        with trio.fail_after(30):
            async with open_replica(server.url, token="first-token", **FAST_RECONNECT) as rep:
                rep.listen(changes.append)
                assert rep.failure is None
                assert server.stop() == 0  # the server comes back with another token
                servers.start("fatal.sqlite", "--token-file", str(second), port=server.port)
                while rep.failure is None:  # (a listener would be told too: below)
                    await trio.sleep(0.05)
                assert isinstance(rep.failure, Unauthorized) and "wrong token" in str(rep.failure)
                assert [c.kind for c in changes if c.kind == "failed"] == ["failed"]
                assert changes[-1].error is rep.failure and changes[-1].db_after is not None
                connects = rep.stats.connects
                await trio.sleep(0.5)  # it does not retry
                assert rep.stats.connects == connects
                with pytest.raises(Unauthorized):
                    await rep.transact([{"person/name": "after"}])

    trio.run(main)
