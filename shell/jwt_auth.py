"""JWT bearer tokens: verified with PyJWT (HS256 with a shared secret, RS256 with a public key; the
signature, ``exp``, ``nbf``, and ``aud``/``iss`` when configured, always checked) and mapped to a
principal, the map of attributes the read and write rules bind.

The principal of a token: ``{"auth": "jwt", "user/id": sub, "user/roles": frozenset(roles),
"jwt/<claim>": value ...}`` (every claim is kept under ``jwt/``; ``user/roles`` only when the token has
a ``roles`` list). Refusals say why in words (expired, not yet valid, wrong audience ...) and never
quote the token.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LEEWAY_S = 30.0
"""Clock skew tolerated on ``exp`` and ``nbf``."""


@dataclass(frozen=True)
class JwtAuth:
    """How to verify bearer JWTs: ``key`` (the HS256 secret or the RS256 public key, PEM), the
    accepted ``algorithms``, and the required ``audience`` and ``issuer`` (None: not checked)."""

    key: str | bytes = field(repr=False)
    algorithms: tuple[str, ...]
    audience: str | None = None
    issuer: str | None = None

    @classmethod
    def from_files(cls, *, secret_file: str | Path | None = None, public_key_file: str | Path | None = None,
                   audience: str | None = None, issuer: str | None = None) -> JwtAuth:
        """HS256 with the secret in ``secret_file``, or RS256 with the PEM public key in
        ``public_key_file``; ``ValueError`` for an empty or missing key, or PyJWT not installed."""
        try:
            import jwt  # noqa: F401
        except ImportError:
            raise ValueError("JWT authentication needs PyJWT: pip install 'datsync[jwt]'") from None
        if (secret_file is None) == (public_key_file is None):
            raise ValueError("give one of a JWT secret file (HS256) or a JWT public key file (RS256)")
        if secret_file is not None:
            secret = Path(secret_file).read_bytes().strip()
            if len(secret) < 32:
                raise ValueError(f"the JWT secret in {secret_file} is shorter than 32 bytes")
            return cls(secret, ("HS256",), audience, issuer)
        pem = Path(str(public_key_file)).read_bytes()
        if b"PUBLIC KEY" not in pem:
            raise ValueError(f"{public_key_file} holds no PEM public key")
        return cls(pem, ("RS256",), audience, issuer)

    def verify(self, token: str) -> tuple[dict[str, Any] | None, str]:
        """``(principal or None, why)`` for a bearer token."""
        import jwt

        required = ["exp"] + (["aud"] if self.audience else []) + (["iss"] if self.issuer else [])
        try:
            claims = jwt.decode(token, self.key, algorithms=list(self.algorithms), audience=self.audience,
                                issuer=self.issuer, leeway=LEEWAY_S, options={"require": required})
        except jwt.ExpiredSignatureError:
            return None, "expired token"
        except jwt.ImmatureSignatureError:
            return None, "token not yet valid (nbf)"
        except jwt.InvalidAudienceError:
            return None, "token for another audience"
        except jwt.InvalidIssuerError:
            return None, "token from another issuer"
        except jwt.MissingRequiredClaimError as e:
            return None, f"token without the {e.claim!r} claim"
        except jwt.InvalidSignatureError:
            return None, "token signature does not verify"
        except jwt.InvalidAlgorithmError:
            return None, f"token not signed with {', '.join(self.algorithms)}"
        except jwt.InvalidTokenError:
            return None, "malformed token"
        return principal_of(claims), "token accepted"


def principal_of(claims: dict[str, Any]) -> dict[str, Any]:
    """The principal a verified token's claims stand for (see the module docstring)."""
    out: dict[str, Any] = {"auth": "jwt", **{f"jwt/{k}": _frozen(v) for k, v in claims.items()}}
    if isinstance(claims.get("sub"), str):
        out["user/id"] = claims["sub"]
    roles = claims.get("roles")
    if isinstance(roles, list) and all(isinstance(r, str) for r in roles):
        out["user/roles"] = frozenset(roles)
    return out


def _frozen(v: Any) -> Any:
    if isinstance(v, list):
        return tuple(_frozen(x) for x in v)
    return v


__all__ = ["LEEWAY_S", "JwtAuth", "principal_of"]
