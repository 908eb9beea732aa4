"""`create_app(settings)`: the FastAPI app, and the `Runtime` its lifespan loads (model, batcher, gallery).

Start-up policy: no model file yet -> the app starts, /readyz says why it is not ready and model endpoints answer
503 (a fresh checkout or a volume still being filled must not crash-loop). A model that cannot be served as
described (manifest and graph disagree, a gallery made by another model) -> refuse to start with the reason:
serving it would give wrong answers. A Qdrant server that is not up yet -> start, 503, retry on later requests.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import numpy as np
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import problems, routes
from app.batching import MicroBatcher
from app.engine import Engine, ModelMissing
from app.gallery import Gallery, GalleryUnavailable
from app.metrics import Metrics, MetricsMiddleware
from app.preprocess import configure_pillow
from app.problems import Problem, problem_response
from app.settings import Settings

log = logging.getLogger("personid")

# Room for multipart headers and the text fields (name, metadata, filter) around the image bytes.
FORM_OVERHEAD_BYTES = 64 * 1024
GALLERY_RETRY_S = 5.0


@dataclass
class Runtime:
    """What the lifespan loads; routes reach it as `request.app.state.runtime`."""

    settings: Settings
    metrics: Metrics
    engine: Engine | None = None
    batcher: MicroBatcher | None = None
    gallery: Gallery | None = None
    model_problem: str | None = None
    gallery_problem: str | None = None
    _gallery_tried: float = 0.0
    _gallery_lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def start(cls, settings: Settings, metrics: Metrics) -> Runtime:
        """Load the model and open the gallery; raises (refusing to start) only for what a restart cannot fix."""
        runtime = cls(settings, metrics)
        try:
            runtime.engine = Engine.load(settings.model_path, settings.providers, settings.threads)
        except ModelMissing as exc:
            runtime.model_problem = str(exc)
            log.warning("not ready: %s", exc)
            return runtime
        engine = runtime.engine
        runtime.batcher = MicroBatcher(
            engine.embed_and_attributes,
            max_batch_size=settings.max_batch_size,
            max_wait_ms=settings.max_wait_ms,
            enabled=settings.batching,
            on_batch=metrics.observe_batch,
        )
        runtime.open_gallery()
        return runtime

    def open_gallery(self) -> Gallery | None:
        """Open the gallery if it is not open; a server that is down is retried at most every few seconds."""
        if self.gallery is not None or self.engine is None:
            return self.gallery
        with self._gallery_lock:
            if self.gallery is None and time.monotonic() - self._gallery_tried >= GALLERY_RETRY_S:
                self._gallery_tried = time.monotonic()
                dim = self.engine.manifest.outputs.embedding.dim
                try:
                    self.gallery = Gallery.open(self.settings, dim=dim, model_id=self.engine.model_id)
                    self.gallery_problem = None
                    log.info("gallery open: %s", self.settings.qdrant_url or self.settings.qdrant_path)
                except GalleryUnavailable as exc:
                    self.gallery_problem = str(exc)
                    log.warning("gallery not ready: %s", exc)
        return self.gallery

    async def infer(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings and attribute probabilities of preprocessed rows, through the micro-batcher."""
        assert self.batcher is not None
        embedding, attributes = await self.batcher.submit(rows)
        return embedding, attributes

    async def close(self) -> None:
        if self.batcher is not None:
            await self.batcher.close()
        if self.gallery is not None:
            self.gallery.close()


def body_limit(settings: Settings, method: str, path: str) -> int:
    """Largest request body per endpoint: images only where images are posted, several where several are."""
    if method != "POST":
        return FORM_OVERHEAD_BYTES
    images = settings.max_images_per_request if path.startswith("/v1/identities") else 1
    return settings.max_upload_bytes * images + FORM_OVERHEAD_BYTES


class BodyLimitMiddleware:
    """Refuse a request body over `body_limit` while it streams in: at once when Content-Length says so, else
    as soon as the bytes read pass the limit (the rest is never read). Starlette's own body limit answers in
    plain text when Content-Length is too large; this one answers with problem+json like everything else."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app, self.settings = app, settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = body_limit(self.settings, scope["method"], scope["path"])
        too_large = Problem(413, "body-too-large", f"the request body is larger than {limit} bytes")
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await problem_response(413, too_large.kind, too_large.detail)(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise too_large
            return message

        await self.app(scope, limited_receive, send)


def create_app(settings: Settings | None = None) -> FastAPI:
    """The service. Uvicorn calls it as a factory (`personid serve`); tests pass their own settings."""
    settings = settings or Settings()
    configure_pillow(settings.max_image_pixels)
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = await asyncio.to_thread(Runtime.start, settings, metrics)  # seconds for a large model
        if runtime.batcher is not None:
            runtime.batcher.start()
        app.state.runtime = runtime
        try:
            yield
        finally:
            await runtime.close()

    app = FastAPI(
        title="personid",
        version="1.0.0",
        summary="Person attributes and re-identification on ONNX Runtime, identities in Qdrant.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    problems.install(app)
    app.add_middleware(BodyLimitMiddleware, settings=settings)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["X-API-Key", "Content-Type"],
        )
    app.include_router(routes.router)
    return app
