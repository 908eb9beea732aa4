"""Section 2, service: requests/s and latency of a real server per endpoint and concurrency, batching on vs off,
against the floors it cannot beat: the bare ONNX Runtime call and a bare FastAPI endpoint that only reads the
same multipart upload. Load comes from `hey` (`bench.load`), so the client does not starve the server."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from bench.inputs import image_limits, load_engine
from bench.load import find_hey, load_test, multipart_body
from bench.measure import BenchError, Profile, time_calls
from bench.server import running_bare_upload, running_server

ENDPOINTS = ("/v1/attributes", "/v1/embeddings", "/v1/search")
TAGS = ("on", "off")  # batching
ENROLLED_IDENTITIES = 5  # identities enrolled over HTTP before the /v1/search load
BATCH_IMAGES = 32  # crops in the batch request compared with as many one-crop requests


def enroll_identities(url: str, jpegs: Sequence[bytes], count: int = ENROLLED_IDENTITIES) -> None:
    """Enroll `count` identities of two images each over HTTP, so /v1/search has something to find."""
    import httpx

    for index in range(count):
        pair = [jpegs[(2 * index + k) % len(jpegs)] for k in range(2)]
        files = [("images", (f"{index}-{k}.jpg", data, "image/jpeg")) for k, data in enumerate(pair)]
        response = httpx.post(f"{url}/v1/identities", files=files, data={"identity_id": f"bench-{index}"}, timeout=60)
        if response.status_code != 201:
            raise BenchError(f"enrolling bench-{index} failed: HTTP {response.status_code} {response.text[:300]}")


def bare_model_call(onnx_path: Path, jpeg: bytes, threads: int, profile: Profile) -> dict[str, float]:
    """p50 of decode + preprocess, p50 and images/s of the bare ORT call at batch 1, and its images/s at batch
    `BATCH_IMAGES` (the ceiling of a batch request), in this process with the service's own `Engine`."""
    from app.preprocess import preprocess

    engine = load_engine(onnx_path, threads)
    spec, limits = engine.manifest.input, image_limits()
    row = preprocess(jpeg, spec, limits)[None]
    repeats = max(profile.repeats, 20)
    prep = time_calls(lambda: preprocess(jpeg, spec, limits), profile.warmup, repeats, profile.budget_s)
    cpu_start = time.process_time()
    ort_times = time_calls(lambda: engine.embed_and_attributes(row), profile.warmup, repeats * 4, profile.budget_s)
    cpu_per_image = (time.process_time() - cpu_start) / (len(ort_times) + profile.warmup)
    batch = np.repeat(row, BATCH_IMAGES, axis=0)
    batch_times = time_calls(lambda: engine.embed_and_attributes(batch), 1, max(3, repeats // 4), profile.budget_s)
    return {
        "preprocess_p50_ms": 1000 * float(np.median(prep)),
        "ort_p50_ms": 1000 * float(np.median(ort_times)),
        "ort_images_per_s": len(ort_times) / sum(ort_times),
        "ort_cpu_ms_per_image": 1000 * cpu_per_image,
        "ort_batch_images_per_s": BATCH_IMAGES * len(batch_times) / sum(batch_times),
    }


def _report(label: str, result: dict[str, Any]) -> None:
    print(
        f"bench service: {label}: {result['rps']:.1f} req/s ({result['images_per_s']:.1f} images/s), "
        f"p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms, mean batch {result['mean_batch'] or 0:.2f}, "
        f"{result['errors']} errors",
        file=sys.stderr,
    )


def load_cells(servers: dict[str, tuple[str, int]], jpeg: bytes, profile: Profile) -> list[dict[str, Any]]:
    """Every endpoint x concurrency cell, on then off back to back, so background load hits both sides alike."""
    rows: list[dict[str, Any]] = []
    cells = [(e, c, tag) for e in ENDPOINTS for c in profile.concurrency for tag in servers]
    for endpoint, concurrency, tag in tqdm(cells, desc="service load", unit="cell", leave=False):
        fields = {"top_k": "5"} if endpoint == "/v1/search" else {}
        body, content_type = multipart_body([("image", jpeg)], fields)
        url, pid = servers[tag]
        result = load_test(
            url, endpoint, body, content_type, profile.requests, concurrency, profile.max_seconds, pid=pid
        )
        rows.append({"batching": tag, **result})
        _report(f"batching {tag} {endpoint} c={concurrency}", result)
    return rows


def batch_request(server: tuple[str, int], jpegs: Sequence[bytes], profile: Profile) -> dict[str, Any]:
    """/v1/embeddings with `BATCH_IMAGES` crops per request at concurrency 1 (images/s counts every crop)."""
    crops = [jpegs[i % len(jpegs)] for i in range(BATCH_IMAGES)]
    body, content_type = multipart_body([("images", data) for data in crops])
    requests = max(3, profile.requests // BATCH_IMAGES)
    url, pid = server
    result = load_test(url, "/v1/embeddings", body, content_type, requests, 1, profile.max_seconds, BATCH_IMAGES, pid)
    _report(f"batching on /v1/embeddings, {BATCH_IMAGES} crops per request, c=1", result)
    return result


def overhead(rows: list[dict[str, Any]], bare: dict[str, float], floor_ms: float) -> dict[str, dict[str, Any]]:
    """Per batching setting, /v1/embeddings at concurrency 1 against the bare model call plus the bare multipart
    endpoint (when c=1 was run)."""
    result = {}
    for tag in TAGS:
        match = [
            r for r in rows if r["batching"] == tag and r["endpoint"] == "/v1/embeddings" and r["concurrency"] == 1
        ]
        if match:
            p50 = match[0]["p50_ms"]
            result[tag] = {
                "service_p50_ms": p50,
                "server_ms": match[0]["server_ms"],
                "upload_floor_ms": floor_ms,
                "ratio": p50 / (bare["ort_p50_ms"] + floor_ms),
                "rest_ms": p50 - bare["ort_p50_ms"] - floor_ms - bare["preprocess_p50_ms"],
            }
    return result


def bench_service(onnx_path: Path, jpegs: Sequence[bytes], threads: int, profile: Profile) -> dict[str, Any]:
    """Requests/s and latency per endpoint and concurrency, batching on and off; the floors; the batch request.

    Both servers run side by side (the idle one costs nothing) and each cell is measured on, then off, back to
    back: a change in the machine's background load then hits both sides of a ratio alike. The bare model is
    timed before and after the load and the faster figure kept, so the service is compared with the model at its
    best.
    """
    find_hey()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="personid-bench-") as tmp, contextlib.ExitStack() as stack:
        folder = Path(tmp)
        servers = {tag: stack.enter_context(running_server(onnx_path, folder, threads, tag == "on")) for tag in TAGS}
        bare_url, bare_pid = stack.enter_context(running_bare_upload(folder))
        for url, _ in servers.values():
            enroll_identities(url, jpegs)
        bare_before = bare_model_call(onnx_path, jpegs[0], threads, profile)
        body, content_type = multipart_body([("image", jpegs[0])])
        floor = load_test(
            bare_url, "/upload", body, content_type, profile.requests, 1, profile.max_seconds, pid=bare_pid
        )
        _report("bare FastAPI upload endpoint c=1", floor)
        rows = load_cells(servers, jpegs[0], profile)
        batch = batch_request(servers["on"], jpegs, profile)
        bare_after = bare_model_call(onnx_path, jpegs[0], threads, profile)
    bare = min(bare_before, bare_after, key=lambda figures: figures["ort_p50_ms"])
    for key in ("ort_images_per_s", "ort_batch_images_per_s"):
        bare[key] = max(bare_before[key], bare_after[key])
    bare["ort_cpu_ms_per_image"] = min(bare_before["ort_cpu_ms_per_image"], bare_after["ort_cpu_ms_per_image"])
    return {
        "rows": rows,
        "bare": bare,
        "bare_runs": [bare_before, bare_after],
        "upload_floor": floor,
        "batch_request": batch,
        "overhead": overhead(rows, bare, floor["p50_ms"]),
        "threads": threads,
        "load_average": [load_before, os.getloadavg()[0]],
    }
