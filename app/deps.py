"""What the endpoints depend on, as `Annotated` types (the FastAPI full-stack template's `deps.py` style).

An endpoint names `EngineDep`, `GalleryDep`, `RuntimeDep` or `SettingsDep` as a parameter type and gets it, or its
request is answered before the endpoint runs: 503 while the model or the gallery is not ready. Every dependency
is async: none blocks, so none is worth a worker-thread hop.

The key dependencies (`require_write_key`, `require_read_key`) declare the endpoint's security in OpenAPI and
check the key again; the check that counts runs before the body is read, in `app.limits.ApiKeyMiddleware`, on
the operations whose OpenAPI security they declare.
"""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader
from starlette.concurrency import run_in_threadpool

from app.engine import Engine
from app.gallery import Gallery
from app.problems import Problem
from app.runtime import Runtime
from app.settings import Settings

# Reads need a key only with `protect_reads`, which one OpenAPI document cannot say for every deployment: reads
# declare the key optional (`{}` is the no-security alternative, added to the key FastAPI declares), writes require it.
OPTIONAL_KEY: dict[str, Any] = {"security": [{}]}

# Text fields that carry JSON, as JSON Schema says so (what their JSON may hold beyond this the code checks).
JSON_OBJECT: dict[str, Any] = {"contentMediaType": "application/json", "contentSchema": {"type": "object"}}
JSON_LABELS: dict[str, Any] = {
    "contentMediaType": "application/json",
    "contentSchema": {"type": "object", "additionalProperties": {"type": "string"}},
}

api_key_header = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    description="Needed for writes when API keys are set, and for reads too with PERSONID_PROTECT_READS.",
)
ApiKeyDep = Annotated[str | None, Depends(api_key_header)]


async def get_settings(request: Request) -> Settings:
    """The app's settings (set by `create_app`, so available before the lifespan has run)."""
    settings: Settings = request.app.state.settings
    return settings


async def get_runtime(request: Request) -> Runtime:
    """What the lifespan loaded."""
    runtime: Runtime = request.app.state.runtime
    return runtime


SettingsDep = Annotated[Settings, Depends(get_settings)]
RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def check_key(settings: Settings, given: str | None) -> None:
    """401 unless `given` is one of the keys (or none are set). Compares against every key with no early exit,
    so timing does not tell which prefix matched."""
    if not settings.api_keys:
        return
    supplied = (given or "").encode()
    matches = [hmac.compare_digest(key.get_secret_value().encode(), supplied) for key in settings.api_keys]
    if not any(matches):
        reason = "missing X-API-Key header" if given is None else "invalid API key"
        raise Problem(401, "unauthorized", reason, headers={"WWW-Authenticate": 'APIKey header="X-API-Key"'})


async def require_write_key(settings: SettingsDep, key: ApiKeyDep) -> None:
    """Writes always need a key when keys are set."""
    check_key(settings, key)


async def require_read_key(settings: SettingsDep, key: ApiKeyDep) -> None:
    """Reads need one only with `protect_reads`: by default anyone who reaches the service may query it."""
    if settings.protect_reads:
        check_key(settings, key)


async def get_engine(runtime: RuntimeDep) -> Engine:
    """The loaded model, or 503 with the reason it is not loaded."""
    if runtime.engine is None:
        raise Problem(503, "model-not-ready", runtime.model_problem or "the model is not loaded")
    return runtime.engine


async def get_gallery(runtime: RuntimeDep) -> Gallery:
    """The open gallery; a Qdrant server that was down is retried here, so the service recovers by itself."""
    gallery = runtime.gallery or await run_in_threadpool(runtime.open_gallery)
    if gallery is None:
        reason = runtime.model_problem or runtime.gallery_problem or "the gallery is not open"
        raise Problem(503, "gallery-not-ready", reason)
    return gallery


EngineDep = Annotated[Engine, Depends(get_engine)]
GalleryDep = Annotated[Gallery, Depends(get_gallery)]
