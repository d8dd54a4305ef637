"""Training progress: a live bar on a terminal, one line per epoch in a CI log.

A CI log keeps every carriage return as a new line, so the bar is drawn only when stderr is a
terminal and no CI variable is set; the epoch lines are written either way.
"""

from __future__ import annotations

import os
import sys
import time

from modelci import github

BAR_WIDTH = 24
REDRAW_SECONDS = 0.1


def live_terminal() -> bool:
    return (sys.stderr.isatty() and not os.environ.get("CI") and not github.in_actions()
            and os.environ.get("RANK", "0") == "0")  # NOTE: one bar for a torchrun job, the first process's


class Progress:
    def __init__(self, epochs: int, steps: int, *, live: bool | None = None) -> None:
        self.epochs, self.steps = epochs, steps
        self.live = live_terminal() if live is None else live
        self._drawn = 0.0

    def step(self, epoch: int, step: int) -> None:
        """After `step` of this epoch's `steps` batches (redrawn at most ten times a second)."""
        now = time.monotonic()
        if not self.live or (now - self._drawn < REDRAW_SECONDS and step < self.steps):
            return
        self._drawn = now
        filled = BAR_WIDTH * step // self.steps
        bar = "#" * filled + "-" * (BAR_WIDTH - filled)
        sys.stderr.write(f"\r    epoch {epoch:>3}/{self.epochs}  [{bar}] {step}/{self.steps} batches")
        sys.stderr.flush()

    def epoch(self, line: str) -> None:
        if self.live:
            sys.stderr.write("\r\033[K")  # NOTE: clears the bar's line before the epoch's line replaces it
        github.log(line)
