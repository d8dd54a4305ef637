"""Prometheus metrics of the server, named as Prometheus advises (`modelci_` prefix, base units,
`_total` counters, `_seconds` durations)."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

# NOTE: request latency from 100 µs (one row, in-process) to 10 s (a queue behind a slow batch)
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
PREDICTION_BUCKETS = tuple(np.round(np.linspace(0.1, 1.0, 10), 1))


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]  # NOTE: *_created series only add size
        self.registry = CollectorRegistry()
        r = self.registry
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
        self.prediction = Histogram("modelci_prediction", "The first output's last column per row: the positive "
                                    "class's probability of a binary model.", ["model"],
                                    buckets=PREDICTION_BUCKETS, registry=r)

    def loaded(self, model: str, version: str, digest: str) -> None:
        self.loads.labels("loaded").inc()
        self.info.clear()
        self.info.labels(model, version, digest).set(1)

    def request(self, model: str, version: str, status: int, seconds: float) -> None:
        self.requests.labels(model, version, str(status)).inc()
        self.duration.labels(model).observe(seconds)

    def batch(self, rows: int, waited_s: float) -> None:
        self.batch_rows.observe(rows)
        self.queue.observe(waited_s)

    def predictions(self, model: str, outputs: dict[str, NDArray[Any]]) -> None:
        first = next(iter(outputs.values()), None)
        if first is None or first.dtype.kind != "f":
            return
        values = first.reshape(len(first), -1)[:, -1]
        histogram = self.prediction.labels(model)
        for value in values[np.isfinite(values)]:
            histogram.observe(float(value))

    def exposition(self) -> bytes:
        return bytes(generate_latest(self.registry))
