"""The gate's rules on the metrics: each metric's and each slice's paired interval, the gaps between
slices, and Holm's step-down over every comparison whose rejection fails the gate (compare/verdicts.py).

Every comparison is measured first (its bootstrap draws), then the step-down gives each one the level
of its interval, and only then is each row labelled and judged, at the level that decided it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import stats

from modelci.compare import slices as sliced
from modelci.compare import verdicts
from modelci.compare.noise import SeedNoise, recipe_differences, seed_noise
from modelci.compare.operational import LatencyChange
from modelci.compare.resampled import paired_draws
from modelci.compare.rows import (
    UNDEFINED,
    GapComparison,
    MetricComparison,
    Multiplicity,
    allowed_drop,
    bounds,
    describe,
    failed_verdict,
)
from modelci.config import Config, GateRule
from modelci.evaluate.evaluator import finite_or_none, metric_names
from modelci.evaluate.metrics import DEFAULT_THRESHOLD, FUNCTIONS, LOWER_IS_BETTER, decided
from modelci.evaluate.metrics import value as metric_value

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class Judged:
    metrics: list[MetricComparison]
    slices: list[MetricComparison]
    gaps: list[GapComparison]
    multiplicity: Multiplicity
    seeds: SeedNoise | None = None  # the training noise counted in the metrics' intervals (compare.seeds)
    latency_levels: dict[str, float] = field(default_factory=dict)  # each latency rule's one-sided level (Holm's)


@dataclass(frozen=True)
class Thresholds:
    """Each model's classification threshold (binary; 0.5 unless its export recorded another): the metrics of
    decided classes, McNemar's test and the slices judge each model as it is deployed."""

    candidate: float = DEFAULT_THRESHOLD
    baseline: float = DEFAULT_THRESHOLD
    seeds: tuple[float, ...] = ()  # the candidate's other seeds' (compare.seeds), in the order of their scores

    def candidates(self, count: int) -> list[float]:
        """The published candidate's and its other seeds' thresholds, for `count` models in all."""
        return [self.candidate, *self.seeds, *[DEFAULT_THRESHOLD] * (count - 1 - len(self.seeds))][:count]


@dataclass(frozen=True)
class _Pending:
    """A row measured but not yet labelled: its draws wait for the level the step-down gives them."""

    row: MetricComparison
    rule: GateRule | None
    paired: verdicts.Paired | None

    @property
    def decided(self) -> bool:
        """Whether a rule judges this row's difference from the baseline."""
        return self.paired is not None and self.rule is not None and self.rule.require is not None


def mcnemar(y: np.ndarray, candidate: np.ndarray, baseline: np.ndarray, candidate_threshold: float = DEFAULT_THRESHOLD,
            baseline_threshold: float = DEFAULT_THRESHOLD) -> tuple[list[int], float]:
    """McNemar's exact test: the rows only one model classifies right (each at its own threshold), and the
    two-sided p-value that the models are equally accurate (a binomial test on those rows)."""
    right_c, right_b = decided(candidate, candidate_threshold) == y, decided(baseline, baseline_threshold) == y
    only_c, only_b = int(np.sum(right_c & ~right_b)), int(np.sum(right_b & ~right_c))
    if only_c + only_b == 0:
        return [only_c, only_b], 1.0
    return [only_c, only_b], float(stats.binomtest(only_c, only_c + only_b, 0.5).pvalue)


def _higher_is_better(name: str, rule: GateRule | None) -> bool:
    return rule.direction == "higher" if rule is not None and rule.direction else name not in LOWER_IS_BETTER


def _tolerance(rule: GateRule | None, baseline: float | None) -> float:
    if rule is None or rule.max_drop is None:
        return 0.0
    return rule.max_drop * abs(baseline or 0.0) if rule.relative else rule.max_drop


def _paired(draws: np.ndarray, name: str, rule: GateRule | None, baseline: float | None) -> verdicts.Paired:
    require = rule.require if rule is not None and rule.require else verdicts.NO_REGRESSION
    return verdicts.Paired(draws, _higher_is_better(name, rule), _tolerance(rule, baseline), require)


def _metric_rows(config: Config, y: np.ndarray, candidates: list[np.ndarray], baseline: np.ndarray | None,
                 task: str, baseline_seeds: dict[str, Any] | None,
                 thresholds: Thresholds) -> tuple[list[_Pending], SeedNoise | None]:
    """`candidates`: each seed's scores, the published model's first; with several, a row's candidate value is
    their mean (the recipe's), its `published` value the first seed's, and its interval counts the training noise
    (compare/noise.py)."""
    rules = {r.metric: r for r in config.gate if r.slice is None and r.metric in FUNCTIONS}
    names = list(dict.fromkeys([*metric_names(config), *rules]))
    own = thresholds.candidates(len(candidates))
    values = {name: [finite_or_none(metric_value(name, y, scores, threshold)) for scores, threshold in
                     zip(candidates, own, strict=True)] for name in names}
    noise = seed_noise(len(candidates), values, baseline_seeds, compared=baseline is not None) \
        if len(candidates) > 1 else None
    draws = paired_draws(names, y, [*candidates, baseline], task != "regression", config.compare.bootstrap,
                         config.compare.seed, [*own, thresholds.baseline]) if baseline is not None else []
    rng = np.random.default_rng(config.compare.seed)
    rows = []
    for name in names:
        rule = rules.get(name)
        value = None if None in values[name] else float(np.mean(values[name]))  # type: ignore[arg-type]
        row = MetricComparison(name, _higher_is_better(name, rule), value,
                               published=values[name][0] if noise is not None else None)
        paired = None
        if baseline is not None:
            base = finite_or_none(metric_value(name, y, baseline, thresholds.baseline))
            discordant, p_value = mcnemar(y, candidates[0], baseline, thresholds.candidate, thresholds.baseline) \
                if name == "accuracy" else (None, None)
            row = replace(row, baseline=base, difference=None if value is None or base is None else value - base,
                          discordant=discordant, mcnemar_p=p_value)
            differences = draws[0][name] - draws[1][name] if noise is None else recipe_differences(
                np.stack([found[name] for found in draws[:-1]]), draws[-1][name], noise.metrics[name], rng)
            paired = _paired(differences, name, rule, base)
        rows.append(_Pending(row, rule, paired))
    return rows, noise


def _slice_rows(rule: GateRule, found: list[sliced.Slice], min_rows: int, baseline: bool) -> list[_Pending]:
    """Each slice's row; `baseline`: whether there is a baseline to compare with."""
    out = []
    for s in found:
        row = MetricComparison(rule.metric, _higher_is_better(rule.metric, rule), s.candidate, s.baseline,
                               None if s.candidate is None or s.baseline is None else s.candidate - s.baseline,
                               slice=rule.slice, slice_value=s.value, rows=s.rows)
        paired = None
        if s.draws is None:
            counted = f"{s.rows:,} rows" if s.counted_class is None else \
                f"{s.rows:,} rows, {s.counted:,} of them {s.counted_class} ({rule.metric} needs them)"
            row = replace(row, verdict=verdicts.TOO_SMALL, reason=f"{counted}, fewer than "
                          f"compare.min_slice_rows ({min_rows}): too small to judge")
        elif s.candidate is not None and s.baseline is None and baseline:
            row = replace(row, verdict="undefined", reason="undefined on this slice's rows for the baseline: no "
                          "difference to judge")
        elif s.draws[1] is not None and s.candidate is not None:
            paired = _paired(s.draws[0] - s.draws[1], rule.metric, rule, s.baseline)
        out.append(_Pending(row, rule, paired))
    return out


def _finish(pending: _Pending, tail: float) -> MetricComparison:
    """The row labelled from its interval at one-sided level `tail`, then judged by its rule."""
    row, rule, paired = pending.row, pending.rule, pending.paired
    if paired is not None:
        low, high = paired.interval(tail)
        row = replace(row, ci_low=finite_or_none(low), ci_high=finite_or_none(high), confidence=1 - 2 * tail,
                      verdict=verdicts.label(*paired.better(tail), paired.tolerance, paired.require),
                      p_value=paired.p_value() if pending.decided else None)
    if row.verdict == verdicts.TOO_SMALL:
        return replace(row, rule=describe(rule) if rule else None)
    if rule is None:
        if row.candidate is None:  # NOTE: an undefined metric fails with or without a rule: the model is broken
            return replace(row, passed=False, reason=UNDEFINED, verdict="undefined")
        return row
    if row.slice is not None and row.candidate is None:
        # NOTE: slices.measure leaves a metric undefined where its denominator is 0 on the slice (recall and f1
        # without positive rows, precision without rows called positive, the rank metrics with one class), not
        # the 0.0 that metrics.py returns: that is the data's doing, so the slice is reported, not judged, and
        # left out of any gap; a broken model is caught by the metric on all the rows
        return replace(row, rule=describe(rule), verdict="undefined",
                       reason="undefined on this slice's rows (for the candidate): nothing to judge")
    out_of_bounds = _floors(row, rule)
    problems = list(out_of_bounds)
    if pending.decided and paired is not None and row.candidate is not None \
            and not verdicts.passes(*paired.better(tail), paired.tolerance, paired.require):
        problems.append(_unmet(row, rule))
    return replace(row, rule=describe(rule), passed=not problems, reason="; ".join(problems) or row.reason,
                   verdict=failed_verdict(row, out_of_bounds))


def _floors(row: MetricComparison, rule: GateRule) -> list[str]:
    """The rule's min and max, on the published model: with compare.seeds, the first seed's value rather than the
    seeds' mean, which is no model anyone deploys; a mean left undefined by any seed still fails."""
    if row.published is None or row.candidate is None:
        return bounds(row.candidate, rule)
    return [f"the published model (the first seed): {found}" for found in bounds(row.published, rule)]


def _unmet(row: MetricComparison, rule: GateRule) -> str:
    """Why the difference from the baseline does not meet what the rule requires."""
    shown = f"[{row.ci_low:+.4f}, {row.ci_high:+.4f}]" if row.ci_low is not None and row.ci_high is not None \
        else "undefined"
    level = f"{(row.confidence or 0) * 100:.4g}% interval {shown}"
    if rule.require == verdicts.SUPERIOR:
        return f"not shown better than the baseline (require: superior): the {level} does not lie wholly on the " \
               "better side of 0"
    if rule.require == verdicts.NON_INFERIOR:
        return f"not shown within {allowed_drop(rule)} of the baseline (require: non-inferior): the {level} reaches " \
               "past the drop allowed"
    return f"worse than the baseline by more than {allowed_drop(rule)}: difference {row.difference:+.4f}, {level}"


def _gap_row(rule: GateRule, found: list[sliced.Slice], measured: tuple[sliced.Gap, sliced.GapChange | None] | None,
             tail: float, alpha: float) -> GapComparison:
    assert rule.slice is not None
    assert rule.max_gap is not None
    if measured is None:
        return GapComparison(rule.metric, rule.slice, rule.max_gap, None, reason="fewer than two slices with "
                             "rows enough (compare.min_slice_rows) and the metric defined: too small to judge")
    own, change = measured
    low, high = own.interval(tail)
    verdict = "exceeded" if own.rejects(tail) else "within" if high <= rule.max_gap else verdicts.INCONCLUSIVE
    row = GapComparison(rule.metric, rule.slice, rule.max_gap, own.estimate, finite_or_none(low),
                        finite_or_none(high), 1 - 2 * tail, sliced.between(found), verdict=verdict,
                        passed=verdict != "exceeded", p_value=own.p_value())
    if not row.passed:
        row = replace(row, reason=f"the {rule.metric} gap between {rule.slice} slices is {own.estimate:.4f} "
                      f"({row.between[0] if row.between else ''} to {row.between[1] if row.between else ''}), its "
                      f"{(row.confidence or 0) * 100:.4g}% interval [{low:.4f}, {high:.4f}] wholly above max_gap "
                      f"{rule.max_gap}")
    if change is None:
        return row
    change_low, change_high = change.interval(alpha)
    grew = "grew" if change_low > 0 else "shrank" if change_high < 0 else "unchanged"
    return replace(row, baseline=own.estimate - change.estimate, change_low=finite_or_none(change_low),
                   change_high=finite_or_none(change_high), grew=grew)


def judge(config: Config, y: np.ndarray, candidate: np.ndarray, baseline: np.ndarray | None, task: str,
          frame: pd.DataFrame | None, other_seeds: list[np.ndarray] | None = None,
          baseline_seeds: dict[str, Any] | None = None, thresholds: Thresholds | None = None,
          latency: dict[str, LatencyChange] | None = None) -> Judged:
    """Every metric row, every slice row and gap of the slice rules (with `frame`), each at the level Holm's
    step-down gives it. `other_seeds`: the scores of the candidate's other seeds (compare.seeds), which the
    metric rows count; `baseline_seeds`: what the baseline's metrics.json recorded of its own; `thresholds`:
    each model's own classification threshold (binary), 0.5 for every model when None; `latency`: each latency
    figure's change (compare/operational.py), whose max_increase rules join Holm's family (their levels in
    `latency_levels`)."""
    thresholds = thresholds or Thresholds()
    # NOTE: a slice column the data lacks is the user's error: said before any resampling
    groups = [(rule, sliced.groups(frame, rule, index)) for index, rule in enumerate(config.gate)
              if rule.slice is not None and frame is not None]
    metrics, noise = _metric_rows(config, y, [candidate, *(other_seeds or [])], baseline, task, baseline_seeds,
                                  thresholds)
    measured = []
    for rule, found_groups in groups:
        found = sliced.measure(config, rule, found_groups, y, candidate, baseline, task != "regression",
                               (thresholds.candidate, thresholds.baseline))
        measured.append((rule, found, sliced.gap(rule, found) if rule.max_gap is not None else None))
    pending = metrics + [p for rule, found, _ in measured for p in _slice_rows(
        rule, found, config.compare.min_slice_rows, baseline is not None)]
    family: list[Callable[[float], bool]] = [p.paired.rejects for p in pending
                                             if p.decided and p.paired is not None and p.paired.adjusted]
    family += [gap[0].rejects for _, _, gap in measured if gap is not None]
    timed = _latency_rules(config, latency or {})
    family += [partial(change.exceeds, allowed) for _, change, allowed in timed]
    alpha = (1 - config.compare.confidence) / 2
    levels = iter(verdicts.holm(family, alpha))
    tails = [next(levels) if p.decided and p.paired is not None and p.paired.adjusted else alpha for p in pending]
    rows = [_finish(p, tail) for p, tail in zip(pending, tails, strict=True)]
    gaps = [_gap_row(rule, found, gap, next(levels) if gap is not None else alpha, alpha)
            for rule, found, gap in measured if rule.max_gap is not None]
    latency_levels = {name: next(levels) for name, _, _ in timed}
    decided = sum(p.decided for p in pending) + sum(gap is not None for *_, gap in measured) + len(timed)
    return Judged(rows[:len(metrics)], rows[len(metrics):], gaps, Multiplicity("holm", decided, len(family), alpha),
                  noise, latency_levels)


def _latency_rules(config: Config, latency: dict[str, LatencyChange]) -> list[tuple[str, LatencyChange, float]]:
    """(figure, change, max_increase) of each latency rule that its interval decides: it fails the gate when its
    null hypothesis (at most max_increase slower) is rejected, so it is in Holm's family."""
    return [(rule.metric, latency[rule.metric], rule.max_increase) for rule in config.gate
            if rule.metric in latency and rule.max_increase is not None and rule.slice is None]
