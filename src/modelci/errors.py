"""The errors modelci reports to its users, each with its exit code and a way to fix it.

They are turned into output in one place, `modelci.cli.main`; nothing else catches and prints them.
Exit codes (documented in the README):

- 0: success;
- 1: a check or the gate said no (`CheckFailed`): the expected "red" outcome;
- 2: the user's input is wrong (`UsageError` and its subclasses);
- 3: the registry cannot be reached or answered something modelci cannot use (`RegistryError`);
- 4: training ran out of memory (`OutOfMemory`); `train-log.json` records the peak memory;
- 5: `modelci comment` could not write the pull-request comment (`CommentFailed`);
- 70: an error modelci did not expect (a bug, or a failure of its environment it cannot name): one
  line, and the traceback in a file under `--out` (`TRACEBACK_FILE`);
- 130: interrupted by SIGINT (Ctrl-C, or a cancelled job); 143: stopped by SIGTERM.
"""

from __future__ import annotations

INTERNAL_ERROR = 70  # NOTE: EX_SOFTWARE of sysexits.h, the usual code for "the program failed, not its input"
INTERRUPTED = 130  # NOTE: 128 + the signal's number, as shells report a process a signal ended
TERMINATED = 143
TRACEBACK_FILE = "traceback.txt"


class ModelciError(Exception):
    """Base of every error modelci reports on purpose."""

    exit_code = 2

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if self.hint is None else f"{self.message}\n  hint: {self.hint}"


class UsageError(ModelciError):
    """The user's input is wrong: an option, a path, a file that cannot be read."""

    exit_code = 2


class ConfigError(UsageError):
    """`modelci.yaml` is missing or invalid. `problems` lists every problem found, not just one."""

    def __init__(self, path: str, problems: list[str], *, hint: str | None = None) -> None:
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{path} is not valid:\n{lines}", hint=hint)
        self.path = path
        self.problems = problems


class DataError(UsageError):
    """Training or evaluation data cannot be read or used at all."""


class ModelFactoryError(UsageError):
    """The model factory named in the config cannot be imported, called or used."""


class RegistryError(ModelciError):
    """A registry cannot be reached, or holds something modelci cannot use."""

    exit_code = 3


class CheckFailed(ModelciError):
    """A check ran and said no: data checks, parity, or the gate. Its report has been written."""

    exit_code = 1


class CommentFailed(ModelciError):
    """`modelci comment` could not write the pull-request comment (its whole job)."""

    exit_code = 5


class InternalError(ModelciError):
    """An error modelci did not expect: a bug, or a failure it cannot name. Its traceback is in a file."""

    exit_code = INTERNAL_ERROR


class OutOfMemory(ModelciError):
    """Training ran out of GPU (or CPU) memory. The training log says how far it got and the peak memory."""

    exit_code = 4


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised wherever the program is, like Ctrl-C's KeyboardInterrupt: what a cancelled CI job or
    a stopped container sends. Every cleanup that runs for Ctrl-C (temporary files, a deploy's tag moved
    back) runs for it too."""


def first_line(exc: BaseException, limit: int = 200) -> str:
    """An exception's message for one line of modelci's own: its first line, at most `limit` characters."""
    return (str(exc).strip().splitlines() or [""])[0][:limit]


# NOTE: set by `modelci train --nproc` for its torchrun workers: each records its error here rather
# than printing it, and the launcher shows the first one, once, with its exit code.
ERROR_FILE_VARIABLE = "MODELCI_ERROR_FILE"


def record_for_launcher(exc: ModelciError) -> bool:
    """In a torchrun worker started by `--nproc`: write the error for the launcher; False elsewhere."""
    import json
    import os

    path, rank = os.environ.get(ERROR_FILE_VARIABLE), os.environ.get("RANK")
    if not path or rank is None:
        return False
    with open(f"{path}.{rank}", "w", encoding="utf-8") as handle:
        json.dump({"exit_code": exc.exit_code, "message": exc.message, "hint": exc.hint}, handle)
    return True
