"""Processes modelci starts (torchrun, a team's training script) stop when modelci is stopped.

NOTE: Popen's context manager waits for the child without a limit after any exception but a plain
KeyboardInterrupt (an exact type check), so a SIGTERM (`errors.Terminated`) would wait for a child
that was never told to stop.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from modelci.errors import Terminated

NOTICE_S = 1.0  # a child in the terminal's process group got Ctrl-C itself: a moment to act on it first
GRACE_S = 30.0  # then the signal, passed on, and this long to finish before it is killed


@contextmanager
def stopped_with_modelci(process: subprocess.Popen[Any]) -> Iterator[None]:
    """When SIGINT or SIGTERM stops modelci inside the block, pass the signal on to `process` (unless it has
    ended by itself), give it GRACE_S to finish, kill it after that, then let the interruption go on."""
    try:
        yield
    except KeyboardInterrupt as exc:
        if not _ended(process, NOTICE_S):
            process.send_signal(signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT)
            if not _ended(process, GRACE_S):
                process.kill()
                process.wait()
        raise


def _ended(process: subprocess.Popen[Any], within_s: float) -> bool:
    try:
        process.wait(timeout=within_s)
    except subprocess.TimeoutExpired:
        return False
    return True
