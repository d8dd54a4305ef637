"""Task metrics in plain numpy.

They are called thousands of times by the paired bootstrap, so they avoid scikit-learn's per-call
validation overhead; the tests check every one against scikit-learn. Classification metrics take
the class-index labels `y` (n,) and the probabilities `p` (n, classes); regression metrics take the
targets and the predictions, both (n,).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.float64]
Metric = Callable[[Array, Array], float]

METRICS_BY_TASK: dict[str, tuple[str, ...]] = {
    "binary": ("roc_auc", "pr_auc", "accuracy", "f1", "precision", "recall", "log_loss", "brier"),
    "multiclass": ("accuracy", "top_2_accuracy", "top_3_accuracy", "top_5_accuracy", "f1_macro", "f1_weighted",
                   "log_loss"),
    "regression": ("rmse", "mae", "r2", "mape"),
}
DEFAULT_METRICS: dict[str, tuple[str, ...]] = {
    "binary": ("roc_auc", "accuracy", "f1", "log_loss"),
    "multiclass": ("accuracy", "f1_macro", "log_loss"),
    "regression": ("rmse", "mae", "r2"),
}
LOWER_IS_BETTER = frozenset({"log_loss", "brier", "rmse", "mae", "mape"})
# A binary model calls a row positive when its probability is at the threshold or above: 0.5 unless
# evaluate.threshold sets it or has it chosen on the validation rows (export/onnx_export.py); the exported
# model carries its own, and every figure computed from decided classes uses it.
DEFAULT_THRESHOLD = 0.5
THRESHOLD_CRITERIA = ("f1", "youden")  # evaluate.threshold: {choose: CRITERION}
_EPS = 1e-15


def _positive(p: Array) -> Array:
    return p[:, 1]


def decided(p: Array, threshold: float = DEFAULT_THRESHOLD) -> NDArray[np.int64]:
    """Each row's class: a binary model's positive class where its probability reaches `threshold`, else the
    most probable class."""
    if p.shape[1] == 2:
        return (_positive(p) >= threshold).astype(np.int64)
    return np.asarray(np.argmax(p, axis=1), dtype=np.int64)


def _binary_counts(y: Array, p: Array, threshold: float) -> tuple[float, float, float]:
    predicted = _positive(p) >= threshold
    actual = y == 1
    tp = float(np.sum(predicted & actual))
    return tp, float(np.sum(predicted)), float(np.sum(actual))


def accuracy(y: Array, p: Array, threshold: float = DEFAULT_THRESHOLD) -> float:
    return float(np.mean(decided(p, threshold) == y))


def precision(y: Array, p: Array, threshold: float = DEFAULT_THRESHOLD) -> float:
    tp, predicted, _ = _binary_counts(y, p, threshold)
    return tp / predicted if predicted else 0.0


def recall(y: Array, p: Array, threshold: float = DEFAULT_THRESHOLD) -> float:
    tp, _, actual = _binary_counts(y, p, threshold)
    return tp / actual if actual else 0.0


def f1(y: Array, p: Array, threshold: float = DEFAULT_THRESHOLD) -> float:
    tp, predicted, actual = _binary_counts(y, p, threshold)
    return 2 * tp / (predicted + actual) if predicted + actual else 0.0


def roc_auc(y: Array, p: Array) -> float:
    """Mann-Whitney U form of the area under the ROC curve, with ties given half credit."""
    scores = _positive(p)
    positives = y == 1
    n_pos = int(positives.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0 or not np.isfinite(scores).all():  # NOTE: a NaN score has no rank
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(len(scores), dtype=np.float64)
    # Average ranks for tied scores: each run of equal scores gets the mean of its positions.
    _, starts, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    mean_rank = starts + (counts + 1) / 2.0
    ranks[order] = np.repeat(mean_rank, counts)
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def binary_curve(y: Array, p: Array) -> tuple[Array, Array, Array]:
    """At each distinct score, highest first: that threshold, and the true and false positives at or above it."""
    scores = _positive(p)
    if len(scores) == 0:
        return np.zeros(0), np.zeros(0), np.zeros(0)
    order = np.argsort(-scores, kind="mergesort")
    sorted_scores, positive = scores[order], y[order] == 1
    last_of_tie = np.r_[np.flatnonzero(np.diff(sorted_scores)), len(scores) - 1]
    tp = np.cumsum(positive)[last_of_tie].astype(np.float64)
    return sorted_scores[last_of_tie], tp, (last_of_tie + 1) - tp


def pr_auc(y: Array, p: Array) -> float:
    """Average precision: precision at each threshold weighted by the recall it adds (no interpolation)."""
    _, tp, fp = binary_curve(y, p)
    if len(tp) == 0 or tp[-1] == 0 or not np.isfinite(_positive(p)).all():  # NOTE: a NaN score has no rank
        return float("nan")
    recall_gain = np.diff(np.r_[0.0, tp / tp[-1]])
    return float(np.sum(recall_gain * tp / (tp + fp)))


def log_loss(y: Array, p: Array) -> float:
    chosen = p[np.arange(len(y)), y.astype(np.int64)]
    return float(-np.mean(np.log(np.clip(chosen, _EPS, 1.0))))


def brier(y: Array, p: Array) -> float:
    return float(np.mean((_positive(p) - y) ** 2))


def _f1_per_class(y: Array, p: Array) -> tuple[Array, Array]:
    """Each class's F1 and its number of rows."""
    k = p.shape[1]
    labels, predicted = y.astype(np.int64), np.argmax(p, axis=1)
    tp = np.bincount(labels[predicted == labels], minlength=k).astype(np.float64)
    support = np.bincount(labels, minlength=k).astype(np.float64)
    denominator = np.bincount(predicted, minlength=k) + support
    return np.divide(2 * tp, denominator, out=np.zeros(k), where=denominator > 0), support


def f1_macro(y: Array, p: Array) -> float:
    return float(np.mean(_f1_per_class(y, p)[0]))


def f1_weighted(y: Array, p: Array) -> float:
    f1s, support = _f1_per_class(y, p)
    return float(np.dot(f1s, support) / support.sum())


def top_k_hits(k: int, y: Array, p: Array) -> NDArray[np.bool_]:
    """Whether each row's class is among the model's `k` most probable (all of them when there are no more)."""
    if k >= p.shape[1]:
        return np.ones(len(y), dtype=bool)
    # NOTE: a class tied with the k-th score counts only when it is among the first k (as scikit-learn's)
    top = np.argpartition(-p, k - 1, axis=1)[:, :k]
    return np.asarray(np.any(top == y.astype(np.int64)[:, None], axis=1))


def top_k_accuracy(k: int) -> Metric:
    """The share of rows whose class is among the model's `k` most probable (`top_k_hits`)."""
    def metric(y: Array, p: Array) -> float:
        return float(np.mean(top_k_hits(k, y, p)))

    return metric


def rmse(y: Array, pred: Array) -> float:
    return float(np.sqrt(np.mean((pred - y) ** 2)))


def mae(y: Array, pred: Array) -> float:
    return float(np.mean(np.abs(pred - y)))


def r2(y: Array, pred: Array) -> float:
    total = float(np.sum((y - np.mean(y)) ** 2))
    return 1.0 - float(np.sum((y - pred) ** 2)) / total if total else float("nan")


def mape(y: Array, pred: Array) -> float:
    """Mean absolute percentage error as a fraction; a zero target divides by machine epsilon (as in scikit-learn)."""
    return float(np.mean(np.abs(pred - y) / np.maximum(np.abs(y), np.finfo(np.float64).eps)))


FUNCTIONS: dict[str, Metric] = {
    "accuracy": accuracy, "precision": precision, "recall": recall, "f1": f1, "roc_auc": roc_auc, "pr_auc": pr_auc,
    "log_loss": log_loss, "brier": brier, "f1_macro": f1_macro, "f1_weighted": f1_weighted, "rmse": rmse,
    "mae": mae, "r2": r2, "mape": mape,
    "top_2_accuracy": top_k_accuracy(2), "top_3_accuracy": top_k_accuracy(3), "top_5_accuracy": top_k_accuracy(5),
}


def spread(values: list[float | None]) -> dict[str, float | None]:
    """The mean and the standard deviation (n - 1) of the defined values: K-fold's folds, or the seeds' models."""
    finite = np.array([v for v in values if v is not None], dtype=np.float64)
    return {"mean": float(finite.mean()) if len(finite) else None,
            "std": float(finite.std(ddof=1)) if len(finite) > 1 else None}


def shown(value: float | None) -> str:
    """A metric as the progress lines print it: four decimals, or a dash when it is undefined."""
    return "–" if value is None else f"{value:.4f}"


# The metrics of decided classes, which a binary model's threshold changes
THRESHOLDED: dict[str, Callable[[Array, Array, float], float]] = {
    "accuracy": accuracy, "precision": precision, "recall": recall, "f1": f1}


def value(name: str, y: Array, scores: Array, threshold: float = DEFAULT_THRESHOLD) -> float:
    """One metric; those of decided classes at the model's `threshold` (binary), the others from the scores alone."""
    return THRESHOLDED[name](y, scores, threshold) if name in THRESHOLDED else FUNCTIONS[name](y, scores)


def compute(names: tuple[str, ...], y: Array, scores: Array,
            threshold: float = DEFAULT_THRESHOLD) -> dict[str, float]:
    return {name: value(name, y, scores, threshold) for name in names}


def choose_threshold(criterion: str, y: Array, p: Array) -> float:
    """The threshold that maximizes `criterion` on these rows (both classes present): "f1", or "youden"
    (Youden's J, the true positive rate less the false positive rate).

    Only the distinct scores matter: between two neighbours every threshold decides alike, so each
    candidate lies halfway between the lowest score it calls positive and the next lower one (half
    of the lowest score, for calling every row positive) rather than on a score a new row may just
    miss. Of equally good candidates the one nearest DEFAULT_THRESHOLD wins (then the lower): a chosen
    threshold moves away from the default only as far as the rows say it should."""
    scores, tp, fp = binary_curve(y, p)
    positives, negatives = tp[-1], fp[-1]
    # NOTE: F1 is a ratio of whole numbers, correctly rounded, so equal F1s are equal floats; J is taken
    # times positives·negatives, a whole number: either way ties are seen as ties
    found = 2 * tp / (tp + fp + positives) if criterion == "f1" else tp * negatives - fp * positives
    candidates = (scores + np.r_[scores[1:], 0.0]) / 2
    usable = (candidates > 0) & (candidates < 1)
    if not usable.any():  # NOTE: every score 0: no threshold in (0, 1) tells the rows apart
        return DEFAULT_THRESHOLD
    best = usable & (found == found[usable].max())
    chosen = candidates[best]
    return float(chosen[np.lexsort((chosen, np.abs(chosen - DEFAULT_THRESHOLD)))[0]])
