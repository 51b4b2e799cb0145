"""The store lock: one server process at a time on a store file (``STORE.lock``, an ``flock``)."""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

from ..store import StoreError


class StoreInUse(Exception):
    """Another process serves this store (it holds ``STORE.lock``)."""

    def __init__(self, path: Path):
        super().__init__(f"{path} is in use by another datsync process (lock file {lock_path(path)})")
        self.path = path


def lock_path(store_path: str | Path) -> Path:
    """The lock file of a store: ``STORE.lock`` next to it."""
    return Path(f"{store_path}.lock")


class StoreLock:
    """An exclusive ``flock`` on ``STORE.lock`` for as long as a server uses the store. The kernel
    releases it when the process ends, however it ends (``kill -9`` included)."""

    def __init__(self, store_path: str | Path):
        self.path = lock_path(store_path)
        self._fd: int | None = None

    def acquire(self) -> StoreLock:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise StoreError("store/unreadable", f"cannot create the lock file {self.path}: {e.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise StoreInUse(Path(str(self.path)[: -len(".lock")])) from None
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None



def store_in_use(path: str | Path) -> bool:
    """True while a server (this process or another) holds the store at ``path``."""
    lp = lock_path(path)
    try:
        fd = os.open(lp, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # closing drops the lock if we took it
    return False
