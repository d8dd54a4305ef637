"""The gate's rules on paired predictions: relative drops, inconclusive differences, direction, McNemar."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from modelci.compare.comparison import MetricComparison, _apply_operational_rule, _roc_points
from modelci.compare.gate import judge, mcnemar
from modelci.config import GateRule, parse_config

rng = np.random.default_rng(2)
N = 4000
Y = (rng.random(N) < 0.4).astype(np.float64)
GOOD = np.clip(Y * 0.5 + rng.random(N) * 0.5, 0, 1)


def probabilities(p1: np.ndarray) -> np.ndarray:
    return np.column_stack([1 - p1, p1])


def flip(p1: np.ndarray, share: float) -> np.ndarray:
    """The same scores with a share of the rows turned into coin flips: a slightly worse model."""
    worse = p1.copy()
    rows = rng.random(N) < share
    worse[rows] = rng.random(int(rows.sum()))
    return worse


def rows_for(rule: dict, candidate: np.ndarray, baseline: np.ndarray) -> dict:  # type: ignore[type-arg]
    raw = {"task": "binary", "data": {"train": "t.csv", "label": "y"}, "model": {"factory": "m.py:build"},
           "evaluate": {"metrics": ["accuracy", "roc_auc"]}, "gate": [rule], "compare": {"bootstrap": 300}}
    config = parse_config(raw, Path("/tmp/modelci.yaml"))
    found = judge(config, Y, probabilities(candidate), probabilities(baseline), "binary", None).metrics
    return {row.name: row for row in found}


def test_relative_and_absolute_drops() -> None:
    worse = flip(GOOD, 0.08)
    absolute = rows_for({"metric": "roc_auc", "max_drop": 0.001}, worse, GOOD)["roc_auc"]
    assert absolute.verdict == "regressed"
    assert not absolute.passed
    relative = rows_for({"metric": "roc_auc", "max_drop": "20%"}, worse, GOOD)["roc_auc"]
    assert relative.passed  # a drop of a few points is within 20% of the baseline's value
    assert relative.rule == "max_drop 20%"


def test_on_inconclusive_fail_needs_the_improvement_shown() -> None:
    same = rows_for({"metric": "roc_auc", "on_inconclusive": "fail"}, GOOD, GOOD)["roc_auc"]
    assert same.verdict == "unchanged"
    assert not same.passed
    assert "not shown better than the baseline" in (same.reason or "")
    better = rows_for({"metric": "roc_auc", "on_inconclusive": "fail"}, GOOD, flip(GOOD, 0.1))["roc_auc"]
    assert (better.verdict, better.passed) == ("improved", True)


def test_a_direction_override_turns_the_verdict_around() -> None:
    worse = flip(GOOD, 0.1)
    assert rows_for({"metric": "roc_auc", "max_drop": 0.0}, worse, GOOD)["roc_auc"].verdict == "regressed"
    upside_down = rows_for({"metric": "roc_auc", "max_drop": 0.0, "direction": "lower"}, worse, GOOD)["roc_auc"]
    assert upside_down.verdict == "improved"


def test_mcnemar_is_the_exact_binomial_test_on_the_discordant_rows() -> None:
    worse = flip(GOOD, 0.05)
    candidate, baseline = probabilities(worse), probabilities(GOOD)
    (only_candidate, only_baseline), p_value = mcnemar(Y, candidate, baseline)
    assert only_candidate + only_baseline > 0
    expected = stats.binomtest(only_candidate, only_candidate + only_baseline, 0.5).pvalue
    assert p_value == pytest.approx(expected, rel=1e-9)
    accuracy = rows_for({"metric": "accuracy", "max_drop": 0.5}, worse, GOOD)["accuracy"]
    assert accuracy.discordant == [only_candidate, only_baseline]
    assert accuracy.mcnemar_p == pytest.approx(expected, rel=1e-9)
    assert mcnemar(Y, baseline, baseline) == ([0, 0], 1.0)


def test_an_undefined_metric_fails_even_without_a_rule() -> None:
    raw = {"task": "binary", "data": {"train": "t.csv", "label": "y"}, "model": {"factory": "m.py:build"},
           "evaluate": {"metrics": ["roc_auc", "accuracy"]}, "compare": {"bootstrap": 50}}
    config = parse_config(raw, Path("/tmp/modelci.yaml"))
    one_class = np.zeros(N)  # ROC AUC needs both classes
    found = {row.name: row for row in judge(config, one_class, probabilities(GOOD), None, "binary", None).metrics}
    assert (found["roc_auc"].candidate, found["roc_auc"].passed, found["roc_auc"].verdict) == (None, False, "undefined")
    assert found["roc_auc"].reason == "the metric is undefined (not finite) for the candidate"
    assert found["accuracy"].passed


def test_an_increase_over_a_zero_baseline_is_a_regression() -> None:
    row = MetricComparison("model_size_mb", False, 0.5, 0.0, 0.5, verdict="regressed")
    found = _apply_operational_rule(row, GateRule("model_size_mb", max_increase=0.2), None)
    assert (found.passed, found.verdict) == (False, "regressed")
    assert "more than the 20% increase allowed" in (found.reason or "")


def test_a_rule_on_a_figure_that_was_not_measured_fails_unless_nothing_could_be() -> None:
    row = MetricComparison("parity_max_error", False, None, verdict="not-measured")
    found = _apply_operational_rule(row, GateRule("parity_max_error", max=1e-4), "no parity.json")
    assert (found.passed, found.verdict) == (False, "not-measured")
    assert found.reason == "not measured (no parity.json), so the rule cannot be checked"
    drift = MetricComparison("drifted_columns", False, None, verdict="not-measured")
    assert _apply_operational_rule(drift, GateRule("drifted_columns", max=0), None).passed  # no baseline, no drift


def test_roc_points_are_the_best_rate_each_threshold_reaches_at_the_grid() -> None:
    y = np.array([0, 0, 1, 1, 0, 1], dtype=np.float64)
    scores = probabilities(np.array([0.1, 0.4, 0.35, 0.8, 0.2, 0.9]))
    points = _roc_points(y, {"candidate": scores, "baseline": None})
    assert points is not None
    assert "baseline" not in points
    # thresholds give (fpr, tpr): (0, 1/3), (0, 2/3), (1/3, 2/3), (1/3, 1), (2/3, 1), (1, 1)
    expected = {0.0: 0.6667, 0.3: 0.6667, 0.4: 1.0, 1.0: 1.0}
    for fpr, tpr in expected.items():
        assert points["candidate"][points["fpr"].index(fpr)] == tpr
