"""`modelci evaluate`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from modelci import github
from modelci.options import common, prepare

if TYPE_CHECKING:
    from modelci.config import Config
    from modelci.data.tables import Datasets
    from modelci.evaluate.evaluator import MetricsReport


def stage(config: Config, out: Path, datasets: Datasets, model: Path | None = None) -> MetricsReport:
    from modelci.evaluate.evaluator import evaluate_model
    from modelci.evaluate.kfold import cross_validate
    from modelci.evaluate.metrics import shown

    kfold = None
    if config.evaluate.kfold:
        with github.group(f"{config.evaluate.kfold}-fold cross-validation"):
            kfold = cross_validate(config, datasets, out, config.evaluate.kfold)
            github.log("    " + ", ".join(f"{name} {shown(s['mean'])} ± {shown(s['std'])}"
                                          for name, s in kfold["metrics"].items()))
    with github.group("Evaluation (ONNX Runtime)"):
        report = evaluate_model(config, datasets.eval, model or out / "model.onnx", out, kfold)
        github.log(f"    {report.rows} rows: " + ", ".join(f"{k} {shown(v)}" for k, v in report.metrics.items()))
    return report


@click.command()
@common
@click.option("--model", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The ONNX model to evaluate.  [default: OUT/model.onnx]")
@click.option("--kfold", type=click.IntRange(min=0), default=None,
              help="Also cross-validate on the training data with K folds (overrides evaluate.kfold; 0: none).")
def evaluate(config_path: Path | None, out: Path, model: Path | None, kfold: int | None) -> None:
    """Compute the configured metrics of the exported model on the evaluation set; writes metrics.json."""
    from modelci.data.tables import load_datasets
    from modelci.errors import UsageError

    if kfold == 1:
        raise UsageError("--kfold 1 is not cross-validation", hint="use 2 folds or more, or 0 for none")
    config = prepare(config_path, out).with_kfold(kfold)
    stage(config, out, load_datasets(config), model)
