"""Extra read handles on the store, for reads that run in worker threads while the writer commits."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import trio

from ..store import Store
from .logs import log


class Readers:
    """Up to ``n`` extra handles on a store for reads that run at once, each in a worker thread
    (replicas catching up from the log, health); opened when first needed."""

    def __init__(self, store: Store, n: int = 4):
        self._store = store
        self._free: list[Store] = []
        self._limit = trio.Semaphore(n)

    async def run(self, fn: Callable[[Store], Any]) -> Any:
        """``fn(reader)`` in a worker thread, on a handle no other read is using."""
        async with self._limit:
            handle: list[Store] = [self._free.pop()] if self._free else []

            def call() -> Any:
                if not handle:
                    handle.append(self._store.reader())
                return fn(handle[0])

            try:
                return await trio.to_thread.run_sync(call)
            finally:
                self._free.extend(handle)

    def close(self) -> None:
        for reader in self._free:
            try:
                reader.close()
            except Exception:
                log.exception("closing a store reader failed")
        self._free = []

