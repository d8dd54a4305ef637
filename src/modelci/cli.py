"""The `modelci` command: a lazy click group, and `main(argv) -> int`, where errors become output.

Subcommands are imported only when used, and their modules import heavy libraries (torch,
onnxruntime, pandas) inside the functions that need them, so `modelci --help` stays fast.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from typing import Any

import click

from modelci import __version__, github
from modelci.errors import ModelciError, record_for_launcher

COMMANDS = {
    "run": "modelci.pipeline:run",
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
    "serve": "modelci.serve.cli:serve",
    "deploy": "modelci.deploy.cli:deploy",
    "rollback": "modelci.deploy.cli:rollback",
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
    Exit codes: 0 success, 1 a check or the gate said no, 2 bad input, 3 registry failure, 4 out of memory.
    """


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code instead of exiting."""
    try:
        result = cli.main(args=list(argv) if argv is not None else sys.argv[1:], prog_name="modelci",
                          auto_envvar_prefix="MODELCI", standalone_mode=False)
    except ModelciError as exc:
        if record_for_launcher(exc):
            return exc.exit_code
        github.error(exc.message)
        if exc.hint:
            github.log(f"  hint: {exc.hint}")
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Abort:
        github.log("aborted")
        return 130
    return result if isinstance(result, int) else 0
