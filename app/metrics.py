"""Prometheus metrics: requests per route, latency, batch sizes, inference time, gallery size.

One registry per app (not the global one) so that several apps in one process (tests) do not collide.
With several uvicorn workers each process has its own figures: scrape each, or run one worker per container.
"""

from __future__ import annotations

import time

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "personid_http_requests_total", "HTTP requests", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "personid_http_request_duration_seconds",
            "HTTP request latency",
            ["method", "route"],
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "personid_inference_batch_size", "Images per model call", buckets=BATCH_BUCKETS, registry=self.registry
        )
        self.inference_seconds = Histogram(
            "personid_inference_duration_seconds", "Duration of one model call", registry=self.registry
        )
        self.gallery_identities = Gauge("personid_gallery_identities", "Identities stored", registry=self.registry)
        self.gallery_images = Gauge("personid_gallery_images", "Image embeddings stored", registry=self.registry)

    def observe_batch(self, rows: int, seconds: float) -> None:
        self.batch_size.observe(rows)
        self.inference_seconds.observe(seconds)

    def set_gallery(self, counts: dict[str, int]) -> None:
        self.gallery_identities.set(counts["identities"])
        self.gallery_images.set(counts["images"])

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Counts and times every HTTP request by its route template (`/v1/identities/{identity_id}`), so that
    identity ids do not become label values."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            method = scope["method"]
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.latency.labels(method, route).observe(time.perf_counter() - started)
