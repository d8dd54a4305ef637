"""`modelci evaluate`: task metrics of the exported ONNX model on the evaluation rows."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from modelci import atomic
from modelci.evaluate.metrics import DEFAULT_METRICS, compute
from modelci.evaluate.onnx_model import OnnxModel
from modelci.features import Target

if TYPE_CHECKING:
    import pandas as pd

    from modelci.config import Config

METRICS_FILE = "metrics.json"
METRICS_VERSION = 1


@dataclass(frozen=True)
class MetricsReport:
    task: str
    rows: int
    metrics: dict[str, float | None]
    model_digest: str
    classes: list[Any]
    confusion_matrix: list[list[int]] | None
    version: int = METRICS_VERSION

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def file_digest(path: Path) -> str:
    with path.open("rb") as handle:
        return atomic.stream_sha256(handle)[0]


def metric_names(config: Config) -> tuple[str, ...]:
    return config.evaluate.metrics or DEFAULT_METRICS[config.task]


def labels_of(model: OnnxModel, frame: pd.DataFrame) -> np.ndarray:
    """The label column encoded the way the model's task and classes say."""
    target = Target(model.task, tuple(model.classes))
    return target.encode(frame[model.label]).astype(np.float64)


def finite_or_none(value: float) -> float | None:
    """JSON has no NaN: an undefined metric (one class only, say) is written as null."""
    return value if math.isfinite(value) else None


def evaluate_model(config: Config, frame: pd.DataFrame, model_path: Path, out: Path) -> MetricsReport:
    model = OnnxModel(model_path)
    y = labels_of(model, frame)
    scores = model.predict(frame)
    values = compute(metric_names(config), y, scores)
    matrix = None
    if model.task != "regression":
        k = len(model.classes)
        counts = np.zeros((k, k), dtype=np.int64)
        np.add.at(counts, (y.astype(np.int64), np.argmax(scores, axis=1)), 1)
        matrix = counts.tolist()
    report = MetricsReport(task=model.task, rows=len(frame), metrics={k: finite_or_none(v) for k, v in values.items()},
                           model_digest=file_digest(model_path), classes=model.classes, confusion_matrix=matrix)
    atomic.write_json(out / METRICS_FILE, report.to_json())
    return report
