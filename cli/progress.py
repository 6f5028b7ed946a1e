"""A one-line progress bar on stderr, only when stderr is a terminal."""

from __future__ import annotations

import sys
import time

from vhdkit.units import format_size

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import TextIO


class ProgressBar:
    def __init__(self, label: str, stream: TextIO = sys.stderr, min_interval: float = 0.1) -> None:
        self.label = label
        self.stream = stream
        self.enabled = stream.isatty()
        self.min_interval = min_interval
        self._last = 0.0
        self._start = time.monotonic()
        self.closed = False

    def __call__(self, done: int, total: int, detail: str = "") -> None:
        """Show ``done`` of ``total`` bytes; ``detail`` follows the figures (e.g. each disk's share)."""
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last < self.min_interval and done < total:
            return
        self._last = now
        fraction = done / total if total else 1.0
        width = 30
        filled = int(width * fraction)
        rate = done / max(now - self._start, 1e-6)
        self.stream.write(f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {fraction:6.1%} "
                          f"{format_size(done)} of {format_size(total)}, {format_size(int(rate))}/s"
                          + (f"  {detail}" if detail else "") + "\x1b[K")  # erase what a longer line left
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and not self.closed:
            self.closed = True
            self.stream.write("\n")
            self.stream.flush()
