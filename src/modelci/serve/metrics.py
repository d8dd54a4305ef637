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
DIFFERENCE_BUCKETS = np.array([0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0])


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
                                  "Time from an infer request's arrival to its answer, by the version that answered "
                                  "it (a canary's, or the stable model's).", ["model", "version"],
                                  buckets=LATENCY_BUCKETS, registry=r)
        self.run_duration = Histogram("modelci_model_run_duration_seconds",
                                      "Time a model took to run a batch in ONNX Runtime (a shadow's too).",
                                      ["model", "version"], buckets=LATENCY_BUCKETS, registry=r)
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
        self.server_info = Gauge("modelci_server_info", "This server (1), by the name a rolling deploy's record "
                                 "knows it by (--instance).", ["server_name"], registry=r)
        self.candidate = Gauge("modelci_model_candidate_info", "A candidate the server holds beside the model "
                               "it serves (1): a canary, which answers a share of the requests, or a shadow, which "
                               "scores a copy of them.", ["model", "version", "digest", "role"], registry=r)
        self.canary_ratio = Gauge("modelci_canary_traffic_ratio", "The share of requests the canary answers.",
                                  ["model", "version"], registry=r)
        self.shadow_rows_total = Counter("modelci_shadow_rows", "Rows of the stable model's batches, by what the "
                                         "shadow did with them: scored, failed, dropped (its queue was full), "
                                         "sampled out (past --shadow-rows-per-second).",
                                         ["model", "version", "outcome"], registry=r)
        self.shadow_compared_total = Counter("modelci_shadow_compared_rows", "Rows whose classes the shadow's and "
                                             "the stable model's outputs were compared on (none for regression).",
                                             ["model", "version"], registry=r)
        self.shadow_agreeing_total = Counter("modelci_shadow_agreeing_rows", "Rows the shadow model put in the class "
                                             "the stable model did.", ["model", "version"], registry=r)
        self.classes = Counter("modelci_predicted_class_rows", "Rows a multiclass model put in each class.",
                               ["model", "version", "class"], registry=r)
        self.prediction = BatchHistogram(
            "modelci_prediction", "The first output's last column per row: the positive class's probability of a "
            "binary model.", ["model", "version"], PREDICTION_BUCKETS)
        self.shadow_difference = BatchHistogram(
            "modelci_shadow_score_difference", "The shadow's first output's last column minus the stable model's, "
            "absolute, per row.", ["model", "version"], DIFFERENCE_BUCKETS)
        r.register(self.prediction)
        r.register(self.shadow_difference)
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

    def server(self, name: str) -> None:
        self.server_info.labels(name).set(1)

    def request(self, model: str, version: str, status: int, seconds: float) -> None:
        self.requests.labels(model, version, str(status)).inc()
        self.duration.labels(model, version).observe(seconds)

    def run(self, model: str, version: str, seconds: float) -> None:
        self.run_duration.labels(model, version).observe(seconds)

    def candidate_loaded(self, model: str, version: str, digest: str, role: str, percent: float) -> None:
        """`model` holds a canary or shadow, the one it held in that role before goes; its series start at 0."""
        self.candidate_ended(role)
        self.candidate.labels(model, version, digest, role).set(1)
        self.requests.labels(model, version, "500")
        if role == "canary":
            self.canary_ratio.labels(model, version).set(percent / 100)

    def candidate_ended(self, role: str) -> None:
        for labels in [s.labels for m in self.candidate.collect() for s in m.samples if s.labels["role"] == role]:
            self.candidate.remove(*labels.values())
            if role == "canary":
                self.canary_ratio.remove(labels["model"], labels["version"])

    def shadow_started(self, model: str, version: str) -> None:
        for outcome in ("scored", "failed", "dropped", "sampled out"):
            self.shadow_rows_total.labels(model, version, outcome)
        self.shadow_agreeing_total.labels(model, version)
        self.shadow_compared_total.labels(model, version)

    def shadow_rows(self, model: str, version: str, outcome: str, rows: int) -> None:
        self.shadow_rows_total.labels(model, version, outcome).inc(rows)

    def shadow_agreeing(self, model: str, version: str, compared: int, agreeing: int) -> None:
        self.shadow_compared_total.labels(model, version).inc(compared)
        self.shadow_agreeing_total.labels(model, version).inc(agreeing)

    def batch(self, rows: int, waited_s: float) -> None:
        self.batch_rows.observe(rows)
        self.queue.observe(waited_s)

    def exposition(self) -> bytes:
        return bytes(generate_latest(self.registry))


class BatchHistogram:
    """A histogram counted a batch at a time with numpy: prometheus_client's Histogram takes one value per call,
    which costs a microsecond or two per row on the serving path."""

    def __init__(self, name: str, documentation: str, labels: list[str], buckets: NDArray[Any]) -> None:
        self.name, self.documentation, self.labels, self.buckets = name, documentation, labels, buckets
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, ...], NDArray[np.int64]] = {}  # by labels: rows per bucket, the last one +Inf
        self._sums: dict[tuple[str, ...], float] = {}

    def observe(self, labels: tuple[str, ...], values: NDArray[Any]) -> None:
        values = values[np.isfinite(values)]
        # NOTE: a bucket counts the values at or below its bound (`le`); side="left" puts a value equal to a bound in it
        counts = np.bincount(np.searchsorted(self.buckets, values, side="left"), minlength=len(self.buckets) + 1)
        with self._lock:
            self._counts[labels] = self._counts.get(labels, 0) + counts
            self._sums[labels] = self._sums.get(labels, 0.0) + float(values.sum())

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labels)
        with self._lock:
            for labels, counts in self._counts.items():
                cumulative = np.cumsum(counts)
                bounds = [*(str(b) for b in self.buckets), "+Inf"]
                family.add_metric(list(labels), list(zip(bounds, cumulative.astype(float).tolist(), strict=True)),
                                  self._sums[labels])
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
