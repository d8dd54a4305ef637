"""Operational figures of the candidate and the baseline: latency, size, parity error, drift.

Latency is measured here, in this process, on both models in turn: one request of one row and
one of a batch, repeated. The two models take turns, and which goes first alternates from turn to
turn, so that whatever else the machine is doing (another job, frequency scaling, a warming cache)
slows both alike. Each latency figure's change is a ratio, candidate over baseline, of the median
(p50) or the 99th percentile (p99) of the timings, with a bootstrap interval that resamples whole
turns, so each resample keeps the pairing of the two models' timings taken side by side. A
latency rule fails only when the whole interval is above the increase it allows; latency rules are
in Holm's family with the metrics' rules (compare/verdicts.py), so their intervals may be wider
than compare.confidence's.

NOTE: no operational figure is read from the baseline's artifact: both models' latencies are
measured here, and both sizes are the sizes of the two files. The figures are therefore comparable
by construction, whatever machine the baseline was trained or published on; were a figure ever
taken from the baseline's records (metrics.json, training-log.json), its recorded environment (cpu,
device) would have to match this machine's before it could be judged.

The other figures come from the files the stages wrote.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from modelci.compare import verdicts

if TYPE_CHECKING:
    import pandas as pd

    from modelci.evaluate.onnx_model import OnnxModel

# NOTE: every operational figure is better lower. Those with a baseline value can be gated on
# their increase (max_increase); the others only on a ceiling (max).
LATENCY = ("latency_p50_ms", "latency_p99_ms", "batch_latency_p50_ms", "batch_latency_p99_ms")
COMPARED = (*LATENCY, "model_size_mb")
CANDIDATE_ONLY = ("parity_max_error", "drifted_columns")
FIGURES = (*COMPARED, *CANDIDATE_ONLY)
# Each latency figure: the request it times (0: one row, 1: a batch) and the percentile taken.
MEASURES = {"latency_p50_ms": (0, 50.0), "latency_p99_ms": (0, 99.0),
            "batch_latency_p50_ms": (1, 50.0), "batch_latency_p99_ms": (1, 99.0)}
# A model's size changes with every retraining by a few bytes: a change smaller than this share is
# called unchanged. Size is not noisy, so it needs no interval.
SIZE_NOISE = 0.01
WARMUP = 20


@dataclass(frozen=True)
class Timings:
    """Every timed request: ms[model][kind] holds one timing per turn (kind 0: one row, 1: a batch);
    `order` is the (model, kind) of each timed request in the order they ran, warm-up left out."""

    ms: list[list[np.ndarray]]
    order: list[tuple[int, int]]

    def figures(self, model: int) -> dict[str, float]:
        return {name: float(np.percentile(self.ms[model][kind], q)) for name, (kind, q) in MEASURES.items()}


@dataclass(frozen=True)
class LatencyChange:
    """The candidate's figure against the baseline's: the ratio and its bootstrap interval, and the
    interval as a difference in milliseconds (the ratio's bounds times the baseline's figure)."""

    candidate: float
    baseline: float
    ratio: float
    ratio_low: float
    ratio_high: float
    ratios: np.ndarray = field(default_factory=lambda: np.zeros(0))  # the bootstrap draws of the ratio
    confidence: float | None = None  # the two-sided level of [ratio_low, ratio_high]

    def at(self, tail: float) -> LatencyChange:
        """The same change with its interval at one-sided level `tail` each side (Holm's step-down may ask for a
        wider one than compare.confidence's)."""
        low, high = np.quantile(self.ratios, [tail, 1 - tail])
        return replace(self, ratio_low=float(low), ratio_high=float(high), confidence=1 - 2 * tail)

    def exceeds(self, max_increase: float, tail: float) -> bool:
        """"At most `max_increase` slower" rejected at one-sided level `tail`: the latency rule fails."""
        return self.at(tail).ratio_low > 1 + max_increase

    @property
    def low_ms(self) -> float:
        return (self.ratio_low - 1) * self.baseline

    @property
    def high_ms(self) -> float:
        return (self.ratio_high - 1) * self.baseline


def measure_latency(models: list[OnnxModel], frame: pd.DataFrame, batch: int, repeats: int) -> Timings:
    """`repeats` timings of one-row and `batch`-row requests of each model, the models taking turns and
    the first of each turn alternating, after a warm-up."""
    single = [model.feeds(frame.iloc[:1]) for model in models]
    batched = [model.feeds(frame.iloc[:batch]) for model in models]
    times: list[list[list[float]]] = [[[], []] for _ in models]
    order: list[tuple[int, int]] = []
    for turn in range(WARMUP + repeats):
        for m in _turn_order(len(models), turn):
            for kind, feeds in enumerate((single[m], batched[m])):
                began = time.perf_counter_ns()
                models[m].session.run(None, feeds)
                if turn >= WARMUP:
                    times[m][kind].append((time.perf_counter_ns() - began) / 1e6)
                    order.append((m, kind))
    return Timings([[np.array(t) for t in kinds] for kinds in times], order)


def _turn_order(models: int, turn: int) -> list[int]:
    """Which model goes first rotates every turn: going first or second (a warm or a cold cache, a timer
    tick) is then no advantage of either model."""
    return [(turn + m) % models for m in range(models)]


def compare_latency(timings: Timings, confidence: float, resamples: int, seed: int) -> dict[str, LatencyChange]:
    """Per latency figure, the candidate's (model 0) against the baseline's (model 1): the ratio of their
    percentiles and its percentile-bootstrap interval over resampled turns.

    NOTE: a ratio because max_increase is a fraction of the baseline's figure. Medians and p99 rather
    than means: timings are skewed, with rare long stalls (the scheduler, the allocator) that would
    move a mean. Resampling whole turns keeps each pair of timings taken side by side together, so
    drift of the machine during the run cancels in the ratio instead of widening the interval."""
    turns = len(timings.ms[0][0])
    picks = np.random.default_rng(seed).integers(0, turns, (resamples, turns))
    tail = (1 - confidence) / 2
    changes = {}
    for name, (kind, q) in MEASURES.items():
        candidate, baseline = timings.ms[0][kind], timings.ms[1][kind]
        ratios = np.percentile(candidate[picks], q, axis=1) / np.percentile(baseline[picks], q, axis=1)
        low, high = np.quantile(ratios, [tail, 1 - tail])
        c, b = float(np.percentile(candidate, q)), float(np.percentile(baseline, q))
        changes[name] = LatencyChange(c, b, c / b, float(low), float(high), ratios, confidence)
    return changes


def latency_verdict(change: LatencyChange, max_increase: float) -> str:
    """Labelled as the metrics are (compare/verdicts.py), under a no-regression requirement, from the
    interval of the relative change (candidate / baseline − 1) turned the better way round, with the
    increase the rule allows (0 without a rule) as the tolerance: regressed only when the whole
    interval is above the allowed increase."""
    return verdicts.label(1 - change.ratio_high, 1 - change.ratio_low, max_increase, verdicts.NO_REGRESSION)


def latency_exceeds(change: LatencyChange, max_increase: float) -> str | None:
    """Why a latency rule fails: the whole interval of the change is above the allowed increase; None
    when it does not fail."""
    if latency_verdict(change, max_increase) != verdicts.REGRESSED:
        return None
    return (f"{change.candidate:.4g} ms against the baseline's {change.baseline:.4g} ms, "
            f"{change.ratio - 1:+.1%} (interval [{change.ratio_low - 1:+.1%}, {change.ratio_high - 1:+.1%}]), "
            f"more than the {max_increase:.0%} increase allowed")


def size_mb(path: Path) -> float:
    return path.stat().st_size / 1e6


def parity_max_error(parity: dict[str, Any] | None) -> float | None:
    """The largest absolute difference between the trained and the ONNX model's outputs."""
    if parity is None or not parity.get("outputs"):
        return None
    return float(max(output["max_abs_error"] for output in parity["outputs"]))


def drifted_columns(data_report: dict[str, Any] | None) -> float | None:
    """How many columns drifted from the baseline's data, in the training or the evaluation data;
    None when drift was not measured."""
    if data_report is None:
        return None
    measured = [c for dataset in data_report["datasets"] for c in dataset.get("drift", [])]
    return float(len({c["column"] for c in measured if c["verdict"] == "drifted"})) if measured else None


def size_verdict(candidate: float, baseline: float) -> str:
    """improved / regressed when the size moved by more than SIZE_NOISE; unchanged otherwise."""
    change = candidate / baseline - 1 if baseline > 0 else math.inf if candidate > 0 else 0.0
    if change > SIZE_NOISE:
        return "regressed"
    if change < -SIZE_NOISE:
        return "improved"
    return "unchanged"
