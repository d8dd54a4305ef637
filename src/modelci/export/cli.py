"""`modelci export`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from modelci import github
from modelci.options import common, prepare

if TYPE_CHECKING:
    import pandas as pd

    from modelci.config import Config
    from modelci.export.parity import ParityReport


def stage(config: Config, out: Path, eval_frame: pd.DataFrame, validation: pd.DataFrame | None = None) -> ParityReport:
    """Export and check parity; raises CheckFailed when the ONNX model does not match. `validation`: the rows a
    threshold is chosen on, when the caller has them (else export reads them itself when it needs them)."""
    from modelci.errors import CheckFailed
    from modelci.export.onnx_export import export_model

    with github.group("Export to ONNX and parity check"):
        report = export_model(config, eval_frame, out, validation)
        if report.outputs:
            github.log(f"    {report.exporter} exporter, opset {report.opset}; parity on {report.rows} rows: "
                       f"largest difference {report.outputs[0].max_abs_error:.2e}")
        else:
            github.log(f"    the model came from {report.exporter} as ONNX: no parity to check")
        if report.quantization is not None:
            q, m = report.quantization, report.quantization.metric
            github.log(f"    int8 quantization: {q.fp32_bytes / 1024:,.1f} KiB -> {q.int8_bytes / 1024:,.1f} KiB; "
                       f"{m.name} {m.fp32:.4f} -> {m.int8:.4f} ({m.change:+.4f}); largest output change "
                       f"{q.max_abs_output_change:.2e}")
    if not report.passed:
        raise CheckFailed("the ONNX model does not match the trained model: " + "; ".join(report.problems),
                          hint="see parity.json; an operator may export differently, try another export.opset")
    return report


@click.command()
@common
def export(config_path: Path | None, out: Path) -> None:
    """Export the trained model to ONNX and check parity; writes model.onnx, parity.json, samples.json."""
    from modelci.data.tables import load_datasets

    config = prepare(config_path, out)
    datasets = load_datasets(config)
    stage(config, out, datasets.eval, datasets.validation)
