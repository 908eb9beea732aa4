"""`create_app(settings)`: the FastAPI app, its lifespan (loads the `Runtime`) and its middleware.

The start-up policy (what refuses to start, what starts and answers 503) is `app.runtime`'s.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import problems
from app.metrics import Metrics, MetricsMiddleware
from app.preprocess import configure_pillow
from app.problems import Problem, problem_response
from app.routes import router
from app.runtime import Runtime
from app.settings import Settings

# Room for multipart headers and the text fields (name, metadata, filter) around the image bytes.
FORM_OVERHEAD_BYTES = 64 * 1024


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
    app.include_router(router)
    return app
