"""`modelci evaluate`."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

import click

from modelci import github
from modelci.options import common, prepare, repeats_option

if TYPE_CHECKING:
    from modelci.config import Config
    from modelci.data.tables import Datasets
    from modelci.evaluate.evaluator import MetricsReport


def stage(config: Config, out: Path, datasets: Datasets, model: Path | None = None) -> MetricsReport:
    from modelci.evaluate.evaluator import evaluate_model
    from modelci.evaluate.kfold import cross_validate
    from modelci.evaluate.metrics import shown
    from modelci.evaluate.seeds import score_seeds, train_seeds

    kfold = None
    if config.evaluate.kfold:
        repeated = f", repeated {config.evaluate.repeats} times" if config.evaluate.repeats > 1 else ""
        with github.group(f"{config.evaluate.kfold}-fold cross-validation{repeated}"):
            kfold = cross_validate(config, datasets, out, config.evaluate.kfold)
            github.log("    " + ", ".join(f"{name} {shown(s['mean'])} ± {shown(s['std'])}"
                                          for name, s in kfold["metrics"].items()))
    seeds = None
    if config.compare.seeds > 1 and model is None:
        with github.group(f"Training noise: {config.compare.seeds} seeds (compare.seeds)"):
            train_seeds(config, datasets, out)
            seeds = score_seeds(config, datasets.eval, out)
            github.log("    " + ", ".join(f"{name} {shown(s['mean'])} ± {shown(s['std'])}"
                                          for name, s in seeds["metrics"].items()))
    with github.group("Evaluation (ONNX Runtime)"):
        report = evaluate_model(config, datasets.eval, model or out / "model.onnx", out, kfold, seeds)
        counted = "images" if datasets.images else "rows"
        github.log(f"    {report.rows} {counted}: " + ", ".join(f"{k} {shown(v)}" for k, v in report.metrics.items()))
    return report


@click.command()
@common
@click.option("--model", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The ONNX model to evaluate.  [default: OUT/model.onnx]")
@click.option("--kfold", type=click.IntRange(min=0), default=None,
              help="Also cross-validate on the training data with K folds (overrides evaluate.kfold; 0: none).")
@repeats_option
def evaluate(config_path: Path | None, out: Path, model: Path | None, kfold: int | None, repeats: int | None) -> None:
    """Compute the configured metrics of the exported model on the evaluation set; writes metrics.json."""
    from modelci.data.tables import load_datasets
    from modelci.errors import UsageError

    if kfold == 1:
        raise UsageError("--kfold 1 is not cross-validation", hint="use 2 folds or more, or 0 for none")
    config = prepare(config_path, out).with_kfold(kfold)
    if repeats is not None:
        if not config.evaluate.kfold:
            raise UsageError(f"--repeats {repeats} repeats K-fold cross-validation, and none is asked for",
                             hint="add --kfold K (or evaluate.kfold: K), or leave out --repeats")
        config = dataclasses.replace(config, evaluate=dataclasses.replace(config.evaluate, repeats=repeats))
    stage(config, out, load_datasets(config), model)
