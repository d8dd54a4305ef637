"""`modelci tune`."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click

from modelci.options import common


@click.command()
@common
@click.option("--trials", type=click.IntRange(min=1), default=None, help="Overrides tune.trials.")
@click.option("--storage", default=None,
              help="Overrides tune.storage: an Optuna storage URL that several runners share.")
@click.option("--study", default=None, help="Overrides tune.study.")
def tune(config_path: Path | None, out: Path, trials: int | None, storage: str | None, study: str | None) -> None:
    """Search hyperparameters (tune.space) with Optuna; writes tune-report.json and the best parameters."""
    from modelci.config import parse_config, read_raw
    from modelci.data.tables import load_datasets
    from modelci.errors import UsageError
    from modelci.tune.search import search

    # NOTE: the search starts from modelci.yaml itself, not from an earlier search's best parameters.
    raw, path = read_raw(config_path)
    config = parse_config(raw, path)
    if config.train.command is not None:
        raise UsageError("modelci tune trains through modelci; train.command runs a script of your own",
                         hint="search your script's parameters in the script itself, or use model.factory")
    if config.model.onnx is not None:
        raise UsageError("modelci tune trains through modelci; model.onnx is a model already made",
                         hint="search its parameters where it is trained, or use model.factory")
    if not config.tune.space:
        raise UsageError("modelci.yaml has no tune.space to search",
                         hint="add tune: {space: {train.lr: {type: float, low: 0.0001, high: 0.01, log: true}}}")
    config = dataclasses.replace(config, tune=dataclasses.replace(
        config.tune, storage=storage or config.tune.storage, study=study or config.tune.study))
    out.mkdir(parents=True, exist_ok=True)
    search(config, raw, load_datasets(config), out, trials or config.tune.trials)
