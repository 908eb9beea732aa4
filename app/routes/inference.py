"""Model endpoints: attributes, embedding, search of the gallery, and which model is served."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Query
from starlette.concurrency import run_in_threadpool

from app.deps import JSON_LABELS, OPTIONAL_KEY, EngineDep, GalleryDep, RuntimeDep, require_read_key
from app.forms import attribute_filter, images_to_rows
from app.multipart import FormRoute, ImageFile, image_encoding
from app.problems import IMAGE_ERRORS, PROBLEM, Problem
from app.schemas import (
    AttributesResponse,
    DescriptionSearchResponse,
    EmbeddingResponse,
    MatchResponse,
    ModelResponse,
    SearchResponse,
)

router = APIRouter(route_class=FormRoute)
# Each image endpoint: open unless reads are protected, one image part.
IMAGE_READ = {**OPTIONAL_KEY, **image_encoding("image")}


@router.post(
    "/v1/attributes",
    response_model=AttributesResponse,
    tags=["inference"],
    dependencies=[Depends(require_read_key)],
    responses={**IMAGE_ERRORS, 401: PROBLEM},
    openapi_extra=IMAGE_READ,
)
async def attributes(image: ImageFile, engine: EngineDep, runtime: RuntimeDep) -> AttributesResponse:
    """Attributes of a person crop, grouped (age, gender, hair, upper/lower body, accessories)."""
    rows, _ = await images_to_rows([image], "image", engine, runtime.settings)
    _, probabilities = await runtime.infer(rows)
    return AttributesResponse(model_id=engine.model_id, attributes=engine.decode_attributes(probabilities[0]))


@router.post(
    "/v1/embeddings",
    response_model=EmbeddingResponse,
    tags=["inference"],
    dependencies=[Depends(require_read_key)],
    responses={**IMAGE_ERRORS, 401: PROBLEM},
    openapi_extra=IMAGE_READ,
)
async def embeddings(image: ImageFile, engine: EngineDep, runtime: RuntimeDep) -> EmbeddingResponse:
    """The re-identification embedding (L2-normalised: compare with a dot product)."""
    rows, _ = await images_to_rows([image], "image", engine, runtime.settings)
    embedding, _ = await runtime.infer(rows)
    return EmbeddingResponse(embedding=embedding[0].tolist(), dim=int(embedding.shape[1]), model_id=engine.model_id)


@router.post(
    "/v1/search",
    response_model=SearchResponse,
    tags=["inference"],
    dependencies=[Depends(require_read_key)],
    responses={**IMAGE_ERRORS, 401: PROBLEM},
    openapi_extra=IMAGE_READ,
)
async def search(
    image: ImageFile,
    engine: EngineDep,
    gallery: GalleryDep,
    runtime: RuntimeDep,
    top_k: Annotated[int, Form(ge=1, le=100, description="How many identities to return.")] = 5,
    min_score: Annotated[float | None, Form(ge=-1, le=1, description="Drop matches below this cosine.")] = None,
    filter_: Annotated[
        str | None,
        Form(
            alias="filter",
            description='JSON object of attribute labels every match must have: {"gender": "female"}',
            json_schema_extra=JSON_LABELS,
        ),
    ] = None,
) -> SearchResponse:
    """Enrolled identities closest to the person in the image, best first."""
    constraints = attribute_filter(filter_, engine, runtime.settings.max_json_depth)
    rows, _ = await images_to_rows([image], "image", engine, runtime.settings)
    embedding, _ = await runtime.infer(rows)
    matches = await run_in_threadpool(gallery.search, embedding[0], top_k, min_score, constraints)
    return SearchResponse(
        model_id=engine.model_id, matches=[MatchResponse.model_validate(m, from_attributes=True) for m in matches]
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
    return DescriptionSearchResponse(
        matches=[MatchResponse.model_validate(m, from_attributes=True) for m in matches], next_offset=next_offset
    )


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
