"""The candidate models a server holds beside the stable one (`modelci serve --watch`):

- a **canary** answers a share of the requests (the canary tag's record says which model and what share):
  the same request id always goes to the same side, so a client that retries sees one model; requests without
  an id are drawn at random;
- a **shadow** scores a copy of the requests the stable model answered, off the request path: the copies wait
  in a bounded queue for the shadow's own thread, and when the queue is full they are dropped and counted,
  never waited for. Its work takes the stable model's cores, so past `rows_per_second` it scores a sample of
  the batches (the rest counted as sampled out), which its figures need no more of. Its figures: how many of
  its predicted classes agree with the stable model's, the distribution of the difference of their scores, its
  run time, its failures.
"""

from __future__ import annotations

import hashlib
import queue
import random
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from modelci import github
from modelci.serve.images import Sample

if TYPE_CHECKING:
    from modelci.serve.app import Loaded
    from modelci.serve.batching import Columns, Run
    from modelci.serve.metrics import Metrics

SHADOW_QUEUE = 64  # batches waiting for the shadow model; more are dropped (counted)
COALESCED_ROWS = 256  # rows of queued batches the shadow scores in one run


@dataclass(frozen=True)
class Canary:
    model: Loaded
    run: Run
    percent: float

    def takes(self, request_id: str | None) -> bool:
        """Whether this request goes to the canary: by its id's hash when it has one (sticky), else at random."""
        if request_id is None:
            return random.random() * 100 < self.percent  # NOTE: a traffic split, not a secret
        drawn = int.from_bytes(hashlib.blake2b(request_id.encode(), digest_size=8).digest(), "big") % 10_000
        return drawn < self.percent * 100


def predicted_classes(model: Loaded, outputs: Columns) -> NDArray[np.int64] | None:
    """Each row's class by the model's first output (a binary model's at its threshold); None for regression."""
    first = next(iter(outputs.values()), None)
    if first is None or model.task == "regression" or first.dtype.kind != "f":
        return None
    scores = first.reshape(len(first), -1)
    if model.task == "binary":
        return (scores[:, -1] >= (model.threshold or 0.5)).astype(np.int64)
    return scores.argmax(axis=1) if scores.shape[1] > 1 else None


def scores(outputs: Columns) -> NDArray[Any] | None:
    """The first output's last column per row (a binary model's positive probability), as the predictions'
    histogram reads it."""
    first = next(iter(outputs.values()), None)
    return None if first is None or first.dtype.kind != "f" else first.reshape(len(first), -1)[:, -1]


class Shadow:
    """The shadow model and the thread that scores the copies of the stable model's batches."""

    def __init__(self, model: Loaded, stable: Loaded, metrics: Metrics, rows_per_second: float,
                 capacity: int = SHADOW_QUEUE) -> None:
        self.model, self.stable, self.metrics = model, stable, metrics
        self.sample = Sample(rows_per_second)
        self._queue: queue.Queue[tuple[Columns, Columns] | None] = queue.Queue(capacity)
        self._thread = threading.Thread(target=self._score, name="modelci-shadow", daemon=True)
        metrics.shadow_started(model.name, model.version)
        self._thread.start()

    def offer(self, columns: Columns, outputs: Columns) -> None:
        """A batch the stable model answered, for the shadow to score when it can; dropped when it cannot."""
        if not self.sample(_rows(columns)):
            self.metrics.shadow_rows(self.model.name, self.model.version, "sampled out", _rows(columns))
            return
        try:
            self._queue.put_nowait((columns, outputs))
        except queue.Full:
            self.metrics.shadow_rows(self.model.name, self.model.version, "dropped", _rows(columns))

    def stop(self, wait: bool = False) -> None:
        """End the thread after the batch it scores (the batches still queued are not scored); `wait` for it."""
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._queue.put_nowait(None)
        if wait:
            self._thread.join(timeout=30)

    def _score(self) -> None:
        name, version = self.model.name, self.model.version
        while (item := self._queue.get()) is not None:
            rows = _rows(item[0])
            try:
                columns, stable = self._with_queued(item)
                rows = _rows(columns)
                began = time.perf_counter()
                found = self.model.run(columns)
                self.metrics.run(name, version, time.perf_counter() - began)
                self._compare(stable, found)
            except Exception as exc:  # NOTE: the shadow's failures are its own: counted, never the stable's
                self.metrics.shadow_rows(name, version, "failed", rows)
                github.warning_once(f"the shadow model {name} {version} failed on a batch: {exc}")
                continue
            self.metrics.shadow_rows(name, version, "scored", rows)

    def _with_queued(self, first: tuple[Columns, Columns]) -> tuple[Columns, Columns]:
        """`first` and the batches queued behind it, as one: one run and one comparison for them all, so that a
        shadow that falls behind catches up with less work per row (what it takes from the stable model's cores)."""
        items = [first]
        while sum(_rows(columns) for columns, _ in items) < COALESCED_ROWS:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                self._queue.put(None)  # NOTE: the stop, seen by the next get
                break
            items.append(item)
        if len(items) == 1:
            return first
        return _merged([columns for columns, _ in items]), _merged([outputs for _, outputs in items])

    def _compare(self, stable: Columns, found: Columns) -> None:
        theirs, ours = predicted_classes(self.stable, stable), predicted_classes(self.model, found)
        if theirs is not None and ours is not None and theirs.shape == ours.shape:
            self.metrics.shadow_agreeing(self.model.name, self.model.version, len(ours), int(np.sum(theirs == ours)))
        before, after = scores(stable), scores(found)
        if before is not None and after is not None and before.shape == after.shape:
            self.metrics.shadow_difference.observe((self.model.name, self.model.version), np.abs(after - before))


def _merged(parts: list[Columns]) -> Columns:
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}


def _rows(columns: Columns) -> int:
    return len(next(iter(columns.values()))) if columns else 0
