"""The micro-batcher with the real ONNX Runtime engine: same answers as one-by-one, fewer model calls."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.batching import BatcherClosed, MicroBatcher
from app.engine import Engine
from app.main import create_app
from app.settings import Settings
from tests.app.conftest import image_file, person_image


@pytest.fixture(scope="module")
def engine(model_path: Path) -> Engine:
    return Engine.load(model_path, providers=[], threads=1)


def rows(engine: Engine, count: int, seed: int = 0) -> list[np.ndarray]:
    spec = engine.manifest.input
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(1, 3, spec.height, spec.width)).astype(np.float32) for _ in range(count)]


def test_concurrent_requests_share_model_calls_and_get_their_own_answers(engine: Engine) -> None:
    inputs = rows(engine, 24)
    expected = [engine.embed_and_attributes(x) for x in inputs]
    sizes: list[int] = []

    async def run() -> tuple[list[tuple[np.ndarray, ...]], int]:
        batcher = MicroBatcher(
            engine.embed_and_attributes, max_batch_size=8, max_wait_ms=20, on_batch=lambda n, s: sizes.append(n)
        )
        batcher.start()
        results = await asyncio.gather(*(batcher.submit(x) for x in inputs))
        await batcher.close()
        return results, batcher.calls

    results, calls = asyncio.run(run())
    assert calls < len(inputs) and calls == len(sizes)
    assert max(sizes) <= 8 and sum(sizes) == 24
    for (embedding, attributes), (want_embedding, want_attributes) in zip(results, expected, strict=True):
        assert embedding.shape == want_embedding.shape
        np.testing.assert_allclose(embedding, want_embedding, atol=1e-5)
        np.testing.assert_allclose(attributes, want_attributes, atol=1e-5)


def test_multi_row_requests_are_split_back_and_an_oversized_one_is_split_into_batches(engine: Engine) -> None:
    spec = engine.manifest.input
    rng = np.random.default_rng(1)
    inputs = [rng.normal(size=(n, 3, spec.height, spec.width)).astype(np.float32) for n in (3, 1, 2, 10, 1)]
    sizes: list[int] = []

    async def run() -> list[tuple[np.ndarray, ...]]:
        batcher = MicroBatcher(
            engine.embed_and_attributes, max_batch_size=6, max_wait_ms=20, on_batch=lambda n, s: sizes.append(n)
        )
        batcher.start()
        results = await asyncio.gather(*(batcher.submit(x) for x in inputs))
        await batcher.close()
        return results

    results = asyncio.run(run())
    assert max(sizes) <= 6 and sum(sizes) == 17, "the 10-row request ran as calls of at most 6 rows"
    for x, (embedding, attributes) in zip(inputs, results, strict=True):
        want_embedding, want_attributes = engine.embed_and_attributes(x)
        np.testing.assert_allclose(embedding, want_embedding, atol=1e-5)
        np.testing.assert_allclose(attributes, want_attributes, atol=1e-5)


def test_a_bad_request_fails_alone(engine: Engine) -> None:
    good = rows(engine, 4)
    spec = engine.manifest.input
    bad = np.zeros((1, 3, spec.height, spec.width + 8), np.float32)  # wrong width: the graph refuses it

    async def run() -> list[object]:
        batcher = MicroBatcher(engine.embed_and_attributes, max_batch_size=8, max_wait_ms=20)
        batcher.start()
        outcome = await asyncio.gather(*(batcher.submit(x) for x in [good[0], good[1], bad, good[2], good[3]]),
                                       return_exceptions=True)  # fmt: skip
        await batcher.close()
        return outcome

    outcome = asyncio.run(run())
    assert isinstance(outcome[2], Exception)
    for index, x in zip([0, 1, 3, 4], good, strict=True):
        assert isinstance(outcome[index], tuple)
        np.testing.assert_allclose(outcome[index][0], engine.embed_and_attributes(x)[0], atol=1e-5)


def test_batching_off_runs_each_request_alone(engine: Engine) -> None:
    inputs = rows(engine, 6)

    async def run() -> tuple[list[tuple[np.ndarray, ...]], int]:
        batcher = MicroBatcher(engine.embed_and_attributes, max_batch_size=8, max_wait_ms=20, enabled=False)
        batcher.start()
        results = await asyncio.gather(*(batcher.submit(x) for x in inputs))
        await batcher.close()
        return results, batcher.calls

    results, calls = asyncio.run(run())
    assert calls == len(inputs)
    for x, (embedding, _) in zip(inputs, results, strict=True):
        np.testing.assert_allclose(embedding, engine.embed_and_attributes(x)[0], atol=1e-6)


def test_close_finishes_queued_work_then_refuses_new_work(engine: Engine) -> None:
    inputs = rows(engine, 10)

    async def run() -> tuple[list[tuple[np.ndarray, ...]], bool]:
        batcher = MicroBatcher(engine.embed_and_attributes, max_batch_size=4, max_wait_ms=50)
        batcher.start()
        pending = [asyncio.ensure_future(batcher.submit(x)) for x in inputs]
        await asyncio.sleep(0)  # let them queue
        await batcher.close()
        results = [task.result() for task in pending]  # all done by the time close returns
        try:
            await batcher.submit(inputs[0])
        except BatcherClosed:
            return results, True
        return results, False

    results, refused = asyncio.run(run())
    assert refused and len(results) == 10 and all(r[0].shape[0] == 1 for r in results)


def test_inference_runs_off_the_event_loop(engine: Engine) -> None:
    def slow_run(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        time.sleep(0.3)  # a slow model: the loop must keep serving meanwhile
        return engine.embed_and_attributes(batch)

    async def run() -> int:
        batcher = MicroBatcher(slow_run, max_batch_size=8, max_wait_ms=1)
        batcher.start()
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.ensure_future(ticker())
        await batcher.submit(rows(engine, 1)[0])
        task.cancel()
        await batcher.close()
        return ticks

    assert asyncio.run(run()) >= 10


def test_concurrent_http_requests_are_batched_end_to_end(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(max_wait_ms=50, max_batch_size=16)
    images = [person_image(seed) for seed in range(16)]
    with TestClient(create_app(settings)) as client:
        sequential = [
            client.post("/v1/embeddings", files={"image": image_file(data)}).json()["embedding"] for data in images
        ]
        batcher = client.app.state.runtime.batcher
        before = batcher.calls
        barrier = threading.Barrier(len(images))

        def post(data: bytes) -> list[float]:
            barrier.wait()
            return client.post("/v1/embeddings", files={"image": image_file(data)}).json()["embedding"]

        with ThreadPoolExecutor(len(images)) as pool:
            concurrent = list(pool.map(post, images))
        calls = batcher.calls - before
    assert calls < len(images) / 2, f"{calls} model calls for {len(images)} concurrent requests"
    for got, want in zip(concurrent, sequential, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-5)
