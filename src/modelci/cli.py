"""The `modelci` command: a lazy click group, and `main(argv) -> int`, where errors become output.

Subcommands are imported only when used, and their modules import heavy libraries (torch,
onnxruntime, pandas) inside the functions that need them, so `modelci --help` stays fast.
"""

from __future__ import annotations

import errno
import importlib
import signal
import sys
import tempfile
import threading
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import click

from modelci import __version__, github
from modelci.errors import (
    INTERNAL_ERROR,
    INTERRUPTED,
    TERMINATED,
    TRACEBACK_FILE,
    InternalError,
    ModelciError,
    OutOfMemory,
    Terminated,
    UsageError,
    record_for_launcher,
)
from modelci.extras import missing_extra

COMMANDS = {
    "run": "modelci.pipeline:run",
    "push-candidate": "modelci.pipeline:push_candidate",
    "data": "modelci.data.cli:data",
    "train": "modelci.train.cli:train",
    "tune": "modelci.tune.cli:tune",
    "export": "modelci.export.cli:export",
    "evaluate": "modelci.evaluate.cli:evaluate",
    "compare": "modelci.compare.cli:compare",
    "report": "modelci.report.cli:report",
    "comment": "modelci.report.cli:comment_command",
    "push": "modelci.registry.cli:push",
    "pull": "modelci.registry.cli:pull",
    "promote": "modelci.registry.cli:promote",
    "sign": "modelci.registry.cli:sign",
    "verify": "modelci.registry.cli:verify",
    "serve": "modelci.serve.cli:serve",
    "deploy": "modelci.deploy.cli:deploy",
    "rollback": "modelci.deploy.cli:rollback",
    "delivery": "modelci.deploy.cli:delivery",
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use (click's documented pattern)."""

    def __init__(self, *args: Any, lazy_subcommands: dict[str, str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_subcommands = lazy_subcommands

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*super().list_commands(ctx), *self.lazy_subcommands]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.lazy_subcommands:
            return super().get_command(ctx, cmd_name)
        module_name, _, attribute = self.lazy_subcommands[cmd_name].partition(":")
        command = getattr(importlib.import_module(module_name), attribute)
        assert isinstance(command, click.Command)
        return command


@click.group(cls=LazyGroup, lazy_subcommands=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="modelci")
def cli() -> None:
    """Continuous integration for machine-learning models.

    Options come from flags, then MODELCI_* environment variables, then modelci.yaml.

    \b
    Exit codes:
      0    success
      1    a check or the gate said no; its report has been written
      2    the input is wrong (config, paths, data, model); the message says how to fix it
      3    a registry failure
      4    out of memory (training records how far it got)
      5    modelci comment could not write the pull-request comment
      70   an unexpected error; the message says where its traceback is
      130  interrupted (SIGINT, Ctrl-C)
      143  stopped (SIGTERM)
    """


# NOTE: failures of the machine rather than of modelci or the input: the user fixes them (exit 2)
ENVIRONMENT_ERRORS = {
    errno.ENOSPC: "free space on that disk; for what modelci writes, --out (MODELCI_OUT) may name another",
    errno.EDQUOT: "free space within your quota; for what modelci writes, --out (MODELCI_OUT) may name another disk",
    errno.EROFS: "that file system is read-only; for what modelci writes, --out (MODELCI_OUT) may name another",
    errno.EACCES: "give the user running modelci access to it, or use another path",
    errno.EPERM: "give the user running modelci access to it, or use another path",
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code instead of exiting."""
    # NOTE: commands' --out option records itself here (options.out_option), for the traceback file
    state: dict[str, Any] = {}
    with _sigterm_raises():
        try:
            result = cli.main(args=list(argv) if argv is not None else sys.argv[1:], prog_name="modelci",
                              auto_envvar_prefix="MODELCI", standalone_mode=False, obj=state)
        except ModelciError as exc:
            return _report(exc)
        except click.ClickException as exc:
            exc.show()
            return exc.exit_code
        except click.exceptions.Abort as exc:
            terminated = isinstance(exc.__cause__, Terminated)
            github.log("stopped by SIGTERM" if terminated else "interrupted")
            return TERMINATED if terminated else INTERRUPTED
        except OSError as exc:
            if exc.errno not in ENVIRONMENT_ERRORS:
                return _internal_error(exc, state.get("out"))
            where = f": {exc.filename}" if exc.filename else ""
            return _report(UsageError(f"{exc.strerror or exc}{where}", hint=ENVIRONMENT_ERRORS[exc.errno]))
        except ModuleNotFoundError as exc:
            # NOTE: a framework that is an extra (torch) reached without it: the user installs the extra
            missing = missing_extra(exc, "this command")
            return _report(missing) if missing else _internal_error(exc, state.get("out"))
        except MemoryError as exc:
            return _report(OutOfMemory(f"out of memory ({type(exc).__name__})",
                                       hint="run it on a machine with more memory, or with smaller data"))
        except Exception as exc:
            return _internal_error(exc, state.get("out"))
    return result if isinstance(result, int) else 0


def _report(exc: ModelciError) -> int:
    if record_for_launcher(exc):
        return exc.exit_code
    github.error(exc.message)
    if exc.hint:
        github.log(f"  hint: {exc.hint}")
    return exc.exit_code


def _internal_error(exc: Exception, out: Path | None) -> int:
    """One line for the user, the traceback in a file: exit 1 is kept for what the gate says."""
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    try:
        # NOTE: a command without --out (pull, deploy) writes nothing into the current folder: a temporary one
        path = (out or Path(tempfile.mkdtemp(prefix="modelci-"))) / TRACEBACK_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"modelci {__version__}, python {sys.version.split()[0]}\n{text}", encoding="utf-8")
        where = f"the traceback is in {path}"
    except OSError:
        print(text, file=sys.stderr, end="")
        where = "its traceback is above"
    what = type(exc).__name__ + (f": {str(exc).splitlines()[0]}" if str(exc) else "")
    return _report(InternalError(f"unexpected error: {what} (exit {INTERNAL_ERROR}); {where}",
                                 hint="modelci cannot explain this failure; please report it with that file"))


@contextmanager
def _sigterm_raises() -> Iterator[None]:
    """SIGTERM raises `Terminated` while a command runs, so it cleans up as for Ctrl-C; restored after."""
    if threading.current_thread() is not threading.main_thread():
        yield  # NOTE: signal handlers can only be set from the main thread (a test calling main() in one)
        return

    def terminate(signum: int, frame: FrameType | None) -> None:
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
