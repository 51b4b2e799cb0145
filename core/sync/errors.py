"""Errors of the sync layer, as values with stable codes (like every ``DatsyncError``).

``SyncError`` is a sync operation that cannot proceed (an id a replica cannot translate, an id space
exhausted); ``ProtocolError`` is anything wrong with bytes or messages from the wire. Both carry a
``code`` that goes on the wire unchanged in an ``error`` message.
"""

from __future__ import annotations

from ..errors import DatsyncError

# Protocol error codes (see docs/protocol.md).
MALFORMED = "protocol/malformed"
TOO_LARGE = "protocol/too-large"
VERSION = "protocol/version"
UNEXPECTED = "protocol/unexpected"
AUTH = "protocol/unauthorized"
TIMEOUT = "protocol/timeout"
OVERLOADED = "protocol/overloaded"


class SyncError(DatsyncError):
    """A sync operation cannot proceed: e.g. ``sync/unknown-eid``, ``sync/id-space-exhausted``."""


class ProtocolError(DatsyncError):
    """Bytes or a message from the wire are not acceptable: ``protocol/malformed``,
    ``protocol/too-large``, ``protocol/version``, ``protocol/unexpected`` ..."""


__all__ = [
    "AUTH",
    "MALFORMED",
    "OVERLOADED",
    "TIMEOUT",
    "TOO_LARGE",
    "UNEXPECTED",
    "VERSION",
    "ProtocolError",
    "SyncError",
]
