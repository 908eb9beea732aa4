"""Model endpoints: attributes, embedding and gallery search of one crop or a batch, person boxes of a whole frame,
and which model is served."""

from __future__ import annotations

from typing import Annotated

import numpy as np
from fastapi import APIRouter, Depends, File, Form, Query, UploadFile
from starlette.concurrency import run_in_threadpool

from app.deps import JSON_LABELS, OPTIONAL_KEY, EngineDep, GalleryDep, RuntimeDep, get_gallery, require_read_key
from app.engine import Engine
from app.forms import attribute_filter, frame_to_rows, images_to_rows, person_boxes
from app.gallery import Match
from app.multipart import BatchImages, FormRoute, OneImage, image_encoding, image_or_batch
from app.problems import IMAGE_ERRORS, PROBLEM, Problem
from app.runtime import Runtime
from app.schemas import (
    AttributesBatchResponse,
    AttributesResponse,
    AttributesResult,
    DescriptionSearchResponse,
    EmbeddingBatchResponse,
    EmbeddingResponse,
    EmbeddingResult,
    FrameResponse,
    FrameResult,
    MatchResponse,
    ModelResponse,
    SearchBatchResponse,
    SearchResponse,
    SearchResult,
)

router = APIRouter(route_class=FormRoute)
# Each image endpoint: open unless reads are protected; one crop as `image` or several as `images`.
IMAGE_READ = {**OPTIONAL_KEY, **image_encoding("image", "images")}
TopK = Annotated[int, Form(ge=1, le=100, description="How many identities to return.")]
MinScore = Annotated[float | None, Form(ge=-1, le=1, description="Drop matches below this cosine.")]
Filter = Annotated[
    str | None,
    Form(
        alias="filter",
        description='JSON object of attribute labels every match must have: {"gender": "female"}',
        json_schema_extra=JSON_LABELS,
    ),
]


async def _infer(
    image: UploadFile | None, images: list[UploadFile] | None, engine: Engine, runtime: Runtime
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Embeddings and attribute probabilities of the request's crops (model calls of at most max_batch_size rows),
    and whether it was a batch."""
    uploads, field = image_or_batch(image, images)
    rows, _ = await images_to_rows(uploads, field, engine, runtime.settings, runtime.decode_pool)
    embedding, probabilities = await runtime.infer(rows)
    return embedding, probabilities, field == "images"


def _matches(found: list[Match]) -> list[MatchResponse]:
    return [MatchResponse.model_validate(m, from_attributes=True) for m in found]


@router.post(
    "/v1/attributes",
    response_model=AttributesResponse | AttributesBatchResponse,
    tags=["inference"],
    dependencies=[Depends(require_read_key)],
    responses={**IMAGE_ERRORS, 401: PROBLEM},
    openapi_extra=IMAGE_READ,
)
async def attributes(
    engine: EngineDep, runtime: RuntimeDep, image: OneImage = None, images: BatchImages = None
) -> AttributesResponse | AttributesBatchResponse:
    """Attributes of a person crop, grouped (age, gender, hair, upper/lower body, accessories); of each crop with
    `images`."""
    _, probabilities, batch = await _infer(image, images, engine, runtime)
    decoded = [engine.decode_attributes(row) for row in probabilities]
    if not batch:
        return AttributesResponse(model_id=engine.model_id, attributes=decoded[0])
    results = [AttributesResult(attributes=attributes) for attributes in decoded]
    return AttributesBatchResponse(model_id=engine.model_id, results=results)


@router.post(
    "/v1/embeddings",
    response_model=EmbeddingResponse | EmbeddingBatchResponse,
    tags=["inference"],
    dependencies=[Depends(require_read_key)],
    responses={**IMAGE_ERRORS, 401: PROBLEM},
    openapi_extra=IMAGE_READ,
)
async def embeddings(
    engine: EngineDep, runtime: RuntimeDep, image: OneImage = None, images: BatchImages = None
) -> EmbeddingResponse | EmbeddingBatchResponse:
    """The re-identification embedding (L2-normalised: compare with a dot product); of each crop with `images`."""
    embedding, _, batch = await _infer(image, images, engine, runtime)
    dim = int(embedding.shape[1])
    if not batch:
        return EmbeddingResponse(embedding=embedding[0].tolist(), dim=dim, model_id=engine.model_id)
    results = [EmbeddingResult(embedding=row) for row in embedding.tolist()]
    return EmbeddingBatchResponse(model_id=engine.model_id, dim=dim, results=results)


@router.post(
    "/v1/search",
    response_model=SearchResponse | SearchBatchResponse,
    tags=["inference"],
    dependencies=[Depends(require_read_key)],
    responses={**IMAGE_ERRORS, 401: PROBLEM},
    openapi_extra=IMAGE_READ,
)
async def search(
    engine: EngineDep,
    gallery: GalleryDep,
    runtime: RuntimeDep,
    image: OneImage = None,
    images: BatchImages = None,
    top_k: TopK = 5,
    min_score: MinScore = None,
    filter_: Filter = None,
) -> SearchResponse | SearchBatchResponse:
    """Enrolled identities closest to the person in the image, best first; per crop with `images`."""
    constraints = attribute_filter(filter_, engine, runtime.settings.max_json_depth)
    embedding, _, batch = await _infer(image, images, engine, runtime)
    found = await run_in_threadpool(lambda: [gallery.search(row, top_k, min_score, constraints) for row in embedding])
    if not batch:
        return SearchResponse(model_id=engine.model_id, matches=_matches(found[0]))
    return SearchBatchResponse(model_id=engine.model_id, results=[SearchResult(matches=_matches(m)) for m in found])


@router.post(
    "/v1/frames",
    response_model=FrameResponse,
    tags=["inference"],
    dependencies=[Depends(require_read_key)],
    responses={**IMAGE_ERRORS, 401: PROBLEM},
    openapi_extra={**OPTIONAL_KEY, **image_encoding("frame")},
)
async def frame(
    frame: Annotated[UploadFile, File(description="A whole camera frame (any accepted image format).")],
    boxes: Annotated[
        str,
        Form(
            description="JSON array of person boxes from your detector, [[x1, y1, x2, y2], ...] in the upright "
            "frame's pixels; each is cut with the training crops' framing (docs/api.md).",
            json_schema_extra={"contentMediaType": "application/json"},
        ),
    ],
    engine: EngineDep,
    runtime: RuntimeDep,
    top_k: Annotated[int, Form(ge=0, le=100, description="Identities to return per box; 0 = no search.")] = 5,
    min_score: MinScore = None,
    filter_: Filter = None,
) -> FrameResponse:
    """Attributes, embedding and gallery matches of every person box of one frame (model calls of at most
    max_batch_size rows)."""
    settings = runtime.settings
    constraints = attribute_filter(filter_, engine, settings.max_json_depth)
    person = person_boxes(boxes, settings)
    gallery = await get_gallery(runtime) if top_k else None
    rows, crops, (width, height) = await frame_to_rows(frame, person, engine, settings, runtime.decode_pool)
    embedding, probabilities = await runtime.infer(rows)
    found: list[list[Match] | None] = [None] * len(person)
    if gallery is not None:
        found = await run_in_threadpool(lambda: [gallery.search(e, top_k, min_score, constraints) for e in embedding])
    results = [
        FrameResult(
            box=list(box),
            crop=list(crop),
            attributes=engine.decode_attributes(row),
            embedding=vector,
            matches=None if matches is None else _matches(matches),
        )
        for box, crop, row, vector, matches in zip(person, crops, probabilities, embedding.tolist(), found, strict=True)
    ]
    return FrameResponse(
        model_id=engine.model_id, width=width, height=height, dim=int(embedding.shape[1]), results=results
    )


@router.get(
    "/v1/search/attributes",
    response_model=DescriptionSearchResponse,
    tags=["inference"],
    dependencies=[Depends(require_read_key)],
    responses={401: PROBLEM, 422: PROBLEM},
    openapi_extra=OPTIONAL_KEY,
)
async def search_by_description(
    engine: EngineDep,
    gallery: GalleryDep,
    runtime: RuntimeDep,
    filter_: Annotated[
        str,
        Query(
            alias="filter",
            min_length=2,
            description='JSON object of the attribute labels to find: {"upper_color": "red", "backpack": "yes"}',
            json_schema_extra=JSON_LABELS,
        ),
    ],
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> DescriptionSearchResponse:
    """Identities described by their attributes alone (no image), most confident first, page by page."""
    constraints = attribute_filter(filter_, engine, runtime.settings.max_json_depth)
    if not constraints:
        raise Problem(422, "invalid-request", "describe at least one attribute: filter is an empty object")
    matches, next_offset = await run_in_threadpool(gallery.search_attributes, constraints, limit, offset)
    return DescriptionSearchResponse(matches=_matches(matches), next_offset=next_offset)


@router.get(
    "/v1/model",
    response_model=ModelResponse,
    tags=["service"],
    dependencies=[Depends(require_read_key)],
    responses={401: PROBLEM},
    openapi_extra=OPTIONAL_KEY,
)
async def model(engine: EngineDep) -> ModelResponse:
    """The model being served: its manifest (without the training config) and the execution providers in use."""
    manifest = engine.manifest
    return ModelResponse(
        model_id=manifest.model_id, name=manifest.name, providers=engine.providers, manifest=manifest.public()
    )
