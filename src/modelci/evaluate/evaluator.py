"""`modelci evaluate`: task metrics of the exported ONNX model on the evaluation rows."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from modelci import atomic
from modelci.errors import UsageError
from modelci.evaluate.metrics import DEFAULT_METRICS, DEFAULT_THRESHOLD, binary_curve, compute, decided
from modelci.evaluate.onnx_model import OnnxModel
from modelci.features import Target

if TYPE_CHECKING:
    import pandas as pd

    from modelci.config import Config

METRICS_FILE = "metrics.json"
METRICS_VERSION = 3  # 3: seeds, threshold, and K-fold's own version 2
CURVE_POINTS = 101  # points kept of the ROC and precision-recall curves: enough to draw, small to store
CALIBRATION_BINS = 10
SLICE_VALUES = 20  # a numeric slice column with more distinct values is cut into quartiles instead
SHOWN_ROWS = 5  # rows named in a message; the count says how many there are


@dataclass(frozen=True)
class MetricsReport:
    task: str
    rows: int
    metrics: dict[str, float | None]
    model_digest: str
    classes: list[Any]
    confusion_matrix: list[list[int]] | None
    curves: dict[str, dict[str, list[float]]] | None = None  # binary: roc (fpr, tpr) and pr (recall, precision)
    calibration: dict[str, Any] | None = None  # binary: predicted against observed, per probability bin
    slices: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # column -> each value's metrics
    kfold: dict[str, Any] | None = None  # K-fold cross-validation of the training data, when asked for
    seeds: dict[str, Any] | None = None  # every seed's metrics when compare.seeds > 1 (evaluate/seeds.py)
    threshold: float | None = None  # binary: the model's classification threshold, which the label metrics use
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


def non_finite(output: str, values: np.ndarray, frame: pd.DataFrame) -> str | None:
    """Where an output is NaN or infinite, in words (rows by the frame's index); None where it is not."""
    bad = ~np.isfinite(values.reshape(len(values), -1))
    rows = np.flatnonzero(bad.any(axis=1))
    if not len(rows):
        return None
    shown_rows = ", ".join(str(frame.index[r]) for r in rows[:SHOWN_ROWS]) + (", …" if len(rows) > SHOWN_ROWS else "")
    columns = (f" (columns {', '.join(map(str, np.flatnonzero(bad.any(axis=0))))} of {bad.shape[1]})"
               if values.ndim > 1 else "")
    return (f"output '{output}'{columns} is NaN or infinite for {len(rows)} of {len(values)} rows: "
            f"rows {shown_rows}, counted from 0")


def scores_of(model: OnnxModel, frame: pd.DataFrame) -> np.ndarray:
    """The model's outputs on `frame`, which must all be numbers: a metric of NaN would hide the fault."""
    scores = model.predict(frame)
    problem = non_finite(model.output, scores, frame)
    if problem is not None:
        raise UsageError(f"{model.path}: {problem}",
                         hint="the model cannot score these rows: look at their values (extreme ones?), or train "
                              "it again (a lower train.lr, train.grad_clip)")
    return scores


def finite_or_none(value: float) -> float | None:
    """JSON has no NaN: an undefined metric (one class only, say) is written as null."""
    return value if math.isfinite(value) else None


def _metrics(names: tuple[str, ...], y: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float | None]:
    return {k: finite_or_none(v) for k, v in compute(names, y, scores, threshold).items()}


def _thin(points: int) -> np.ndarray:
    """At most CURVE_POINTS indices spread evenly over `points`, the first and the last included."""
    return np.unique(np.linspace(0, points - 1, min(points, CURVE_POINTS)).round().astype(np.int64))


def curves(y: np.ndarray, p: np.ndarray) -> dict[str, dict[str, list[float]]] | None:
    _, tp, fp = binary_curve(y, p)
    if tp[-1] == 0 or fp[-1] == 0:
        return None
    fpr, tpr = np.r_[0.0, fp / fp[-1]], np.r_[0.0, tp / tp[-1]]
    recall, precision = tp / tp[-1], tp / (tp + fp)
    roc, pr = _thin(len(fpr)), _thin(len(recall))
    return {"roc": {"fpr": np.round(fpr[roc], 6).tolist(), "tpr": np.round(tpr[roc], 6).tolist()},
            "pr": {"recall": np.round(recall[pr], 6).tolist(), "precision": np.round(precision[pr], 6).tolist()}}


def calibration(y: np.ndarray, p: np.ndarray) -> dict[str, Any]:
    """Mean predicted probability against the observed rate in equal-width bins, and their weighted gap (ECE)."""
    positive = p[:, 1]
    index = np.minimum((positive * CALIBRATION_BINS).astype(np.int64), CALIBRATION_BINS - 1)
    rows = np.bincount(index, minlength=CALIBRATION_BINS)
    held = rows > 0
    predicted = np.bincount(index, weights=positive, minlength=CALIBRATION_BINS)[held] / rows[held]
    observed = np.bincount(index, weights=y, minlength=CALIBRATION_BINS)[held] / rows[held]
    edges = np.linspace(0, 1, CALIBRATION_BINS + 1)
    return {"bins": [{"low": float(lo), "high": float(hi), "rows": int(n), "mean_predicted": float(mp),
                      "observed": float(ob)}
                     for lo, hi, n, mp, ob in zip(edges[:-1][held], edges[1:][held], rows[held], predicted, observed,
                                                  strict=True)],
            "expected_calibration_error": float(np.sum(rows[held] * np.abs(predicted - observed)) / len(y))}


def _slice_groups(column: pd.Series) -> list[tuple[str, np.ndarray]]:
    """(name, row mask) per value of the column, or per quartile of a numeric column with many values."""
    import pandas as pd

    if pd.api.types.is_numeric_dtype(column) and column.nunique() > SLICE_VALUES:
        # NOTE: quartiles that share an edge (most values equal) are merged, so there may be fewer bins
        quartile, edges = pd.qcut(column, 4, labels=False, retbins=True, duplicates="drop")
        names = [f"≤ {edges[1]:g}", *(f"{lo:g} – {hi:g}" for lo, hi in pairwise(edges[1:-1]))]
        if len(edges) > 2:
            names.append(f"> {edges[-2]:g}")
        groups = [(name, (quartile == i).to_numpy()) for i, name in enumerate(names[:len(edges) - 1])]
        groups.append(("null", column.isna().to_numpy()))
        return [(name, mask) for name, mask in groups if mask.any()]
    shown = column.astype(object).where(column.notna(), "null").astype(str).to_numpy()
    return [(value, shown == value) for value in sorted(set(shown))]


def slices(frame: pd.DataFrame, columns: tuple[str, ...], names: tuple[str, ...], y: np.ndarray,
           scores: np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> dict[str, list[dict[str, Any]]]:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise UsageError(f"evaluate.slices: {', '.join(missing)} not in the evaluation data",
                         hint=f"its columns are {', '.join(map(str, frame.columns))}")
    return {column: [{"value": value, "rows": int(mask.sum()),
                      "metrics": _metrics(names, y[mask], scores[mask], threshold)}
                     for value, mask in _slice_groups(frame[column])]
            for column in columns}


def evaluate_frame(config: Config, frame: pd.DataFrame, model_path: Path) -> dict[str, float | None]:
    """The configured metrics of an ONNX model on `frame`."""
    model = OnnxModel(model_path)
    return _metrics(metric_names(config), labels_of(model, frame), scores_of(model, frame), model.threshold)


def evaluate_model(config: Config, frame: pd.DataFrame, model_path: Path, out: Path,
                   kfold: dict[str, Any] | None = None, seeds: dict[str, Any] | None = None) -> MetricsReport:
    model = OnnxModel(model_path)
    y = labels_of(model, frame)
    scores = scores_of(model, frame)
    names = metric_names(config)
    matrix = None
    if model.task != "regression":
        k = len(model.classes)
        counts = np.zeros((k, k), dtype=np.int64)
        np.add.at(counts, (y.astype(np.int64), decided(scores, model.threshold)), 1)
        matrix = counts.tolist()
    binary = model.task == "binary"
    report = MetricsReport(task=model.task, rows=len(frame), metrics=_metrics(names, y, scores, model.threshold),
                           model_digest=file_digest(model_path), classes=model.classes, confusion_matrix=matrix,
                           curves=curves(y, scores) if binary else None,
                           calibration=calibration(y, scores) if binary else None,
                           slices=slices(frame, config.evaluate.slices, names, y, scores, model.threshold),
                           kfold=kfold, seeds=seeds, threshold=model.threshold if binary else None)
    atomic.write_json(out / METRICS_FILE, report.to_json())
    return report
