"""The server's limits on what clients may hold or send: connections in all and per address, the
message rate per session, idle sessions; and the close codes and throttled log lines that say so.

(Message size, handshake timeout and pending submissions per session are the codec's and the session
state machine's: ``--max-message-size``, ``ServerConfig.handshake_timeout``, ``max_pending_tx``.)
"""

from __future__ import annotations

import collections
import logging
import time
from dataclasses import asdict, dataclass
from typing import Any

CONNECTIONS = "limit/connections"
"""Refused at accept: too many connections in all or from one address (HTTP 503, before any WebSocket)."""
RATE = "limit/rate"
"""A session sent messages faster than ``max_message_rate`` (beyond its burst): closed (1008)."""
IDLE = "limit/idle"
"""A session sent no message but pings and pongs for ``idle_timeout`` seconds: closed (1001)."""
DEFAULT_SEND_TIMEOUT = 30.0
"""Seconds a client may leave the server's bytes unread (its socket takes none while some wait)
before it is cut off as not reading (1013 ``server/too-slow``)."""


@dataclass(frozen=True)
class Limits:
    """What one client may hold or send. ``idle_timeout`` None: no idle limit (a replica on a quiet
    database legitimately sends nothing but pongs). ``send_timeout``: how long the client's socket may
    take none of the bytes waiting for it before the client is cut off as not reading."""

    max_connections: int = 1024
    max_connections_per_address: int = 256
    max_message_rate: float = 2000.0
    message_burst: int = 4000
    idle_timeout: float | None = None
    send_timeout: float = DEFAULT_SEND_TIMEOUT

    def as_dict(self) -> dict:
        """The limits as plain data (for ``/health``)."""
        return asdict(self)


class ConnectionCounts:
    """Open TCP connections in all and per peer address."""

    def __init__(self, limits: Limits):
        self.limits = limits
        self.total = 0
        self.by_address: collections.Counter[str] = collections.Counter()

    def admit(self, address: str) -> str | None:
        """Count a new connection from ``address``; None if admitted, else why it is refused (then it
        is not counted)."""
        lim = self.limits
        if self.total >= lim.max_connections:
            return f"the server is at its limit of {lim.max_connections} connections"
        if self.by_address[address] >= lim.max_connections_per_address:
            return f"too many connections from {address} (limit {lim.max_connections_per_address})"
        self.total += 1
        self.by_address[address] += 1
        return None

    def release(self, address: str) -> None:
        """A connection admitted from ``address`` closed."""
        self.total -= 1
        self.by_address[address] -= 1
        if self.by_address[address] <= 0:
            del self.by_address[address]

    def status(self, top: int = 10) -> dict:
        """Open connections, in all and for the busiest addresses."""
        return {"open": self.total, "addresses": len(self.by_address),
                "busiest": dict(self.by_address.most_common(top))}


class RateBucket:
    """A token bucket: ``rate`` messages per second on average, ``burst`` at once."""

    __slots__ = ("burst", "last", "rate", "tokens")

    def __init__(self, rate: float, burst: int, now: float):
        self.rate = rate
        self.burst = float(max(1, burst))
        self.tokens = self.burst
        self.last = now

    def take(self, now: float) -> bool:
        """Spend one token at ``now``; False if there was none (the sender is over its rate)."""
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


class ThrottledLog:
    """A warning at most every ``every`` seconds per kind (a flood must not flood the log too); each
    line says how many were not logged since the last."""

    def __init__(self, logger: logging.Logger, every: float = 5.0):
        self.logger = logger
        self.every = every
        self._last: dict[str, float] = {}
        self._skipped: collections.Counter[str] = collections.Counter()

    def warning(self, kind: str, msg: str, **extra: Any) -> None:
        now = time.monotonic()
        if now - self._last.get(kind, -self.every) < self.every:
            self._skipped[kind] += 1
            return
        self._last[kind] = now
        skipped = self._skipped.pop(kind, 0)
        self.logger.warning(msg, extra={**extra, **({"not_logged_since_last": skipped} if skipped else {})})
