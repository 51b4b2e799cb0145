"""datsync.shell: the imperative shell (trio): storage, network, the process and the CLI.

Replicas: ``connect(url)`` (blocking) and ``open_replica(url)`` (trio) from ``datsync.shell.client``;
the server: ``serve(...)`` and ``store_in_use(path)`` from ``datsync.shell.server``; the store and
the connection: ``open_store(location)`` (a ``Store``), ``Connection``. Imported on first use, so the CLI starts fast.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "connect": "client",
    "open_replica": "client",
    "Replica": "client",
    "ReplicaConnection": "client",
    "ReplicaChange": "client",
    "ReplicaStats": "client",
    "TxResult": "client",
    "PendingTx": "client",
    "SubmittedTx": "client",
    "ReplicaConnectionError": "client",
    "ScopesRefused": "client",
    "TxOutcomeUnknown": "client",
    "Unauthorized": "client",
    "ReplicaClosed": "client",
    "serve": "server",
    "run_server": "server",
    "SyncServer": "server",
    "StoreInUse": "server",
    "store_in_use": "server",
    "Store": "store",
    "StoreError": "store",
    "open_store": "store",
    "Connection": "connection",
}


def __getattr__(name: str) -> Any:
    if name == "TxError":
        from datsync.core import TxError

        return TxError
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'datsync.shell' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS, "TxError"])


__all__ = sorted([*_EXPORTS, "TxError"])
