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
from modelci.evaluate.metrics import DEFAULT_THRESHOLD, value

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


@dataclass(frozen=True)
class Gap:
    """The candidate's largest difference between the judged slices, with its bootstrap draws."""

    estimate: float
    draws: Array
    max_gap: float
    nonnegative: bool = True  # a gap is; the change of a gap from the baseline's is not

    def interval(self, tail: float) -> tuple[float, float]:
        """The basic (reverse percentile) bootstrap interval, at 0 or above.

        NOTE: a maximum over slices is biased upwards, and its bootstrap draws more so; the basic
        interval (2·estimate − the draws' quantiles) takes that bias off, where the percentile
        interval would double it and fail a candidate whose gap is just the allowed one too often."""
        low, high = percentile_interval(self.draws, tail)
        floor = 0.0 if self.nonnegative else -math.inf
        return max(2 * self.estimate - high, floor), max(2 * self.estimate - low, floor)

    def rejects(self, tail: float) -> bool:
        """"The gap is at most max_gap" rejected at one-sided level `tail`: the gate fails."""
        return self.interval(tail)[0] > self.max_gap

    def p_value(self) -> float | None:
        found = self.draws[np.isfinite(self.draws)]
        return float(np.mean(found >= 2 * self.estimate - self.max_gap)) if found.size else None


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
    candidate's and the baseline's), and its paired draws when it has rows enough to judge."""
    compare = config.compare
    own = list(thresholds[:1 if baseline is None else 2])
    out = []
    for k, (name, mask) in enumerate(found):
        models = [candidate[mask]] + ([] if baseline is None else [baseline[mask]])
        values = [finite_or_none(value(rule.metric, y[mask], m, t)) for m, t in zip(models, own, strict=True)]
        draws = None
        if int(mask.sum()) >= compare.min_slice_rows:
            # NOTE: a seed of its own per slice: the slices' resamples must be independent of each other
            drawn = paired_draws([rule.metric], y[mask], models, stratified, compare.bootstrap, compare.seed + 1 + k,
                                 own)
            draws = (drawn[0][rule.metric], drawn[1][rule.metric] if baseline is not None else None)
        out.append(Slice(name, int(mask.sum()), values[0], values[1] if baseline is not None else None, draws))
    return out


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


def gap(rule: GateRule, slices: list[Slice]) -> tuple[Gap, Gap | None] | None:
    """The candidate's gap, and the change of the gap from the baseline's (candidate − baseline, when
    the baseline was measured on every judged slice); None with fewer than two judged slices."""
    assert rule.max_gap is not None
    found = judged(slices)
    if len(found) < 2:
        return None
    values = [s.candidate for s in found if s.candidate is not None]
    own = Gap(max(values) - min(values), _spread(np.column_stack([s.draws[0] for s in found if s.draws])),
              rule.max_gap)
    bases = [s.baseline for s in found]
    base_draws = [s.draws[1] for s in found if s.draws is not None and s.draws[1] is not None]
    if any(b is None for b in bases) or len(base_draws) < len(found):
        return own, None
    known = [b for b in bases if b is not None]
    change = own.draws - _spread(np.column_stack(base_draws))
    return own, Gap(own.estimate - (max(known) - min(known)), change, math.inf, nonnegative=False)


def between(slices: list[Slice]) -> list[str]:
    """The judged slices with the lowest and the highest metric for the candidate."""
    found = judged(slices)
    return [min(found, key=lambda s: s.candidate or 0.0).value, max(found, key=lambda s: s.candidate or 0.0).value]
