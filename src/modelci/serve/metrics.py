"""Prometheus metrics of the server, named as Prometheus advises (`modelci_` prefix, base units,
`_total` counters, `_seconds` durations)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric

if TYPE_CHECKING:
    from modelci.serve.drift import OnlineDrift

# NOTE: request latency from 100 µs (one row, in-process) to 10 s (a queue behind a slow batch)
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
PREDICTION_BUCKETS = np.round(np.linspace(0.1, 1.0, 10), 1)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]  # NOTE: *_created series only add size
        self.registry = CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)  # process_cpu_seconds_total, process_resident_memory_bytes, ...
        self.requests = Counter("modelci_inference_requests", "Infer requests, by model, version and HTTP status.",
                                ["model", "version", "status"], registry=r)
        self.duration = Histogram("modelci_inference_request_duration_seconds",
                                  "Time from an infer request's arrival to its answer.", ["model"],
                                  buckets=LATENCY_BUCKETS, registry=r)
        self.queue = Histogram("modelci_inference_queue_duration_seconds",
                               "Time the oldest request of a batch waited for the model.",
                               buckets=LATENCY_BUCKETS, registry=r)
        self.batch_rows = Histogram("modelci_inference_batch_rows", "Rows per batch run through ONNX Runtime.",
                                    buckets=BATCH_BUCKETS, registry=r)
        self.loads = Counter("modelci_model_loads", "Model loads, by outcome (loaded, failed).", ["outcome"],
                             registry=r)
        self.info = Gauge("modelci_model_info", "The model being served (1), with its version and digest.",
                          ["model", "version", "digest"], registry=r)
        self.refused = Gauge("modelci_model_refused_info", "The last model the server refused to swap in (1): it "
                             "did not load, or did not reproduce its golden samples.", ["model", "digest"], registry=r)
        self.prediction = Predictions()
        r.register(self.prediction)
        self.drift = DriftCollector()
        r.register(self.drift)

    def loaded(self, model: str, version: str, digest: str) -> None:
        self.loads.labels("loaded").inc()
        # NOTE: the new series first, then the old one goes: a scrape in between never finds no model
        self.info.labels(model, version, digest).set(1)
        for labels in [s.labels for m in self.info.collect() for s in m.samples]:
            if labels != {"model": model, "version": version, "digest": digest}:
                self.info.remove(labels["model"], labels["version"], labels["digest"])
        # NOTE: counters that exist at 0 from the start: Prometheus' increase() and rate() see no
        # change in a series whose first sample is already 1, so the first failure would raise no alert
        self.loads.labels("failed")
        self.requests.labels(model, version, "500")

    def refused_model(self, model: str, digest: str) -> None:
        self.loads.labels("failed").inc()
        self.refused.clear()
        self.refused.labels(model, digest).set(1)

    def request(self, model: str, version: str, status: int, seconds: float) -> None:
        self.requests.labels(model, version, str(status)).inc()
        self.duration.labels(model).observe(seconds)

    def batch(self, rows: int, waited_s: float) -> None:
        self.batch_rows.observe(rows)
        self.queue.observe(waited_s)

    def exposition(self) -> bytes:
        return bytes(generate_latest(self.registry))


class Predictions:
    """A histogram of the first output's last column (a binary model's probability of the positive
    class), counted a batch at a time with numpy: prometheus_client's Histogram takes one value per
    call, which costs a microsecond or two per row on the serving path."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, NDArray[np.int64]] = {}  # by model: rows per bucket, the last one +Inf
        self._sums: dict[str, float] = {}

    def observe(self, model: str, outputs: dict[str, NDArray[Any]]) -> None:
        first = next(iter(outputs.values()), None)
        if first is None or first.dtype.kind != "f" or first.size == 0:
            return
        values = first.reshape(len(first), -1)[:, -1]
        values = values[np.isfinite(values)]
        # NOTE: a bucket counts the values at or below its bound (`le`); side="left" puts a value equal to a bound in it
        counts = np.bincount(np.searchsorted(PREDICTION_BUCKETS, values, side="left"),
                             minlength=len(PREDICTION_BUCKETS) + 1)
        with self._lock:
            self._counts[model] = self._counts.get(model, 0) + counts
            self._sums[model] = self._sums.get(model, 0.0) + float(values.sum())

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily("modelci_prediction", "The first output's last column per row: the positive "
                                       "class's probability of a binary model.", labels=["model"])
        with self._lock:
            for model, counts in self._counts.items():
                cumulative = np.cumsum(counts)
                bounds = [*(str(b) for b in PREDICTION_BUCKETS), "+Inf"]
                family.add_metric([model], list(zip(bounds, cumulative.astype(float).tolist(), strict=True)),
                                  self._sums[model])
        yield family


class DriftCollector:
    """Input drift of the model served, measured when the metrics are read (serve/drift.py)."""

    def __init__(self) -> None:
        self.source: Callable[[], tuple[str, OnlineDrift | None]] = lambda: ("", None)

    def collect(self) -> Iterator[Metric]:
        model, drift = self.source()
        rows = GaugeMetricFamily("modelci_input_drift_window_rows",
                                 "Rows of the latest inputs that drift is measured on.", labels=["model"])
        score = GaugeMetricFamily("modelci_input_drift", "How far a column of the latest inputs moved from the "
                                  "training data, by the measure the data check uses for it (ks: the statistic, "
                                  "whose p-value decides modelci_input_drifted).",
                                  labels=["model", "column", "method"])
        drifted = GaugeMetricFamily("modelci_input_drifted", "1 when a column of the latest inputs drifted past its "
                                    "threshold, as the data check decides it.", labels=["model", "column"])
        if drift is not None:
            measured = drift.measure()
            rows.add_metric([model], measured.rows)
            for column in measured.columns:
                if column.score is not None:
                    score.add_metric([model, column.column, column.method], column.score)
                    drifted.add_metric([model, column.column], float(column.verdict == "drifted"))
        yield from (rows, score, drifted)
