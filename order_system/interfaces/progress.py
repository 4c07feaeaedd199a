"""A one-line progress bar for long work in a terminal (stderr), with no dependency."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class ProgressBar:
    """``bar = ProgressBar("publishing", total)``; call ``bar(done, total)`` as work advances."""

    def __init__(self, label: str, stream: TextIO | None = None, width: int = 30) -> None:
        self.label, self.stream, self.width = label, stream or sys.stderr, width
        self.began = time.monotonic()
        self._last = -1.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - self._last < 0.1:
            return  # redraw at most ten times a second
        self._last = now
        filled = self.width * done // max(total, 1)
        rate = done / max(now - self.began, 1e-9)
        self.stream.write(f"\r{self.label} [{'#' * filled}{'.' * (self.width - filled)}] {done}/{total} "
                          f"({rate:,.0f}/s)")
        if done >= total:
            self.stream.write("\n")
        self.stream.flush()
