"""Operational figures of the candidate and the baseline: latency, size, parity error, drift.

Latency is measured here, in this process, on both models in turn: one request of one row and
one of a batch, repeated, the two models' calls interleaved so that whatever else the machine is
doing slows both alike. The other figures come from the files the stages wrote.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

    from modelci.evaluate.onnx_model import OnnxModel

# NOTE: every operational figure is better lower. Those with a baseline value can be gated on
# their increase (max_increase); the others only on a ceiling (max).
LATENCY = ("latency_p50_ms", "latency_p99_ms", "batch_latency_p50_ms", "batch_latency_p99_ms")
COMPARED = (*LATENCY, "model_size_mb")
CANDIDATE_ONLY = ("parity_max_error", "drifted_columns")
FIGURES = (*COMPARED, *CANDIDATE_ONLY)
# A change smaller than this share is called unchanged: latency repeats within ~10% on a shared
# runner, and a model's size changes with every retraining by a few bytes.
NOISE = {name: 0.10 for name in LATENCY} | {"model_size_mb": 0.01}
WARMUP = 20


@dataclass(frozen=True)
class Latency:
    p50_ms: float
    p99_ms: float
    batch_p50_ms: float
    batch_p99_ms: float

    def figures(self) -> dict[str, float]:
        return dict(zip(LATENCY, (self.p50_ms, self.p99_ms, self.batch_p50_ms, self.batch_p99_ms), strict=True))


def measure_latency(models: list[OnnxModel], frame: pd.DataFrame, batch: int, repeats: int) -> list[Latency]:
    """p50 and p99 of one-row and `batch`-row requests, for each model, the models taking turns."""
    single = [model.feeds(frame.iloc[:1]) for model in models]
    batched = [model.feeds(frame.iloc[:batch]) for model in models]
    times: dict[tuple[int, int], list[float]] = {(m, kind): [] for m in range(len(models)) for kind in (0, 1)}
    for turn in range(WARMUP + repeats):
        for m, model in enumerate(models):
            for kind, feeds in enumerate((single[m], batched[m])):
                began = time.perf_counter_ns()
                model.session.run(None, feeds)
                if turn >= WARMUP:
                    times[(m, kind)].append((time.perf_counter_ns() - began) / 1e6)
    out = []
    for m in range(len(models)):
        one, many = np.percentile(times[(m, 0)], [50, 99]), np.percentile(times[(m, 1)], [50, 99])
        out.append(Latency(float(one[0]), float(one[1]), float(many[0]), float(many[1])))
    return out


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


def verdict(name: str, candidate: float, baseline: float) -> str:
    """improved / regressed when the figure moved by more than its noise; unchanged otherwise."""
    change = candidate / baseline - 1 if baseline > 0 else math.inf if candidate > 0 else 0.0
    if change > NOISE[name]:
        return "regressed"
    if change < -NOISE[name]:
        return "improved"
    return "unchanged"
