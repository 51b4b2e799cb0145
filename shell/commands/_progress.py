"""A one-line progress bar on stderr, for long imports and bootstraps (no dependency).

Shown when stderr is a terminal, or when asked for (``--progress``); ``--no-progress`` hides it.
A bar with a known total shows ``label [#####-----] 52% 100,000/192,000 datoms 3.1s``; without a
total (a bootstrap whose size the client does not report) a spinner and the elapsed time. Redrawn
at most ten times a second; the last state stays on screen when it closes.
"""

from __future__ import annotations

import shutil
import sys
import threading
import time
from typing import TextIO

_SPIN = "|/-\\"


def enabled(flag: bool | None, stream: TextIO | None = None) -> bool:
    """Progress on ``stream`` (stderr): as ``flag`` says, or when it is a terminal if ``flag`` is None."""
    if flag is not None:
        return flag
    stream = stream or sys.stderr
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class Progress:
    """``with Progress("import", total=n, unit="datoms", show=True) as p: p.advance(k)``."""

    def __init__(self, label: str, total: int | None = None, *, unit: str = "", show: bool = False,
                 stream: TextIO | None = None):
        self.label = label
        self.total = total
        self.unit = unit
        self.show = show
        self.stream = stream or sys.stderr
        self.done = 0
        self._start = time.monotonic()
        self._last = 0.0
        self._tick = 0
        self._width = 0
        self._lock = threading.Lock()
        self._ticker: threading.Thread | None = None
        self._stop = threading.Event()

    def __enter__(self) -> Progress:
        self.draw(force=True)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def advance(self, n: int = 1) -> None:
        self.update(self.done + n)

    def update(self, done: int, total: int | None = None) -> None:
        self.done = done
        if total is not None:
            self.total = total
        self.draw()

    def spin(self) -> Progress:
        """Keep redrawing from a background thread (for a blocking call that reports nothing)."""
        if self.show and self._ticker is None:
            def tick() -> None:
                while not self._stop.wait(0.1):
                    self.draw()

            self._ticker = threading.Thread(target=tick, daemon=True)
            self._ticker.start()
        return self

    def line(self) -> str:
        elapsed = time.monotonic() - self._start
        unit = f" {self.unit}" if self.unit else ""
        if self.total:
            frac = min(1.0, self.done / self.total)
            cols = shutil.get_terminal_size((80, 20)).columns
            tail = f" {frac:4.0%} {self.done:,}/{self.total:,}{unit} {elapsed:.1f}s"
            width = max(10, min(40, cols - len(self.label) - len(tail) - 4))
            filled = int(width * frac)
            return f"{self.label} [{'#' * filled}{'-' * (width - filled)}]{tail}"
        self._tick += 1
        count = f" {self.done:,}{unit}" if self.done else ""
        return f"{self.label} {_SPIN[self._tick % len(_SPIN)]}{count} {elapsed:.1f}s"

    def draw(self, *, force: bool = False) -> None:
        if not self.show:
            return
        now = time.monotonic()
        with self._lock:
            if not force and now - self._last < 0.1:
                return
            self._last = now
            text = self.line()
            pad = " " * max(0, self._width - len(text))
            self._width = len(text)
            try:
                self.stream.write("\r" + text + pad)
                self.stream.flush()
            except (OSError, ValueError):
                self.show = False

    def close(self) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
            self._ticker = None
        if self.show:
            self.draw(force=True)
            try:
                self.stream.write("\n")
                self.stream.flush()
            except (OSError, ValueError):
                pass
            self.show = False
