"""`create_app(settings)`: the FastAPI app, its lifespan (loads the `Runtime`) and its middleware.

The start-up policy (what refuses to start, what starts and answers 503) is `app.runtime`'s; what a request may
cost before an endpoint runs (key, body size, slow bodies) is `app.limits`'.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from app import problems
from app.limits import ApiKeyMiddleware, BodyLimitMiddleware
from app.metrics import Metrics, MetricsMiddleware
from app.multipart import forms_as_read
from app.preprocess import configure_decoding
from app.routes import router
from app.runtime import Runtime
from app.settings import Settings
from app.web import mount_web


def create_app(settings: Settings | None = None) -> FastAPI:
    """The service. Uvicorn calls it as a factory (`personid serve`); tests pass their own settings."""
    settings = settings or Settings()
    decode_budget = configure_decoding(settings.max_image_pixels, settings.decode_pixel_budget)
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
    app.state.decode_budget = decode_budget
    problems.install(app)
    # the last added runs first: CORS (preflights), metrics, the key, then the body
    app.add_middleware(BodyLimitMiddleware, settings=settings)
    app.add_middleware(ApiKeyMiddleware, settings=settings)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["X-API-Key", "Content-Type"],
        )
    app.include_router(router)
    mount_web(app)
    generate_openapi = app.openapi
    app.openapi = lambda: forms_as_read(generate_openapi())  # type: ignore[method-assign]
    return app
