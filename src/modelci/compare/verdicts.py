"""What a gate rule requires of a paired bootstrap interval, the verdict labels, and Holm's step-down.

A difference (candidate − baseline) is read in its better orientation: the sign is flipped for a
metric where lower is better, so that 0 is "no change" and −tolerance (the rule's max_drop) is the
worst the rule allows. Of an interval [low, high] so read, the labels are:

    improved                low > 0
    regressed               high < −tolerance
    worse-within-tolerance  high < 0 and low ≥ −tolerance
    unchanged               low ≤ 0 ≤ high, when that settles what the rule requires
    inconclusive            otherwise: the interval is too wide to say what the rule requires

A rule requires one of:

    no-regression  fail only when the whole interval is worse than −tolerance (the default)
    non-inferior   pass only when the interval's worse end is within the tolerance
    superior       pass only when the whole interval is better than 0

Multiplicity. A no-regression rule (and a slice of one, a gap rule, and a latency rule's max_increase,
compare/operational.py) fails the gate when its null hypothesis, "not worse beyond the tolerance", is
rejected; with m such comparisons a fair
candidate would fail m times as often. Holm's step-down keeps the chance of any such failure at the
one-sided level of a single interval. A non-inferior or superior rule passes only when its
hypothesis is rejected, and the gate needs every one of them rejected: an intersection-union test,
whose error (passing a candidate that is not good enough) is at most the level of one interval
without any adjustment, so those intervals are not widened.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

NO_REGRESSION, NON_INFERIOR, SUPERIOR = "no-regression", "non-inferior", "superior"
REQUIREMENTS = (NO_REGRESSION, NON_INFERIOR, SUPERIOR)
IMPROVED, UNCHANGED, WORSE_WITHIN, REGRESSED, INCONCLUSIVE = (
    "improved", "unchanged", "worse-within-tolerance", "regressed", "inconclusive")
TOO_SMALL = "too-small"  # a slice with fewer rows than compare.min_slice_rows: not judged

Array = NDArray[np.float64]


def percentile_interval(draws: Array, tail: float) -> tuple[float, float]:
    """The interval between the `tail` and 1 − `tail` quantiles of the finite draws; NaNs when none is."""
    found = draws[np.isfinite(draws)]
    if found.size == 0:
        return math.nan, math.nan
    low, high = np.quantile(found, [tail, 1 - tail])
    return float(low), float(high)


def label(low: float, high: float, tolerance: float, require: str) -> str:
    """The verdict of an interval in its better orientation (see the module's docstring)."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return UNCHANGED if require == NO_REGRESSION else INCONCLUSIVE
    if low > 0:
        return IMPROVED
    if high < -tolerance:
        return REGRESSED
    if high < 0:
        return WORSE_WITHIN if low >= -tolerance else INCONCLUSIVE
    unsettled = (require == NON_INFERIOR and low < -tolerance) or (require == SUPERIOR and high > 0)
    return INCONCLUSIVE if unsettled else UNCHANGED


def passes(low: float, high: float, tolerance: float, require: str) -> bool:
    """Whether an interval in its better orientation meets the requirement; an undefined one meets only
    no-regression, which fails nothing it cannot show worse."""
    if require == NON_INFERIOR:
        return low >= -tolerance
    if require == SUPERIOR:
        return low > 0
    return not high < -tolerance


@dataclass(frozen=True)
class Paired:
    """The bootstrap draws of candidate − baseline for one comparison that a rule decides."""

    draws: Array  # in the metric's units
    higher_is_better: bool
    tolerance: float  # the drop allowed, ≥ 0, in the metric's units
    require: str

    @property
    def adjusted(self) -> bool:
        """Whether this comparison is in the family whose rejections fail the gate (see the docstring)."""
        return self.require == NO_REGRESSION

    def interval(self, tail: float) -> tuple[float, float]:
        return percentile_interval(self.draws, tail)

    def better(self, tail: float) -> tuple[float, float]:
        """The interval in its better orientation."""
        low, high = self.interval(tail)
        return (low, high) if self.higher_is_better else (-high, -low)

    def rejects(self, tail: float) -> bool:
        """No-regression's null hypothesis (not worse beyond the tolerance) rejected at one-sided level `tail`."""
        return not passes(*self.better(tail), self.tolerance, NO_REGRESSION)

    def p_value(self) -> float | None:
        """The one-sided bootstrap p-value of the rule's null hypothesis: the share of draws on its side."""
        found = self.draws[np.isfinite(self.draws)]
        if found.size == 0:
            return None
        better = found if self.higher_is_better else -found
        on_null = {NO_REGRESSION: better >= -self.tolerance, NON_INFERIOR: better < -self.tolerance,
                   SUPERIOR: better <= 0}[self.require]
        return float(np.mean(on_null))


def holm(rejects: Sequence[Callable[[float], bool]], alpha: float) -> list[float]:
    """Holm's step-down: the one-sided level at which each hypothesis is decided, so that the chance of
    rejecting any true one stays at `alpha`.

    With r hypotheses left, every one that its interval at level alpha / r rejects is rejected at
    that level; when none is, the rest are kept, at that level. This is Holm's procedure on the
    bootstrap p-values (an interval at level a rejects exactly when p ≤ a) decided on the intervals
    the report shows, so each shown interval agrees with its decision; with one hypothesis the level
    is `alpha` itself."""
    levels = [alpha] * len(rejects)
    left = set(range(len(rejects)))
    while left:
        level = alpha / len(left)
        rejected = {i for i in left if rejects[i](level)}
        for i in left:
            levels[i] = level
        if not rejected:
            break
        left -= rejected
    return levels
