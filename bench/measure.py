"""How much to measure and how: the run profiles, the timing loop and the percentiles every section shares."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

MIN_REPEATS = 3


class BenchError(RuntimeError):
    """The benchmark cannot run as asked (missing model, server that does not start); the message says why."""


@dataclass(frozen=True)
class Profile:
    """How much to measure: the full run for docs/benchmarks.md, or `--quick` for the tests."""

    batches: tuple[int, ...]
    warmup: int
    repeats: int
    budget_s: float  # per timed configuration: stop after this once MIN_REPEATS are in
    requests: int
    concurrency: tuple[int, ...]
    max_seconds: float  # per load-test run
    gallery_sizes: tuple[int, ...]
    queries: int
    enrolls: int


FULL = Profile(
    batches=(1, 8, 32),
    warmup=5,
    repeats=50,
    budget_s=20.0,
    requests=300,
    concurrency=(1, 16, 64),
    max_seconds=120.0,
    gallery_sizes=(1000, 10_000, 20_000, 50_000),
    queries=100,
    enrolls=20,
)
QUICK = Profile(
    batches=(1, 8, 32),
    warmup=1,
    repeats=5,
    budget_s=2.0,
    requests=24,
    concurrency=(1, 16),
    max_seconds=30.0,
    gallery_sizes=(200, 800),
    queries=10,
    enrolls=3,
)


def time_calls(fn: Callable[[], object], warmup: int, repeats: int, budget_s: float) -> list[float]:
    """Seconds per call of `fn` after `warmup` untimed calls: `repeats` calls, fewer (>= 3) past `budget_s`."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    deadline = time.perf_counter() + budget_s
    while len(times) < repeats and (len(times) < MIN_REPEATS or time.perf_counter() < deadline):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def percentiles_ms(seconds: Sequence[float]) -> dict[str, float]:
    """p50 / p95 / p99 in milliseconds: the tail is what a caller waiting on one request feels."""
    p50, p95, p99 = np.percentile(np.asarray(seconds) * 1000.0, [50, 95, 99])
    return {"p50_ms": float(p50), "p95_ms": float(p95), "p99_ms": float(p99)}
