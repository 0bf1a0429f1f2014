"""The CLI's progress bar for piles and maps: `[#####.....] 512/1000 ok=510 failed=2` on stderr."""

from __future__ import annotations

import time
from typing import IO

__all__ = ["Progress"]


class Progress:
    """`\\r[#####.....] 512/1000 ok=510 failed=2` on a stream, redrawn at most every 0.1 s."""

    WIDTH = 20

    def __init__(self, total: int, stream: IO[str], enabled: bool) -> None:
        self.total, self.stream, self.enabled = total, stream, enabled
        self.ok = self.failed = 0
        self._drawn = 0.0
        self._shown = -1  # records counted when last drawn

    def update(self, ok: bool) -> None:
        """Count one record; redraw if due."""
        if ok:
            self.ok += 1
        else:
            self.failed += 1
        if self.enabled and time.monotonic() - self._drawn >= 0.1:
            self._draw()

    def _draw(self) -> None:
        done = self.ok + self.failed
        filled = self.WIDTH * done // self.total if self.total else self.WIDTH
        bar = "#" * filled + "." * (self.WIDTH - filled)
        self.stream.write(f"\r[{bar}] {done}/{self.total} ok={self.ok} failed={self.failed}")
        self.stream.flush()
        self._drawn = time.monotonic()
        self._shown = done

    def clear(self) -> None:
        """End the bar's line so another message can be printed."""
        if self.enabled and self._drawn:
            self.stream.write("\n")
            self._drawn = 0.0
            self._shown = -1

    def finish(self) -> None:
        """Draw the final state and end the line."""
        if self.enabled:
            if self._shown != self.ok + self.failed or not self._drawn:
                self._draw()
            self.stream.write("\n")
            self.stream.flush()
