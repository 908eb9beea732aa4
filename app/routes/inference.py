"""Model endpoints: attributes, embedding, search of the gallery, and which model is served."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form
from starlette.concurrency import run_in_threadpool

from app.deps import EngineDep, GalleryDep, RuntimeDep, require_read_key
from app.forms import ImageFile, attribute_filter, images_to_rows
from app.problems import IMAGE_ERRORS
from app.schemas import AttributesResponse, EmbeddingResponse, MatchResponse, ModelResponse, SearchResponse

router = APIRouter()


@router.post(
    "/v1/attributes",
    response_model=AttributesResponse,
    tags=["inference"],
    dependencies=[Depends(require_read_key)],
    responses=IMAGE_ERRORS,
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
    responses=IMAGE_ERRORS,
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
    responses=IMAGE_ERRORS,
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
        Form(alias="filter", description='JSON object of attribute labels every match must have: {"gender": "female"}'),
    ] = None,
) -> SearchResponse:
    """Enrolled identities closest to the person in the image, best first."""
    constraints = attribute_filter(filter_, engine)
    rows, _ = await images_to_rows([image], "image", engine, runtime.settings)
    embedding, _ = await runtime.infer(rows)
    matches = await run_in_threadpool(gallery.search, embedding[0], top_k, min_score, constraints)
    return SearchResponse(
        model_id=engine.model_id, matches=[MatchResponse.model_validate(m, from_attributes=True) for m in matches]
    )


@router.get("/v1/model", response_model=ModelResponse, tags=["service"], dependencies=[Depends(require_read_key)])
async def model(engine: EngineDep) -> ModelResponse:
    """The model being served: its manifest (without the training config) and the execution providers in use."""
    manifest = engine.manifest
    return ModelResponse(
        model_id=manifest.model_id, name=manifest.name, providers=engine.providers, manifest=manifest.public()
    )
