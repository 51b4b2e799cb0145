"""Waiting for state to change: tasks that wait for a condition on an object's state, woken whenever
that state changes (a lighter ``trio.Condition`` with no lock, for state owned by one trio thread)."""

from __future__ import annotations

from collections.abc import Callable

import trio


class ChangeSignal:
    """Call ``pulse()`` after every state change; ``await until(pred)`` returns once ``pred()`` holds."""

    def __init__(self) -> None:
        self._event = trio.Event()

    def pulse(self) -> None:
        """Wake every waiter: the state changed."""
        self._event.set()
        self._event = trio.Event()

    async def wait(self) -> None:
        """Until the next change."""
        await self._event.wait()

    async def until(self, pred: Callable[[], bool]) -> None:
        """Until ``pred()`` is true (checked now and after every change)."""
        while not pred():
            await self._event.wait()
