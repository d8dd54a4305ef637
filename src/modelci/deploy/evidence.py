"""The evidence a canary is judged on: the servers' own Prometheus metrics, per version, over the canary's window,
and three figures of the canary against the stable model, each a difference with a confidence interval:

- **error rate**: the share of infer requests not answered 200, canary minus stable (Newcombe's interval for a
  difference of proportions, from Wilson's score intervals; it holds at shares near 0, where most error rates
  are);
- **slow requests**: the share of requests slower than the stable model's 99th percentile (the histogram bucket
  it falls in), canary minus stable: the latency tail as a proportion, with the same interval;
- **prediction shift**: the total variation distance between the two distributions of predictions (a
  multiclass model's predicted classes, `modelci_predicted_class_rows`; any other model's score, the
  `modelci_prediction` histogram: the share of predictions that would have to move to another class or bucket),
  with a basic bootstrap interval (which corrects the distance's upward bias on small samples).

A figure is **worse** when its whole interval lies above the rule's margin, and **not worse** when its whole
interval lies at or below it; otherwise it is not decided yet.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from modelci.errors import UsageError

if TYPE_CHECKING:
    import numpy as np

REQUESTS = "modelci_inference_requests"
DURATION = "modelci_inference_request_duration_seconds"
PREDICTION = "modelci_prediction"
CLASSES = "modelci_predicted_class_rows"
RUN_DURATION = "modelci_model_run_duration_seconds"
BOOTSTRAP = 2000


@dataclass(frozen=True)
class Traffic:
    """One version's infer requests over a window: their count, those not answered 200, two histograms as
    cumulative counts by bucket bound (`le`, +Inf last), and a multiclass model's rows by predicted class."""

    requests: float
    failed: float
    latency: dict[float, float]
    predictions: dict[float, float]
    classes: dict[float, float] = field(default_factory=dict)

    def __sub__(self, earlier: Traffic) -> Traffic:
        return Traffic(self.requests - earlier.requests, self.failed - earlier.failed,
                       _minus(self.latency, earlier.latency), _minus(self.predictions, earlier.predictions),
                       _minus(self.classes, earlier.classes))

    def __add__(self, other: Traffic) -> Traffic:
        return Traffic(self.requests + other.requests, self.failed + other.failed,
                       _plus(self.latency, other.latency), _plus(self.predictions, other.predictions),
                       _plus(self.classes, other.classes))


NONE = Traffic(0.0, 0.0, {}, {})


@dataclass(frozen=True)
class Figure:
    name: str
    canary: float
    stable: float
    difference: float
    low: float
    high: float
    margin: float
    unit: str  # how the values read: "share" or "distance"

    @property
    def worse(self) -> bool:
        return self.low > self.margin

    @property
    def not_worse(self) -> bool:
        return self.high <= self.margin

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "canary": _number(self.canary), "stable": _number(self.stable),
                "difference": _number(self.difference), "interval": [_number(self.low), _number(self.high)],
                "margin": self.margin, "worse": bool(self.worse), "not_worse": bool(self.not_worse)}


def _number(value: float) -> float | None:
    """A figure as JSON writes it: none where there was nothing to measure (no requests)."""
    return float(value) if math.isfinite(value) else None


@dataclass(frozen=True)
class Rule:
    """How much worse a canary may be, per figure; and the fewest canary requests a verdict needs."""

    error_rate: float = 0.01
    slow_share: float = 0.01
    prediction_shift: float = 0.1
    min_requests: int = 200


@dataclass(frozen=True)
class Scraped:
    """A server's traffic by version, and when its process started (`process_start_time_seconds`): counts of two
    scrapes of another start are of two processes, not one window."""

    started: float | None
    versions: dict[str, Traffic]


def scrape(url: str, model: str) -> Scraped:
    """The traffic of every version of `model` a server has answered, from its /metrics; exit 2 when the server
    does not expose its metrics per version."""
    import requests
    from prometheus_client.parser import text_string_to_metric_families

    try:
        answer = requests.get(f"{url}/metrics", timeout=10)
        answer.raise_for_status()
    except requests.RequestException as exc:
        raise UsageError(f"{url}/metrics could not be read: {exc}",
                         hint="name servers that `modelci serve` runs, reachable from here") from None
    counts: dict[str, dict[str, Any]] = {}
    per_version, started = False, None
    for family in text_string_to_metric_families(answer.text):
        if family.name == "process_start_time_seconds" and family.samples:
            started = family.samples[0].value
        # NOTE: a server that times its model per version labels its requests by version too; the family is there
        # before any request (its samples are not)
        per_version = per_version or family.name == RUN_DURATION
        for sample in family.samples:
            labels = sample.labels
            if labels.get("model") != model or "version" not in labels:
                continue
            entry = counts.setdefault(labels["version"], {"requests": 0.0, "failed": 0.0, "latency": {},
                                                          "predictions": {}, "classes": {}})
            if sample.name == f"{REQUESTS}_total":
                entry["requests"] += sample.value
                entry["failed"] += sample.value if labels.get("status") != "200" else 0.0
            elif sample.name == f"{DURATION}_bucket":
                entry["latency"][float(labels["le"])] = sample.value
            elif sample.name == f"{PREDICTION}_bucket":
                entry["predictions"][float(labels["le"])] = sample.value
            elif sample.name == f"{CLASSES}_total":
                entry["classes"][float(labels["class"])] = sample.value
    if not per_version:
        raise UsageError(f"{url} does not report its metrics per version ({RUN_DURATION}, and {DURATION} with a "
                         "version label), which a canary is judged on", hint="serve with a modelci that does")
    return Scraped(started, {version: Traffic(**entry) for version, entry in counts.items()})


def judge(canary: Traffic, stable: Traffic, rule: Rule, confidence: float, seed: int = 0) -> list[Figure]:
    """The three figures of the canary against the stable model, at `confidence` (e.g. 0.95)."""
    z = z_of(confidence)
    figures = [_proportions("error rate", canary.failed, canary.requests, stable.failed, stable.requests, z,
                            rule.error_rate)]
    bound = _percentile_bound(stable.latency, 0.99)
    if bound is not None:
        slow_canary = canary.requests - _at_or_below(canary.latency, bound)
        slow_stable = stable.requests - _at_or_below(stable.latency, bound)
        figures.append(_proportions(f"requests slower than the stable model's p99 (≤ {bound:g} s)", slow_canary,
                                    canary.requests, slow_stable, stable.requests, z, rule.slow_share))
    # NOTE: without the counts (a model whose first output is not a score) the figure stays undecided: a canary is
    # promoted on its predictions too, or not at all
    if canary.classes and stable.classes:
        known = sorted(canary.classes.keys() | stable.classes.keys())
        ours, theirs = ([side.classes.get(k, 0.0) for k in known] for side in (canary, stable))
        name = "prediction shift (predicted classes, total variation distance)"
    else:
        ours, theirs = (_bucket_counts(side.predictions).tolist() if side.predictions else []
                        for side in (canary, stable))
        name = "prediction shift (total variation distance)"
    figures.append(_shift(ours, theirs, name, confidence, rule.prediction_shift, seed))
    return figures


def _proportions(name: str, hits_a: float, n_a: float, hits_b: float, n_b: float, z: float,
                 margin: float) -> Figure:
    """a - b of two proportions, with Newcombe's hybrid score interval."""
    if n_a <= 0 or n_b <= 0 or not 0 <= hits_a <= n_a or not 0 <= hits_b <= n_b:
        return Figure(name, math.nan, math.nan, math.nan, -math.inf, math.inf, margin, "share")
    p_a, p_b = hits_a / n_a, hits_b / n_b
    (low_a, high_a), (low_b, high_b) = wilson(p_a, n_a, z), wilson(p_b, n_b, z)
    difference = p_a - p_b
    low = difference - math.sqrt((p_a - low_a) ** 2 + (high_b - p_b) ** 2)
    high = difference + math.sqrt((high_a - p_a) ** 2 + (p_b - low_b) ** 2)
    return Figure(name, p_a, p_b, difference, low, high, margin, "share")


def wilson(p: float, n: float, z: float) -> tuple[float, float]:
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def _shift(canary: list[float], stable: list[float], name: str, confidence: float, margin: float,
           seed: int) -> Figure:
    """The total variation distance of two distributions given as counts by bucket or class, with a basic bootstrap
    interval."""
    import numpy as np

    a, b = np.asarray(canary, dtype=np.float64).clip(min=0), np.asarray(stable, dtype=np.float64).clip(min=0)
    if a.size == 0 or b.size == 0 or a.sum() <= 0 or b.sum() <= 0:
        return Figure(name, math.nan, math.nan, math.nan, -math.inf, math.inf, margin, "distance")
    observed = _distance(a, b)
    generator = np.random.default_rng(seed)
    resampled_a = generator.multinomial(int(a.sum()), a / a.sum(), size=BOOTSTRAP)
    resampled_b = generator.multinomial(int(b.sum()), b / b.sum(), size=BOOTSTRAP)
    distances = 0.5 * np.abs(resampled_a / a.sum() - resampled_b / b.sum()).sum(axis=1)
    tail = (1 - confidence) / 2
    high_q, low_q = np.quantile(distances, [1 - tail, tail])
    low, high = max(0.0, 2 * observed - float(high_q)), 2 * observed - float(low_q)
    return Figure(name, observed, 0.0, observed, low, max(high, low), margin, "distance")


def _distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(0.5 * abs(a / a.sum() - b / b.sum()).sum())


def _bucket_counts(cumulative: dict[float, float]) -> np.ndarray:
    import numpy as np

    values = [cumulative[bound] for bound in sorted(cumulative)]
    return np.diff(np.asarray([0.0, *values])).clip(min=0)


def _percentile_bound(cumulative: dict[float, float], quantile: float) -> float | None:
    """The smallest finite bucket bound at or below which `quantile` of the requests fell; None without any."""
    total = cumulative.get(math.inf, 0.0)
    if total <= 0:
        return None
    for bound in sorted(cumulative):
        if cumulative[bound] >= quantile * total and math.isfinite(bound):
            return bound
    return None


def _at_or_below(cumulative: dict[float, float], bound: float) -> float:
    return cumulative.get(bound, 0.0)


def _minus(a: dict[float, float], b: dict[float, float]) -> dict[float, float]:
    return {bound: value - b.get(bound, 0.0) for bound, value in a.items()}


def _plus(a: dict[float, float], b: dict[float, float]) -> dict[float, float]:
    return {bound: a.get(bound, 0.0) + b.get(bound, 0.0) for bound in a.keys() | b.keys()}


def z_of(confidence: float) -> float:
    from statistics import NormalDist

    return NormalDist().inv_cdf(0.5 + confidence / 2)
