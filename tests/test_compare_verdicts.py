"""The gate's requirements and labels, Holm's step-down over the rules, and the slice and gap rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from modelci.compare import slices as sliced
from modelci.compare import verdicts
from modelci.compare.comparison import Comparison
from modelci.compare.gate import judge
from modelci.compare.resampled import count_blocks, prepare
from modelci.config import parse_config
from modelci.errors import UsageError

rng = np.random.default_rng(7)
N = 4000
Y = (rng.random(N) < 0.4).astype(np.float64)
GOOD = np.clip(Y * 0.5 + rng.random(N) * 0.5, 0, 1)
ALPHA = 0.025  # the one-sided level of a 95% interval


def probabilities(p1: np.ndarray) -> np.ndarray:
    return np.column_stack([1 - p1, p1])


def flip(p1: np.ndarray, share: float, rows: np.ndarray | None = None, seed: int = 3) -> np.ndarray:
    """The same scores with a share of the rows (of `rows`, a mask) turned into coin flips: a worse model."""
    draw = np.random.default_rng(seed)
    worse = p1.copy()
    chosen = (draw.random(len(p1)) < share) & (np.ones(len(p1), bool) if rows is None else rows)
    worse[chosen] = draw.random(int(chosen.sum()))
    return worse


def config_for(rules: list[dict[str, Any]], **compare: Any) -> Any:
    raw = {"task": "binary", "data": {"train": "t.csv", "label": "y"}, "model": {"factory": "m.py:build"},
           "evaluate": {"metrics": ["accuracy", "roc_auc", "pr_auc", "f1"]}, "gate": rules,
           "compare": {"bootstrap": 400, **compare}}
    return parse_config(raw, Path("/tmp/modelci.yaml"))


def rows_for(rules: list[dict[str, Any]], candidate: np.ndarray, baseline: np.ndarray = GOOD) -> dict[str, Any]:
    found = judge(config_for(rules), Y, probabilities(candidate), probabilities(baseline), "binary", None).metrics
    return {row.name: row for row in found}


def todays_draws(name: str, candidate: np.ndarray) -> np.ndarray:
    """The paired, stratified bootstrap differences as the gate drew them before multiplicity, written out here."""
    on_c, on_b = prepare([name], Y, probabilities(candidate)), prepare([name], Y, probabilities(GOOD))
    found = np.concatenate([on_c[name](block) - on_b[name](block) for block in count_blocks(Y, True, 400, 0)])
    return found[np.isfinite(found)]


def todays_interval(name: str, candidate: np.ndarray) -> tuple[float, float]:
    """The 95% percentile interval the gate decided on before multiplicity."""
    low, high = np.quantile(todays_draws(name, candidate), [ALPHA, 1 - ALPHA])
    return float(low), float(high)


# -- labels and requirements ---------------------------------------------------------------------

@pytest.mark.parametrize(("low", "high", "tolerance", "require", "label", "passes"), [
    (0.01, 0.03, 0.02, "no-regression", "improved", True),
    (0.01, 0.03, 0.02, "superior", "improved", True),
    (-0.01, 0.01, 0.02, "no-regression", "unchanged", True),
    (-0.01, 0.01, 0.02, "non-inferior", "unchanged", True),
    (-0.01, 0.01, 0.02, "superior", "inconclusive", False),
    (0.0, 0.0, 0.0, "superior", "unchanged", False),  # identical models: no improvement, nothing to doubt
    (-0.05, 0.01, 0.02, "no-regression", "unchanged", True),
    (-0.05, 0.01, 0.02, "non-inferior", "inconclusive", False),
    (-0.015, -0.005, 0.02, "no-regression", "worse-within-tolerance", True),
    (-0.015, -0.005, 0.02, "non-inferior", "worse-within-tolerance", True),
    (-0.015, -0.005, 0.02, "superior", "worse-within-tolerance", False),
    (-0.03, -0.005, 0.02, "no-regression", "inconclusive", True),  # worse; maybe past max_drop: not shown
    (-0.03, -0.005, 0.02, "non-inferior", "inconclusive", False),
    (-0.05, -0.03, 0.02, "no-regression", "regressed", False),
    (-0.05, -0.03, 0.02, "non-inferior", "regressed", False),
    (-0.02, -0.01, 0.0, "no-regression", "regressed", False),
], ids=lambda v: str(v))
def test_each_label_and_requirement(low: float, high: float, tolerance: float, require: str, label: str,
                                    passes: bool) -> None:
    assert verdicts.label(low, high, tolerance, require) == label
    assert verdicts.passes(low, high, tolerance, require) is passes


def test_a_drop_wholly_below_zero_but_within_max_drop_is_no_longer_called_unchanged() -> None:
    worse = flip(GOOD, 0.02)
    row = rows_for([{"metric": "accuracy", "max_drop": 0.05}], worse)["accuracy"]
    assert row.ci_high < 0
    assert (row.verdict, row.passed) == ("worse-within-tolerance", True)


def test_non_inferior_passes_only_when_the_worse_end_is_within_the_margin() -> None:
    worse = flip(GOOD, 0.02)
    low, _ = todays_interval("accuracy", worse)
    inside = rows_for([{"metric": "accuracy", "max_drop": -low + 0.002, "require": "non-inferior"}], worse)["accuracy"]
    assert inside.passed
    outside = rows_for([{"metric": "accuracy", "max_drop": -low - 0.002, "require": "non-inferior"}], worse)
    assert (outside["accuracy"].verdict, outside["accuracy"].passed) == ("inconclusive", False)
    assert "not shown within" in (outside["accuracy"].reason or "")
    # no-regression lets the same interval pass: it is not shown worse than the margin
    assert rows_for([{"metric": "accuracy", "max_drop": -low - 0.002}], worse)["accuracy"].passed


def test_superior_passes_only_when_shown_better() -> None:
    better = rows_for([{"metric": "roc_auc", "require": "superior"}], GOOD, flip(GOOD, 0.1))["roc_auc"]
    assert (better.verdict, better.passed) == ("improved", True)
    slightly = rows_for([{"metric": "roc_auc", "require": "superior"}], GOOD, flip(GOOD, 0.001))["roc_auc"]
    assert not slightly.passed
    assert "not shown better than the baseline (require: superior)" in (slightly.reason or "")


# -- multiplicity --------------------------------------------------------------------------------

def test_holm_steps_down_where_bonferroni_would_stop() -> None:
    def at(p: float) -> Any:
        return lambda level: p <= level
    # unadjusted, all three reject (p ≤ 0.025); Holm's first level is 0.025 / 3, which none reaches
    assert verdicts.holm([at(0.01), at(0.02), at(0.024)], ALPHA) == [ALPHA / 3] * 3
    # 0.005 ≤ 0.025/3, then 0.011 ≤ 0.025/2, then 0.02 ≤ 0.025: all rejected; Bonferroni rejects the first only
    assert verdicts.holm([at(0.02), at(0.005), at(0.011)], ALPHA) == [ALPHA, ALPHA / 3, ALPHA / 2]
    assert verdicts.holm([at(0.03)], ALPHA) == [ALPHA]
    assert verdicts.holm([], ALPHA) == []


def test_one_gated_rule_gives_exactly_todays_decision() -> None:
    for share, drop in ((0.02, 0.0), (0.02, 0.01), (0.05, 0.01), (0.0, 0.0)):
        worse = flip(GOOD, share)
        low, high = todays_interval("roc_auc", worse)
        row = rows_for([{"metric": "roc_auc", "max_drop": drop}], worse)["roc_auc"]
        assert (row.ci_low, row.ci_high, row.confidence) == (pytest.approx(low, abs=1e-15),
                                                             pytest.approx(high, abs=1e-15), 0.95)
        assert row.passed is not (high < -drop)


def test_a_rule_that_fails_unadjusted_passes_when_holm_widens_its_interval() -> None:
    worse = flip(GOOD, 0.02)
    _, high = todays_interval("accuracy", worse)
    wide_low, wide_high = verdicts.percentile_interval(todays_draws("accuracy", worse), ALPHA / 3)
    drop = -(high + wide_high) / 2  # between the upper ends at 95% and at Holm's first level for three rules
    assert high < -drop < wide_high
    alone = rows_for([{"metric": "accuracy", "max_drop": drop}], worse)["accuracy"]
    assert not alone.passed
    never = [{"metric": m, "max_drop": 1.0} for m in ("roc_auc", "f1")]  # rules that cannot reject
    three = rows_for([{"metric": "accuracy", "max_drop": drop}, *never], worse)
    assert three["accuracy"].passed
    assert three["accuracy"].confidence == pytest.approx(1 - 2 * ALPHA / 3)
    assert (three["accuracy"].ci_low, three["accuracy"].ci_high) == (pytest.approx(wide_low), pytest.approx(wide_high))
    # step-down: when the other two rules are rejected first, the last is judged at the full level again
    always = [{"metric": m, "max_drop": 0.0} for m in ("roc_auc", "f1")]
    stepped = rows_for([{"metric": "accuracy", "max_drop": drop}, *always], worse)
    assert [stepped[m].passed for m in ("accuracy", "roc_auc", "f1")] == [False, False, False]
    assert stepped["accuracy"].confidence == pytest.approx(0.95)


def test_non_inferior_and_superior_rules_are_not_widened() -> None:
    worse = flip(GOOD, 0.02)
    config = config_for([{"metric": "accuracy", "max_drop": 0.05, "require": "non-inferior"},
                         {"metric": "roc_auc", "max_drop": 0.05}, {"metric": "f1", "max_drop": 0.05}])
    found = judge(config, Y, probabilities(worse), probabilities(GOOD), "binary", None)
    rows = {r.name: r for r in found.metrics}
    assert rows["accuracy"].confidence == pytest.approx(0.95)
    assert rows["roc_auc"].confidence == pytest.approx(1 - 2 * ALPHA / 2)
    assert (found.multiplicity.comparisons, found.multiplicity.adjusted) == (3, 2)


# -- slices and gaps -----------------------------------------------------------------------------

REGION = np.where(np.arange(N) < 2000, "north", np.where(np.arange(N) < 3990, "south", "islands"))


def frame_with(**columns: Any) -> pd.DataFrame:
    return pd.DataFrame({"y": Y, **columns})


def test_a_slice_rule_judges_each_slice_and_reports_small_ones() -> None:
    worse_in_south = flip(GOOD, 0.15, rows=REGION == "south")
    config = config_for([{"metric": "roc_auc", "slice": "region", "max_drop": 0.01}])
    found = judge(config, Y, probabilities(worse_in_south), probabilities(GOOD), "binary", frame_with(region=REGION))
    rows = {r.slice_value: r for r in found.slices}
    assert (rows["south"].verdict, rows["south"].passed) == ("regressed", False)
    assert (rows["north"].verdict, rows["north"].passed) == ("unchanged", True)
    assert (rows["islands"].verdict, rows["islands"].passed, rows["islands"].rows) == ("too-small", True, 10)
    assert "fewer than compare.min_slice_rows (30): too small to judge" in (rows["islands"].reason or "")
    assert rows["south"].rule == "by region, max_drop 0.01"
    assert (found.multiplicity.comparisons, found.multiplicity.adjusted) == (2, 2)
    assert rows["south"].confidence == pytest.approx(1 - ALPHA)  # Holm's first level for two


def test_a_numeric_slice_column_is_cut_into_quartiles_as_evaluate_does() -> None:
    age = np.arange(N) % 80 + 18.0
    config = config_for([{"metric": "accuracy", "slice": "age", "max_drop": 0.05}])
    found = judge(config, Y, probabilities(GOOD), probabilities(GOOD), "binary", frame_with(age=age))
    assert len(found.slices) == 4
    assert found.slices[0].slice_value.startswith("≤ ")
    assert all(r.verdict == "unchanged" and r.passed for r in found.slices)


def test_a_slice_rule_on_a_missing_column_is_a_usage_error_naming_the_key() -> None:
    config = config_for([{"metric": "roc_auc", "max_drop": 0.01}, {"metric": "recall", "slice": "gender",
                                                                    "max_gap": 0.05}])
    with pytest.raises(UsageError, match=r"gate\[1\]\.slice: the column 'gender' is not in the evaluation data") as e:
        judge(config, Y, probabilities(GOOD), None, "binary", frame_with(region=REGION))
    assert e.value.exit_code == 2
    assert "region" in (e.value.hint or "")


def test_a_gap_rule_fails_when_the_whole_interval_of_the_gap_is_above_max_gap() -> None:
    gender = np.where(np.arange(N) % 2 == 0, "f", "m")
    unequal = flip(GOOD, 0.5, rows=gender == "f")
    config = config_for([{"metric": "accuracy", "slice": "gender", "max_gap": 0.05}])
    found = judge(config, Y, probabilities(unequal), probabilities(GOOD), "binary", frame_with(gender=gender))
    (gap,) = found.gaps
    assert (gap.verdict, gap.passed, gap.between) == ("exceeded", False, ["f", "m"])
    assert gap.ci_low is not None
    assert gap.ci_low > 0.05
    assert gap.grew == "grew"
    assert gap.baseline is not None
    assert gap.baseline < gap.candidate
    assert "wholly above max_gap 0.05" in (gap.reason or "")
    fair = judge(config, Y, probabilities(GOOD), probabilities(GOOD), "binary", frame_with(gender=gender)).gaps[0]
    assert (fair.verdict, fair.passed, fair.grew) == ("within", True, "unchanged")
    assert fair.change_low == fair.change_high == 0.0


def test_a_gap_is_judged_without_a_baseline_and_too_few_slices_are_said_so() -> None:
    gender = np.where(np.arange(N) % 2 == 0, "f", "m")
    config = config_for([{"metric": "accuracy", "slice": "gender", "max_gap": 0.5}])
    (gap,) = judge(config, Y, probabilities(GOOD), None, "binary", frame_with(gender=gender)).gaps
    assert (gap.verdict, gap.passed, gap.grew) == ("within", True, None)
    tiny = np.where(np.arange(N) < 20, "x", "y")
    (small,) = judge(config, Y, probabilities(GOOD), None, "binary", frame_with(gender=tiny)).gaps
    assert (small.verdict, small.passed, small.candidate) == ("too-small", True, None)


def test_the_comparison_records_slices_gaps_and_multiplicity() -> None:
    from modelci.compare.comparison import COMPARISON_VERSION

    gender = np.where(np.arange(N) % 2 == 0, "f", "m")
    config = config_for([{"metric": "accuracy", "slice": "gender", "max_drop": 0.02, "max_gap": 0.05}])
    found = judge(config, Y, probabilities(GOOD), probabilities(GOOD), "binary", frame_with(gender=gender))
    record = Comparison(True, "compared", "oci:x:main", None, N, 0.95, 400, found.metrics, slices=found.slices,
                        gaps=found.gaps, multiplicity=found.multiplicity).to_json()
    assert COMPARISON_VERSION == 5
    assert [r["slice_value"] for r in record["slices"]] == ["f", "m"]
    assert record["gaps"][0]["metric"] == "accuracy"
    assert record["multiplicity"] == {"method": "holm", "comparisons": 3, "adjusted": 3, "alpha": pytest.approx(ALPHA)}


def test_the_gate_failure_names_each_failed_slice_and_gap() -> None:
    gender = np.where(np.arange(N) % 2 == 0, "f", "m")
    unequal = flip(GOOD, 0.5, rows=gender == "f")
    config = config_for([{"metric": "accuracy", "slice": "gender", "max_drop": 0.01, "max_gap": 0.05}])
    found = judge(config, Y, probabilities(unequal), probabilities(GOOD), "binary", frame_with(gender=gender))
    comparison = Comparison(False, "compared", "oci:x:main", None, N, 0.95, 400, found.metrics, slices=found.slices,
                            gaps=found.gaps, multiplicity=found.multiplicity)
    names = [failure.split(":")[0] for failure in comparison.failures()]
    assert names == ["accuracy [gender = f]", "accuracy gap by gender"]


def _gap_false_alarms(truth: list[float], max_gap: float, trials: int = 1000, resamples: int = 400) -> float:
    """How often the gap rule fails when each slice's metric is estimated with normal error (sd 1) around `truth`
    and the bootstrap draws scatter alike around the estimates: the textbook case the interval must hold in."""
    draw = np.random.default_rng(11)
    rule = config_for([{"metric": "accuracy", "slice": "s", "max_gap": max_gap}]).gate[0]
    failed = 0
    for _ in range(trials):
        estimates = np.array(truth) + draw.normal(0, 1, len(truth))
        draws = estimates + draw.normal(0, 1, (resamples, len(truth)))
        found = [sliced.Slice(str(i), 100, float(e), None, (draws[:, i], None)) for i, e in enumerate(estimates)]
        measured = sliced.gap(rule, found)
        assert measured is not None
        failed += measured[0].rejects(ALPHA)
    return failed / trials


@pytest.mark.parametrize("truth", [[0.0, 2.0], [0.0, 0.0, 0.0, 2.0, 2.0, 2.0]], ids=["2 slices", "6 slices"])
def test_a_gap_of_exactly_max_gap_fails_at_most_at_the_nominal_rate(truth: list[float]) -> None:
    # NOTE: the largest difference's reverse percentile interval failed 14% of these with 6 slices (nominal 2.5%)
    assert _gap_false_alarms(truth, max_gap=2.0) <= 0.04
    # and a gap four times max_gap is still found (each slice's metric known within ±2, at 95%)
    assert _gap_false_alarms([4 * t for t in truth], max_gap=2.0, trials=200) >= 0.9


def test_identical_models_pass_a_gap_rule_on_a_slice_without_positive_rows() -> None:
    # the north has no positive row: recall there is undefined, not 0.0, and the slice is too small to judge
    region = np.where(np.arange(N) % 10 == 0, "north", np.where(np.arange(N) % 2 == 0, "east", "west"))
    y = np.where(region == "north", 0.0, Y)
    p = np.clip(y * 0.5 + rng.random(N) * 0.5, 0, 1)
    config = config_for([{"metric": "recall", "slice": "region", "max_gap": 0.05, "max_drop": 0.0}])
    found = judge(config, y, probabilities(p), probabilities(p), "binary", pd.DataFrame({"region": region}))
    (gap,) = found.gaps
    assert (gap.verdict, gap.passed) == ("within", True), gap
    assert "north" not in (gap.between or [])
    north = [r for r in found.slices if r.slice_value == "north"]
    assert [(r.candidate, r.verdict, r.passed) for r in north] == [(None, "too-small", True)]
    assert "0 of them positive (recall needs them), fewer than compare.min_slice_rows (30)" in (north[0].reason or "")


def test_precision_is_undefined_on_a_slice_where_a_model_calls_no_row_positive() -> None:
    region = np.where(np.arange(N) % 4 == 0, "north", "south")
    p = np.where(region == "north", 0.1, GOOD)  # the model calls no row of the north positive
    config = config_for([{"metric": "precision", "slice": "region", "max_gap": 0.05}])
    found = judge(config, Y, probabilities(p), probabilities(p), "binary", pd.DataFrame({"region": region}))
    north = next(r for r in found.slices if r.slice_value == "north")
    assert (north.candidate, north.verdict, north.passed) == (None, "undefined", True)
    (gap,) = found.gaps
    assert (gap.candidate, gap.verdict, gap.passed) == (None, "too-small", True)  # one slice left to compare
    # against a baseline that does call rows of the north positive, the slice is not judged either
    other = judge(config, Y, probabilities(GOOD), probabilities(p), "binary", pd.DataFrame({"region": region}))
    north = next(r for r in other.slices if r.slice_value == "north")
    assert (north.baseline, north.verdict, north.passed) == (None, "undefined", True)
    assert "for the baseline" in (north.reason or "")
