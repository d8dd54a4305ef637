"""`modelci compare`: the candidate and the baseline on the same rows, with confidence, and the gate.

Both models are ONNX files run in one ONNX Runtime process on the same evaluation rows, so the
comparison is paired: the bootstrap resamples rows once and scores both models on each resample,
which gives an honest confidence interval for the difference of every metric.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from modelci import atomic, github
from modelci.compare import operational, overlap
from modelci.compare.flips import FLIPS_FILE, Flips, changed_predictions
from modelci.compare.folds import fold_differences
from modelci.compare.gate import Judged, Thresholds, judge
from modelci.compare.rows import GapComparison, MetricComparison, Multiplicity, bounds, describe, failed_verdict
from modelci.config import Config, GateRule
from modelci.evaluate.evaluator import METRICS_FILE, labels_of
from modelci.evaluate.metrics import binary_curve
from modelci.evaluate.onnx_model import OnnxModel
from modelci.outputs import BASELINE_DIR
from modelci.registry import artifact
from modelci.registry.reference import Reference

if TYPE_CHECKING:
    import pandas as pd

COMPARISON_FILE = "comparison.json"
# 4: require, Holm-adjusted levels, slice and gap rules; 5: the seeds' t noise, `published`, latency rules in Holm's
# family with their level (`confidence`)
COMPARISON_VERSION = 5
UNMEASURED = {"parity_max_error": "no parity.json: run `modelci export`",
              "drifted_columns": "no drift in data-report.json: run `modelci data check` with the baseline"}
ROC_GRID = np.round(np.linspace(0, 1, 11), 2)  # false positive rates at which the report draws both ROC curves


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
    slices: list[MetricComparison] = field(default_factory=list)  # each slice of the slice rules
    gaps: list[GapComparison] = field(default_factory=list)  # the max_gap rules
    multiplicity: Multiplicity | None = None  # how the rules' comparisons share the error rate
    reason: str | None = None
    comparability: overlap.Comparability | None = None  # overlap with the baseline's training rows
    seeds: dict[str, Any] | None = None  # compare.seeds: the training noise the metrics' intervals count
    thresholds: dict[str, float] | None = None  # binary: each model's classification threshold, which it is judged at
    baseline_required: bool = False  # a missing, not comparable or unfair baseline fails the gate
    flips: Flips | None = None  # a classifier's predictions that changed from the baseline's (changed-predictions.csv)
    version: int = COMPARISON_VERSION

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def failures(self) -> list[str]:
        """"name: reason" of every row and gap that failed the gate; a slice's name holds its column and value."""
        rows = [(f"{m.name} [{m.slice} = {m.slice_value}]" if m.slice else m.name, m.reason)
                for m in [*self.metrics, *self.operational, *self.slices] if not m.passed]
        rows += [(f"{g.metric} gap by {g.slice}", g.reason) for g in self.gaps if not g.passed]
        return [f"{name}: {reason}" for name, reason in rows]


def _apply_operational_rule(row: MetricComparison, rule: GateRule | None, unmeasured: str | None,
                            latency: operational.LatencyChange | None = None) -> MetricComparison:
    """`unmeasured`: why the figure could not be measured, when it was not; None when that is no failure;
    `latency`: a latency figure's change with its interval, which alone decides its max_increase."""
    if rule is None or (row.candidate is None and unmeasured is None):
        return row
    out_of_bounds = [f"not measured ({unmeasured}), so the rule cannot be checked"] if row.candidate is None \
        else bounds(row.candidate, rule)
    problems = list(out_of_bounds)
    if rule.max_increase is not None and latency is not None:
        problems += [found for found in [operational.latency_exceeds(latency, rule.max_increase)] if found]
    elif rule.max_increase is not None and row.baseline is not None and row.candidate is not None \
            and row.candidate > row.baseline * (1 + rule.max_increase):
        problems.append(f"{row.candidate:.4g} against the baseline's {row.baseline:.4g}, more than the "
                        f"{rule.max_increase:.0%} increase allowed")
    verdict = failed_verdict(row, out_of_bounds) if out_of_bounds else "regressed" if problems else row.verdict
    return MetricComparison(**{**asdict(row), "rule": describe(rule), "passed": not problems,
                               "reason": "; ".join(problems) or None, "verdict": verdict})


Latency = tuple[operational.Timings, dict[str, operational.LatencyChange]]


def _latency(config: Config, candidate: OnnxModel, baseline: OnnxModel | None, frame: pd.DataFrame,
             batch: int) -> Latency:
    """Both models timed here, taking turns, and each latency figure's change with its bootstrap draws."""
    models = [candidate] if baseline is None else [candidate, baseline]
    timings = operational.measure_latency(models, frame, batch, config.compare.latency_repeats)
    if baseline is None:
        return timings, {}
    return timings, operational.compare_latency(timings, config.compare.confidence, config.compare.bootstrap,
                                                config.compare.seed)


def _operational_rows(config: Config, candidate: OnnxModel, baseline: OnnxModel | None, frame: pd.DataFrame,
                      batch: int, out: Path, measured: Latency | None = None,
                      levels: dict[str, float] | None = None) -> list[MetricComparison]:
    """Latency (`measured`, or measured here), size, parity error and drift, each gated by its rule; a latency
    rule's interval at the one-sided level Holm's step-down gave it (`levels`, from gate.judge), compare.confidence's
    without."""
    timings, changes = measured or _latency(config, candidate, baseline, frame, batch)
    levels = levels or {}
    changes = {name: change.at(levels[name]) if name in levels else change for name, change in changes.items()}
    found: dict[str, float | None] = {
        **timings.figures(0), "model_size_mb": operational.size_mb(candidate.path),
        "parity_max_error": operational.parity_max_error(_load(out / "parity.json")),
        "drifted_columns": operational.drifted_columns(_load(out / "data-report.json"))}
    before: dict[str, float] = {}
    if baseline is not None:
        before = {**timings.figures(1), "model_size_mb": operational.size_mb(baseline.path)}
    rules = {rule.metric: rule for rule in config.gate}
    rows = []
    for name in operational.FIGURES:
        value, base = found[name], before.get(name)
        if value is None:
            row = MetricComparison(name, False, None, verdict="not-measured")
        elif base is None:
            verdict = "measured" if name in operational.CANDIDATE_ONLY else "no-baseline"
            row = MetricComparison(name, False, value, verdict=verdict)
        elif name in changes:  # NOTE: both timed in this process, in turns: comparable by construction
            rule, change = rules.get(name), changes[name]
            allowed = rule.max_increase if rule is not None and rule.max_increase is not None else 0.0
            row = MetricComparison(name, False, value, base, value - base, change.low_ms, change.high_ms,
                                   verdict=operational.latency_verdict(change, allowed), confidence=change.confidence)
        else:
            row = MetricComparison(name, False, value, base, value - base,
                                   verdict=operational.size_verdict(value, base))
        # NOTE: drift has nothing to be measured against without a baseline: that is no failure
        unmeasured = None if name == "drifted_columns" and baseline is None else UNMEASURED.get(name)
        rows.append(_apply_operational_rule(row, rules.get(name), unmeasured, changes.get(name)))
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


def _baseline_required(config: Config, *, published: bool) -> bool:
    """compare.require_baseline; unset, true on a pull request once main has published: a pull request before
    that has nothing to be compared with, one after it must be compared."""
    if config.compare.require_baseline is not None:
        return config.compare.require_baseline
    return published and github.on_pull_request()


def required_because(config: Config) -> str:
    if config.compare.require_baseline:
        return "compare.require_baseline is true"
    return ("on a pull request, once main has published, the comparison must be made (set "
            "compare.require_baseline: false to let it pass without)")


def _seed_models(config: Config, out: Path) -> list[Path]:
    """The candidate's other seeds' models, which `modelci evaluate` trains when compare.seeds > 1."""
    from modelci.evaluate.seeds import trained_with

    return trained_with(config, out)


def _not_comparable(candidate: OnnxModel, baseline: OnnxModel, frame: pd.DataFrame) -> str | None:
    if baseline.task != candidate.task:
        return f"the baseline is a {baseline.task} model, the candidate a {candidate.task} model"
    if baseline.classes != candidate.classes:
        return f"the classes differ: baseline {baseline.classes}, candidate {candidate.classes}"
    missing = baseline.missing_inputs(frame)
    if missing:
        return f"the baseline needs columns the data no longer has: {', '.join(missing)}"
    return None


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
    seeds = [OnnxModel(path) for path in _seed_models(config, out)]
    # NOTE: each model at its own threshold: the comparison is of the two models as they are deployed
    thresholds = Thresholds(candidate.threshold, baseline.threshold if baseline else candidate.threshold,
                            tuple(seed.threshold for seed in seeds))
    result.latency_batch = min(config.compare.latency_batch, len(frame))
    # NOTE: timed before the verdicts: a latency rule is in Holm's family with the metrics' rules
    latency = _latency(config, candidate, baseline, frame, result.latency_batch)
    judged: Judged = judge(config, y, scores, baseline_scores, candidate.task, frame,
                           [seed.predict(frame) for seed in seeds],
                           (_load(out / BASELINE_DIR / METRICS_FILE) or {}).get("seeds") if baseline else None,
                           thresholds, latency[1])
    result.metrics, result.slices, result.gaps = judged.metrics, judged.slices, judged.gaps
    result.seeds = judged.seeds.to_json() if judged.seeds is not None else None
    result.multiplicity = judged.multiplicity
    result.operational = _operational_rows(config, candidate, baseline, frame, result.latency_batch, out, latency,
                                           judged.latency_levels)
    if candidate.task == "binary":
        result.roc = _roc_points(y, {"candidate": scores, "baseline": baseline_scores})
        result.thresholds = {"candidate": candidate.threshold,
                             **({"baseline": baseline.threshold} if baseline is not None else {})}
    if baseline is not None:
        result.kfold = fold_differences(out, out / BASELINE_DIR, config.compare.confidence)
    (out / FLIPS_FILE).unlink(missing_ok=True)  # NOTE: never an earlier run's rows beside this run's comparison
    if baseline is not None and baseline_scores is not None:
        result.flips = changed_predictions(candidate, y, scores, baseline_scores,
                                           (thresholds.candidate, thresholds.baseline), frame, out,
                                           config.evaluate.slices)
    result.passed = all(m.passed for m in [*result.metrics, *result.operational, *result.slices]) \
        and all(g.passed for g in result.gaps)
    result.baseline_required = _baseline_required(config, published=descriptor is not None)
    if result.baseline_required and result.baseline_status != "compared":
        result.passed = False
        result.reason = f"{result.reason}; {required_because(config)}, so this fails the gate"
    overlap.apply(result, config, frame, out, out / BASELINE_DIR)
    atomic.write_json(out / COMPARISON_FILE, result.to_json())
    return result
