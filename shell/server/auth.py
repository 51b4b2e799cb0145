"""Who may connect: loopback clients, a shared token, JWTs; the token in a hello or a bearer header."""

from __future__ import annotations

import hmac
import ipaddress
from pathlib import Path
from typing import Any

from ..jwt_auth import JwtAuth


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and their IPv4-mapped forms."""
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return bool(ip.is_loopback or (mapped is not None and mapped.is_loopback))


def credential_token(credentials: Any) -> str | None:
    """The token a hello carries: ``{"token": "..."}`` or the bare string."""
    if isinstance(credentials, str):
        return credentials
    if isinstance(credentials, dict) and isinstance(credentials.get("token"), str):
        return credentials["token"]
    return None


def authorize(credentials: Any, peer_host: str, token: str | None, jwt: JwtAuth | None = None) -> tuple[Any, str]:
    """``(principal or None, why)``: with a configured ``token`` or ``jwt`` verifier the hello must carry
    that token or a valid JWT (from any address); without either, only loopback clients are accepted."""
    if jwt is not None:
        supplied = credential_token(credentials)
        if supplied is None:
            return None, "missing token"
        if token is not None and hmac.compare_digest(supplied.encode("utf-8", "surrogatepass"),
                                                     token.encode("utf-8", "surrogatepass")):
            return {"auth": "token", "peer": peer_host}, "token accepted"
        principal, why = jwt.verify(supplied)
        return (None, why) if principal is None else ({**principal, "peer": peer_host}, why)
    if token is None:
        if is_loopback(peer_host):
            return {"auth": "loopback", "peer": peer_host}, "loopback client"
        return None, ("this server has no token configured and accepts loopback clients only; "
                      "start it with --token or --token-file to accept remote clients")
    supplied = credential_token(credentials)
    if supplied is not None and hmac.compare_digest(supplied.encode("utf-8", "surrogatepass"),
                                                    token.encode("utf-8", "surrogatepass")):
        return {"auth": "token", "peer": peer_host}, "token accepted"
    return None, "missing token" if supplied is None else "wrong token"


def read_token_file(path: str | Path) -> str:
    """The token in ``path`` (surrounding whitespace stripped); ValueError if empty."""
    token = Path(path).read_text().strip()
    if not token:
        raise ValueError(f"token file {path} is empty")
    return token


def _bearer(header: str) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (None for any other scheme)."""
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None
