"""Heartbeats as a value: when to ping, when the other side is gone.

Each session keeps a ``Heartbeat`` and sets a timer every ``interval``. On each tick: if anything
arrived since the last tick, the peer was heard at this tick's time; if the peer has not been heard
for ``timeout``, the connection is dead; otherwise, if this side sent nothing since the last tick,
it sends a ``ping`` (the peer answers ``pong``), so an idle but healthy connection is never
mistaken for a dead one. Time only comes in with ticks, so a timeout is detected between
``timeout`` and ``timeout + interval`` after the last message.
"""

from __future__ import annotations

from dataclasses import dataclass

from .evolve import evolve

PING = "ping"
TIMEOUT = "timeout"


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Heartbeat state: the peer last heard at ``last_heard``; ``heard``/``sent``: traffic since the
    last tick; ``n``: the number of the next ping."""

    interval: float = 10.0
    timeout: float = 30.0
    last_heard: float = 0.0
    heard: bool = False
    sent: bool = False
    n: int = 0


def hb_start(hb: Heartbeat, now: float) -> Heartbeat:
    """``hb`` for a connection opened at ``now``."""
    return evolve(hb, last_heard=now, heard=False, sent=False)


def hb_heard(hb: Heartbeat) -> Heartbeat:
    """``hb`` after something arrived."""
    return hb if hb.heard else evolve(hb, heard=True)


def hb_sent(hb: Heartbeat) -> Heartbeat:
    """``hb`` after something was sent."""
    return hb if hb.sent else evolve(hb, sent=True)


def hb_tick(hb: Heartbeat, now: float) -> tuple[Heartbeat, str | None]:
    """``hb`` after a tick at ``now`` and what to do: ``"timeout"``, ``"ping"`` or None."""
    last = now if hb.heard else hb.last_heard
    if now - last >= hb.timeout:
        return evolve(hb, last_heard=last, heard=False, sent=False), TIMEOUT
    if not hb.sent:
        return evolve(hb, last_heard=last, heard=False, sent=False, n=hb.n + 1), PING
    return evolve(hb, last_heard=last, heard=False, sent=False), None


__all__ = ["PING", "TIMEOUT", "Heartbeat", "hb_heard", "hb_sent", "hb_start", "hb_tick"]
