"""The one timer a protocol session asks for: ``SetTimer(at)`` re-arms it, firing feeds ``Timer(now)``.

Sans-I/O sessions never sleep; they say when they next want to be woken. This task sleeps until
that deadline (on trio's clock) and calls back; moving the deadline wakes it to sleep again.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import trio


class SessionTimer:
    """A re-armable deadline for one session. Run ``timer.run(fire)`` in the session's nursery."""

    def __init__(self) -> None:
        self.at = math.inf
        self._scope: trio.CancelScope | None = None

    def set(self, at: float) -> None:
        """Wake at ``at`` (trio time) instead of the current deadline."""
        self.at = at
        if self._scope is not None:
            self._scope.deadline = at

    def reset(self) -> None:
        """Forget the deadline (the connection it served is gone)."""
        self.at = math.inf
        self._scope = None

    async def run(self, fire: Callable[[float], None]) -> None:
        """Call ``fire(now)`` each time the deadline passes; runs until cancelled."""
        while True:
            with trio.CancelScope(deadline=self.at) as scope:
                self._scope = scope
                await trio.sleep_forever()
            self._scope = None
            now = trio.current_time()
            if now >= self.at:
                self.at = math.inf
                fire(now)
