"""`personid bench`: model, service and gallery benchmarks side by side -> docs/benchmarks.md (+ PNGs, JSON).

Each section is measured within one run of this command, so the ratios it reports (ONNX Runtime vs PyTorch,
batching on vs off, the service vs the bare model call) compare figures taken on the same machine under the
same load. The targets are printed beside the figures as met / missed and are never adjusted to the machine.

1. model: PyTorch eager vs ONNX Runtime fp32 vs int8 on the same preprocessed images, same thread count.
2. service: a real `personid serve` (uvicorn subprocess, embedded Qdrant in a temporary folder) under a bounded
   load of concurrent HTTP requests, with the micro-batcher on and off.
3. gallery: search latency and enroll rate against gallery size, embedded Qdrant (and a server when
   `PERSONID_QDRANT_URL` is set).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import os
import platform
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ("model", "service", "gallery")
ENDPOINTS = ("/v1/attributes", "/v1/embeddings", "/v1/search")
TAGS = ("on", "off")  # batching
HOST = "127.0.0.1"
CPU = "CPUExecutionProvider"
IMAGES_PER_IDENTITY = 4  # gallery filler: image points per identity
UPSERT_BATCH = 1024  # points per bulk upsert when filling a gallery
ENROLLED_IDENTITIES = 5  # identities enrolled over HTTP before the /v1/search load
MIN_REPEATS = 3
BUSY_SPREAD = 1.5  # median / fastest run above this: the machine was busy
SERVER_START_TIMEOUT_S = 180.0
REQUEST_TIMEOUT_S = 60.0
BENCH_MODEL_ID = "bench-filler"
SHM = Path("/dev/shm")

TARGET_ORT_SPEEDUP = 1.5  # ORT fp32 images/s >= 1.5x PyTorch eager at batch 1
TARGET_BATCHING_RPS = 1.5  # batching on >= 1.5x requests/s of batching off at the highest concurrency
TARGET_BATCHING_P99 = 2.0  # ... with p99 no worse than 2x
TARGET_SERVICE_OVERHEAD = 1.5  # /v1/embeddings p50 at concurrency 1 within 1.5x of the bare ORT call
TARGET_SEARCH_MS = 50.0  # gallery p50 search at 20k points, embedded
TARGET_SEARCH_POINTS = 20_000


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
    concurrency=(1, 16),
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


# ---- measuring ----------------------------------------------------------------------------------------------


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
    p50, p95, p99 = np.percentile(np.asarray(seconds) * 1000.0, [50, 95, 99])
    return {"p50_ms": float(p50), "p95_ms": float(p95), "p99_ms": float(p99)}


def _unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)


# ---- inputs -------------------------------------------------------------------------------------------------


def sample_jpegs(count: int, seed: int = 0) -> list[bytes]:
    """`count` Market-format JPEG person crops (128 x 64) from `training.synth`: what a detector would post."""
    from training.synth import sample_crops

    with tempfile.TemporaryDirectory() as tmp:
        try:
            return [f.read_bytes() for f in sample_crops(Path(tmp), count, seed)]
        except ValueError as error:
            raise BenchError(str(error)) from error


def image_limits() -> Any:
    """The service's default upload limits, so preprocessing here is exactly the service's."""
    from app.preprocess import ImageLimits
    from app.settings import Settings

    fields = Settings.model_fields
    return ImageLimits(max_pixels=fields["max_image_pixels"].default, min_side=fields["min_image_side"].default)


def preprocess_rows(blobs: Sequence[bytes], spec: Any) -> np.ndarray:
    """Uploaded bytes -> N x 3 x H x W model rows with the service's own `app.preprocess.preprocess`."""
    from app.preprocess import preprocess

    limits = image_limits()
    return np.stack([preprocess(blob, spec, limits) for blob in blobs])


def rows_for_batch(rows: np.ndarray, batch: int) -> np.ndarray:
    """`batch` rows, repeating the sample when it is smaller."""
    reps = math.ceil(batch / len(rows))
    return np.ascontiguousarray(np.concatenate([rows] * reps)[:batch])


def load_engine(path: Path, threads: int) -> Any:
    """The service's own `Engine` (same session options, manifest checks) on CPU with `threads` intra-op threads."""
    from app.engine import Engine

    return Engine.load(path, [CPU], threads)


# ---- 1. model -----------------------------------------------------------------------------------------------


def bench_model(
    checkpoint: Path, onnx_path: Path, int8_path: Path | None, rows: np.ndarray, threads: int, profile: Profile
) -> dict[str, Any]:
    """Images/s of PyTorch eager, ORT fp32 and ORT int8 at each batch size; ratios vs eager at the same batch."""
    import torch

    from training.checkpoint import load_model
    from training.export import ExportWrapper

    torch.set_num_threads(threads)
    model, _ = load_model(checkpoint, map_location="cpu")
    wrapper = ExportWrapper(model)

    def eager(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.inference_mode():
            embedding, attributes = wrapper(torch.from_numpy(batch))
        return embedding.numpy(), attributes.numpy()

    runners: dict[str, Callable[[np.ndarray], tuple[np.ndarray, ...]]] = {"pytorch eager": eager}
    runners["ort fp32"] = load_engine(onnx_path, threads).embed_and_attributes
    if int8_path is not None:
        runners["ort int8"] = load_engine(int8_path, threads).embed_and_attributes
    check = rows_for_batch(rows, 8)
    agreement = float(np.max(np.abs(eager(check)[0] - runners["ort fp32"](check)[0])))
    results: list[dict[str, Any]] = []
    with tqdm(total=len(profile.batches) * len(runners), desc="bench model", unit="config") as bar:
        for batch in profile.batches:
            x = rows_for_batch(rows, batch)
            for name, run in runners.items():
                times = time_calls(lambda run=run, x=x: run(x), profile.warmup, profile.repeats, profile.budget_s)
                median = float(np.median(times))
                results.append(
                    {
                        "backend": name,
                        "batch": batch,
                        "repeats": len(times),
                        "ms_per_batch": median * 1000,
                        "min_ms_per_batch": min(times) * 1000,
                        "ms_per_image": median * 1000 / batch,
                        "images_per_s": batch / median,
                    }
                )
                bar.update()
    eager_rate = {r["batch"]: r["images_per_s"] for r in results if r["backend"] == "pytorch eager"}
    for r in results:
        r["vs_eager"] = r["images_per_s"] / eager_rate[r["batch"]]
    return {"rows": results, "max_abs_diff_eager_vs_ort": agreement, "threads": threads}


# ---- 2. service ---------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, lines: int = 30) -> str:
    text = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


@contextlib.contextmanager
def running_server(onnx_path: Path, folder: Path, threads: int, batching: bool) -> Iterator[str]:
    """A real `personid serve` in a subprocess on a free port (embedded Qdrant in `folder`); yields its URL.

    The server's environment has no PERSONID_* variables: only the options given here configure it.
    """
    import httpx

    port = free_port()
    tag = "on" if batching else "off"
    log_path = folder / f"server-batching-{tag}.log"
    command = [
        sys.executable,
        "-m",
        "personid.cli",
        "serve",
        "--host",
        HOST,
        "--port",
        str(port),
        "--model-path",
        str(onnx_path.resolve()),
        "--qdrant-path",
        str(folder / f"qdrant-{tag}"),
        "--intra-op-threads",
        str(threads),
        "--log-level",
        "warning",
        "--batching" if batching else "--no-batching",
    ]
    env = {key: value for key, value in os.environ.items() if not key.startswith("PERSONID_")}
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    url = f"http://{HOST}:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                raise BenchError(f"the server exited with code {process.returncode}:\n{_tail(log_path)}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/readyz", timeout=2.0).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise BenchError(f"the server was not ready after {SERVER_START_TIMEOUT_S:.0f} s:\n{_tail(log_path)}")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def enroll_identities(url: str, jpegs: Sequence[bytes], count: int = ENROLLED_IDENTITIES) -> None:
    """Enroll `count` identities of two images each over HTTP, so /v1/search has something to find."""
    import httpx

    for index in range(count):
        pair = [jpegs[(2 * index + k) % len(jpegs)] for k in range(2)]
        files = [("images", (f"{index}-{k}.jpg", data, "image/jpeg")) for k, data in enumerate(pair)]
        response = httpx.post(f"{url}/v1/identities", files=files, data={"identity_id": f"bench-{index}"}, timeout=60)
        if response.status_code != 201:
            raise BenchError(f"enrolling bench-{index} failed: HTTP {response.status_code} {response.text[:300]}")


async def scrape(client: Any) -> dict[str, float]:
    """The server's own counters (Prometheus text at /metrics): batch sizes, model-call and request durations."""
    from prometheus_client.parser import text_string_to_metric_families

    response = await client.get("/metrics")
    figures: dict[str, float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name.endswith(("_sum", "_count")):
                key = sample.name + (f"|{sample.labels['route']}" if "route" in sample.labels else "")
                figures[key] = figures.get(key, 0.0) + float(sample.value)
    return figures


def _server_side(before: dict[str, float], after: dict[str, float], route: str) -> dict[str, float | None]:
    """Mean batch size, model-call ms and server-side request ms over a run, from /metrics deltas."""

    def delta(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    calls = delta("personid_inference_batch_size_count")
    handled = delta(f"personid_http_request_duration_seconds_count|{route}")
    return {
        "mean_batch": delta("personid_inference_batch_size_sum") / calls if calls else None,
        "model_call_ms": 1000 * delta("personid_inference_duration_seconds_sum") / calls if calls else None,
        "server_ms": 1000 * delta(f"personid_http_request_duration_seconds_sum|{route}") / handled if handled else None,
    }


async def load_test(
    url: str,
    endpoint: str,
    jpegs: Sequence[bytes],
    requests: int,
    concurrency: int,
    max_seconds: float,
    label: str,
    method: str = "POST",
) -> dict[str, Any]:
    """`requests` requests (POSTs carry one image) from `concurrency` workers, stopping at `max_seconds`.

    `concurrency` untimed requests go first: they open the connections and warm the server's caches. Returns
    requests/s, client-side latency percentiles and the server's own figures for the same span.
    """
    import httpx

    form = {"top_k": "5"} if endpoint == "/v1/search" else {}
    latencies: list[float] = []
    errors: list[str] = []
    issued = 0
    limits = httpx.Limits(max_connections=concurrency + 1, max_keepalive_connections=concurrency + 1)
    async with httpx.AsyncClient(base_url=url, timeout=REQUEST_TIMEOUT_S, limits=limits) as client:

        async def send(index: int) -> tuple[float, str | None]:
            start = time.perf_counter()
            try:
                if method == "POST":
                    files = {"image": ("person.jpg", jpegs[index % len(jpegs)], "image/jpeg")}
                    response = await client.post(endpoint, files=files, data=form)
                else:
                    response = await client.request(method, endpoint)
            except httpx.HTTPError as exc:
                return time.perf_counter() - start, f"{type(exc).__name__}: {exc}"
            elapsed = time.perf_counter() - start
            return (
                elapsed,
                None if response.status_code == 200 else f"HTTP {response.status_code} {response.text[:200]}",
            )

        async def worker() -> None:
            nonlocal issued
            while issued < requests and time.perf_counter() < deadline:
                index = issued
                issued += 1
                elapsed, error = await send(index)
                if error is None:
                    latencies.append(elapsed)
                else:
                    errors.append(error)
                bar.update()

        await asyncio.gather(*(send(i) for i in range(concurrency)))
        before = await scrape(client)
        deadline = time.perf_counter() + max_seconds
        with tqdm(total=requests, desc=label, unit="req", leave=False) as bar:
            start = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            seconds = time.perf_counter() - start
        after = await scrape(client)
    if not latencies:
        raise BenchError(f"every request to {endpoint} failed; first error: {errors[0] if errors else 'none sent'}")
    return {
        "endpoint": endpoint,
        "concurrency": concurrency,
        "requests": len(latencies) + len(errors),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "seconds": seconds,
        "rps": len(latencies) / seconds,
        **percentiles_ms(latencies),
        **_server_side(before, after, endpoint),
    }


def bare_model_call(onnx_path: Path, jpeg: bytes, threads: int, profile: Profile) -> dict[str, float]:
    """p50 of decode + preprocess, and of the bare ORT call (batch 1), on one image, in this process."""
    from app.preprocess import preprocess

    engine = load_engine(onnx_path, threads)
    spec, limits = engine.manifest.input, image_limits()
    row = preprocess(jpeg, spec, limits)[None]
    repeats = max(profile.repeats, 20)
    prep = time_calls(lambda: preprocess(jpeg, spec, limits), profile.warmup, repeats, profile.budget_s)
    ort_times = time_calls(lambda: engine.embed_and_attributes(row), profile.warmup, repeats, profile.budget_s)
    return {"preprocess_p50_ms": float(np.median(prep)) * 1000, "ort_p50_ms": float(np.median(ort_times)) * 1000}


def bench_service(onnx_path: Path, jpegs: Sequence[bytes], threads: int, profile: Profile) -> dict[str, Any]:
    """Requests/s and latency per endpoint and concurrency, batching on and off; and the service overhead.

    Both servers run side by side (the idle one costs nothing) and each cell is measured on, then off, back to
    back: a change in the machine's background load then hits both sides of a ratio alike.
    """
    rows: list[dict[str, Any]] = []
    floor: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="personid-bench-") as tmp, contextlib.ExitStack() as stack:
        urls = {tag: stack.enter_context(running_server(onnx_path, Path(tmp), threads, tag == "on")) for tag in TAGS}
        for url in urls.values():
            enroll_identities(url, jpegs)
        bare = bare_model_call(onnx_path, jpegs[0], threads, profile)
        for tag, url in urls.items():
            result = asyncio.run(load_test(url, "/healthz", jpegs, profile.requests, 1, profile.max_seconds,
                                           f"batching {tag} GET /healthz", method="GET"))  # fmt: skip
            floor[tag] = result["p50_ms"]
        for endpoint in ENDPOINTS:
            for concurrency in profile.concurrency:
                for tag, url in urls.items():
                    label = f"batching {tag} {endpoint} c={concurrency}"
                    result = asyncio.run(
                        load_test(url, endpoint, jpegs, profile.requests, concurrency, profile.max_seconds, label)
                    )
                    rows.append({"batching": tag, **result})
                    print(
                        f"bench service: {label}: {result['rps']:.1f} req/s, p50 {result['p50_ms']:.1f} ms, "
                        f"p99 {result['p99_ms']:.1f} ms, mean batch {result['mean_batch'] or 0:.2f}, "
                        f"{result['errors']} errors",
                        file=sys.stderr,
                    )
    overhead = {}
    lowest = min(profile.concurrency)
    for tag in TAGS:
        match = [
            r for r in rows if r["batching"] == tag and r["endpoint"] == "/v1/embeddings" and r["concurrency"] == 1
        ]
        if match and lowest == 1:
            p50 = match[0]["p50_ms"]
            overhead[tag] = {
                "service_p50_ms": p50,
                "server_ms": match[0]["server_ms"],
                "http_floor_ms": floor[tag],
                "ratio": p50 / bare["ort_p50_ms"],
                "rest_ms": p50 - bare["ort_p50_ms"] - bare["preprocess_p50_ms"],
            }
    return {"rows": rows, "bare": bare, "overhead": overhead, "threads": threads}


# ---- 3. gallery ---------------------------------------------------------------------------------------------


def _gallery_settings(backend: str, folder: Path, collection: str) -> Any:
    from app.settings import Settings

    if backend == "embedded":
        return Settings(qdrant_url=None, qdrant_path=folder, collection=collection)
    return Settings(qdrant_url=os.environ["PERSONID_QDRANT_URL"], collection=collection)


def _raw_client(settings: Any) -> Any:
    from qdrant_client import QdrantClient

    if settings.qdrant_url:
        key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
        return QdrantClient(url=settings.qdrant_url, api_key=key, timeout=60)
    return QdrantClient(path=str(settings.qdrant_path))


def fill_gallery(client: Any, collection: str, points: int, dim: int, seed: int) -> float:
    """Bulk-upsert `points` image points (random unit vectors, IMAGES_PER_IDENTITY per identity) and their
    identity records into the collections `Gallery.open` created; returns seconds.

    Written here because `Gallery.enroll` is one identity per call (with a delete-by-filter that scans the
    whole collection in embedded mode), far too slow to fill 50k points. The payloads are the ones
    `app.gallery` writes (its docstring lists them), built with its own point-id functions.
    """
    from qdrant_client import models

    from app.gallery import identity_point_id, image_point_id

    rng = np.random.default_rng(seed)
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    identities = points // IMAGES_PER_IDENTITY
    per_chunk = max(1, UPSERT_BATCH // IMAGES_PER_IDENTITY)
    start = time.perf_counter()
    with tqdm(total=identities * IMAGES_PER_IDENTITY, desc=f"fill {points} points", unit="pt", leave=False) as bar:
        for first in range(0, identities, per_chunk):
            count = min(per_chunk, identities - first)
            vectors = _unit(rng.standard_normal((count, IMAGES_PER_IDENTITY, dim), dtype=np.float32))
            images, records = [], []
            for k in range(count):
                identity_id = f"filler-{first + k}"
                common = {
                    "identity_id": identity_id,
                    "name": None,
                    "metadata": {},
                    "attributes": {},
                    "attr_tags": [],
                    "model_id": BENCH_MODEL_ID,
                    "created_at": now,
                    "updated_at": now,
                }
                ids = [image_point_id(identity_id, f"h{j}") for j in range(IMAGES_PER_IDENTITY)]
                images += [
                    models.PointStruct(
                        id=pid, vector=v.tolist(), payload={**common, "image_id": pid, "image_hash": f"h{j}"}
                    )
                    for j, (pid, v) in enumerate(zip(ids, vectors[k], strict=True))
                ]
                centroid = _unit(vectors[k].mean(axis=0))
                records.append(
                    models.PointStruct(
                        id=identity_point_id(identity_id),
                        vector=centroid.tolist(),
                        payload={**common, "image_ids": ids},
                    )
                )
            client.upsert(collection, images, wait=True)
            client.upsert(f"{collection}_identities", records, wait=True)
            bar.update(len(images))
    return time.perf_counter() - start


def fill_collections(settings: Any, points: int, dim: int) -> float:
    """Create the collections with `Gallery.open` (exactly as the service does), bulk-fill them; returns seconds.

    Embedded mode fills a copy on tmpfs (/dev/shm) and then copies the folder into place: qdrant-client's
    local mode commits every point to SQLite on its own, which on a disk that syncs is a few dozen points per
    second (the enroll figures show that cost); the search figures only need the points loaded.
    """
    from app.gallery import Gallery

    embedded = not settings.qdrant_url
    staging = (
        tempfile.TemporaryDirectory(prefix="personid-bench-", dir=SHM)
        if embedded and SHM.is_dir() and os.access(SHM, os.W_OK)
        else contextlib.nullcontext(None)
    )
    with staging as stage:
        fill_settings = settings.model_copy(update={"qdrant_path": Path(stage) / "qdrant"}) if stage else settings
        Gallery.open(fill_settings, dim=dim, model_id=BENCH_MODEL_ID).close()
        client = _raw_client(fill_settings)
        try:
            seconds = fill_gallery(client, settings.collection, points, dim, seed=points)
        finally:
            client.close()
        if stage:
            shutil.copytree(fill_settings.qdrant_path, settings.qdrant_path)
    return seconds


def bench_gallery_size(
    backend: str, folder: Path, points: int, dim: int, queries: np.ndarray, profile: Profile
) -> list[dict[str, Any]]:
    """Fill a fresh gallery with `points` image points, then time searches (both modes) and enrolls."""
    from app.gallery import Gallery

    collection = f"bench_{uuid.uuid4().hex[:8]}"
    settings = _gallery_settings(backend, folder / collection, collection)
    fill_s = fill_collections(settings, points, dim)
    start = time.perf_counter()
    gallery = Gallery.open(settings, dim=dim, model_id=BENCH_MODEL_ID)
    open_s = time.perf_counter() - start
    try:
        rows = []
        for mode in ("centroid", "groups"):
            gallery.search_mode = mode
            cycle = itertools.cycle(queries)
            times = time_calls(
                lambda cycle=cycle: gallery.search(next(cycle), top_k=5), 1, len(queries), profile.budget_s
            )
            rows.append(
                {"backend": backend, "points": points, "mode": mode, "searches": len(times), **percentiles_ms(times)}
            )
        rng = np.random.default_rng(points + 1)
        enrolled = itertools.count()

        def enroll() -> None:
            index = next(enrolled)
            vectors = _unit(rng.standard_normal((IMAGES_PER_IDENTITY, dim), dtype=np.float32))
            hashes = [f"new-{index}-{j}" for j in range(IMAGES_PER_IDENTITY)]
            gallery.enroll(f"new-{index}", None, {}, vectors, hashes, [{} for _ in hashes])

        enroll_times = time_calls(enroll, 0, profile.enrolls, profile.budget_s)
        enroll_rate = IMAGES_PER_IDENTITY * len(enroll_times) / sum(enroll_times)
    finally:
        gallery.close()
        if backend == "server":
            client = _raw_client(settings)
            for name in (collection, f"{collection}_identities"):
                client.delete_collection(name)
            client.close()
    for row in rows:
        row.update(
            {
                "fill_s": fill_s,
                "fill_points_per_s": points / fill_s,
                "open_s": open_s,
                "enroll_images_per_s": enroll_rate,
                "enrolls": len(enroll_times),
                "enroll_p50_ms": float(np.median(enroll_times)) * 1000,
            }
        )
    return rows


def bench_gallery(dim: int, queries: np.ndarray, profile: Profile) -> dict[str, Any]:
    """Every gallery size on embedded Qdrant, and on the server at PERSONID_QDRANT_URL when it is set."""
    backends = ["embedded"] + (["server"] if os.environ.get("PERSONID_QDRANT_URL") else [])
    notes = [] if "server" in backends else ["Qdrant server: skipped (set PERSONID_QDRANT_URL to measure one)."]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="personid-bench-gallery-") as tmp, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Ll]ocal mode.*")  # qdrant-client's advice above 20k points
        for backend in backends:
            for points in tqdm(profile.gallery_sizes, desc=f"bench gallery ({backend})", unit="size"):
                size_rows = bench_gallery_size(backend, Path(tmp), points, dim, queries, profile)
                rows += size_rows
                for r in size_rows:
                    print(
                        f"bench gallery: {backend} {points} points {r['mode']}: p50 {r['p50_ms']:.2f} ms, "
                        f"p95 {r['p95_ms']:.2f} ms; fill {r['fill_s']:.1f} s; enroll "
                        f"{r['enroll_images_per_s']:.1f} images/s",
                        file=sys.stderr,
                    )
    return {"rows": rows, "dim": dim, "notes": notes, "images_per_identity": IMAGES_PER_IDENTITY}


# ---- targets ------------------------------------------------------------------------------------------------


def _target(name: str, goal: str, measured: str, met: bool | None) -> dict[str, str]:
    status = "not measured" if met is None else ("met" if met else "missed")
    return {"target": name, "goal": goal, "measured": measured, "status": status}


def evaluate_targets(results: dict[str, Any]) -> list[dict[str, str]]:
    """Each target beside its measured figure; `not measured` where the run did not include it."""
    targets = []
    model = results.get("model")
    rows = [r for r in model["rows"] if r["backend"] == "ort fp32" and r["batch"] == 1] if model else []
    targets.append(
        _target(
            "ORT fp32 vs PyTorch eager, batch 1",
            f">= {TARGET_ORT_SPEEDUP}x images/s",
            f"{rows[0]['vs_eager']:.2f}x" if rows else "-",
            rows[0]["vs_eager"] >= TARGET_ORT_SPEEDUP if rows else None,
        )
    )
    service = results.get("service")
    top = max(service["rows"], key=lambda r: r["concurrency"])["concurrency"] if service else 0
    for endpoint in ENDPOINTS:
        pair = (
            {r["batching"]: r for r in service["rows"] if r["endpoint"] == endpoint and r["concurrency"] == top}
            if (service and top > 1)
            else {}
        )
        name = f"batching on vs off, {endpoint}, concurrency {top or '16'}"
        goal = f">= {TARGET_BATCHING_RPS}x req/s, p99 <= {TARGET_BATCHING_P99}x"
        if len(pair) == 2:
            rps, p99 = pair["on"]["rps"] / pair["off"]["rps"], pair["on"]["p99_ms"] / pair["off"]["p99_ms"]
            met = rps >= TARGET_BATCHING_RPS and p99 <= TARGET_BATCHING_P99
            targets.append(_target(name, goal, f"{rps:.2f}x req/s, p99 {p99:.2f}x", met))
        else:
            targets.append(_target(name, goal, "-", None))
    overhead = service["overhead"].get("on") if service else None
    targets.append(
        _target(
            "/v1/embeddings p50 at concurrency 1 (batching on) vs bare ORT call",
            f"<= {TARGET_SERVICE_OVERHEAD}x",
            f"{overhead['ratio']:.2f}x ({overhead['service_p50_ms']:.1f} vs {service['bare']['ort_p50_ms']:.1f} ms)"
            if overhead
            else "-",
            overhead["ratio"] <= TARGET_SERVICE_OVERHEAD if overhead else None,
        )
    )
    gallery = results.get("gallery")
    for mode in ("centroid", "groups"):
        match = (
            [
                r
                for r in gallery["rows"]
                if r["backend"] == "embedded" and r["mode"] == mode and r["points"] == TARGET_SEARCH_POINTS
            ]
            if gallery
            else []
        )
        targets.append(
            _target(
                f"gallery search p50, {TARGET_SEARCH_POINTS // 1000}k points embedded, {mode} mode",
                f"<= {TARGET_SEARCH_MS:.0f} ms",
                f"{match[0]['p50_ms']:.1f} ms" if match else "-",
                match[0]["p50_ms"] <= TARGET_SEARCH_MS if match else None,
            )
        )
    return targets


# ---- report -------------------------------------------------------------------------------------------------


def _package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def machine_info(threads: int) -> dict[str, Any]:
    cpu = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = "unknown"
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory = f"{int(line.split()[1]) / 1024**2:.1f} GiB"
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory": memory,
        "threads": threads,
        "os": platform.platform(),
        "python": platform.python_version(),
        **{pkg: _package_version(pkg) for pkg in ("onnxruntime", "torch", "qdrant-client", "numpy", "uvicorn")},
    }


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _ms(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def model_table(model: dict[str, Any]) -> str:
    return _table(
        ["backend", "batch", "images/s", "ms/image", "ms/batch median", "ms/batch min", "vs eager", "timed runs"],
        [
            [
                r["backend"],
                r["batch"],
                f"{r['images_per_s']:.1f}",
                f"{r['ms_per_image']:.2f}",
                f"{r['ms_per_batch']:.2f}",
                f"{r['min_ms_per_batch']:.2f}",
                f"{r['vs_eager']:.2f}x",
                r["repeats"],
            ]
            for r in model["rows"]
        ],
    )


def service_tables(service: dict[str, Any]) -> str:
    load = _table(
        ["batching", "endpoint", "concurrency", "requests", "errors", "req/s", "p50 ms", "p95 ms", "p99 ms",
         "server mean ms", "mean batch", "model call mean ms"],
        [
            [
                r["batching"],
                f"`{r['endpoint']}`",
                r["concurrency"],
                r["requests"],
                r["errors"],
                f"{r['rps']:.1f}",
                f"{r['p50_ms']:.1f}",
                f"{r['p95_ms']:.1f}",
                f"{r['p99_ms']:.1f}",
                _ms(r["server_ms"]),
                _ms(r["mean_batch"], 2),
                _ms(r["model_call_ms"]),
            ]
            for r in service["rows"]
        ],
    )  # fmt: skip
    bare = service["bare"]
    overhead = _table(
        ["batching", "/v1/embeddings p50 ms (c=1)", "server mean ms", "GET /healthz p50 ms", "bare ORT batch 1 p50 ms",
         "decode + preprocess p50 ms", "rest ms", "service / bare"],
        [
            [
                tag,
                f"{o['service_p50_ms']:.2f}",
                _ms(o["server_ms"], 2),
                f"{o['http_floor_ms']:.2f}",
                f"{bare['ort_p50_ms']:.2f}",
                f"{bare['preprocess_p50_ms']:.2f}",
                f"{o['rest_ms']:.2f}",
                f"{o['ratio']:.2f}x",
            ]
            for tag, o in service["overhead"].items()
        ],
    )  # fmt: skip
    return (
        f"{load}\n\n`server mean ms`: the server's own request duration (/metrics), without the client; `mean batch` "
        "and `model call mean ms`: images per model call and its duration, from the server's /metrics over the "
        "same span.\n\nService overhead: the service at concurrency 1 against the bare model call on the same image "
        "in the benchmark process with the same threads; `GET /healthz` is the HTTP round trip with no work; "
        f"`rest` = service p50 - bare ORT - preprocess.\n\n{overhead}"
    )


def gallery_table(gallery: dict[str, Any]) -> str:
    return _table(
        [
            "backend",
            "points",
            "mode",
            "search p50 ms",
            "search p95 ms",
            "searches",
            "fill s (bulk)",
            "fill points/s",
            "open s",
            "enroll images/s",
            "enroll p50 ms",
        ],
        [
            [
                r["backend"],
                r["points"],
                r["mode"],
                f"{r['p50_ms']:.2f}",
                f"{r['p95_ms']:.2f}",
                r["searches"],
                f"{r['fill_s']:.1f}",
                f"{r['fill_points_per_s']:.0f}",
                f"{r['open_s']:.2f}",
                f"{r['enroll_images_per_s']:.1f}",
                f"{r['enroll_p50_ms']:.1f}",
            ]
            for r in gallery["rows"]
        ],
    )


def plot_model(model: dict[str, Any], path: Path) -> None:
    import matplotlib.pyplot as plt

    backends = list(dict.fromkeys(r["backend"] for r in model["rows"]))
    batches = sorted({r["batch"] for r in model["rows"]})
    fig, ax = plt.subplots(figsize=(8, 4.5))
    width = 0.8 / len(backends)
    for i, backend in enumerate(backends):
        rows = {r["batch"]: r for r in model["rows"] if r["backend"] == backend}
        xs = [j + i * width for j in range(len(batches))]
        bars = ax.bar(xs, [rows[b]["images_per_s"] for b in batches], width, label=backend)
        ax.bar_label(bars, labels=[f"{rows[b]['vs_eager']:.2f}x" for b in batches], fontsize=8)
    ax.set_xticks([j + width * (len(backends) - 1) / 2 for j in range(len(batches))], [f"batch {b}" for b in batches])
    ax.set_ylabel("images / s (higher is better)")
    ax.set_title(f"Model throughput, {model['threads']} threads (label: ratio vs PyTorch eager)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_service(service: dict[str, Any], path: Path) -> None:
    import matplotlib.pyplot as plt

    cells = list(dict.fromkeys((r["endpoint"], r["concurrency"]) for r in service["rows"]))
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    width = 0.4
    for i, tag in enumerate(("on", "off")):
        rows = {(r["endpoint"], r["concurrency"]): r for r in service["rows"] if r["batching"] == tag}
        xs = [j + i * width for j in range(len(cells))]
        left.bar(xs, [rows[c]["rps"] if c in rows else 0 for c in cells], width, label=f"batching {tag}")
        right.bar(xs, [rows[c]["p99_ms"] if c in rows else 0 for c in cells], width, label=f"batching {tag}")
    labels = [f"{endpoint.removeprefix('/v1/')}\nc={c}" for endpoint, c in cells]
    for ax, ylabel in ((left, "requests / s (higher is better)"), (right, "p99 latency ms (lower is better)")):
        ax.set_xticks([j + width / 2 for j in range(len(cells))], labels, fontsize=8)
        ax.set_ylabel(ylabel)
        ax.legend()
    fig.suptitle("Service under load (real uvicorn server, embedded Qdrant)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_gallery(gallery: dict[str, Any], path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    series = list(dict.fromkeys((r["backend"], r["mode"]) for r in gallery["rows"]))
    for backend, mode in series:
        rows = sorted(
            (r for r in gallery["rows"] if (r["backend"], r["mode"]) == (backend, mode)), key=lambda r: r["points"]
        )
        xs = [r["points"] for r in rows]
        line = left.plot(xs, [r["p50_ms"] for r in rows], marker="o", label=f"{backend} {mode} p50")[0]
        left.plot(
            xs, [r["p95_ms"] for r in rows], marker="x", ls="--", color=line.get_color(), label=f"{backend} {mode} p95"
        )
    left.axhline(TARGET_SEARCH_MS, color="grey", ls=":", label=f"target p50 {TARGET_SEARCH_MS:.0f} ms")
    left.set(
        xscale="log",
        yscale="log",
        xlabel="gallery image points",
        ylabel="search latency ms",
        title="Search latency vs gallery size",
    )
    left.legend(fontsize=7)
    for backend in dict.fromkeys(r["backend"] for r in gallery["rows"]):
        rows = sorted(
            (r for r in gallery["rows"] if r["backend"] == backend and r["mode"] == "centroid"),
            key=lambda r: r["points"],
        )
        xs = [r["points"] for r in rows]
        right.plot(xs, [r["enroll_images_per_s"] for r in rows], marker="o", label=f"{backend} enroll images/s")
        right.plot(
            xs, [r["fill_points_per_s"] for r in rows], marker="s", ls="--", label=f"{backend} bulk fill points/s"
        )
    right.set(
        xscale="log",
        yscale="log",
        xlabel="gallery image points",
        ylabel="per second",
        title="Enroll (Gallery.enroll) and bulk fill rate",
    )
    right.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def render_markdown(results: dict[str, Any], pngs: dict[str, str]) -> str:
    """docs/benchmarks.md: command, machine, model, targets, then one part per section with its figure."""
    m, info = results["machine"], results["model_under_test"]
    parts = [
        "# Benchmarks",
        "Written by `personid bench` (`training/bench.py`); this whole file and its figures are regenerated by:",
        f"```\n{results['command']}\n```",
        f"Measured {results['date']}. Each section comes from one run of the command, so the ratios inside a "
        "section compare figures taken under the same conditions. The load generator runs on the same machine "
        "as the server and takes CPU from it: on few cores this lowers the service figures.",
        "## Machine",
        _table(
            ["", ""],
            [
                ["cores (`nproc`)", m["nproc"]],
                ["CPU", m["cpu"]],
                ["memory", m["memory"]],
                ["OS", m["os"]],
                ["Python", m["python"]],
                ["onnxruntime", m["onnxruntime"]],
                ["torch", m["torch"]],
                ["qdrant-client", m["qdrant-client"]],
                ["numpy", m["numpy"]],
                ["uvicorn", m["uvicorn"]],
                [
                    "threads",
                    f"{m['threads']} (torch.set_num_threads = ORT intra_op_num_threads = server intra_op_threads)",
                ],
            ],
        ),
        "## Model under test",
        _table(["", ""], [[key, f"`{value}`" if isinstance(value, str) else value] for key, value in info.items()]),
        "## Targets",
        _table(
            ["target", "goal", "measured", "status"],
            [[t["target"], t["goal"], t["measured"], f"**{t['status']}**"] for t in results["targets"]],
        ),
    ]
    if "model" in results:
        model = results["model"]
        parts += [
            "## 1. Model: PyTorch eager vs ONNX Runtime fp32 vs int8",
            "The same preprocessed images (synthetic Market-format JPEGs through `app.preprocess`), "
            f"{model['threads']} threads for both runtimes, `torch.inference_mode`, the service's own `Engine` for "
            "ORT. Median of repeated timed runs after warm-up (fewer runs past the time budget); a median far above "
            "the fastest run means the machine was busy. "
            f"Max |embedding difference| PyTorch vs ORT fp32: {model['max_abs_diff_eager_vs_ort']:.2e}.",
            model_table(model),
            f"![model throughput]({pngs['model']})",
        ]
    if "service" in results:
        service = results["service"]
        parts += [
            "## 2. Service: requests/s and latency, batching on vs off",
            "A real `personid serve` (uvicorn subprocess on 127.0.0.1, embedded Qdrant in a temporary folder, "
            f"{ENROLLED_IDENTITIES} identities enrolled) per batching setting; N one-image POSTs per row from "
            "`httpx.AsyncClient` workers at the given concurrency, after one untimed request per worker.",
            service_tables(service),
            f"![service load]({pngs['service']})",
        ]
    if "gallery" in results:
        gallery = results["gallery"]
        parts += [
            "## 3. Gallery: search and enroll vs gallery size",
            f"Filler: random unit vectors of dim {gallery['dim']}, {gallery['images_per_identity']} image points per "
            "identity, bulk-upserted (fill time; embedded: on tmpfs, then the folder is copied to disk, see "
            "`fill_collections`) into the collections `Gallery.open` creates; queries: real model "
            "embeddings of synthetic crops through `Gallery.search` (top 5); enroll: `Gallery.enroll` of new "
            f"{gallery['images_per_identity']}-image identities into the filled gallery (embedded: each point is "
            "one SQLite commit). Searches and enrolls stop after the time budget once 3 are timed (`searches`).",
            gallery_table(gallery),
            *gallery["notes"],
            f"![gallery]({pngs['gallery']})",
        ]
    if results["notes"]:
        parts += ["## Notes", "\n".join(f"- {note}" for note in results["notes"])]
    return "\n\n".join(parts) + "\n"


# ---- command ------------------------------------------------------------------------------------------------


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _positive_int(text: str) -> int:
    value = _int_list(text)
    if len(value) != 1:
        raise argparse.ArgumentTypeError(f"expected one positive integer, got {text!r}")
    return value[0]


def _sections(text: str) -> tuple[str, ...]:
    chosen = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [s for s in chosen if s not in SECTIONS]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"unknown section(s) {unknown}; choose from {','.join(SECTIONS)}")
    return chosen


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="personid bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default="runs/default/best.pt", help="training checkpoint (PyTorch eager)")
    parser.add_argument("--onnx", default="models/default.onnx", help="the exported model (manifest beside it)")
    parser.add_argument("--int8", help="int8 model (default: NAME.int8.onnx beside --onnx when it exists)")
    parser.add_argument(
        "--out", default="docs/benchmarks", help="output prefix: PREFIX.md, PREFIX.json, PREFIX_<section>.png"
    )
    parser.add_argument("--sections", type=_sections, default=SECTIONS, help="comma-separated: model,service,gallery")
    parser.add_argument("--requests", type=_positive_int, help=f"requests per load-test row (default {FULL.requests})")
    parser.add_argument("--concurrency", type=_int_list, help="comma-separated concurrencies (default 1,16)")
    parser.add_argument(
        "--gallery-sizes", type=_int_list, help="comma-separated image points (default 1000,10000,20000,50000)"
    )
    parser.add_argument(
        "--threads", type=_positive_int, default=os.cpu_count() or 1, help="torch and ORT threads (default: cores)"
    )
    parser.add_argument("--quick", action="store_true", help="small counts and sizes (tests, smoke runs)")
    return parser


def resolve_inputs(args: argparse.Namespace) -> tuple[Path, Path | None, Path | None]:
    """(onnx, int8 or None, checkpoint or None); a clear error for anything asked for that is not there."""
    onnx_path = Path(args.onnx)
    if not onnx_path.is_file():
        raise BenchError(f"--onnx {onnx_path}: file not found; export one with `personid export`")
    if args.int8:
        int8_path: Path | None = Path(args.int8)
        if not int8_path.is_file():
            raise BenchError(f"--int8 {int8_path}: file not found")
    else:
        beside = onnx_path.with_suffix(".int8.onnx")
        int8_path = beside if beside.is_file() else None
    checkpoint = Path(args.checkpoint) if "model" in args.sections else None
    if checkpoint is not None and not checkpoint.is_file():
        raise BenchError(
            f"--checkpoint {checkpoint}: file not found (the model section needs the training checkpoint; "
            "leave it out with --sections service,gallery)"
        )
    return onnx_path, int8_path, checkpoint


def run(argv: list[str]) -> dict[str, Any]:
    """Run the chosen sections and write PREFIX.md / .json / _<section>.png; returns the results."""
    args = build_parser().parse_args(argv)
    profile = QUICK if args.quick else FULL
    profile = replace(
        profile,
        requests=args.requests or profile.requests,
        concurrency=args.concurrency or profile.concurrency,
        gallery_sizes=args.gallery_sizes or profile.gallery_sizes,
    )
    onnx_path, int8_path, checkpoint = resolve_inputs(args)
    engine = load_engine(onnx_path, args.threads)
    manifest = engine.manifest
    jpegs = sample_jpegs(max(32, profile.queries))
    rows = preprocess_rows(jpegs, manifest.input)
    queries, _ = engine.embed_and_attributes(rows_for_batch(rows, profile.queries))
    del engine  # no idle session of this process beside the ones measured
    results: dict[str, Any] = {
        "command": shlex.join(["personid", "bench", *argv]),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_info(args.threads),
        "model_under_test": {
            "onnx": str(onnx_path),
            "model_id": manifest.model_id,
            "backbone": manifest.backbone or "unknown",
            "input": f"{manifest.input.height} x {manifest.input.width}",
            "embedding dim": manifest.outputs.embedding.dim,
            "int8": str(int8_path) if int8_path else "none",
            "checkpoint": str(checkpoint) if checkpoint else "not used",
        },
        "profile": "quick" if args.quick else "full",
        "notes": [],
    }
    if int8_path is None and "model" in args.sections:
        results["notes"].append(f"No int8 model beside {onnx_path} (export with --int8): ORT int8 not measured.")
    if "model" in args.sections:
        assert checkpoint is not None
        results["model"] = bench_model(checkpoint, onnx_path, int8_path, rows, args.threads, profile)
        if results["model"]["max_abs_diff_eager_vs_ort"] > 1e-3:
            results["notes"].append(
                f"PyTorch and ORT fp32 embeddings differ by up to {results['model']['max_abs_diff_eager_vs_ort']:.3g}: "
                f"is {checkpoint} the checkpoint {onnx_path} was exported from?"
            )
        spread = max(r["ms_per_batch"] / r["min_ms_per_batch"] for r in results["model"]["rows"])
        if spread > BUSY_SPREAD:
            results["notes"].append(
                f"Model timings spread widely (a median up to {spread:.1f}x its fastest run): the machine was busy "
                "or threads were oversubscribed; rerun on a quiet machine before trusting the ratios."
            )
    if "service" in args.sections:
        results["service"] = bench_service(onnx_path, jpegs, args.threads, profile)
        failed = sum(r["errors"] for r in results["service"]["rows"])
        if failed:
            first = next(r["first_error"] for r in results["service"]["rows"] if r["errors"])
            results["notes"].append(f"{failed} service requests failed (not counted in req/s); first: {first}")
    if "gallery" in args.sections:
        results["gallery"] = bench_gallery(manifest.outputs.embedding.dim, queries, profile)
    results["targets"] = evaluate_targets(results)
    write_outputs(results, Path(args.out))
    return results


def write_outputs(results: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    prefix = out.with_suffix("") if out.suffix == ".md" else out
    prefix.parent.mkdir(parents=True, exist_ok=True)
    plotters = {"model": plot_model, "service": plot_service, "gallery": plot_gallery}
    pngs = {}
    for section, plot in plotters.items():
        if section in results:
            path = prefix.parent / f"{prefix.name}_{section}.png"
            plot(results[section], path)
            pngs[section] = path.name
    results["pngs"] = pngs
    markdown = render_markdown(results, pngs)
    prefix.with_suffix(".md").write_text(markdown, encoding="utf-8")
    prefix.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    print(markdown)
    print(
        f"personid bench: wrote {prefix.with_suffix('.md')}, {prefix.with_suffix('.json')} and "
        f"{', '.join(pngs.values())}",
        file=sys.stderr,
    )


def main(argv: list[str]) -> int:
    from app.engine import EngineError
    from app.manifest import ManifestError

    try:
        run(argv)
    except (BenchError, EngineError, ManifestError) as exc:
        print(f"personid bench: error: {exc}", file=sys.stderr)
        return 1
    return 0
