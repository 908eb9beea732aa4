"""The identity gallery: enroll, add images, get, list, delete (writes need the write key when keys are set)."""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, Form, Path, Query, Response, UploadFile
from starlette.concurrency import run_in_threadpool

from app.deps import JSON_OBJECT, OPTIONAL_KEY, EngineDep, GalleryDep, RuntimeDep, require_read_key, require_write_key
from app.engine import Engine
from app.forms import images_to_rows, metadata_object
from app.gallery import Identity
from app.multipart import FormRoute, ImageFiles, image_encoding
from app.problems import IMAGE_ERRORS, PROBLEM
from app.runtime import Runtime
from app.schemas import IDENTITY_ID_PATTERN, IdentityPage, IdentityResponse, ImagesAdded
from app.thumbnails import thumbnail_jpeg

# What `next_cursor` and image ids are (gallery point ids, lowercase UUIDs): anything else is refused by the schema.
CURSOR_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
IdentityIdPath = Annotated[str, Path(pattern=IDENTITY_ID_PATTERN, description="The identity's id.")]

router = APIRouter(tags=["identities"], route_class=FormRoute)


def _stored_attributes(engine: Engine, row: np.ndarray) -> dict[str, dict[str, Any]]:
    """What the gallery keeps per image: {head: {label, score}} (filters match on label)."""
    return {head: {"label": r["label"], "score": r["score"]} for head, r in engine.decode_heads(row).items()}


def _identity_body(identity: Identity) -> IdentityResponse:
    return IdentityResponse.model_validate(identity, from_attributes=True)


async def _gallery_rows(
    images: list[UploadFile], engine: Engine, runtime: Runtime
) -> tuple[np.ndarray, list[str], list[dict[str, Any]], list[bytes] | None]:
    """What the gallery stores per uploaded image: embedding, content hash, predicted attributes, thumbnail."""
    rows, hashes = await images_to_rows(images, "images", engine, runtime.settings, runtime.decode_pool)
    embedding, probabilities = await runtime.infer(rows)
    thumbnails = None
    if runtime.settings.store_thumbnails:
        spec = engine.manifest.input
        thumbnails = await run_in_threadpool(lambda: [thumbnail_jpeg(row, spec) for row in rows])
    return embedding, hashes, [_stored_attributes(engine, row) for row in probabilities], thumbnails


@router.post(
    "/v1/identities",
    status_code=201,
    response_model=IdentityResponse,
    dependencies=[Depends(require_write_key)],
    responses={**IMAGE_ERRORS, 401: PROBLEM, 409: PROBLEM},
    openapi_extra=image_encoding("images"),
)
async def enroll(
    images: ImageFiles,
    engine: EngineDep,
    gallery: GalleryDep,
    runtime: RuntimeDep,
    identity_id: Annotated[
        str | None, Form(pattern=IDENTITY_ID_PATTERN, description="Your id for the person; generated when absent.")
    ] = None,
    name: Annotated[str | None, Form(max_length=256)] = None,
    metadata: Annotated[
        str | None, Form(description="JSON object stored with the identity.", json_schema_extra=JSON_OBJECT)
    ] = None,
) -> IdentityResponse:
    """Enroll a new identity from one or more images (409 if the id exists: add images to it instead)."""
    meta = metadata_object(metadata, runtime.settings)
    embedding, hashes, attributes, thumbnails = await _gallery_rows(images, engine, runtime)
    identity = await run_in_threadpool(
        gallery.enroll, identity_id, name, meta, embedding, hashes, attributes, thumbnails
    )
    return _identity_body(identity)


@router.post(
    "/v1/identities/{identity_id}/images",
    status_code=201,
    response_model=ImagesAdded,
    dependencies=[Depends(require_write_key)],
    responses={**IMAGE_ERRORS, 401: PROBLEM, 404: PROBLEM},
    openapi_extra=image_encoding("images"),
)
async def add_images(
    identity_id: IdentityIdPath, images: ImageFiles, engine: EngineDep, gallery: GalleryDep, runtime: RuntimeDep
) -> ImagesAdded:
    """Add images to an enrolled identity (an image it already has is not stored twice)."""
    await run_in_threadpool(gallery.get, identity_id)  # 404 before spending model time
    embedding, hashes, attributes, thumbnails = await _gallery_rows(images, engine, runtime)
    image_ids = await run_in_threadpool(gallery.add_images, identity_id, embedding, hashes, attributes, thumbnails)
    return ImagesAdded(identity_id=identity_id, image_ids=image_ids)


@router.get(
    "/v1/identities/{identity_id}",
    response_model=IdentityResponse,
    dependencies=[Depends(require_read_key)],
    responses={401: PROBLEM, 404: PROBLEM},
    openapi_extra=OPTIONAL_KEY,
)
async def get_identity(identity_id: IdentityIdPath, gallery: GalleryDep) -> IdentityResponse:
    return _identity_body(await run_in_threadpool(gallery.get, identity_id))


@router.get(
    "/v1/identities/{identity_id}/images/{image_id}/thumbnail",
    response_class=Response,
    dependencies=[Depends(require_read_key)],
    responses={
        200: {"content": {"image/jpeg": {}}, "description": "A JPEG of about 64x128"},
        401: PROBLEM,
        404: PROBLEM,
    },
    openapi_extra=OPTIONAL_KEY,
)
async def thumbnail(
    identity_id: IdentityIdPath,
    image_id: Annotated[str, Path(pattern=CURSOR_PATTERN, description="One of the identity's `image_ids`.")],
    gallery: GalleryDep,
) -> Response:
    """The small JPEG kept of one of the identity's images (404 when thumbnails were off at enroll)."""
    data = await run_in_threadpool(gallery.thumbnail, identity_id, image_id)
    return Response(content=data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})


@router.get(
    "/v1/identities",
    response_model=IdentityPage,
    dependencies=[Depends(require_read_key)],
    responses={401: PROBLEM},
    openapi_extra=OPTIONAL_KEY,
)
async def list_identities(
    gallery: GalleryDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: Annotated[
        str | None, Query(pattern=CURSOR_PATTERN, description="`next_cursor` of the previous page.")
    ] = None,
) -> IdentityPage:
    """A page of identities in a stable order; follow `next_cursor` until it is null."""
    items, next_cursor = await run_in_threadpool(gallery.list_identities, limit, cursor)
    return IdentityPage(items=[_identity_body(item) for item in items], next_cursor=next_cursor)


@router.delete(
    "/v1/identities/{identity_id}",
    status_code=204,
    dependencies=[Depends(require_write_key)],
    responses={401: PROBLEM, 404: PROBLEM},
)
async def delete_identity(identity_id: IdentityIdPath, gallery: GalleryDep) -> Response:
    """Delete an identity and every embedding of it."""
    await run_in_threadpool(gallery.delete, identity_id)
    return Response(status_code=204)
