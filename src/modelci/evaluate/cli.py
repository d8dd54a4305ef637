"""`modelci evaluate`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from modelci import github
from modelci.options import common, prepare

if TYPE_CHECKING:
    import pandas as pd

    from modelci.config import Config
    from modelci.evaluate.evaluator import MetricsReport


def stage(config: Config, out: Path, eval_frame: pd.DataFrame, model: Path | None = None) -> MetricsReport:
    from modelci.evaluate.evaluator import evaluate_model

    with github.group("Evaluation (ONNX Runtime)"):
        report = evaluate_model(config, eval_frame, model or out / "model.onnx", out)
        shown = ", ".join(f"{k} {'–' if v is None else f'{v:.4f}'}" for k, v in report.metrics.items())
        github.log(f"    {report.rows} rows: {shown}")
    return report


@click.command()
@common
@click.option("--model", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The ONNX model to evaluate.  [default: OUT/model.onnx]")
def evaluate(config_path: Path | None, out: Path, model: Path | None) -> None:
    """Compute the configured metrics of the exported model on the evaluation set; writes metrics.json."""
    from modelci.data.tables import load_datasets

    config = prepare(config_path, out)
    stage(config, out, load_datasets(config).eval, model)
