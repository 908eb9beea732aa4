"""The multipart form fields of the v1 endpoints: uploaded images -> model rows, and the JSON-object text fields.

Each check answers with a problem that names the offending field (`images[2]`, `filter`, `metadata`), so a client
with several uploads knows which one to fix. JSON fields are parsed strictly (`json_object`) and fully checked
before any image is decoded or anything is written.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import itertools
import json
import math
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from fastapi import UploadFile

from app.engine import Engine
from app.gallery import INT64_MAX, INT64_MIN, check_metadata
from app.preprocess import ImageError, ImageLimits, preprocess, preprocess_crops, read_header, upright_size
from app.problems import Problem, field_problem
from app.settings import Settings
from personid.imaging import Box


async def read_upload(upload: UploadFile, field: str, settings: Settings) -> bytes:
    """The upload's bytes, never more than the limit (the body limit already stopped the stream near it)."""
    limit = settings.max_upload_bytes
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise field_problem(field, f"the file is larger than {limit} bytes", 413, "upload-too-large")
    return data


def _preprocess_some(
    blobs: list[bytes], fields: list[str], engine: Engine, settings: Settings
) -> tuple[list[np.ndarray], list[tuple[str, ImageError]]]:
    """Model rows of the images that are acceptable, and what is wrong with each of the others."""
    limits = ImageLimits(max_pixels=settings.max_image_pixels, min_side=settings.min_image_side)
    rows, failures = [], []
    for data, field in zip(blobs, fields, strict=True):
        try:
            rows.append(preprocess(data, engine.manifest.input, limits))
        except ImageError as exc:
            failures.append((field, exc))
    return rows, failures


async def _preprocess_all(
    blobs: list[bytes], fields: list[str], engine: Engine, settings: Settings, pool: ThreadPoolExecutor | None
) -> np.ndarray:
    """Decoding is CPU work, done in worker threads: one hop for one image, the images of a batch split over the
    `pool`'s threads (one per core), in order. Every image is tried, so a refusal names each bad one (`images[3]`,
    `images[7]`) and the client fixes them all at once."""
    loop = asyncio.get_running_loop()
    parts = min(len(blobs), settings.threads if pool else 1)
    bounds = [len(blobs) * k // parts for k in range(parts + 1)]
    done = await asyncio.gather(
        *(
            loop.run_in_executor(pool, _preprocess_some, blobs[a:b], fields[a:b], engine, settings)
            for a, b in itertools.pairwise(bounds)
        )
    )
    failures = [failure for _, part_failures in done for failure in part_failures]
    if failures:
        first = failures[0][1]
        errors = [{"field": name, "message": exc.detail} for name, exc in failures]
        detail = "; ".join(f"{name}: {exc.detail}" for name, exc in failures)
        raise Problem(first.status, first.kind, detail, errors=errors)
    return np.stack([row for rows, _ in done for row in rows])


def image_fields(field: str, count: int) -> list[str]:
    """How each upload is named in problems: `image` alone, else `images[0]`, `images[1]`, ..."""
    return [field if count == 1 and field == "image" else f"{field}[{i}]" for i in range(count)]


async def images_to_rows(
    uploads: list[UploadFile],
    field: str,
    engine: Engine,
    settings: Settings,
    pool: ThreadPoolExecutor | None = None,
) -> tuple[np.ndarray, list[str]]:
    """Read, validate and preprocess uploads; returns model rows and the sha256 of each file.

    `pool` is the app's decoding pool (`Runtime.decode_pool`, one thread per core); without it asyncio's default
    executor decodes. Bounded because 64 concurrent requests decoding on 40 threads at once preempt ONNX Runtime's
    own threads in the middle of a model call."""
    if len(uploads) > settings.max_images_per_request:
        raise field_problem(field, f"at most {settings.max_images_per_request} images per request, got {len(uploads)}")
    fields = image_fields(field, len(uploads))
    blobs = [await read_upload(upload, name, settings) for upload, name in zip(uploads, fields, strict=True)]
    rows = await _preprocess_all(blobs, fields, engine, settings, pool)
    return rows, [hashlib.sha256(data).hexdigest() for data in blobs]


def person_boxes(raw: str, settings: Settings) -> list[Box]:
    """The `boxes` field: a JSON array of `[x1, y1, x2, y2]` person boxes in frame pixels (x right, y down), each
    side at least `min_image_side`; a refusal names the box (`boxes[3]`). Checked before the frame is decoded."""
    value = json_value(raw, "boxes", settings.max_json_depth)
    if not isinstance(value, list) or not value:
        raise field_problem("boxes", "must be a non-empty JSON array of [x1, y1, x2, y2] boxes")
    if len(value) > settings.max_boxes_per_frame:
        raise field_problem("boxes", f"at most {settings.max_boxes_per_frame} boxes per frame, got {len(value)}")
    boxes = []
    for index, box in enumerate(value):
        field = f"boxes[{index}]"
        numbers = isinstance(box, list) and all(isinstance(v, int | float) and not isinstance(v, bool) for v in box)
        if not numbers or len(box) != 4:
            raise field_problem(field, "must be [x1, y1, x2, y2]: four numbers, pixels of the frame")
        x1, y1, x2, y2 = (float(v) for v in box)
        side = settings.min_image_side
        if x2 - x1 < side or y2 - y1 < side:
            raise field_problem(
                field,
                f"the box is {x2 - x1:g} x {y2 - y1:g} pixels; each side must be at least {side} (x2 > x1, y2 > y1)",
            )
        boxes.append((x1, y1, x2, y2))
    return boxes


def _frame_rows(
    data: bytes, boxes: list[Box], engine: Engine, settings: Settings
) -> tuple[np.ndarray, list[tuple[int, int, int, int]], tuple[int, int]]:
    limits = ImageLimits(max_pixels=settings.max_image_pixels, min_side=settings.min_image_side)
    try:
        image = read_header(data, limits)
        width, height = upright_size(image)
        for index, (x1, y1, x2, y2) in enumerate(boxes):
            if x1 < 0 or y1 < 0 or x2 > width or y2 > height:
                message = f"[{x1:g}, {y1:g}, {x2:g}, {y2:g}] is not inside the {width} x {height} frame"
                raise field_problem(f"boxes[{index}]", message)
        rows, crops = preprocess_crops(image, boxes, engine.manifest.input)
    except ImageError as exc:
        raise field_problem("frame", exc.detail, exc.status, exc.kind) from exc
    return rows, crops, (width, height)


async def frame_to_rows(
    upload: UploadFile, boxes: list[Box], engine: Engine, settings: Settings, pool: ThreadPoolExecutor | None = None
) -> tuple[np.ndarray, list[tuple[int, int, int, int]], tuple[int, int]]:
    """A camera frame and its person boxes -> a model row per box, the crop cut for each, the frame's size."""
    data = await read_upload(upload, "frame", settings)
    return await asyncio.get_running_loop().run_in_executor(
        pool, functools.partial(_frame_rows, data, boxes, engine, settings)
    )


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
    """A form field holding a JSON object; None when absent or blank (forms cannot send null)."""
    if raw is None or not raw.strip():
        return None
    value = json_value(raw, field, max_depth)
    if not isinstance(value, dict):
        raise field_problem(field, f"must be a JSON object, got {type(value).__name__}")
    return value


def json_value(raw: str, field: str, max_depth: int = _DEFAULT_DEPTH) -> Any:
    """A form field's JSON text, parsed strictly: no NaN or Infinity, no number beyond 64 bits, at most
    `max_depth` levels; each refusal is a 422 naming `field`, never a crash of the parser."""
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
