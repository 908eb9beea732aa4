"""The v1 endpoints and the probes (docs/api.md has a curl example of each)."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, File, Form, Path, Query, Request, Response, UploadFile
from fastapi.security import APIKeyHeader
from starlette.concurrency import run_in_threadpool

from app.engine import Engine
from app.gallery import Gallery, GalleryError, Identity
from app.preprocess import ImageError, ImageLimits, preprocess
from app.problems import Problem, field_problem, problem_response
from app.schemas import (
    IDENTITY_ID_PATTERN,
    AttributesResponse,
    EmbeddingResponse,
    HealthResponse,
    IdentityPage,
    IdentityResponse,
    ImagesAdded,
    MatchResponse,
    ModelResponse,
    ReadyResponse,
    SearchResponse,
)

if TYPE_CHECKING:
    from app.main import Runtime
    from app.settings import Settings

api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="Required when API keys are set.")

PROBLEM = {"content": {"application/problem+json": {}}, "description": "RFC 9457 problem details"}
COMMON_ERRORS: dict[int | str, dict[str, Any]] = {422: PROBLEM, 503: PROBLEM}
IMAGE_ERRORS: dict[int | str, dict[str, Any]] = {**COMMON_ERRORS, 413: PROBLEM, 415: PROBLEM}


def _runtime(request: Request) -> Runtime:
    return request.app.state.runtime


def _check_key(request: Request, given: str | None) -> None:
    """Compare against every key (no early exit), so timing does not tell which prefix matched."""
    keys = request.app.state.settings.api_keys
    if not keys:
        return
    supplied = (given or "").encode()
    matches = [hmac.compare_digest(key.get_secret_value().encode(), supplied) for key in keys]
    if not any(matches):
        reason = "missing X-API-Key header" if given is None else "invalid API key"
        raise Problem(401, "unauthorized", reason, headers={"WWW-Authenticate": 'APIKey header="X-API-Key"'})


async def require_write_key(request: Request, key: Annotated[str | None, Depends(api_key_header)]) -> None:
    _check_key(request, key)


async def require_read_key(request: Request, key: Annotated[str | None, Depends(api_key_header)]) -> None:
    if request.app.state.settings.protect_reads:
        _check_key(request, key)


async def engine_of(request: Request) -> Engine:  # async: no worker-thread hop per request
    runtime = _runtime(request)
    if runtime.engine is None:
        raise Problem(503, "model-not-ready", runtime.model_problem or "the model is not loaded")
    return runtime.engine


async def gallery_of(request: Request) -> Gallery:
    runtime = _runtime(request)
    gallery = runtime.gallery or await run_in_threadpool(runtime.open_gallery)  # retries a server that was down
    if gallery is None:
        reason = runtime.model_problem or runtime.gallery_problem or "the gallery is not open"
        raise Problem(503, "gallery-not-ready", reason)
    return gallery


EngineDep = Annotated[Engine, Depends(engine_of)]
GalleryDep = Annotated[Gallery, Depends(gallery_of)]
IdentityIdPath = Annotated[str, Path(pattern=IDENTITY_ID_PATTERN, description="The identity's id.")]


async def _read_upload(upload: UploadFile, field: str, settings: Settings) -> bytes:
    """The upload's bytes, never more than the limit (the body limit already stopped the stream near it)."""
    limit = settings.max_upload_bytes
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise field_problem(field, f"the file is larger than {limit} bytes", 413, "upload-too-large")
    return data


def _preprocess_all(blobs: list[bytes], fields: list[str], engine: Engine, settings: Settings) -> np.ndarray:
    limits = ImageLimits(max_pixels=settings.max_image_pixels, min_side=settings.min_image_side)
    rows = []
    for data, field in zip(blobs, fields, strict=True):
        try:
            rows.append(preprocess(data, engine.manifest.input, limits))
        except ImageError as exc:
            raise field_problem(field, exc.detail, exc.status, exc.kind) from exc
    return np.stack(rows)


async def _images_to_rows(
    uploads: list[UploadFile], field: str, engine: Engine, settings: Settings
) -> tuple[np.ndarray, list[str]]:
    """Read, validate and preprocess uploads; returns model rows and the sha256 of each file."""
    if len(uploads) > settings.max_images_per_request:
        raise field_problem(field, f"at most {settings.max_images_per_request} images per request, got {len(uploads)}")
    fields = [field if len(uploads) == 1 and field == "image" else f"{field}[{i}]" for i in range(len(uploads))]
    blobs = [await _read_upload(upload, name, settings) for upload, name in zip(uploads, fields, strict=True)]
    rows = await run_in_threadpool(_preprocess_all, blobs, fields, engine, settings)
    return rows, [hashlib.sha256(data).hexdigest() for data in blobs]


def _json_object(raw: str | None, field: str) -> dict[str, Any] | None:
    if raw is None or not raw.strip():
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise field_problem(field, f"not valid JSON ({exc.msg} at position {exc.pos})") from exc
    if not isinstance(value, dict):
        raise field_problem(field, f"must be a JSON object, got {type(value).__name__}")
    return value


def _attribute_filter(raw: str | None, engine: Engine) -> dict[str, str] | None:
    """`{"gender": "female"}`: every key a head of the model, every value one of that head's labels."""
    value = _json_object(raw, "filter")
    if value is None:
        return None
    heads = engine.manifest.heads
    for head, label in value.items():
        if head not in heads:
            raise field_problem("filter", f"unknown attribute {head!r}; the model has {sorted(heads)}")
        if label not in heads[head].labels:
            raise field_problem("filter", f"{head} has no label {label!r}; choose one of {heads[head].labels}")
    return value


def _stored_attributes(engine: Engine, row: np.ndarray) -> dict[str, dict[str, Any]]:
    """What the gallery keeps per image: {head: {label, score}} (filters match on label)."""
    return {head: {"label": r["label"], "score": r["score"]} for head, r in engine.decode_heads(row).items()}


def _identity_body(identity: Identity) -> IdentityResponse:
    return IdentityResponse.model_validate(identity, from_attributes=True)


router = APIRouter(responses=COMMON_ERRORS)

ImageFile = Annotated[UploadFile, File(description="A person crop: JPEG, PNG, WebP, BMP, TIFF or GIF (first frame).")]
ImageFiles = Annotated[list[UploadFile], File(description="One or more person crops of the same person.")]


@router.post(
    "/v1/attributes",
    response_model=AttributesResponse,
    tags=["inference"],
    dependencies=[Depends(require_read_key)],
    responses=IMAGE_ERRORS,
)
async def attributes(request: Request, image: ImageFile, engine: EngineDep) -> AttributesResponse:
    """Attributes of a person crop, grouped (age, gender, hair, upper/lower body, accessories)."""
    rows, _ = await _images_to_rows([image], "image", engine, request.app.state.settings)
    _, probabilities = await _runtime(request).infer(rows)
    return AttributesResponse(model_id=engine.model_id, attributes=engine.decode_attributes(probabilities[0]))


@router.post(
    "/v1/embeddings",
    response_model=EmbeddingResponse,
    tags=["inference"],
    dependencies=[Depends(require_read_key)],
    responses=IMAGE_ERRORS,
)
async def embeddings(request: Request, image: ImageFile, engine: EngineDep) -> EmbeddingResponse:
    """The re-identification embedding (L2-normalised: compare with a dot product)."""
    rows, _ = await _images_to_rows([image], "image", engine, request.app.state.settings)
    embedding, _ = await _runtime(request).infer(rows)
    return EmbeddingResponse(embedding=embedding[0].tolist(), dim=int(embedding.shape[1]), model_id=engine.model_id)


@router.post(
    "/v1/search",
    response_model=SearchResponse,
    tags=["inference"],
    dependencies=[Depends(require_read_key)],
    responses=IMAGE_ERRORS,
)
async def search(
    request: Request,
    image: ImageFile,
    engine: EngineDep,
    gallery: GalleryDep,
    top_k: Annotated[int, Form(ge=1, le=100, description="How many identities to return.")] = 5,
    min_score: Annotated[float | None, Form(ge=-1, le=1, description="Drop matches below this cosine.")] = None,
    filter_: Annotated[
        str | None,
        Form(alias="filter", description='JSON object of attribute labels every match must have: {"gender": "female"}'),
    ] = None,
) -> SearchResponse:
    """Enrolled identities closest to the person in the image, best first."""
    constraints = _attribute_filter(filter_, engine)
    rows, _ = await _images_to_rows([image], "image", engine, request.app.state.settings)
    embedding, _ = await _runtime(request).infer(rows)
    matches = await run_in_threadpool(gallery.search, embedding[0], top_k, min_score, constraints)
    return SearchResponse(
        model_id=engine.model_id, matches=[MatchResponse.model_validate(m, from_attributes=True) for m in matches]
    )


async def _gallery_rows(
    request: Request, images: list[UploadFile], engine: Engine
) -> tuple[np.ndarray, list[str], list[dict]]:
    """What the gallery stores per uploaded image: embedding, content hash, predicted attributes."""
    rows, hashes = await _images_to_rows(images, "images", engine, request.app.state.settings)
    embedding, probabilities = await _runtime(request).infer(rows)
    return embedding, hashes, [_stored_attributes(engine, row) for row in probabilities]


@router.post(
    "/v1/identities",
    status_code=201,
    response_model=IdentityResponse,
    tags=["identities"],
    dependencies=[Depends(require_write_key)],
    responses={**IMAGE_ERRORS, 401: PROBLEM, 409: PROBLEM},
)
async def enroll(
    request: Request,
    images: ImageFiles,
    engine: EngineDep,
    gallery: GalleryDep,
    identity_id: Annotated[
        str | None, Form(pattern=IDENTITY_ID_PATTERN, description="Your id for the person; generated when absent.")
    ] = None,
    name: Annotated[str | None, Form(max_length=256)] = None,
    metadata: Annotated[str | None, Form(description="JSON object stored with the identity.")] = None,
) -> IdentityResponse:
    """Enroll a new identity from one or more images (409 if the id exists: add images to it instead)."""
    meta = _json_object(metadata, "metadata") or {}
    embedding, hashes, attributes = await _gallery_rows(request, images, engine)
    identity = await run_in_threadpool(gallery.enroll, identity_id, name, meta, embedding, hashes, attributes)
    return _identity_body(identity)


@router.post(
    "/v1/identities/{identity_id}/images",
    status_code=201,
    response_model=ImagesAdded,
    tags=["identities"],
    dependencies=[Depends(require_write_key)],
    responses={**IMAGE_ERRORS, 401: PROBLEM, 404: PROBLEM},
)
async def add_images(
    request: Request, identity_id: IdentityIdPath, images: ImageFiles, engine: EngineDep, gallery: GalleryDep
) -> ImagesAdded:
    """Add images to an enrolled identity (an image it already has is not stored twice)."""
    await run_in_threadpool(gallery.get, identity_id)  # 404 before spending model time
    embedding, hashes, attributes = await _gallery_rows(request, images, engine)
    image_ids = await run_in_threadpool(gallery.add_images, identity_id, embedding, hashes, attributes)
    return ImagesAdded(identity_id=identity_id, image_ids=image_ids)


@router.get(
    "/v1/identities/{identity_id}",
    response_model=IdentityResponse,
    tags=["identities"],
    dependencies=[Depends(require_read_key)],
    responses={404: PROBLEM},
)
async def get_identity(identity_id: IdentityIdPath, gallery: GalleryDep) -> IdentityResponse:
    return _identity_body(await run_in_threadpool(gallery.get, identity_id))


@router.get(
    "/v1/identities", response_model=IdentityPage, tags=["identities"], dependencies=[Depends(require_read_key)]
)
async def list_identities(
    gallery: GalleryDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: Annotated[str | None, Query(max_length=64, description="`next_cursor` of the previous page.")] = None,
) -> IdentityPage:
    """A page of identities in a stable order; follow `next_cursor` until it is null."""
    items, next_cursor = await run_in_threadpool(gallery.list, limit, cursor)
    return IdentityPage(items=[_identity_body(item) for item in items], next_cursor=next_cursor)


@router.delete(
    "/v1/identities/{identity_id}",
    status_code=204,
    tags=["identities"],
    dependencies=[Depends(require_write_key)],
    responses={401: PROBLEM, 404: PROBLEM},
)
async def delete_identity(identity_id: IdentityIdPath, gallery: GalleryDep) -> Response:
    """Delete an identity and every embedding of it."""
    await run_in_threadpool(gallery.delete, identity_id)
    return Response(status_code=204)


@router.get("/v1/model", response_model=ModelResponse, tags=["service"], dependencies=[Depends(require_read_key)])
async def model(engine: EngineDep) -> ModelResponse:
    """The model being served: its manifest (without the training config) and the execution providers in use."""
    manifest = engine.manifest
    return ModelResponse(
        model_id=manifest.model_id, name=manifest.name, providers=engine.providers, manifest=manifest.public()
    )


@router.get("/healthz", response_model=HealthResponse, tags=["service"])
async def healthz() -> HealthResponse:
    """200 while the process serves HTTP (liveness)."""
    return HealthResponse(status="alive")


@router.get("/readyz", response_model=ReadyResponse, tags=["service"])
async def readyz(request: Request) -> Any:
    """200 when the model and the gallery are ready; otherwise 503 with the reason (readiness)."""
    runtime = _runtime(request)
    gallery = await run_in_threadpool(runtime.open_gallery)
    reason = runtime.model_problem or runtime.gallery_problem
    if runtime.engine is None or gallery is None:
        checks = {"model": runtime.model_problem or "ok", "gallery": runtime.gallery_problem or "not open"}
        return problem_response(503, "not-ready", reason or "the gallery is not open", extra={"checks": checks})
    counts = await run_in_threadpool(gallery.count)
    return ReadyResponse(
        status="ready", model_id=runtime.engine.model_id, providers=runtime.engine.providers, gallery=counts
    )


@router.get("/metrics", tags=["service"], response_class=Response)
async def metrics(request: Request) -> Response:
    """Prometheus text: requests per route, latency, batch sizes, inference time, gallery size."""
    runtime = _runtime(request)
    if runtime.gallery is not None:
        # a scrape must not fail because Qdrant hiccups; the gauges keep their last value
        with contextlib.suppress(GalleryError):
            runtime.metrics.set_gallery(await run_in_threadpool(runtime.gallery.count))
    return Response(runtime.metrics.render(), media_type=runtime.metrics.content_type)
