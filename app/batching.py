"""Dynamic micro-batching (the idea of Triton's dynamic batcher) for the model calls of concurrent requests.

Requests hand their preprocessed rows to `MicroBatcher.submit`; one collector task gathers what arrives within
`max_wait_ms` (up to `max_batch_size` rows) into one model call, run on a worker thread so the event loop keeps
serving. Up to `workers` calls run at once (one per core): a lone request has ONNX Runtime's intra-op threads to
itself (lowest latency), while under load each call runs mostly on its own thread, which on CPU costs about a
fifth less per image than splitting every layer of one call over the cores (measured: 9.2 vs 11.5 CPU ms per
image at 256 x 128). While every worker is busy, new requests queue up and form the next batch, which starts as
soon as one is free; only a request that finds the batcher idle waits (at most `max_wait_ms`) for company. So
under load batches grow by themselves and at low load a request waits at most `max_wait_ms`. Written here rather
than taken from a library because it is a few dozen lines around one asyncio event and no serving library fits
ONNX Runtime inside FastAPI without bringing its own server.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

Runner = Callable[[np.ndarray], tuple[np.ndarray, ...]]
BatchObserver = Callable[[int, float], None]


class BatcherClosed(RuntimeError):
    """The service is shutting down and takes no new model work."""


@dataclass
class _Job:
    inputs: np.ndarray
    future: asyncio.Future[tuple[np.ndarray, ...]]


class MicroBatcher:
    """Gathers concurrent `submit` calls into batched calls of `run`; `enabled=False` runs each call alone."""

    def __init__(
        self,
        run: Runner,
        *,
        max_batch_size: int,
        max_wait_ms: float,
        enabled: bool = True,
        on_batch: BatchObserver | None = None,
        workers: int = 2,
    ) -> None:
        self._run = run
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000.0
        self.enabled = enabled
        self._on_batch = on_batch
        # Up to `workers` model calls at once, batching or not (see `_collect`).
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="inference")
        self._free = asyncio.Semaphore(workers)
        self._running: set[asyncio.Task[None]] = set()
        self._pending: deque[_Job] = deque()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.calls = 0
        self._calls_lock = threading.Lock()

    def start(self) -> None:
        """Start the collector; call from inside the running event loop (the app's lifespan)."""
        if self.enabled and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._collect(), name="micro-batcher")

    async def submit(self, inputs: np.ndarray) -> tuple[np.ndarray, ...]:
        """Run the model on `inputs` (k rows), batched with whatever else arrives; returns k rows of each output.

        More than `max_batch_size` rows (a batch request) run as calls of at most that many, on the free workers:
        on CPU a call of 32 rows took twice as long per image as one of a few (docs/benchmarks.md, section 2)."""
        if self._closed:
            raise BatcherClosed("the service is shutting down")
        if len(inputs) > self.max_batch_size:
            chunks = [inputs[i : i + self.max_batch_size] for i in range(0, len(inputs), self.max_batch_size)]
            parts = await asyncio.gather(*(self.submit(chunk) for chunk in chunks))
            return tuple(np.concatenate(outputs) for outputs in zip(*parts, strict=True))
        loop = asyncio.get_running_loop()
        if not self.enabled:
            return await loop.run_in_executor(self._executor, self._timed_run, [inputs])
        job = _Job(inputs, loop.create_future())
        self._pending.append(job)
        self._wakeup.set()
        return await job.future

    async def close(self) -> None:
        """Stop taking work, finish every request already queued, then stop the worker thread."""
        self._closed = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
        await asyncio.gather(*self._running)
        await asyncio.to_thread(self._executor.shutdown, True)

    def _pending_rows(self) -> int:
        return sum(len(job.inputs) for job in self._pending)

    async def _collect(self) -> None:
        idle = True  # no call ran since the queue was last empty
        while True:
            if not self._pending:
                if self._closed:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                idle = True
                continue
            if idle:
                await self._wait_for_company()
            await self._free.acquire()
            task = asyncio.get_running_loop().create_task(self._run_jobs(self._take_batch()))
            self._running.add(task)
            task.add_done_callback(self._call_done)
            # Requests that queued up while every inference thread was busy already waited: they run as soon as
            # one is free, as the next batch.
            idle = not self._pending

    def _call_done(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._free.release()

    async def _wait_for_company(self) -> None:
        """At an idle batcher, wait up to `max_wait_ms` for more requests to join the first one."""
        deadline = time.monotonic() + self.max_wait_s
        while not self._closed and self._pending_rows() < self.max_batch_size:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), left)
            except TimeoutError:
                return

    def _take_batch(self) -> list[_Job]:
        """The oldest jobs that fit in `max_batch_size` rows (`submit` splits larger requests)."""
        jobs = [self._pending.popleft()]
        rows = len(jobs[0].inputs)
        while self._pending and rows + len(self._pending[0].inputs) <= self.max_batch_size:
            rows += len(self._pending[0].inputs)
            jobs.append(self._pending.popleft())
        return jobs

    async def _run_jobs(self, jobs: list[_Job]) -> None:
        jobs = [job for job in jobs if not job.future.done()]  # callers that went away
        if not jobs:
            return
        try:
            parts = [job.inputs for job in jobs]
            outputs = await asyncio.get_running_loop().run_in_executor(self._executor, self._timed_run, parts)
        except Exception as exc:
            if len(jobs) == 1:
                if not jobs[0].future.done():
                    jobs[0].future.set_exception(exc)
                return
            # One bad request must not fail the others that happened to share its batch: retry each alone.
            log.warning("a batch of %d requests failed (%s); running them one by one", len(jobs), exc)
            for job in jobs:
                await self._run_jobs([job])
            return
        start = 0
        for job in jobs:
            end = start + len(job.inputs)
            if not job.future.done():
                job.future.set_result(tuple(output[start:end] for output in outputs))
            start = end

    def _timed_run(self, parts: list[np.ndarray]) -> tuple[np.ndarray, ...]:
        """One model call on the rows of `parts`, joined here in the inference thread: a batch of 8 rows of
        256 x 128 is 3 MB to copy, which on the event loop would hold up every other request meanwhile."""
        started = time.perf_counter()
        batch = parts[0] if len(parts) == 1 else np.concatenate(parts)
        outputs = tuple(self._run(batch))
        with self._calls_lock:
            self.calls += 1
        if self._on_batch is not None:
            self._on_batch(len(batch), time.perf_counter() - started)
        return outputs
