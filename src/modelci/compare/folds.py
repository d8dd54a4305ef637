"""Fold-wise differences of the candidate's and the baseline's K-fold cross-validation.

Both artifacts keep their K-fold results (metrics.json). When the two were cross-validated on the
same folds (the same training data, folds, seed and grouping), each fold is a paired comparison
of its own, and the spread of the K differences gives a Student-t interval of the mean difference
that reflects retraining on other data, which the evaluation-set bootstrap does not.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from modelci.evaluate.evaluator import finite_or_none

# What makes two cross-validations use the same folds
SAME_FOLDS = ("folds", "stratified", "group", "seed", "fold_rows")


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
    metrics = {}
    for name, found in candidate["metrics"].items():
        if name in baseline["metrics"]:
            metrics[name] = _interval(np.array(found["folds"], dtype=float) -
                                      np.array(baseline["metrics"][name]["folds"], dtype=float), confidence)
    return {"folds": candidate["folds"], "reason": None, "metrics": metrics}


def _kfold(path: Path) -> dict[str, Any] | None:
    found = json.loads(path.read_text()).get("kfold") if path.is_file() else None
    return found or None


def _unpaired(candidate: dict[str, Any], baseline: dict[str, Any] | None, candidate_out: Path,
              baseline_dir: Path) -> str | None:
    if baseline is None:
        return "the baseline was not cross-validated"
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


def _interval(differences: np.ndarray, confidence: float) -> dict[str, Any]:
    finite = differences[np.isfinite(differences)]
    mean = float(finite.mean()) if finite.size else math.nan
    low = high = math.nan
    if finite.size > 1:
        half = stats.t.ppf((1 + confidence) / 2, finite.size - 1) * finite.std(ddof=1) / math.sqrt(finite.size)
        low, high = mean - half, mean + half
    shown = [None if not math.isfinite(v) else round(float(v), 6) for v in differences]
    return {"differences": shown, "mean": finite_or_none(mean), "ci_low": finite_or_none(low),
            "ci_high": finite_or_none(high)}
