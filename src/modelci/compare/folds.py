"""Fold-wise differences of the candidate's and the baseline's K-fold cross-validation.

Both artifacts keep their K-fold results (metrics.json). When the two were cross-validated on the
same folds (the same training data, folds, repeats, seed and grouping), each fold is a paired
comparison of its own, and the spread of the J = K·R differences gives an interval of the mean
difference that reflects retraining on other data, which the evaluation-set bootstrap does not.

The folds' training sets overlap, so their differences are correlated and a plain paired t over
them is too narrow. The interval is Nadeau and Bengio's corrected resampled t ("Inference for the
Generalization Error", Machine Learning 52, 2003): the variance of the differences multiplied by
(1/J + n_test/n_train) instead of 1/J, with J − 1 degrees of freedom.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from modelci.evaluate.evaluator import finite_or_none
from modelci.evaluate.kfold import KFOLD_VERSION

# What makes two cross-validations use the same folds
SAME_FOLDS = ("folds", "repeats", "stratified", "group", "seed", "validation", "fold_rows")
METHOD = "nadeau-bengio"


def fold_differences(candidate_out: Path, baseline_dir: Path, confidence: float) -> dict[str, Any] | None:
    """Per metric, the candidate's minus the baseline's value on each fold, their mean and interval;
    None when the candidate has no K-fold results; only a reason when the folds cannot be paired."""
    candidate = _kfold(candidate_out / "metrics.json")
    if candidate is None:
        return None
    baseline = _kfold(baseline_dir / "metrics.json")
    reason = _unpaired(candidate, baseline, candidate_out, baseline_dir)
    if reason:
        return {"folds": candidate["folds"], "reason": reason, "metrics": {}}
    assert baseline is not None
    ratio = holdout_ratio(candidate["fold_rows"])
    metrics = {}
    for name, found in candidate["metrics"].items():
        if name in baseline["metrics"]:
            metrics[name] = _interval(np.array(found["folds"], dtype=float) -
                                      np.array(baseline["metrics"][name]["folds"], dtype=float), ratio, confidence)
    return {"folds": candidate["folds"], "repeats": candidate["repeats"], "method": METHOD,
            "test_train_ratio": round(ratio, 6), "reason": None, "metrics": metrics}


def _kfold(path: Path) -> dict[str, Any] | None:
    """The K-fold results of metrics.json, in the current format whatever version wrote them."""
    found = json.loads(path.read_text()).get("kfold") if path.is_file() else None
    if not found:
        return None
    if found.get("version", 1) == 1:  # NOTE: before repeats: one partition, folds numbered within it
        found = {**found, "version": KFOLD_VERSION, "repeats": 1,
                 "fold_rows": [{"repeat": 1, **row} for row in found["fold_rows"]]}
    return dict(found)


def holdout_ratio(fold_rows: list[dict[str, Any]]) -> float:
    """n_test / n_train of Nadeau and Bengio's correction: the mean over the folds, which differ by a row or
    a group when the training data does not divide evenly."""
    return float(np.mean([row["rows"] / row["train_rows"] for row in fold_rows]))


def _unpaired(candidate: dict[str, Any], baseline: dict[str, Any] | None, candidate_out: Path,
              baseline_dir: Path) -> str | None:
    if baseline is None:
        return "the baseline was not cross-validated"
    if baseline["version"] > KFOLD_VERSION:
        return (f"the baseline's K-fold results are of a newer format (version {baseline['version']}) than this "
                f"modelci reads ({KFOLD_VERSION})")
    differing = [key for key in SAME_FOLDS if candidate.get(key) != baseline.get(key)]
    if differing:
        return f"the folds differ from the baseline's ({', '.join(differing)})"
    ours, theirs = _train_fingerprint(candidate_out), _train_fingerprint(baseline_dir)
    if ours is None or theirs is None:
        return "the training data's fingerprint is missing (data-report.json), so the folds cannot be matched"
    if ours != theirs:
        return "the training data differs from the baseline's, so the folds hold other rows"
    return None


def _train_fingerprint(folder: Path) -> str | None:
    path = folder / "data-report.json"
    if not path.is_file():
        return None
    return next((d["fingerprint"] for d in json.loads(path.read_text())["datasets"] if d["name"] == "train"), None)


def corrected_interval(differences: np.ndarray, ratio: float, confidence: float) -> tuple[float, float]:
    """Nadeau and Bengio's corrected resampled t interval of the mean of J fold-wise differences;
    `ratio` is n_test / n_train. NaN when fewer than two differences."""
    from scipy import stats  # NOTE: here: a run that promotes a judged candidate never loads scipy

    j = differences.size
    if j < 2:
        return math.nan, math.nan
    mean = float(differences.mean())
    half = stats.t.ppf((1 + confidence) / 2, j - 1) * math.sqrt((1 / j + ratio) * differences.var(ddof=1))
    return mean - half, mean + half


def _interval(differences: np.ndarray, ratio: float, confidence: float) -> dict[str, Any]:
    finite = differences[np.isfinite(differences)]
    mean = float(finite.mean()) if finite.size else math.nan
    low, high = corrected_interval(finite, ratio, confidence)
    shown = [None if not math.isfinite(v) else round(float(v), 6) for v in differences]
    return {"differences": shown, "mean": finite_or_none(mean), "ci_low": finite_or_none(low),
            "ci_high": finite_or_none(high)}
