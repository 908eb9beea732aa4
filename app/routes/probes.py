"""What orchestrators and monitoring call: liveness, readiness (with the reason when not ready), Prometheus."""

from __future__ import annotations

import contextlib

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from app.deps import RuntimeDep
from app.gallery import GalleryError
from app.problems import problem_response
from app.schemas import HealthResponse, ReadyResponse

router = APIRouter(tags=["service"])


@router.get("/healthz", response_model=HealthResponse)
async def healthz() -> HealthResponse:
    """200 while the process serves HTTP (liveness)."""
    return HealthResponse(status="alive")


@router.get("/readyz", response_model=ReadyResponse)
async def readyz(runtime: RuntimeDep) -> ReadyResponse | JSONResponse:
    """200 when the model and the gallery are ready; otherwise 503 with the reason (readiness)."""
    gallery = await run_in_threadpool(runtime.open_gallery)
    reason = runtime.model_problem or runtime.gallery_problem
    if runtime.engine is None or gallery is None:
        checks = {"model": runtime.model_problem or "ok", "gallery": runtime.gallery_problem or "not open"}
        return problem_response(503, "not-ready", reason or "the gallery is not open", extra={"checks": checks})
    counts = await run_in_threadpool(gallery.count)
    return ReadyResponse(
        status="ready", model_id=runtime.engine.model_id, providers=runtime.engine.providers, gallery=counts
    )


@router.get("/metrics", response_class=Response)
async def metrics(runtime: RuntimeDep) -> Response:
    """Prometheus text: requests per route, latency, batch sizes, inference time, gallery size."""
    if runtime.gallery is not None:
        # a scrape must not fail because Qdrant hiccups; the gauges keep their last value
        with contextlib.suppress(GalleryError):
            runtime.metrics.set_gallery(await run_in_threadpool(runtime.gallery.count))
    return Response(runtime.metrics.render(), media_type=runtime.metrics.content_type)
