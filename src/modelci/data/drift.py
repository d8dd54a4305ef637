"""Drift of each column against the baseline's profile, without the baseline's raw data.

Numbers are compared on their bucket sketches (the same grid for every profile), grouped into the
baseline's deciles for the population stability index and the Jensen–Shannon distance, and bucket
by bucket for the two-sample Kolmogorov–Smirnov test. Categories are compared on their
frequencies. Empty values are a bin of their own, so a column that starts arriving empty drifts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelci.data.schema import DriftRule, Schema
from modelci.data.sketch import Sketch

BINS = 10
# NOTE: a floor on every bin's share, so an empty bin does not make the index infinite; the
# usual choice in credit-risk practice, where the index comes from.
EPSILON = 1e-4


@dataclass(frozen=True)
class ColumnDrift:
    column: str
    method: str
    threshold: float
    verdict: str  # stable | drifted | not-compared
    score: float | None = None
    p_value: float | None = None  # the Kolmogorov-Smirnov test only
    reason: str | None = None


def _shares(counts: np.ndarray) -> np.ndarray:
    total = counts.sum()
    shares = counts / total if total else np.zeros(len(counts))
    return np.maximum(shares, EPSILON)


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index of two histograms on the same bins."""
    p, q = _shares(expected), _shares(actual)
    return float(np.sum((q - p) * np.log(q / p)))


def js_distance(expected: np.ndarray, actual: np.ndarray) -> float:
    """Jensen–Shannon distance (base 2, from 0 to 1) of two histograms on the same bins."""
    total_p, total_q = expected.sum(), actual.sum()
    p, q = expected / total_p, actual / total_q
    m = (p + q) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        kl_p = np.where(p > 0, p * np.log2(p / m), 0.0).sum()
        kl_q = np.where(q > 0, q * np.log2(q / m), 0.0).sum()
    return float(math.sqrt(max((kl_p + kl_q) / 2, 0.0)))


def kolmogorov_sf(statistic: float) -> float:
    """P(K > statistic) for the Kolmogorov distribution (the large-sample KS p-value)."""
    if statistic <= 0:
        return 1.0
    total = sum((-1) ** (k - 1) * math.exp(-2 * k * k * statistic * statistic) for k in range(1, 101))
    return float(min(max(2 * total, 0.0), 1.0))


def _decile_bins(baseline: Sketch, current: Sketch) -> tuple[np.ndarray, np.ndarray]:
    """Both sketches grouped into the baseline's deciles (outer bins open-ended)."""
    b_buckets, b_counts = baseline.buckets()
    c_buckets, c_counts = current.buckets()
    rank = np.cumsum(b_counts)
    at = np.searchsorted(rank, rank[-1] * np.arange(1, BINS) / BINS, side="left")
    starts = np.unique(b_buckets[np.minimum(at, len(b_buckets) - 1)] + 1)
    bins = len(starts) + 1
    expected = np.bincount(np.searchsorted(starts, b_buckets, side="right"), weights=b_counts, minlength=bins)
    actual = np.bincount(np.searchsorted(starts, c_buckets, side="right"), weights=c_counts, minlength=bins)
    return expected, actual


def _ks(baseline: Sketch, current: Sketch) -> tuple[float, float]:
    b_buckets, b_counts = baseline.buckets()
    c_buckets, c_counts = current.buckets()
    grid = np.union1d(b_buckets, c_buckets)

    def cdf(buckets: np.ndarray, counts: np.ndarray) -> np.ndarray:
        dense = np.zeros(len(grid))
        dense[np.searchsorted(grid, buckets)] = counts
        return np.asarray(np.cumsum(dense) / counts.sum())

    statistic = float(np.max(np.abs(cdf(b_buckets, b_counts) - cdf(c_buckets, c_counts))))
    n, m = b_counts.sum(), c_counts.sum()
    return statistic, kolmogorov_sf(statistic * math.sqrt(n * m / (n + m)))


def _category_counts(baseline: dict[str, Any], current: dict[str, Any]) -> tuple[np.ndarray, np.ndarray] | None:
    old, new = baseline.get("frequencies"), current.get("frequencies")
    if not isinstance(old, list) or not isinstance(new, list):
        return None
    values = {repr(v): i for i, v in enumerate(dict.fromkeys([v for v, _ in old] + [v for v, _ in new]))}
    expected, actual = np.zeros(len(values) + 1), np.zeros(len(values) + 1)
    for target, pairs, profile in ((expected, old, baseline), (actual, new, current)):
        for value, count in pairs:
            target[values[repr(value)]] = count
        target[-1] = profile.get("nulls", 0)
    return expected, actual


def _score(method: str, baseline: dict[str, Any], current: dict[str, Any]) -> tuple[float, float | None] | str:
    """(score, p-value) for one column, or why it cannot be measured."""
    numeric = baseline["kind"] == current["kind"] == "numeric"
    if method == "ks" or (numeric and method != "linf"):
        if not numeric:
            return "the Kolmogorov–Smirnov test is for numbers; use psi, js or linf for categories"
        if not baseline.get("sketch") or not current.get("sketch"):
            return "no values to compare"
        old, new = Sketch.from_json(baseline["sketch"]), Sketch.from_json(current["sketch"])
        if method == "ks":
            statistic, p_value = _ks(old, new)
            return statistic, p_value
        expected, actual = _decile_bins(old, new)
        expected, actual = np.append(expected, baseline["nulls"]), np.append(actual, current["nulls"])
    else:
        counted = _category_counts(baseline, current)
        if counted is None:
            return "no frequencies to compare (more than 1000 distinct values, or numbers spread too wide for linf)"
        expected, actual = counted
    if method == "linf":
        return float(np.max(np.abs(expected / expected.sum() - actual / actual.sum()))), None
    return (psi(expected, actual) if method == "psi" else js_distance(expected, actual)), None


def rule_for(column: str, schema: Schema | None, default: DriftRule) -> DriftRule | None:
    """The measure and threshold of `column`'s drift; None when the schema says it is not measured."""
    # NOTE: an image's or a text's statistic (`image.brightness.red`, `review.tokens`) drifts as its column says
    rule = schema.owner(column) if schema else None
    if rule is None or rule.drift is True:
        return default
    return rule.drift if isinstance(rule.drift, DriftRule) else None


def column_drift(column: str, rule: DriftRule, baseline: dict[str, Any], current: dict[str, Any]) -> ColumnDrift:
    """How far one column's profile moved from the baseline's, and whether that is past the rule's threshold."""
    scored = _score(rule.method, baseline, current)
    if isinstance(scored, str):
        return ColumnDrift(column, rule.method, rule.threshold, "not-compared", reason=scored)
    score, p_value = scored
    drifted = p_value < rule.threshold if p_value is not None else score > rule.threshold
    return ColumnDrift(column, rule.method, rule.threshold, "drifted" if drifted else "stable",
                       score=score, p_value=p_value)


def measure(baseline: dict[str, Any], current: dict[str, Any], default: DriftRule,
            schema: Schema | None) -> list[ColumnDrift]:
    """The drift of every column the current and the baseline profile share."""
    found = []
    for column, profile in current["columns"].items():
        rule = rule_for(column, schema, default)
        old = baseline["columns"].get(column)
        if rule is not None and old is not None:
            found.append(column_drift(column, rule, old, profile))
    return found
