"""Dynamic batching: concurrent requests run through ONNX Runtime as one batch.

Whatever is queued when the model becomes free goes in together, up to `max_rows`, so one request
alone waits for nothing, and under load the batches grow by themselves. `max_delay_s` can hold a
batch open a little longer for more requests. ONNX Runtime runs in one worker thread, off the event
loop, which keeps taking requests meanwhile; but a small batch with nothing queued behind it, of a
model that runs such a batch in under `INLINE_BUDGET_S`, runs on the event loop itself: handing it
to the thread and back costs more than the run (at concurrency 1, 0.35 ms became 0.26 ms a request,
benchmarks/serve). A batch that fails is retried request by request, so one request never fails the
others.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

INLINE_ROWS = 4  # the most rows a batch run on the event loop holds
INLINE_BUDGET_S = 100e-6  # how quickly the model must have run such a batch (monitoring included) to run one there

Columns = dict[str, NDArray[Any]]
Run = Callable[[Columns], Columns]  # a batch's columns -> its outputs, one row per input row
OnBatch = Callable[[int, float], None]  # (rows, seconds the oldest request waited) -> None


@dataclass
class _Waiting:
    run: Run  # NOTE: the model the request was checked against, which answers it even after a swap
    columns: Columns
    rows: int
    future: asyncio.Future[Columns]
    since: float = field(default_factory=time.perf_counter)


class Batcher:
    def __init__(self, max_rows: int, max_delay_s: float = 0.0, on_batch: OnBatch | None = None) -> None:
        self.max_rows, self.max_delay_s = max_rows, max_delay_s
        self.on_batch = on_batch
        self._queue: asyncio.Queue[_Waiting] = asyncio.Queue()
        self._held: _Waiting | None = None  # NOTE: a request that did not fit the last batch goes first in the next
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="modelci-onnxruntime")
        self._worker: asyncio.Task[None] | None = None
        # NOTE: by model: how long its latest small batch took; weak, so a model swapped out is not kept alive
        self._small_run_s: weakref.WeakKeyDictionary[Run, float] = weakref.WeakKeyDictionary()

    def start(self) -> None:
        self._worker = asyncio.get_running_loop().create_task(self._serve())

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        self._executor.shutdown(wait=True)

    async def infer(self, run: Run, columns: Columns, rows: int) -> Columns:
        future: asyncio.Future[Columns] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Waiting(run, columns, rows, future))
        return await future

    async def _serve(self) -> None:
        while True:
            for batch in await self._gather():
                await self._answer(batch)

    async def _answer(self, batch: list[_Waiting]) -> None:
        """Run `batch` and give each request its rows; a batch that fails is run again request by request, so
        that a request the checks let through and the model cannot take fails alone, not its neighbours."""
        try:
            outputs = await self._run(batch)
        except Exception as exc:  # NOTE: a failed batch fails its requests, never the server
            if len(batch) > 1:
                for waiting in batch:
                    if not waiting.future.done():
                        await self._answer([waiting])
                return
            if not batch[0].future.done():
                batch[0].future.set_exception(exc)
            return
        start = 0
        for waiting in batch:
            if not waiting.future.done():  # NOTE: a client that went away cancelled its future
                waiting.future.set_result({n: v[start:start + waiting.rows] for n, v in outputs.items()})
            start += waiting.rows

    async def _run(self, batch: list[_Waiting]) -> Columns:
        merged = {name: np.concatenate([w.columns[name] for w in batch]) for name in batch[0].columns}
        rows, run = sum(w.rows for w in batch), batch[0].run
        if self.on_batch is not None:
            self.on_batch(rows, time.perf_counter() - batch[0].since)
        if rows > INLINE_ROWS:
            return await asyncio.get_running_loop().run_in_executor(self._executor, run, merged)
        inline = self._queue.empty() and self._small_run_s.get(run, INLINE_BUDGET_S) < INLINE_BUDGET_S
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._timed, run, merged) \
            if not inline else self._timed(run, merged)

    def _timed(self, run: Run, columns: Columns) -> Columns:
        """`run(columns)`, its time kept: whether the model's small batches may run on the event loop."""
        began = time.perf_counter()
        outputs = run(columns)
        self._small_run_s[run] = time.perf_counter() - began
        return outputs

    async def _gather(self) -> list[list[_Waiting]]:
        """What is queued, a batch per model (the stable one, a canary): requests of two models that alternate in
        the queue still go in two full batches, not in one batch per run of one model's requests."""
        first = self._held or await self._queue.get()
        self._held = None
        batches, rows = {first.run: [first]}, {first.run: first.rows}
        deadline = time.perf_counter() + self.max_delay_s
        while rows[first.run] < self.max_rows:
            try:
                waiting = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                left = deadline - time.perf_counter()
                if left <= 0:
                    break
                try:
                    waiting = await asyncio.wait_for(self._queue.get(), left)
                except asyncio.TimeoutError:
                    break
            if rows.get(waiting.run, 0) + waiting.rows > self.max_rows:
                self._held = waiting
                break
            batches.setdefault(waiting.run, []).append(waiting)
            rows[waiting.run] = rows.get(waiting.run, 0) + waiting.rows
        return list(batches.values())
