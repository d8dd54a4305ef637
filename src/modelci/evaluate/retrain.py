"""One more model of the configured recipe, trained and exported exactly as `modelci train` and `modelci export`
do, for K-fold's folds and compare.seeds' seeds; its failures carry its name."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from modelci.errors import CheckFailed

if TYPE_CHECKING:
    from modelci.config import Config
    from modelci.data.tables import Datasets


def train_and_export(config: Config, datasets: Datasets, folder: Path, name: str) -> None:
    """Train on `datasets` into `folder`, then export with the parity check; `name` ("fold 2/5") leads any error."""
    from modelci.export.onnx_export import export_model
    from modelci.frameworks.fitting import Diverged
    from modelci.train.trainer import train

    try:
        train(config, datasets, folder)
    except Diverged as exc:
        raise Diverged(f"{name}: {exc.message}", epoch=exc.epoch, hint=exc.hint or "") from None
    parity = export_model(config, datasets.eval, folder, datasets.validation)
    if not parity.passed:
        raise CheckFailed(f"{name}: its ONNX model does not match its trained model: " + "; ".join(parity.problems))
