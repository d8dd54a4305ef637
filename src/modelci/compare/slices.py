"""Gate rules on a slice column: each slice's paired bootstrap draws, and the largest gap between slices.

Each slice is resampled on its own (its rows, stratified by class), with a seed of its own: since
the slices are disjoint, the draws of the k-th resample of every slice together make one resample
stratified by slice, so the gap between slices can be taken resample by resample.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from modelci.compare.resampled import paired_draws
from modelci.compare.verdicts import Array, percentile_interval
from modelci.errors import UsageError
from modelci.evaluate.evaluator import _slice_groups, finite_or_none
from modelci.evaluate.metrics import DEFAULT_THRESHOLD, decided, value

# The classes whose rows a binary metric's denominator counts: recall and f1 the positive rows, the rank metrics
# both (precision counts the rows a model calls positive, see `defined`)
NEEDS: dict[str, tuple[int, ...]] = {"recall": (1,), "f1": (1,), "roc_auc": (0, 1), "pr_auc": (0, 1)}
CLASSES = {0: "negative", 1: "positive"}

if TYPE_CHECKING:
    import pandas as pd

    from modelci.config import Config, GateRule


@dataclass(frozen=True)
class Slice:
    """One value of the slice column (or one quartile of a numeric column): its metric for both
    models, and the draws of each, None when the slice is too small to judge."""

    value: str
    rows: int
    candidate: float | None
    baseline: float | None
    draws: tuple[Array, Array | None] | None
    counted: int = 0  # the rows held against compare.min_slice_rows: all of them, or the rarest class the metric needs
    counted_class: str | None = None  # that class ("positive", "negative"); None when all the rows count


@dataclass(frozen=True)
class Gap:
    """The candidate's largest difference between the judged slices, with the bootstrap distribution of its error.

    The interval is simultaneous over the pairs of slices: with c the 1 − tail quantile, over the resamples, of
    the range over the slices of (the slice's draw − its estimate), every pair's true difference is within c of
    its estimated one (each side at one-sided level tail), the pair the estimate picked as the largest included.
    So the gap is at least estimate − c and at most estimate + c.

    NOTE: the interval of the largest difference taken resample by resample (percentile or reverse percentile)
    does not hold with three slices or more: the largest difference of the draws picks, in each resample, the
    pair that drifted furthest apart, and the reverse percentile interval then failed 7-16% of candidates whose
    gap was just max_gap, at a nominal 2.5%."""

    estimate: float
    errors: Array  # per resample, the range over the slices of (draw - the slice's estimate); NaN when undefined
    max_gap: float

    def _margin(self, tail: float) -> float:
        found = self.errors[np.isfinite(self.errors)]
        return float(np.quantile(found, 1 - tail)) if found.size else math.nan

    def interval(self, tail: float) -> tuple[float, float]:
        """Each bound at one-sided level `tail`; the lower one at 0 or above (a gap is never negative)."""
        margin = self._margin(tail)
        return max(self.estimate - margin, 0.0), self.estimate + margin

    def rejects(self, tail: float) -> bool:
        """"The gap is at most max_gap" rejected at one-sided level `tail`: the gate fails."""
        return self.estimate - self._margin(tail) > self.max_gap

    def p_value(self) -> float | None:
        """The smallest one-sided level at which the gap would be shown above max_gap."""
        found = self.errors[np.isfinite(self.errors)]
        return float(np.mean(found >= self.estimate - self.max_gap)) if found.size else None


@dataclass(frozen=True)
class GapChange:
    """The candidate's gap less the baseline's, over the same slices, with its bootstrap draws: reported, not gated."""

    estimate: float
    draws: Array

    def interval(self, tail: float) -> tuple[float, float]:
        """The basic (reverse percentile) bootstrap interval: 2·estimate − the draws' quantiles.

        NOTE: each gap is a maximum over slices, biased upwards, and its draws more so; the basic interval takes
        that bias off where the percentile interval would double it."""
        low, high = percentile_interval(self.draws, tail)
        return 2 * self.estimate - high, 2 * self.estimate - low


def groups(frame: pd.DataFrame, rule: GateRule, index: int) -> list[tuple[str, np.ndarray]]:
    """(value, row mask) of each slice, as `evaluate` slices the column (quartiles of a numeric one)."""
    assert rule.slice is not None
    if rule.slice not in frame.columns:
        raise UsageError(f"gate[{index}].slice: the column {rule.slice!r} is not in the evaluation data",
                         hint=f"name one of its columns: {', '.join(map(str, frame.columns))}")
    return _slice_groups(frame[rule.slice])


def measure(config: Config, rule: GateRule, found: list[tuple[str, np.ndarray]], y: np.ndarray,
            candidate: np.ndarray, baseline: np.ndarray | None, stratified: bool,
            thresholds: tuple[float, float] = (DEFAULT_THRESHOLD, DEFAULT_THRESHOLD)) -> list[Slice]:
    """Each slice's metric for both models (each at its own classification threshold, `thresholds`: the
    candidate's and the baseline's), and its paired draws when it has rows enough to judge. A model's metric is
    undefined (None, its draws NaN) where its denominator is 0 on the slice (see `defined`)."""
    compare = config.compare
    own = list(thresholds[:1 if baseline is None else 2])
    binary = stratified and candidate.ndim == 2 and candidate.shape[1] == 2
    out = []
    for k, (name, mask) in enumerate(found):
        models = [candidate[mask]] + ([] if baseline is None else [baseline[mask]])
        values = [finite_or_none(value(rule.metric, y[mask], m, t)) if defined(rule.metric, y[mask], m, t, binary)
                  else None for m, t in zip(models, own, strict=True)]
        counted, rarest = _counted(rule.metric, y[mask], binary)
        draws = None
        if counted >= compare.min_slice_rows:
            # NOTE: a seed of its own per slice: the slices' resamples must be independent of each other
            drawn = paired_draws([rule.metric], y[mask], models, stratified, compare.bootstrap, compare.seed + 1 + k,
                                 own)
            each = [d[rule.metric] if v is not None else np.full(compare.bootstrap, math.nan)
                    for d, v in zip(drawn, values, strict=True)]
            draws = (each[0], each[1] if baseline is not None else None)
        out.append(Slice(name, int(mask.sum()), values[0], values[1] if baseline is not None else None, draws,
                         counted, rarest))
    return out


def defined(metric: str, y: np.ndarray, scores: np.ndarray, threshold: float, binary: bool) -> bool:
    """Whether a binary metric's denominator is non-zero for this model on these rows: recall and f1 need a positive
    row, precision a row the model calls positive, the rank metrics rows of both classes.

    NOTE: metrics.py returns 0.0 on a zero denominator, which on a whole evaluation set only a broken model or
    broken data reaches; on a slice (one without positive rows) it is the data's doing, and a 0.0 there would
    put a gap of the whole metric between two identical models."""
    if not binary:
        return True
    if metric == "precision":
        return bool(np.any(decided(scores, threshold) == 1))
    return all(np.any(y == k) for k in NEEDS.get(metric, ()))


def _counted(metric: str, y: np.ndarray, binary: bool) -> tuple[int, str | None]:
    """The rows compare.min_slice_rows is held against: those of the rarest class the metric needs (binary), else
    all of them; and that class's name."""
    if not binary or metric not in NEEDS:
        return len(y), None
    counts = {CLASSES[k]: int(np.sum(y == k)) for k in NEEDS[metric]}
    rarest = min(counts, key=lambda name: counts[name])
    return counts[rarest], rarest


def judged(slices: list[Slice]) -> list[Slice]:
    """The slices a gap is taken over: those with rows enough and the metric defined for the candidate."""
    return [s for s in slices if s.draws is not None and s.candidate is not None]


def _spread(values: Array) -> Array:
    """The largest difference between the slices (columns), per resample (row); NaN with fewer than two."""
    finite = np.where(np.isfinite(values), values, np.nan)
    counted = np.sum(np.isfinite(values), axis=1)
    with np.errstate(all="ignore"):
        spread = np.nanmax(finite, axis=1) - np.nanmin(finite, axis=1) if finite.size else np.full(len(values), np.nan)
    return np.where(counted >= 2, spread, np.nan)


def gap(rule: GateRule, slices: list[Slice]) -> tuple[Gap, GapChange | None] | None:
    """The candidate's gap, and the change of the gap from the baseline's (candidate − baseline, when
    the baseline was measured on every judged slice); None with fewer than two judged slices."""
    assert rule.max_gap is not None
    found = judged(slices)
    if len(found) < 2:
        return None
    values = np.array([s.candidate for s in found], dtype=np.float64)
    draws = np.column_stack([s.draws[0] for s in found if s.draws])
    own = Gap(float(values.max() - values.min()), _spread(draws - values), rule.max_gap)
    bases = [s.baseline for s in found]
    base_draws = [s.draws[1] for s in found if s.draws is not None and s.draws[1] is not None]
    if any(b is None for b in bases) or len(base_draws) < len(found):
        return own, None
    known = [b for b in bases if b is not None]
    change = _spread(draws) - _spread(np.column_stack(base_draws))
    return own, GapChange(own.estimate - (max(known) - min(known)), change)


def between(slices: list[Slice]) -> list[str]:
    """The judged slices with the lowest and the highest metric for the candidate."""
    found = judged(slices)
    return [min(found, key=lambda s: s.candidate or 0.0).value, max(found, key=lambda s: s.candidate or 0.0).value]
