"""A bounded HTTP load against a running server: client-side latency beside the server's own /metrics figures."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from tqdm import tqdm

from bench.measure import BenchError, percentiles_ms

REQUEST_TIMEOUT_S = 60.0


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


async def send_one(
    client: Any, endpoint: str, method: str, jpeg: bytes, form: dict[str, str]
) -> tuple[float, str | None]:
    """One request: (seconds, None) on 200, else (seconds, what went wrong), so one failure never ends a run."""
    import httpx

    start = time.perf_counter()
    try:
        if method == "POST":
            files = {"image": ("person.jpg", jpeg, "image/jpeg")}
            response = await client.post(endpoint, files=files, data=form)
        else:
            response = await client.request(method, endpoint)
    except httpx.HTTPError as exc:
        return time.perf_counter() - start, f"{type(exc).__name__}: {exc}"
    elapsed = time.perf_counter() - start
    return elapsed, None if response.status_code == 200 else f"HTTP {response.status_code} {response.text[:200]}"


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

        def send(index: int) -> Any:
            return send_one(client, endpoint, method, jpegs[index % len(jpegs)], form)

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
