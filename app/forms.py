"""The multipart form fields of the v1 endpoints: uploaded images -> model rows, and the JSON-object text fields.

Each check answers with a problem that names the offending field (`images[2]`, `filter`), so a client with
several uploads knows which one to fix.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any

import numpy as np
from fastapi import File, UploadFile
from starlette.concurrency import run_in_threadpool

from app.engine import Engine
from app.preprocess import ImageError, ImageLimits, preprocess
from app.problems import field_problem
from app.settings import Settings

ImageFile = Annotated[UploadFile, File(description="A person crop: JPEG, PNG, WebP, BMP, TIFF or GIF (first frame).")]
ImageFiles = Annotated[list[UploadFile], File(description="One or more person crops of the same person.")]


async def read_upload(upload: UploadFile, field: str, settings: Settings) -> bytes:
    """The upload's bytes, never more than the limit (the body limit already stopped the stream near it)."""
    limit = settings.max_upload_bytes
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise field_problem(field, f"the file is larger than {limit} bytes", 413, "upload-too-large")
    return data


def _preprocess_all(blobs: list[bytes], fields: list[str], engine: Engine, settings: Settings) -> np.ndarray:
    """Decoding is CPU work: one worker-thread hop for all of a request's images, not one each."""
    limits = ImageLimits(max_pixels=settings.max_image_pixels, min_side=settings.min_image_side)
    rows = []
    for data, field in zip(blobs, fields, strict=True):
        try:
            rows.append(preprocess(data, engine.manifest.input, limits))
        except ImageError as exc:
            raise field_problem(field, exc.detail, exc.status, exc.kind) from exc
    return np.stack(rows)


async def images_to_rows(
    uploads: list[UploadFile], field: str, engine: Engine, settings: Settings
) -> tuple[np.ndarray, list[str]]:
    """Read, validate and preprocess uploads; returns model rows and the sha256 of each file."""
    if len(uploads) > settings.max_images_per_request:
        raise field_problem(field, f"at most {settings.max_images_per_request} images per request, got {len(uploads)}")
    fields = [field if len(uploads) == 1 and field == "image" else f"{field}[{i}]" for i in range(len(uploads))]
    blobs = [await read_upload(upload, name, settings) for upload, name in zip(uploads, fields, strict=True)]
    rows = await run_in_threadpool(_preprocess_all, blobs, fields, engine, settings)
    return rows, [hashlib.sha256(data).hexdigest() for data in blobs]


def json_object(raw: str | None, field: str) -> dict[str, Any] | None:
    """A form field holding a JSON object; None when absent or blank (forms cannot send null)."""
    if raw is None or not raw.strip():
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise field_problem(field, f"not valid JSON ({exc.msg} at position {exc.pos})") from exc
    if not isinstance(value, dict):
        raise field_problem(field, f"must be a JSON object, got {type(value).__name__}")
    return value


def attribute_filter(raw: str | None, engine: Engine) -> dict[str, str] | None:
    """`{"gender": "female"}`: every key a head of the model, every value one of that head's labels."""
    value = json_object(raw, "filter")
    if value is None:
        return None
    heads = engine.manifest.heads
    for head, label in value.items():
        if head not in heads:
            raise field_problem("filter", f"unknown attribute {head!r}; the model has {sorted(heads)}")
        if label not in heads[head].labels:
            raise field_problem("filter", f"{head} has no label {label!r}; choose one of {heads[head].labels}")
    return value
