"""The multipart form fields of the v1 endpoints: uploaded images -> model rows, and the JSON-object text fields.

Each check answers with a problem that names the offending field (`images[2]`, `filter`, `metadata`), so a client
with several uploads knows which one to fix. JSON fields are parsed strictly (`json_object`) and fully checked
before any image is decoded or anything is written.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from typing import Any

import numpy as np
from fastapi import UploadFile
from starlette.concurrency import run_in_threadpool

from app.engine import Engine
from app.gallery import INT64_MAX, INT64_MIN, check_metadata
from app.preprocess import ImageError, ImageLimits, preprocess
from app.problems import field_problem
from app.settings import Settings


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


class _NotJsonNumber(ValueError):
    """A number or constant the JSON text holds that JSON cannot carry back out (raised from a parser hook)."""


# A JSON string literal (escapes included), and the brackets that open or close a nesting level.
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")
_DEFAULT_DEPTH: int = Settings.model_fields["max_json_depth"].default


def _too_deep(text: str, max_depth: int) -> bool:
    """Whether `text` nests arrays and objects deeper than `max_depth`, counted over the text outside its strings:
    the parser recurses once per level, so 100,000 `[` must be refused before it sees them."""
    depth = 0
    for bracket in _BRACKET.finditer(_STRING.sub("", text)):
        depth += 1 if bracket.group() in "[{" else -1
        if depth > max_depth:
            return True
    return False


def _refuse_constant(name: str) -> Any:
    raise _NotJsonNumber(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NotJsonNumber(f"the number {text[:32]} does not fit a 64-bit float")
    return value


def _int64(text: str) -> int:
    """The integer, refused beyond 64 bits before Python's int() (which raises on 4,300+ digits) is tried."""
    value = int(text) if len(text.lstrip("-")) <= 19 else None
    if value is None or not INT64_MIN <= value <= INT64_MAX:
        shown = text if len(text) <= 32 else f"{text[:32]}... ({len(text)} characters)"
        raise _NotJsonNumber(f"the integer {shown} is outside the signed 64-bit range")
    return value


def json_object(raw: str | None, field: str, max_depth: int = _DEFAULT_DEPTH) -> dict[str, Any] | None:
    """A form field holding a JSON object; None when absent or blank (forms cannot send null).

    Strict: no NaN or Infinity, no number beyond 64 bits, at most `max_depth` levels; each refusal is a 422
    naming `field`, never a crash of the parser.
    """
    if raw is None or not raw.strip():
        return None
    if _too_deep(raw, max_depth):
        raise field_problem(field, f"nests deeper than {max_depth} levels")
    try:
        value = json.loads(raw, parse_constant=_refuse_constant, parse_float=_finite_float, parse_int=_int64)
    except json.JSONDecodeError as exc:
        raise field_problem(field, f"not valid JSON ({exc.msg} at position {exc.pos})") from exc
    except _NotJsonNumber as exc:
        raise field_problem(field, str(exc)) from exc
    except RecursionError as exc:  # only when max_json_depth is set beyond what the parser can recurse to
        raise field_problem(field, f"nests deeper than the parser can read ({max_depth} levels allowed)") from exc
    if not isinstance(value, dict):
        raise field_problem(field, f"must be a JSON object, got {type(value).__name__}")
    return value


def metadata_object(raw: str | None, settings: Settings) -> dict[str, Any]:
    """The `metadata` field: a strict JSON object (`json_object`) that the gallery can store and return
    (`check_metadata`: valid Unicode, `max_json_depth` levels, `max_metadata_bytes`), checked before any image
    is decoded or anything is written."""
    value = json_object(raw, "metadata", settings.max_json_depth) or {}
    try:
        return check_metadata(value, settings.max_metadata_bytes, settings.max_json_depth)
    except ValueError as exc:
        raise field_problem("metadata", str(exc)) from exc


def attribute_filter(raw: str | None, engine: Engine, max_depth: int = _DEFAULT_DEPTH) -> dict[str, str] | None:
    """`{"gender": "female"}`: every key a head of the model, every value one of that head's labels."""
    value = json_object(raw, "filter", max_depth)
    if value is None:
        return None
    heads = engine.manifest.heads
    for head, label in value.items():
        if head not in heads:
            raise field_problem("filter", f"unknown attribute {head[:64]!r}; the model has {sorted(heads)}")
        if not isinstance(label, str) or label not in heads[head].labels:
            shown = repr(label[:64]) if isinstance(label, str) else f"a {type(label).__name__}"
            raise field_problem("filter", f"{head} has no label {shown}; choose one of {heads[head].labels}")
    return value
