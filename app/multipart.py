"""The multipart forms of the v1 endpoints: how they are declared in OpenAPI and how their text parts are read.

Starlette's parser with two changes that keep the API what its schema says:
- a text field (`identity_id`, `name`, `metadata`, `filter`, `top_k`, ...) that is not valid in the body's charset
  (UTF-8 unless the client names another) is refused with 422 naming the field; Starlette would read it as
  latin-1 and the service would store mojibake;
- a body that is not well-formed multipart (no boundary, truncated, a part without a name) is a 400
  `malformed-body` problem, not a bare 400 with `type: about:blank`;
- a field the schema declares as one value (`identity_id`, `metadata`, `image`, ...) sent twice is refused with
  422 (FastAPI would take the last one and drop the others silently);
- a part declared as an image (or octet-stream) is a file even without a filename, which RFC 7578 makes optional.

`FormRoute` is the route class of the routers that take forms: it hands FastAPI a `StrictFormRequest`.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from contextlib import aclosing
from typing import Annotated, Any

from fastapi import File, Request, Response, UploadFile
from fastapi.routing import APIRoute
from pydantic import WithJsonSchema
from python_multipart.multipart import parse_options_header
from starlette.datastructures import FormData
from starlette.formparsers import MultiPartException, MultiPartParser

from app import operations
from app.preprocess import ACCEPTED_MEDIA_TYPES
from app.problems import Problem, field_problem

# An image part as OpenAPI 3.1 writes a file (`contentMediaType`), never empty: an empty file is refused.
_IMAGE_PART = WithJsonSchema({"type": "string", "contentMediaType": "application/octet-stream", "minLength": 1})
ImageFile = Annotated[
    UploadFile,
    _IMAGE_PART,
    File(description="A person crop: JPEG, PNG, WebP, BMP, TIFF or GIF (first frame)."),
]
ImageFiles = Annotated[
    list[Annotated[UploadFile, _IMAGE_PART]],
    File(min_length=1, description="One or more person crops of the same person."),
]
# The model endpoints take one crop as `image` (answered as before) or a batch as repeated `images` parts.
OneImage = Annotated[
    UploadFile | None,
    _IMAGE_PART,
    File(description="One person crop (JPEG, PNG, WebP, BMP, TIFF or GIF); answered in the one-image shape."),
]
BatchImages = Annotated[
    list[Annotated[UploadFile, _IMAGE_PART]] | None,
    File(
        min_length=1,
        description="Several person crops, one part each (instead of `image`); answered as `results`, in order.",
    ),
]
# What the form of an endpoint taking `OneImage` or `BatchImages` must hold: one of the two, never both.
ONE_OF_IMAGE_OR_BATCH: dict[str, Any] = {"oneOf": [{"required": ["image"]}, {"required": ["images"]}]}


def image_encoding(*fields: str) -> dict[str, Any]:
    """`openapi_extra` of an endpoint taking images in `fields`: the media types their parts may have."""
    encoding = {field: {"contentType": ", ".join(ACCEPTED_MEDIA_TYPES)} for field in fields}
    return {"requestBody": {"content": {"multipart/form-data": {"encoding": encoding}}}}


def image_or_batch(image: UploadFile | None, images: list[UploadFile] | None) -> tuple[list[UploadFile], str]:
    """The uploads of a model endpoint and the field they came in: exactly one of `image` and `images`."""
    if image is not None and images:
        raise field_problem("images", "send one crop as `image` or several as `images`, not both")
    if image is not None:
        return [image], "image"
    if images:
        return images, "images"
    raise field_problem("image", "no image: send one crop as `image`, or several as `images` parts")


def forms_as_read(openapi: dict[str, Any]) -> dict[str, Any]:
    """Declare the optional fields of multipart forms as the service reads them: a value, an empty value or no
    part at all (an empty field counts as absent, as a blank input in a browser form does), and never `null`.
    FastAPI writes an optional field as `anyOf: [X, {"type": "null"}]`, but multipart has no null: a client
    following that schema sends the text `null`, which is no number, no JSON object, no id. A form with both
    `image` and `images` says that it takes exactly one of them. Rewrites `openapi` in place; idempotent."""
    schemas = openapi.get("components", {}).get("schemas", {})
    for methods in openapi.get("paths", {}).values():
        for operation in methods.values():
            form = operation.get("requestBody", {}).get("content", {}).get("multipart/form-data", {})
            body = schemas.get(form.get("schema", {}).get("$ref", "").rsplit("/", 1)[-1], {})
            optional = set(body.get("properties", {})) - set(body.get("required", []))
            one_of = {"image", "images"} <= optional
            for name in optional:
                field = body["properties"][name]
                body["properties"][name] = (
                    _value(field) if one_of and name in {"image", "images"} else _value_or_empty(field)
                )
            if one_of:
                body.update(ONE_OF_IMAGE_OR_BATCH)
    return openapi


_ANNOTATIONS = ("title", "description", "default")
_EMPTY = {"type": "string", "maxLength": 0}


def _value(field: dict[str, Any]) -> dict[str, Any]:
    """`anyOf: [X, null]` -> `X`, with the annotations kept: for `image` / `images`, which `oneOf` makes
    required in turn (an empty one is none at all)."""
    branches = [branch for branch in field.get("anyOf", [field]) if branch != {"type": "null"}]
    annotations = {key: field[key] for key in _ANNOTATIONS if key in field}
    return {**branches[0], **annotations} if len(branches) == 1 else field


def _value_or_empty(field: dict[str, Any]) -> dict[str, Any]:
    """`X` or `anyOf: [X, null]` -> `anyOf: [X, ""]`, with the annotations kept outside."""
    if _EMPTY in field.get("anyOf", []):
        return field
    annotations = {key: field[key] for key in _ANNOTATIONS if key in field}
    value = {key: item for key, item in field.items() if key not in _ANNOTATIONS}
    branches = [branch for branch in value.get("anyOf", [value]) if branch != {"type": "null"}]
    if "anyOf" in value and len(value) > 1:  # keywords beside anyOf apply to every branch
        rest = {key: item for key, item in value.items() if key != "anyOf"}
        branches = [{**branch, **rest} for branch in branches]
    return {"anyOf": [*branches, _EMPTY], **annotations}


class StrictMultiPartParser(MultiPartParser):
    """Starlette's multipart parser, except that a text part not valid in the body's charset is refused, and a
    body that ends before its closing boundary is malformed (Starlette would return the parts read so far)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.closed = False

    def on_end(self) -> None:
        self.closed = True

    async def parse(self) -> FormData:
        form = await super().parse()
        if not self.closed:
            await form.close()
            raise MultiPartException("the body ends before the closing boundary (truncated)")
        return form

    def on_headers_finished(self) -> None:
        """RFC 7578 makes a file's filename optional: a part declared as an image or as octet-stream is a file
        even without one (Starlette would read it as a text field), and is named after its field."""
        part = self._current_part
        disposition = part.content_disposition or b""
        _, options = parse_options_header(disposition)
        declared, _ = parse_options_header(dict(part.item_headers).get(b"content-type", b""))
        if b"filename" not in options and (declared.startswith(b"image/") or declared == b"application/octet-stream"):
            name = options.get(b"name", b"").replace(b'"', b"")
            part.content_disposition = disposition + b'; filename="' + name + b'"'
        super().on_headers_finished()

    def on_part_end(self) -> None:
        part = self._current_part
        if part.file is None:
            try:
                part.data.decode(self._charset)
            except UnicodeDecodeError as exc:
                message = f"not valid {self._charset} text (byte {exc.start} of the value)"
                raise field_problem(part.field_name, message) from exc
        super().on_part_end()


class StrictFormRequest(Request):
    """A request whose multipart form is read by `StrictMultiPartParser`; other forms are Starlette's."""

    async def _get_form(
        self,
        *,
        max_files: int | float = 1000,
        max_fields: int | float = 1000,
        max_part_size: int = 1024 * 1024,
    ) -> FormData:
        content_type, _ = parse_options_header(self.headers.get("Content-Type"))
        if self._form is None and content_type == b"multipart/form-data":
            async with aclosing(self.stream()) as stream:
                parser = StrictMultiPartParser(
                    self.headers, stream, max_files=max_files, max_fields=max_fields, max_part_size=max_part_size
                )
                try:
                    form = await parser.parse()
                except MultiPartException as exc:
                    raise Problem(
                        400, "malformed-body", f"the multipart/form-data body is malformed: {exc.message}"
                    ) from exc
            operation = operations.find(self.app, self.method, self.url.path)
            repeated = [name for name in operation.single_fields if len(form.getlist(name)) > 1] if operation else []
            if repeated:  # FastAPI would silently take the last value
                await form.close()
                hint = "; several crops go in `images` parts" if repeated[0] == "image" else ""
                raise field_problem(repeated[0], f"given more than once; send it once{hint}")
            self._form = form
        return await super()._get_form(max_files=max_files, max_fields=max_fields, max_part_size=max_part_size)


class FormRoute(APIRoute):
    """Route class of the routers with form endpoints: their requests are `StrictFormRequest`s."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict_handler(request: Request) -> Response:
            return await handler(StrictFormRequest(request.scope, request.receive))

        return strict_handler
