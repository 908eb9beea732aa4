"""Section 2, service: requests/s and latency of a real server per endpoint, batching on vs off, and its overhead."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.inputs import image_limits, load_engine
from bench.load import load_test
from bench.measure import BenchError, Profile, time_calls
from bench.server import running_server

ENDPOINTS = ("/v1/attributes", "/v1/embeddings", "/v1/search")
TAGS = ("on", "off")  # batching
ENROLLED_IDENTITIES = 5  # identities enrolled over HTTP before the /v1/search load


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
    """p50 of decode + preprocess, and of the bare ORT call (batch 1), on one image, in this process."""
    from app.preprocess import preprocess

    engine = load_engine(onnx_path, threads)
    spec, limits = engine.manifest.input, image_limits()
    row = preprocess(jpeg, spec, limits)[None]
    repeats = max(profile.repeats, 20)
    prep = time_calls(lambda: preprocess(jpeg, spec, limits), profile.warmup, repeats, profile.budget_s)
    ort_times = time_calls(lambda: engine.embed_and_attributes(row), profile.warmup, repeats, profile.budget_s)
    return {"preprocess_p50_ms": float(np.median(prep)) * 1000, "ort_p50_ms": float(np.median(ort_times)) * 1000}


def overhead(
    rows: list[dict[str, Any]], bare: dict[str, float], floor: dict[str, float], profile: Profile
) -> dict[str, dict[str, Any]]:
    """Per batching setting, /v1/embeddings at concurrency 1 against the bare model call (when c=1 was run)."""
    result = {}
    for tag in TAGS:
        match = [
            r for r in rows if r["batching"] == tag and r["endpoint"] == "/v1/embeddings" and r["concurrency"] == 1
        ]
        if match and min(profile.concurrency) == 1:
            p50 = match[0]["p50_ms"]
            result[tag] = {
                "service_p50_ms": p50,
                "server_ms": match[0]["server_ms"],
                "http_floor_ms": floor[tag],
                "ratio": p50 / bare["ort_p50_ms"],
                "rest_ms": p50 - bare["ort_p50_ms"] - bare["preprocess_p50_ms"],
            }
    return result


def load_cells(urls: dict[str, str], jpegs: Sequence[bytes], profile: Profile) -> list[dict[str, Any]]:
    """Every endpoint x concurrency cell, on then off back to back, so background load hits both sides alike."""
    rows: list[dict[str, Any]] = []
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
    return rows


def bench_service(onnx_path: Path, jpegs: Sequence[bytes], threads: int, profile: Profile) -> dict[str, Any]:
    """Requests/s and latency per endpoint and concurrency, batching on and off; and the service overhead.

    Both servers run side by side (the idle one costs nothing) and each cell is measured on, then off, back to
    back: a change in the machine's background load then hits both sides of a ratio alike.
    """
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
        rows = load_cells(urls, jpegs, profile)
    return {"rows": rows, "bare": bare, "overhead": overhead(rows, bare, floor, profile), "threads": threads}
