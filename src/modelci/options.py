"""Options every command shares, and how a command turns them into a config and an output folder.

Precedence, as DESIGN.md says: a flag, then its `MODELCI_*` environment variable, then
`modelci.yaml`, then the default. Flags that override the config default to None ("not given").
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from modelci.config import Config

F = TypeVar("F", bound=Callable[..., Any])
DEFAULT_OUT = ".modelci/out"

config_option = click.option(
    "--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), envvar="MODELCI_CONFIG",
    default=None, help="The config file.  [default: modelci.yaml]",
)


def _remember_out(ctx: click.Context, _param: click.Parameter, value: Path) -> Path:
    """Where an unexpected error's traceback goes (`modelci.cli.main` passes a dict as the context's obj)."""
    if isinstance(ctx.obj, dict):
        ctx.obj["out"] = value
    return value


out_option = click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), envvar="MODELCI_OUT", default=DEFAULT_OUT,
    show_default=True, help="Folder for everything the command writes.", callback=_remember_out,
)

# NOTE: below 1 is click's usage error (exit 2) naming --repeats; evaluate.repeats is checked with the config
repeats_option = click.option(
    "--repeats", type=click.IntRange(min=1), default=None,
    help="Repeat the K-fold cross-validation R times, each with other folds (overrides evaluate.repeats).",
)


def common(function: F) -> F:
    """--config and --out, in that order in every command's help."""
    return config_option(out_option(function))


def prepare(config_path: Path | None, out: Path) -> Config:
    from modelci.config import load_config

    config = load_config(config_path)
    out.mkdir(parents=True, exist_ok=True)
    return config
