"""Schema fuzzing: schemathesis runs all its phases (examples, coverage, fuzzing, stateful) against the real ASGI
app's own OpenAPI document, with real ONNX Runtime and real embedded Qdrant behind it, and every check it has:
no 5xx, statuses, content types, headers and bodies as declared, schema-valid requests accepted, schema-invalid
ones refused, writes refused without the key (keys are set; the run sends one), 405 with `Allow`, and the
stateful checks on identities it creates and deletes.

The image parts are declared as images (`encoding.contentType`), so valid cases carry real images drawn here.
Bounded for two shared cores: a fixed number of examples per operation and a fixed seed, so a run is reproducible.

Documented exceptions (`EXCEPTIONS`), each dropped by a `filter_failure` hook and counted:
- `json-text`: a schema-valid `metadata` or `filter` refused with 422 naming only those fields. Both are text
  holding JSON, declared so (`contentMediaType: application/json`, `contentSchema`), but schemathesis generates
  any JSON value there and does not follow `contentSchema`; and what the code also checks, the model's heads
  and labels for `filter`, the size and depth limits of `metadata`, a string schema cannot carry.
- `one-image-field`: a request with both `image` and `images` refused with 422 naming `images`. The forms of
  the model endpoints declare `oneOf: [{required: [image]}, {required: [images]}]`, which schemathesis does not
  apply to multipart bodies (it draws each property on its own).
- `json-text` covers `boxes` of /v1/frames too: text holding a JSON array of boxes checked against the frame.
- `wire-valid`: a schema-invalid request accepted, whose multipart body, read part by part as the service reads
  it, is valid. Multipart carries text: a `null`, number, boolean or empty array generated for a text field
  arrives as its spelling or not at all (`null` is a fine identity id, the string "0" a fine `min_score`), and
  schemathesis' own re-check of what was sent gives up on bodies with file parts.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import jsonschema_rs
import numpy as np
import pytest
import schemathesis
from hypothesis import strategies as st
from PIL import Image
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import events, from_schema
from schemathesis.python.asgi import shutdown_lifespans
from starlette.datastructures import Headers, UploadFile

from app.main import create_app
from app.multipart import StrictMultiPartParser
from app.preprocess import ACCEPTED_MEDIA_TYPES
from app.settings import Settings

KEY = "fuzz-key"
MAX_EXAMPLES = 300
FORMATS = {"image/jpeg": "JPEG", "image/png": "PNG", "image/webp": "WEBP", "image/bmp": "BMP",
           "image/tiff": "TIFF", "image/gif": "GIF"}  # fmt: skip
JSON_TEXT_FIELDS = {"metadata", "filter", "boxes"}


@st.composite
def images(draw: st.DrawFn, fmt: str) -> bytes:
    """A small person-sized image of random colour blocks in `fmt`."""
    width, height = draw(st.integers(16, 64)), draw(st.integers(16, 128))
    seed = draw(st.integers(0, 2**16))
    pixels = np.random.default_rng(seed).integers(0, 256, (height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).resize((width, height)).save(buffer, format=fmt)
    return buffer.getvalue()


def json_text_refused(failure: Any, case: Any, response: Any) -> bool:
    """`json-text` (module docstring): valid by the schema, refused for the JSON inside `metadata`/`filter`."""
    if "positive_data_acceptance" not in failure.checks or response.status_code != 422:
        return False
    fields = {error.get("field") for error in response.json().get("errors", [])}
    return bool(fields) and fields <= JSON_TEXT_FIELDS


def both_image_fields(failure: Any, case: Any, response: Any) -> bool:
    """`one-image-field` (module docstring): `image` and `images` sent together, refused naming `images`."""
    if "positive_data_acceptance" not in failure.checks or response.status_code != 422:
        return False
    both = isinstance(case.body, dict) and {"image", "images"} <= set(case.body)
    return both and {error.get("field") for error in response.json().get("errors", [])} == {"images"}


def valid_on_the_wire(failure: Any, case: Any, response: Any) -> bool:
    """`wire-valid` (module docstring): a schema-invalid body whose parts, read as the service reads them (text,
    or the number the text spells; an empty part as no part), are a valid body."""
    request = response.request
    content_type = request.headers.get("content-type", "")
    if "negative_data_rejection" not in failure.checks or not content_type.startswith("multipart/form-data"):
        return False

    async def body() -> AsyncIterator[bytes]:
        yield request.body

    form = asyncio.run(StrictMultiPartParser(Headers({"content-type": content_type}), body()).parse())
    reference = case.operation.definition.raw["requestBody"]["content"]["multipart/form-data"]["schema"]["$ref"]
    schema = case.operation.schema.raw_schema["components"]["schemas"][reference.rsplit("/", 1)[-1]]
    sent: dict[str, list[Any]] = {}
    for name, value in form.multi_items():
        if value != "":
            sent.setdefault(name, []).append("a file" if isinstance(value, UploadFile) else value)
    if not set(schema.get("required", [])) <= set(sent):
        return False
    for name, values in sent.items():
        field = schema["properties"].get(name)
        if field is None:
            continue
        readings = [values] if field.get("type") == "array" else [values[-1], *json_readings(values[-1])]
        if not any(jsonschema_rs.validator_for(field).is_valid(reading) for reading in readings):
            return False
    return True


def json_readings(text: str) -> list[Any]:
    try:
        return [json.loads(text)]
    except ValueError:
        return []


EXCEPTIONS: dict[str, Callable[[Any, Any, Any], bool]] = {
    "json-text": json_text_refused,
    "one-image-field": both_image_fields,
    "wire-valid": valid_on_the_wire,
}


def exchange(recorder: Any, case: str) -> str:
    """The request and the answer of a failed case, for the failure message."""
    interaction = recorder.interactions.get(case)
    if interaction is None or interaction.response is None:
        return "(no response)"
    request, response = interaction.request, interaction.response
    return (
        f"request: {request.method} {request.uri} {(request.body or b'')[:1500]!r}\n"
        f"response: {response.status_code} {response.content[:500]!r}"
    )


def fuzz(app: Any) -> tuple[Counter[str], Counter[str], list[str]]:
    """Run schemathesis on `app`: (answers per operation and status, exceptions dropped, failures and errors)."""
    config = SchemathesisConfig.from_dict(
        {
            "seed": 13,
            "headers": {"X-API-Key": KEY},
            "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True},
            "checks": {"enabled": True},
            "suppress-health-check": ["all"],
        }
    )
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=config)
    dropped: Counter[str] = Counter()

    @schema.hook
    def map_case(context: Any, case: Any) -> Any:
        # An image array drawn through `encoding` comes back as one file, sent as one part: what the server reads
        # is a list of one, so that is what the checks must validate the request as.
        if isinstance(case.body, dict) and isinstance(case.body.get("images"), bytes):
            case.body["images"] = [case.body["images"]]
        return case

    @schema.hook
    def filter_failure(context: Any, failure: Any, case: Any, response: Any) -> bool:
        for name, applies in EXCEPTIONS.items():
            if applies(failure, case, response):
                dropped[name] += 1
                return False
        return True

    answers: Counter[str] = Counter()
    problems: list[str] = []
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            for interaction in event.recorder.interactions.values():
                if interaction.response is not None:
                    request = interaction.request
                    path = request.uri.split("testserver", 1)[-1].split("?")[0]
                    answers[f"{request.method} {path.split('/')[2] if path.count('/') > 1 else path} "
                            f"{interaction.response.status_code}"] += 1  # fmt: skip
            problems += [
                f"{event.recorder.label} {check.name}: {check.failure_info.failure}\n{exchange(event.recorder, case)}"
                for case, checks in event.recorder.checks.items()
                for check in checks
                if check.failure_info is not None
            ]
        elif isinstance(event, events.NonFatalError | events.FatalError):
            problems.append(f"engine error: {event}")
    return answers, dropped, problems


@pytest.mark.slow
def test_the_api_passes_every_schemathesis_check(model_path: Path, tmp_path: Path) -> None:
    for media_type in ACCEPTED_MEDIA_TYPES:
        schemathesis.openapi.media_type(media_type, images(FORMATS[media_type]))
    settings = Settings(
        model_path=model_path, qdrant_path=tmp_path / "qdrant", intra_op_threads=1, api_keys=KEY,
        max_upload_bytes=256 * 1024,
    )  # fmt: skip
    try:
        answers, dropped, problems = fuzz(create_app(settings))
    finally:
        shutdown_lifespans()  # schemathesis ran the lifespan: close the gallery before tmp_path goes
    print(f"{sum(answers.values())} requests: {dict(sorted(answers.items()))}; documented exceptions: {dict(dropped)}")
    assert not problems, "\n\n".join(dict.fromkeys(problems))
    assert not [answer for answer in answers if int(answer.rsplit(" ", 1)[1]) >= 500], answers
    for success in ("POST identities 201", "POST search 200", "GET identities 200", "DELETE identities 204"):
        assert answers[success] > 0, f"no {success}: the valid paths were not exercised ({answers})"
