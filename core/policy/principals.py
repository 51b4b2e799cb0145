"""Principals: who is on the other end of a connection, as a map of attributes.

Authentication yields a principal (``{"user/id": "alice", "user/roles": frozenset(...)}``); the
policy binds the attributes it names as the first arguments of its rules. The first source of
principals is a tokens file: an EDN map from token to principal map.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..edn import EdnError, read_edn
from .spec import INVALID, SYNTAX, PolicyError, _name


def parse_principal(value: Any) -> dict[str, Any]:
    """A principal map with plain-string attribute names (EDN keywords lose their colon)."""
    if not isinstance(value, Mapping) or not value:
        raise PolicyError(INVALID, f"A principal is a non-empty map of attributes, got {value!r:.80}", {"value": value})
    out = {}
    for k, v in value.items():
        n = _name(k)
        if n is None:
            raise PolicyError(INVALID, f"Principal attribute names are keywords or strings, got {k!r}", {"key": k})
        out[n] = v
    return out


def parse_tokens(tokens: Any) -> dict[str, dict[str, Any]]:
    """Token -> principal, from the EDN text (or data) of a tokens file: ``{"s3cret" {:user/id "alice"}}``.

    ``PolicyError`` ``policy/syntax`` if the text does not read, ``policy/invalid`` if a token is not a
    non-empty string or a principal is not a non-empty map."""
    if isinstance(tokens, str):
        try:
            tokens = read_edn(tokens)
        except EdnError as err:
            raise PolicyError(SYNTAX, f"Cannot read the tokens: {err}", {}) from err
    if not isinstance(tokens, Mapping):
        raise PolicyError(INVALID, f"Tokens are a map from token to principal, got {type(tokens).__name__}", {})
    out = {}
    for token, principal in tokens.items():
        if type(token) is not str or not token:
            raise PolicyError(INVALID, f"A token is a non-empty string, got {token!r:.20}", {})
        out[token] = parse_principal(principal)
    return out


def principal_for(tokens: Mapping[str, Mapping[str, Any]], token: Any) -> dict[str, Any] | None:
    """The principal a token stands for, or None when the token is unknown."""
    p = tokens.get(token) if type(token) is str else None
    return dict(p) if p is not None else None


__all__ = ["parse_principal", "parse_tokens", "principal_for"]
