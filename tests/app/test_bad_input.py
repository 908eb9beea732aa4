"""Every kind of bad request gets a clear RFC 9457 problem, and the service answers correctly right after."""

from __future__ import annotations

import io
import json
import struct
import time
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.limits import FORM_OVERHEAD_BYTES
from app.main import create_app
from app.settings import Settings
from tests.app.conftest import assert_problem, image_file, person_image

MAX_UPLOAD = 256 * 1024  # conftest's make_settings


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height, with a tiny (incomplete) pixel stream."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64))


@pytest.fixture(scope="module")
def png_bomb() -> bytes:
    """A valid 40000 x 40000 1-bit PNG of ~190 KB: decoding it would take 1.6 GB of memory."""
    width = height = 40000
    row = b"\x00" * (1 + width // 8)
    compressor = zlib.compressobj(9)
    stream = b"".join(compressor.compress(row * 1000) for _ in range(height // 1000)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", stream) + _png_chunk(b"IEND", b"")


def encoded(fmt: str, size: tuple[int, int] = (48, 96), mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, "red" if mode == "RGB" else 128).save(buffer, format=fmt)
    return buffer.getvalue()


def truncated_jpeg() -> bytes:
    data = person_image(5, fmt="JPEG")
    return data[: len(data) // 2]


def assert_still_serving(client: TestClient) -> None:
    response = client.post("/v1/attributes", files={"image": image_file(person_image(1))})
    assert response.status_code == 200, response.text
    assert client.get("/readyz").status_code == 200


IMAGE_CASES: list[tuple[str, Callable[[], bytes], int, str]] = [
    ("empty", lambda: b"", 422, "empty"),
    ("not an image", lambda: b"hello, this is text and not an image" * 10, 422, "not an image"),
    ("truncated JPEG", truncated_jpeg, 422, "truncated"),
    ("ICO", lambda: encoded("ICO", (32, 32)), 415, "ICO"),
    ("TGA", lambda: encoded("TGA"), 415, "TGA"),
    ("too small", lambda: person_image(1, size=(15, 15)), 422, "at least 16"),
    ("too narrow", lambda: person_image(1, size=(12, 200)), 422, "at least 16"),
    ("header over the pixel limit", lambda: png_header_only(6000, 5000), 413, "pixels"),
    ("over the upload limit", lambda: person_image(1) + b"\0" * MAX_UPLOAD, 413, "larger than"),
]


@pytest.mark.parametrize(("data", "status", "words"), [c[1:] for c in IMAGE_CASES], ids=[c[0] for c in IMAGE_CASES])
def test_bad_images_are_refused_with_a_reason(
    client: TestClient, data: Callable[[], bytes], status: int, words: str
) -> None:
    for path in ("/v1/attributes", "/v1/embeddings", "/v1/search"):
        body = assert_problem(client.post(path, files={"image": image_file(data())}), status, field="image")
        assert words in body["detail"], body
    files = [("images", image_file(person_image(2))), ("images", image_file(data()))]
    body = assert_problem(client.post("/v1/identities", files=files), status, field="images[1]")
    assert words in body["detail"]
    assert client.get("/v1/identities").json()["items"] == [], "nothing may be enrolled from a failed request"
    assert_still_serving(client)


def test_decompression_bomb_is_refused_without_decoding(client: TestClient, png_bomb: bytes) -> None:
    started = time.perf_counter()
    body = assert_problem(client.post("/v1/attributes", files={"image": image_file(png_bomb)}), 413)
    assert "pixels" in body["detail"]
    assert time.perf_counter() - started < 5, "decoding 1.6 gigapixels would take far longer"
    assert_still_serving(client)


@pytest.mark.parametrize("size", [(16, 16), (40, 100), (256, 128)])
def test_small_cctv_crops_are_accepted(client: TestClient, size: tuple[int, int]) -> None:
    response = client.post("/v1/embeddings", files={"image": image_file(person_image(3, size=size))})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF"])
def test_every_accepted_format_works(client: TestClient, fmt: str) -> None:
    response = client.post("/v1/embeddings", files={"image": image_file(person_image(4, fmt=fmt))})
    assert response.status_code == 200, response.text


def test_body_far_over_the_limit_is_refused(client: TestClient) -> None:
    huge = b"\0" * (MAX_UPLOAD + 2 * FORM_OVERHEAD_BYTES)
    body = assert_problem(client.post("/v1/frames", files={"frame": image_file(huge)}), 413)  # one upload
    # refused by BodyLimitMiddleware on its Content-Length, before FastAPI reads a byte of it
    assert body["type"] == "urn:personid:problem:body-too-large"
    assert body["detail"] == f"the request body is larger than {MAX_UPLOAD + FORM_OVERHEAD_BYTES} bytes"
    assert_still_serving(client)


def test_streamed_body_is_cut_off_once_over_the_limit(client: TestClient) -> None:
    """A chunked upload with no Content-Length: the service stops reading at the limit, it does not drain it."""
    chunk = 64 * 1024
    pulled = 0
    preamble = (
        b'--XyZ\r\nContent-Disposition: form-data; name="frame"; filename="a.png"\r\nContent-Type: image/png\r\n\r\n'
    )
    messages: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        pulled += 1
        body = preamble if pulled == 1 else b"\x01" * chunk
        return {"type": "http.request", "body": body, "more_body": pulled < 10_000}  # 640 MB if drained

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": "/v1/frames", "raw_path": b"/v1/frames", "root_path": "", "query_string": b"",
        "headers": [(b"host", b"test"), (b"content-type", b"multipart/form-data; boundary=XyZ")],
        "client": ("127.0.0.1", 1), "server": ("test", 80),
    }  # fmt: skip
    client.portal.call(client.app, scope, receive, send)
    start = next(m for m in messages if m["type"] == "http.response.start")
    assert start["status"] == 413
    assert (b"content-type", b"application/problem+json") in start["headers"]
    assert pulled * chunk <= MAX_UPLOAD + 3 * FORM_OVERHEAD_BYTES
    assert_still_serving(client)


FORM_CASES: list[tuple[str, str, str, dict[str, Any], int, str | None]] = [
    ("metadata not JSON", "POST", "/v1/identities", {"data": {"metadata": "{not json"}}, 422, "metadata"),
    ("metadata not an object", "POST", "/v1/identities", {"data": {"metadata": "[1, 2]"}}, 422, "metadata"),
    ("identity id with a path", "POST", "/v1/identities", {"data": {"identity_id": "../../etc/passwd"}}, 422,
     "identity_id"),
    ("identity id too long", "POST", "/v1/identities", {"data": {"identity_id": "a" * 65}}, 422, "identity_id"),
    ("top_k zero", "POST", "/v1/search", {"data": {"top_k": "0"}}, 422, "top_k"),
    ("top_k too large", "POST", "/v1/search", {"data": {"top_k": "101"}}, 422, "top_k"),
    ("top_k not a number", "POST", "/v1/search", {"data": {"top_k": "five"}}, 422, "top_k"),
    ("min_score out of range", "POST", "/v1/search", {"data": {"min_score": "2"}}, 422, "min_score"),
    ("filter not JSON", "POST", "/v1/search", {"data": {"filter": "gender=female"}}, 422, "filter"),
    ("filter not an object", "POST", "/v1/search", {"data": {"filter": '["female"]'}}, 422, "filter"),
    ("filter unknown head", "POST", "/v1/search", {"data": {"filter": '{"shoes": "red"}'}}, 422, "filter"),
    ("filter unknown label", "POST", "/v1/search", {"data": {"filter": '{"gender": "robot"}'}}, 422, "filter"),
]  # fmt: skip


@pytest.mark.parametrize(("method", "path", "kwargs", "status", "field"), [c[1:] for c in FORM_CASES],
                         ids=[c[0] for c in FORM_CASES])  # fmt: skip
def test_bad_fields_name_the_field(
    client: TestClient, method: str, path: str, kwargs: dict[str, Any], status: int, field: str | None
) -> None:
    name = "images" if path == "/v1/identities" else "image"
    files = [(name, image_file(person_image(6)))]
    assert_problem(client.request(method, path, files=files, **kwargs), status, field=field)
    assert client.get("/v1/identities").json()["items"] == []
    assert_still_serving(client)


def test_missing_or_wrong_parts(client: TestClient) -> None:
    assert_problem(client.post("/v1/attributes"), 422, field="image")
    assert_problem(client.post("/v1/attributes", json={"image": "aGVsbG8="}), 422, field="image")
    assert_problem(client.post("/v1/identities", data={"name": "no images"}), 422, field="images")
    too_many = [("images", image_file(person_image(i))) for i in range(5)]  # conftest allows 4
    assert_problem(client.post("/v1/identities", files=too_many), 422, field="images")
    assert_problem(client.get("/v1/identities", params={"limit": 0}), 422, field="limit")
    assert_problem(client.get("/v1/identities", params={"cursor": "not-a-cursor"}), 422)
    assert_still_serving(client)


def test_unknown_identities_routes_and_methods(client: TestClient) -> None:
    assert_problem(client.get("/v1/identities/nobody"), 404)
    assert_problem(client.delete("/v1/identities/nobody"), 404)
    assert_problem(client.post("/v1/identities/nobody/images", files=[("images", image_file(person_image(1)))]), 404)
    assert_problem(client.get("/v1/identities/bad%20id"), 422, field="identity_id")
    assert_problem(client.get("/v1/nothing-here"), 404)
    assert_problem(client.get("/v1/search"), 405)
    assert_still_serving(client)


def test_model_missing_starts_but_is_not_ready(make_settings: Callable[..., Settings], tmp_path: Any) -> None:
    settings = make_settings(model_path=tmp_path / "models" / "default.onnx")
    with TestClient(create_app(settings)) as client:
        assert client.get("/healthz").status_code == 200
        body = assert_problem(client.get("/readyz"), 503)
        assert "default.onnx not found" in body["detail"] and "export" in body["detail"]
        assert "not found" in body["checks"]["model"]
        for path in ("/v1/attributes", "/v1/embeddings", "/v1/search"):
            assert_problem(client.post(path, files={"image": image_file(person_image(1))}), 503)
        assert_problem(client.post("/v1/identities", files=[("images", image_file(person_image(1)))]), 503)
        assert_problem(client.get("/v1/identities"), 503)
        assert_problem(client.get("/v1/model"), 503)
        assert client.get("/metrics").status_code == 200


def test_unreadable_image_never_reaches_the_model(client: TestClient) -> None:
    """A corrupt file is refused before the model: no model call is spent on it."""
    batcher = client.app.state.runtime.batcher
    before = batcher.calls
    assert_problem(client.post("/v1/embeddings", files={"image": image_file(truncated_jpeg())}), 422)
    assert batcher.calls == before
    response = client.post("/v1/embeddings", files={"image": image_file(person_image(1))})
    assert response.status_code == 200 and batcher.calls == before + 1
    assert np.isfinite(response.json()["embedding"]).all()


def test_metadata_round_trips_unicode(client: TestClient) -> None:
    metadata = {"note": "Zoë — 北京", "n": [1, 2]}
    files = [("images", image_file(person_image(8)))]
    response = client.post("/v1/identities", files=files, data={"identity_id": "z", "metadata": json.dumps(metadata)})
    assert response.status_code == 201 and response.json()["metadata"] == metadata


def multipart(*parts: tuple[str, bytes, str | None], boundary: bytes = b"XyZ", closed: bool = True) -> bytes:
    """A multipart/form-data body written by hand: (field, value, filename or None for a text field) per part."""
    body = b""
    for field, value, filename in parts:
        disposition = f'form-data; name="{field}"' + (f'; filename="{filename}"' if filename else "")
        body += b"--" + boundary + f"\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + value + b"\r\n"
    return body + (b"--" + boundary + b"--\r\n" if closed else b"")


FORM_TYPE = "multipart/form-data; boundary=XyZ"
IMAGE_PART = ("image", person_image(9), "a.png")
MALFORMED_CASES: list[tuple[str, str, bytes]] = [
    ("no boundary", "multipart/form-data", multipart(IMAGE_PART)),
    ("truncated", FORM_TYPE, multipart(IMAGE_PART)[:300]),
    ("no closing boundary", FORM_TYPE, multipart(IMAGE_PART, closed=False)),
    ("another boundary", FORM_TYPE, multipart(IMAGE_PART, boundary=b"Other")),
    ("part without a name", FORM_TYPE, b"--XyZ\r\nContent-Disposition: form-data\r\n\r\nx\r\n--XyZ--\r\n"),
]


@pytest.mark.parametrize(
    ("content_type", "body"), [c[1:] for c in MALFORMED_CASES], ids=[c[0] for c in MALFORMED_CASES]
)
def test_malformed_multipart_is_a_documented_400(client: TestClient, content_type: str, body: bytes) -> None:
    for path in ("/v1/embeddings", "/v1/identities"):
        response = client.post(path, content=body, headers={"content-type": content_type})
        problem = assert_problem(response, 400)
        assert problem["type"] == "urn:personid:problem:malformed-body", problem
        assert "multipart" in problem["detail"]
    assert client.get("/v1/identities").json()["items"] == []
    assert_still_serving(client)


@pytest.mark.parametrize(
    ("path", "field", "value"),
    [
        ("/v1/identities", "identity_id", b"ab\xe9cd"),
        ("/v1/identities", "name", b"Zo\xeb"),
        ("/v1/identities", "metadata", b'{"note": "caf\xe9"}'),
        ("/v1/search", "filter", b'{"gender": "fem\xe4le"}'),
        ("/v1/search", "top_k", b"\xff5"),
    ],
)
def test_text_fields_that_are_not_utf8_are_refused(client: TestClient, path: str, field: str, value: bytes) -> None:
    """Latin-1 bytes in a UTF-8 form: 422 naming the field, not a silent latin-1 reading of it."""
    image = ("images" if path == "/v1/identities" else "image", person_image(9), "a.png")
    response = client.post(path, content=multipart(image, (field, value, None)), headers={"content-type": FORM_TYPE})
    body = assert_problem(response, 422, field=field)
    assert "utf-8" in body["detail"]
    assert client.get("/v1/identities").json()["items"] == []
    utf8 = multipart(image, ("name", "Zoë — 北京".encode(), None), ("identity_id", b"zoe", None))
    enrolled = client.post(
        "/v1/identities", content=utf8.replace(b'"image"', b'"images"'), headers={"content-type": FORM_TYPE}
    )
    assert enrolled.status_code == 201 and enrolled.json()["name"] == "Zoë — 北京"


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [("POST", "/v1/identities/someone", "DELETE, GET"), ("PUT", "/v1/identities", "GET, POST"),
     ("GET", "/v1/search", "POST"), ("DELETE", "/healthz", "GET")],
)  # fmt: skip
def test_405_allows_every_method_of_the_path(client: TestClient, method: str, path: str, allowed: str) -> None:
    response = client.request(method, path)
    assert_problem(response, 405)
    assert response.headers["allow"] == allowed


def test_a_field_sent_twice_is_refused(client: TestClient) -> None:
    """Which of two `identity_id`s was meant? FastAPI would silently keep the last one."""
    image = ("images", person_image(9), "a.png")
    body = multipart(image, ("identity_id", b"first", None), ("identity_id", b"second", None))
    assert_problem(client.post("/v1/identities", content=body, headers={"content-type": FORM_TYPE}), 422, "identity_id")
    assert client.get("/v1/identities").json()["items"] == []
    two_images = multipart(image, ("images", person_image(10), "b.png"), ("identity_id", b"both", None))
    response = client.post("/v1/identities", content=two_images, headers={"content-type": FORM_TYPE})
    assert response.status_code == 201 and len(response.json()["image_ids"]) == 2, "images is a list: repeat it"


def test_an_image_part_without_a_filename_is_a_file(client: TestClient) -> None:
    """RFC 7578 makes the filename optional; the part's Content-Type says it is an image."""
    body = (
        b'--XyZ\r\nContent-Disposition: form-data; name="image"\r\nContent-Type: image/png\r\n\r\n'
        + person_image(9)
        + b"\r\n--XyZ--\r\n"
    )
    response = client.post("/v1/embeddings", content=body, headers={"content-type": FORM_TYPE})
    assert response.status_code == 200, response.text
