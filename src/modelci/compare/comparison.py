"""`modelci compare`: the candidate and the baseline on the same rows, with confidence, and the gate.

Both models are ONNX files run in one ONNX Runtime process on the same evaluation rows, so the
comparison is paired: the bootstrap resamples rows once and scores both models on each resample,
which gives an honest confidence interval for the difference of every metric.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import stats

from modelci import atomic, github
from modelci.compare import operational
from modelci.compare.folds import fold_differences
from modelci.compare.resampled import count_blocks, prepare
from modelci.config import Config, GateRule
from modelci.evaluate.evaluator import finite_or_none, labels_of, metric_names
from modelci.evaluate.metrics import FUNCTIONS, LOWER_IS_BETTER, binary_curve
from modelci.evaluate.onnx_model import OnnxModel
from modelci.registry import artifact
from modelci.registry.reference import Reference

if TYPE_CHECKING:
    import pandas as pd

COMPARISON_FILE = "comparison.json"
COMPARISON_VERSION = 3
BASELINE_DIR = "baseline"
UNDEFINED = "the metric is undefined (not finite) for the candidate"
UNMEASURED = {"parity_max_error": "no parity.json: run `modelci export`",
              "drifted_columns": "no drift in data-report.json: run `modelci data check` with the baseline"}
ROC_GRID = np.round(np.linspace(0, 1, 11), 2)  # false positive rates at which the report draws both ROC curves


@dataclass(frozen=True)
class MetricComparison:
    name: str
    higher_is_better: bool
    candidate: float | None
    baseline: float | None = None
    difference: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    # improved | unchanged | regressed | failed-floor (outside the rule's min or max, whatever the
    # baseline) | undefined (not finite) | no-baseline | measured (a figure with nothing to compare:
    # parity, drift) | not-measured
    verdict: str = "no-baseline"
    rule: str | None = None
    passed: bool = True
    reason: str | None = None
    # NOTE: for accuracy, McNemar's exact test on the rows only one model gets right
    discordant: list[int] | None = None  # [candidate right and baseline wrong, the other way round]
    mcnemar_p: float | None = None


@dataclass
class Comparison:
    passed: bool
    baseline_status: str  # compared | no-baseline | not-comparable
    baseline_reference: str
    baseline_digest: str | None
    rows: int
    confidence: float
    bootstrap: int
    metrics: list[MetricComparison] = field(default_factory=list)
    operational: list[MetricComparison] = field(default_factory=list)  # latency, size, parity, drift
    latency_batch: int = 0
    roc: dict[str, list[float]] | None = None  # binary: fpr, and the candidate's (and baseline's) tpr there
    kfold: dict[str, Any] | None = None  # fold-wise differences, when both models were cross-validated alike
    reason: str | None = None
    version: int = COMPARISON_VERSION

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _describe(rule: GateRule) -> str:
    drop = f"{rule.max_drop * 100:g}%" if rule.relative and rule.max_drop is not None else rule.max_drop
    parts = [f"min {rule.min}" if rule.min is not None else "", f"max {rule.max}" if rule.max is not None else "",
             f"max_drop {drop}" if rule.max_drop is not None else "",
             f"max_increase {rule.max_increase * 100:g}%" if rule.max_increase is not None else "",
             "on_inconclusive fail" if rule.on_inconclusive == "fail" else "",
             f"{rule.direction} is better" if rule.direction else ""]
    return ", ".join(p for p in parts if p)


def mcnemar(y: np.ndarray, candidate: np.ndarray, baseline: np.ndarray) -> tuple[list[int], float]:
    """McNemar's exact test: the rows only one model classifies right, and the two-sided p-value that the
    models are equally accurate (a binomial test on those rows)."""
    right_c, right_b = np.argmax(candidate, axis=1) == y, np.argmax(baseline, axis=1) == y
    only_c, only_b = int(np.sum(right_c & ~right_b)), int(np.sum(right_b & ~right_c))
    if only_c + only_b == 0:
        return [only_c, only_b], 1.0
    return [only_c, only_b], float(stats.binomtest(only_c, only_c + only_b, 0.5).pvalue)


def _intervals(names: list[str], y: np.ndarray, candidate: np.ndarray, baseline: np.ndarray, task: str,
               config: Config) -> dict[str, tuple[float, float]]:
    """Per metric, the percentile interval of (candidate − baseline) over paired, stratified resamples."""
    differences: dict[str, list[np.ndarray]] = {name: [] for name in names}
    on_candidate, on_baseline = prepare(names, y, candidate), prepare(names, y, baseline)
    for counts in count_blocks(y, task != "regression", config.compare.bootstrap, config.compare.seed):
        for name in names:
            differences[name].append(on_candidate[name](counts) - on_baseline[name](counts))
    tail = (1 - config.compare.confidence) / 2
    intervals: dict[str, tuple[float, float]] = {}
    for name, parts in differences.items():
        found = np.concatenate(parts)
        found = found[np.isfinite(found)]
        if found.size == 0:
            intervals[name] = (math.nan, math.nan)
            continue
        low, high = np.quantile(found, [tail, 1 - tail])
        intervals[name] = (float(low), float(high))
    return intervals


def _verdict(higher_is_better: bool, low: float, high: float, tolerance: float) -> str:
    """improved / regressed only when the whole interval says so; unchanged otherwise."""
    better_low, better_high = (low, high) if higher_is_better else (-high, -low)
    if better_low > 0:
        return "improved"
    if better_high < -tolerance:
        return "regressed"
    return "unchanged"


def _bounds(value: float | None, rule: GateRule) -> list[str]:
    """What is wrong with the candidate's own value: undefined, or outside the rule's min or max."""
    if value is None:
        return [UNDEFINED]
    return ([f"{value:.4g} is below the minimum {rule.min}"] if rule.min is not None and value < rule.min else []) + \
        ([f"{value:.4g} is above the maximum {rule.max}"] if rule.max is not None and value > rule.max else [])


def _failed_verdict(row: MetricComparison, out_of_bounds: list[str]) -> str:
    """failed-floor when the value is out of bounds; when there is no value, why: undefined or not measured."""
    if row.candidate is None:
        return "undefined" if row.verdict != "not-measured" else "not-measured"
    return "failed-floor" if out_of_bounds else row.verdict


def _apply_rule(row: MetricComparison, rule: GateRule | None) -> MetricComparison:
    if rule is None:
        if row.candidate is None:  # NOTE: an undefined metric fails with or without a rule: the model is broken
            return MetricComparison(**{**asdict(row), "passed": False, "reason": UNDEFINED, "verdict": "undefined"})
        return row
    out_of_bounds = _bounds(row.candidate, rule)
    problems = list(out_of_bounds)
    if rule.max_drop is not None and row.verdict == "regressed":
        allowed = f"{rule.max_drop * 100:g}% of the baseline" if rule.relative else f"{rule.max_drop}"
        problems.append(f"worse than the baseline by more than {allowed}: difference {row.difference:+.4f}, "
                        f"interval [{row.ci_low:+.4f}, {row.ci_high:+.4f}]")
    if rule.on_inconclusive == "fail" and row.verdict == "unchanged":
        shown = f"[{row.ci_low:+.4f}, {row.ci_high:+.4f}]" if row.ci_low is not None else "undefined"
        problems.append(f"not shown better than the baseline: the interval {shown} allows no difference, and "
                        "on_inconclusive is fail")
    return MetricComparison(**{**asdict(row), "rule": _describe(rule), "passed": not problems,
                               "reason": "; ".join(problems) or None,
                               "verdict": _failed_verdict(row, out_of_bounds)})


def _apply_operational_rule(row: MetricComparison, rule: GateRule | None, unmeasured: str | None) -> MetricComparison:
    """`unmeasured`: why the figure could not be measured, when it was not; None when that is no failure."""
    if rule is None or (row.candidate is None and unmeasured is None):
        return row
    out_of_bounds = [f"not measured ({unmeasured}), so the rule cannot be checked"] if row.candidate is None \
        else _bounds(row.candidate, rule)
    problems = list(out_of_bounds)
    if rule.max_increase is not None and row.baseline is not None and row.candidate is not None \
            and row.candidate > row.baseline * (1 + rule.max_increase):
        problems.append(f"{row.candidate:.4g} against the baseline's {row.baseline:.4g}, more than the "
                        f"{rule.max_increase:.0%} increase allowed")
    verdict = _failed_verdict(row, out_of_bounds) if out_of_bounds else "regressed" if problems else row.verdict
    return MetricComparison(**{**asdict(row), "rule": _describe(rule), "passed": not problems,
                               "reason": "; ".join(problems) or None, "verdict": verdict})


def _operational_rows(config: Config, candidate: OnnxModel, baseline: OnnxModel | None, frame: pd.DataFrame,
                      batch: int, out: Path) -> list[MetricComparison]:
    """Latency (measured here, both models taking turns), size, parity error and drift, each gated by
    its rule."""
    models = [candidate] if baseline is None else [candidate, baseline]
    latencies = operational.measure_latency(models, frame, batch, config.compare.latency_repeats)
    found: dict[str, float | None] = {
        **latencies[0].figures(), "model_size_mb": operational.size_mb(candidate.path),
        "parity_max_error": operational.parity_max_error(_load(out / "parity.json")),
        "drifted_columns": operational.drifted_columns(_load(out / "data-report.json"))}
    before: dict[str, float] = {}
    if baseline is not None:
        before = {**latencies[1].figures(), "model_size_mb": operational.size_mb(baseline.path)}
    rules = {rule.metric: rule for rule in config.gate}
    rows = []
    for name in operational.FIGURES:
        value, base = found[name], before.get(name)
        if value is None:
            row = MetricComparison(name, False, None, verdict="not-measured")
        elif base is None:
            verdict = "measured" if name in operational.CANDIDATE_ONLY else "no-baseline"
            row = MetricComparison(name, False, value, verdict=verdict)
        else:
            row = MetricComparison(name, False, value, base, value - base,
                                   verdict=operational.verdict(name, value, base))
        # NOTE: drift has nothing to be measured against without a baseline: that is no failure
        unmeasured = None if name == "drifted_columns" and baseline is None else UNMEASURED.get(name)
        rows.append(_apply_operational_rule(row, rules.get(name), unmeasured))
    return rows


def _roc_points(y: np.ndarray, scores: dict[str, np.ndarray | None]) -> dict[str, list[float]] | None:
    """Each model's true positive rate at the fixed false positive rates of ROC_GRID."""
    points: dict[str, list[float]] = {"fpr": ROC_GRID.tolist()}
    for name, found in scores.items():
        if found is None:
            continue
        _, tp, fp = binary_curve(y, found)
        if tp[-1] == 0 or fp[-1] == 0:
            return None
        # NOTE: the highest rate reached at each grid point; interpolating would draw points no threshold gives
        fpr, tpr = np.r_[0.0, fp / fp[-1]], np.r_[0.0, tp / tp[-1]]
        at = np.searchsorted(fpr, ROC_GRID, side="right") - 1
        points[name] = np.round(tpr[at], 4).tolist()
    return points


def _load(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _not_comparable(candidate: OnnxModel, baseline: OnnxModel, frame: pd.DataFrame) -> str | None:
    if baseline.task != candidate.task:
        return f"the baseline is a {baseline.task} model, the candidate a {candidate.task} model"
    if baseline.classes != candidate.classes:
        return f"the classes differ: baseline {baseline.classes}, candidate {candidate.classes}"
    missing = baseline.missing_inputs(frame)
    if missing:
        return f"the baseline needs columns the data no longer has: {', '.join(missing)}"
    return None


def _compare_metrics(config: Config, y: np.ndarray, candidate: np.ndarray, baseline: np.ndarray | None,
                     task: str) -> list[MetricComparison]:
    rules = {rule.metric: rule for rule in config.gate if rule.metric not in operational.FIGURES}
    names = list(dict.fromkeys([*metric_names(config), *rules]))
    intervals = _intervals(names, y, candidate, baseline, task, config) if baseline is not None else {}
    rows = []
    for name in names:
        rule = rules.get(name)
        higher = rule.direction == "higher" if rule is not None and rule.direction else name not in LOWER_IS_BETTER
        value = FUNCTIONS[name](y, candidate)
        row = MetricComparison(name, higher, finite_or_none(value))
        if baseline is not None:
            base = FUNCTIONS[name](y, baseline)
            low, high = intervals[name]
            tolerance = 0.0
            if rule is not None and rule.max_drop is not None:
                tolerance = rule.max_drop * abs(base) if rule.relative else rule.max_drop
            discordant, p_value = mcnemar(y, candidate, baseline) if name == "accuracy" else (None, None)
            row = MetricComparison(name, higher, finite_or_none(value), finite_or_none(base),
                                   finite_or_none(value - base), finite_or_none(low), finite_or_none(high),
                                   _verdict(higher, low, high, tolerance) if math.isfinite(low) else "unchanged",
                                   discordant=discordant, mcnemar_p=p_value)
        rows.append(_apply_rule(row, rule))
    return rows


def compare(config: Config, frame: pd.DataFrame, candidate_path: Path, baseline_ref: Reference,
            out: Path) -> Comparison:
    """Compare the candidate with the baseline artifact and apply the gate; writes comparison.json."""
    candidate = OnnxModel(candidate_path)
    y = labels_of(candidate, frame)
    scores = candidate.predict(frame)
    result = Comparison(passed=True, baseline_status="no-baseline", baseline_reference=str(baseline_ref),
                        baseline_digest=None, rows=len(frame), confidence=config.compare.confidence,
                        bootstrap=config.compare.bootstrap)
    baseline: OnnxModel | None = None
    baseline_scores = None
    # NOTE: the tag is resolved once; everything after works on that digest, so a publish that
    # moves the tag meanwhile cannot change what this run compares against.
    descriptor = artifact.resolve(baseline_ref)
    if descriptor is None:
        result.reason = f"no baseline: {baseline_ref} does not exist yet (the first publish creates it)"
    else:
        pulled = artifact.pull(baseline_ref.with_digest(descriptor.digest), out / BASELINE_DIR)
        result.baseline_digest = pulled.digest
        baseline = OnnxModel(out / BASELINE_DIR / artifact.WEIGHT_FILE)
        reason = _not_comparable(candidate, baseline, frame)
        if reason:
            result.baseline_status, result.reason, baseline = "not-comparable", reason, None
        else:
            result.baseline_status = "compared"
            baseline_scores = baseline.predict(frame)
    github.log(f"    baseline: {result.baseline_status}"
               + (f" ({result.baseline_digest})" if result.baseline_digest else ""))
    result.metrics = _compare_metrics(config, y, scores, baseline_scores, candidate.task)
    result.latency_batch = min(config.compare.latency_batch, len(frame))
    result.operational = _operational_rows(config, candidate, baseline, frame, result.latency_batch, out)
    if candidate.task == "binary":
        result.roc = _roc_points(y, {"candidate": scores, "baseline": baseline_scores})
    if baseline is not None:
        result.kfold = fold_differences(out, out / BASELINE_DIR, config.compare.confidence)
    result.passed = all(m.passed for m in [*result.metrics, *result.operational])
    if config.compare.require_baseline and result.baseline_status != "compared":
        result.passed = False
        result.reason = f"{result.reason}; compare.require_baseline is true, so this fails the gate"
    atomic.write_json(out / COMPARISON_FILE, result.to_json())
    return result
