"""`modelci compare`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from modelci import github
from modelci.options import common, prepare

if TYPE_CHECKING:
    import pandas as pd

    from modelci.compare.comparison import Comparison
    from modelci.config import Config
    from modelci.registry.reference import Reference

BASELINE_TAG = "main"


def baseline_reference(config: Config, baseline: str | None) -> Reference:
    """`--baseline` as given (relative to the working directory), else `<registry>:main`."""
    from modelci.registry.reference import configured_registry, parse_reference

    if baseline:
        return parse_reference(baseline)
    return configured_registry(config).with_tag(BASELINE_TAG)


def stage(config: Config, out: Path, eval_frame: pd.DataFrame, baseline: Reference) -> Comparison:
    """Compare and gate; raises CheckFailed when the gate says no."""
    from modelci.compare.comparison import compare as compare_models
    from modelci.errors import CheckFailed

    with github.group(f"Comparison with {baseline}"):
        result = compare_models(config, eval_frame, out / "model.onnx", baseline, out)
    if not result.passed:
        reasons = "; ".join(result.failures()) or str(result.reason)
        raise CheckFailed(f"the gate failed: {reasons}", hint="see comparison.json and report.md")
    return result


@click.command()
@common
@click.option("--baseline", default=None, help="The baseline artifact.  [default: REGISTRY:main]")
def compare(config_path: Path | None, out: Path, baseline: str | None) -> None:
    """Compare the candidate (OUT/model.onnx) with the baseline on the same rows and apply the gate."""
    from modelci.data.tables import load_datasets

    config = prepare(config_path, out)
    stage(config, out, load_datasets(config).eval, baseline_reference(config, baseline))
