"""The rows of comparison.json, and what a rule's own bounds (min, max) say of a value.

Labels: see compare/verdicts.py for improved, unchanged, worse-within-tolerance, regressed,
inconclusive and too-small; besides them a row may be failed-floor (outside the rule's min or max,
whatever the baseline), undefined (not finite), no-baseline, measured (a figure with nothing to
compare: parity, drift) or not-measured.
"""

from __future__ import annotations

from dataclasses import dataclass

from modelci.compare.verdicts import NO_REGRESSION
from modelci.config import GateRule

UNDEFINED = "the metric is undefined (not finite) for the candidate"


@dataclass(frozen=True)
class MetricComparison:
    name: str
    higher_is_better: bool
    candidate: float | None
    baseline: float | None = None
    difference: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    verdict: str = "no-baseline"  # see the module's docstring
    rule: str | None = None
    passed: bool = True
    reason: str | None = None
    # NOTE: for accuracy, McNemar's exact test on the rows only one model gets right
    discordant: list[int] | None = None  # [candidate right and baseline wrong, the other way round]
    mcnemar_p: float | None = None
    # the two-sided level of [ci_low, ci_high]: below compare.confidence when Holm's step-down widened it
    confidence: float | None = None
    p_value: float | None = None  # one-sided bootstrap p-value of the rule's null hypothesis, when a rule decides
    slice: str | None = None  # a slice rule's row: the column,
    slice_value: str | None = None  # the slice (a value, or a quartile's range),
    rows: int | None = None  # and its evaluation rows
    # compare.seeds > 1: the published model's (the first seed's) value, which the rule's min and max judge;
    # `candidate` is then the seeds' mean, which the interval is about
    published: float | None = None


@dataclass(frozen=True)
class GapComparison:
    """A `max_gap` rule: the candidate's largest difference of a metric between the slices of a column."""

    metric: str
    slice: str
    max_gap: float
    candidate: float | None  # the gap; None when fewer than two slices could be judged
    ci_low: float | None = None
    ci_high: float | None = None
    confidence: float | None = None
    between: list[str] | None = None  # the candidate's lowest and highest slice
    baseline: float | None = None  # the baseline's gap over the same slices
    change_low: float | None = None  # interval of the candidate's gap minus the baseline's, at compare.confidence
    change_high: float | None = None
    grew: str | None = None  # grew | shrank | unchanged (the change's interval against 0); None without a baseline
    verdict: str = "too-small"  # within | exceeded | inconclusive | too-small
    passed: bool = True
    reason: str | None = None
    p_value: float | None = None


@dataclass(frozen=True)
class Multiplicity:
    """How the comparisons that rules decide share the error rate (compare/verdicts.py)."""

    method: str  # holm
    comparisons: int  # every comparison a rule decides: metrics, slices, gaps and latency
    adjusted: int  # those in Holm's family (no-regression, gap and latency max_increase rules)
    alpha: float  # the family's one-sided level: (1 - compare.confidence) / 2


def allowed_drop(rule: GateRule) -> str:
    if rule.max_drop is None:
        return "0"
    return f"{rule.max_drop * 100:g}% of the baseline" if rule.relative else f"{rule.max_drop}"


def describe(rule: GateRule) -> str:
    drop = f"{rule.max_drop * 100:g}%" if rule.relative and rule.max_drop is not None else rule.max_drop
    parts = [f"by {rule.slice}" if rule.slice else "",
             f"min {rule.min}" if rule.min is not None else "", f"max {rule.max}" if rule.max is not None else "",
             f"max_drop {drop}" if rule.max_drop is not None else "",
             f"max_increase {rule.max_increase * 100:g}%" if rule.max_increase is not None else "",
             # NOTE: no-regression is the default with max_drop, so said only where it is not implied
             f"require {rule.require}" if rule.require and not (rule.require == NO_REGRESSION and
                                                                rule.max_drop is not None) else "",
             f"max_gap {rule.max_gap}" if rule.max_gap is not None else "",
             f"{rule.direction} is better" if rule.direction else ""]
    return ", ".join(p for p in parts if p)


def bounds(value: float | None, rule: GateRule) -> list[str]:
    """What is wrong with the candidate's own value: undefined, or outside the rule's min or max."""
    if value is None:
        return [UNDEFINED]
    return ([f"{value:.4g} is below the minimum {rule.min}"] if rule.min is not None and value < rule.min else []) + \
        ([f"{value:.4g} is above the maximum {rule.max}"] if rule.max is not None and value > rule.max else [])


def failed_verdict(row: MetricComparison, out_of_bounds: list[str]) -> str:
    """failed-floor when the value is out of bounds; when there is no value, why: undefined or not measured."""
    if row.candidate is None:
        return "undefined" if row.verdict != "not-measured" else "not-measured"
    return "failed-floor" if out_of_bounds else row.verdict
