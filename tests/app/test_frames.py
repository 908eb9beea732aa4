"""/v1/frames: a whole camera frame and the client's person boxes, cut server-side with the training crops'
framing (`personid.imaging.training_crop`) and answered per box, through the ASGI app with the shipped model."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.main import create_app
from app.settings import Settings
from personid.imaging import FEET_AT, PERSON_SCALE, training_crop
from tests.app.conftest import ROOT, assert_problem, image_file

SHIPPED_MODEL = ROOT / "models" / "default.onnx"
FRAME_SIZE = (640, 360)
BOXES = [[40, 60, 120, 300], [300, 100, 350, 220], [560, 150, 630, 352]]  # the last one's crop meets the edges


@pytest.fixture(scope="module")
def frame_png() -> bytes:
    """A street-ish frame with three differently coloured 'persons' where `BOXES` say."""
    rng = np.random.default_rng(7)
    pixels = rng.integers(90, 140, (FRAME_SIZE[1], FRAME_SIZE[0], 3), dtype=np.uint8)
    for index, (x1, y1, x2, y2) in enumerate(BOXES):
        top, bottom = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        middle = (y1 + y2) // 2
        pixels[y1:middle, x1:x2] = top + index
        pixels[middle:y2, x1:x2] = bottom
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def shipped(make_settings: Callable[..., Settings]) -> Iterator[TestClient]:
    if not SHIPPED_MODEL.is_file():
        pytest.skip(f"{SHIPPED_MODEL} is not there (models are built by training/export)")
    settings = make_settings(model_path=SHIPPED_MODEL, max_upload_bytes=4 * 1024 * 1024, max_boxes_per_frame=4)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


def post_frame(client: TestClient, frame: bytes, boxes: object, **fields: str) -> object:
    text = boxes if isinstance(boxes, str) else json.dumps(boxes)
    return client.post("/v1/frames", files={"frame": image_file(frame)}, data={"boxes": text, **fields})


def cut(frame: bytes, crop: list[int]) -> bytes:
    """The crop as the client would cut it itself, lossless."""
    buffer = io.BytesIO()
    Image.open(io.BytesIO(frame)).convert("RGB").crop(tuple(crop)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_training_crop_frames_the_person_as_training_crops_do() -> None:
    scale, feet = sum(PERSON_SCALE) / 2, sum(FEET_AT) / 2
    left, top, right, bottom = training_crop((100.0, 200.0, 150.0, 372.0), (1000, 1000), 0.5)
    height = bottom - top
    assert height == pytest.approx(172 / scale, abs=1)
    assert right - left == pytest.approx(height / 2, abs=1)
    assert 372 - top == pytest.approx(feet * height, abs=1), "feet where training crops have them"
    assert (left + right) / 2 == pytest.approx(125, abs=1)
    wide = training_crop((100.0, 200.0, 300.0, 300.0), (1000, 1000), 0.5)
    assert wide[0] <= 100 and wide[2] >= 300 and wide[1] <= 200 and wide[3] >= 300, "the whole box is inside"
    clipped = training_crop((0.0, 0.0, 50.0, 90.0), (60, 100), 0.5)
    assert clipped[:2] == (0, 0) and clipped[2] <= 60 and clipped[3] <= 100, "clipped to the frame"


def test_each_box_is_answered_as_its_own_crop_would_be(shipped: TestClient, frame_png: bytes) -> None:
    response = post_frame(shipped, frame_png, BOXES, top_k="0")
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["width"], body["height"]) == FRAME_SIZE
    assert [r["box"] for r in body["results"]] == BOXES
    for result in body["results"]:
        expected = training_crop(tuple(result["box"]), FRAME_SIZE, 0.5)
        assert tuple(result["crop"]) == expected
        assert result["matches"] is None
        alone = shipped.post("/v1/embeddings", files={"image": image_file(cut(frame_png, result["crop"]))}).json()
        np.testing.assert_allclose(result["embedding"], alone["embedding"], atol=1e-4)
        attributes = shipped.post("/v1/attributes", files={"image": image_file(cut(frame_png, result["crop"]))})
        assert result["attributes"]["gender"] == attributes.json()["attributes"]["gender"]
    assert BOXES[2][3] <= body["results"][2]["crop"][3] <= FRAME_SIZE[1], "clipped to the frame"


def test_boxes_are_matched_against_the_gallery(shipped: TestClient, frame_png: bytes) -> None:
    crop = post_frame(shipped, frame_png, BOXES[:1], top_k="0").json()["results"][0]["crop"]
    enrolled = shipped.post(
        "/v1/identities", files=[("images", image_file(cut(frame_png, crop)))], data={"identity_id": "walker"}
    )
    assert enrolled.status_code == 201, enrolled.text
    results = post_frame(shipped, frame_png, BOXES, top_k="1").json()["results"]
    assert results[0]["matches"][0]["identity_id"] == "walker"
    assert results[0]["matches"][0]["score"] == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize(
    ("boxes", "field", "words"),
    [
        ([[0, 0, 50, 100], [600, 300, 660, 380]], "boxes[1]", "not inside the 640 x 360 frame"),
        ([[-5, 0, 50, 100]], "boxes[0]", "not inside"),
        ([[0, 0, 50, 100], [50, 100, 40, 200]], "boxes[1]", "at least"),
        ([[10, 10, 12, 100]], "boxes[0]", "at least 16"),
        ([[0, 0, 50]], "boxes[0]", "four numbers"),
        ([[0, 0, 50, "100"]], "boxes[0]", "four numbers"),
        ([[0, 0, 50, True]], "boxes[0]", "four numbers"),
        ([[0, 0, 20, 40]] * 5, "boxes", "at most 4 boxes"),
        ([], "boxes", "non-empty"),
        ({"x1": 0}, "boxes", "non-empty JSON array"),
        ("[[0, 0, 50, 100]", "boxes", "not valid JSON"),
        ("[[0, 0, NaN, 100]]", "boxes", "not a JSON number"),
    ],
)
def test_bad_boxes_are_refused_naming_the_box(
    shipped: TestClient, frame_png: bytes, boxes: object, field: str, words: str
) -> None:
    body = assert_problem(post_frame(shipped, frame_png, boxes), 422, field)
    assert words in body["detail"]


def test_a_bad_frame_is_named_and_the_service_keeps_serving(shipped: TestClient, frame_png: bytes) -> None:
    assert_problem(post_frame(shipped, b"not an image", BOXES), 422, "frame")
    assert_problem(shipped.post("/v1/frames", data={"boxes": json.dumps(BOXES)}), 422, "frame")
    assert_problem(shipped.post("/v1/frames", files={"frame": image_file(frame_png)}), 422, "boxes")
    assert post_frame(shipped, frame_png, BOXES, top_k="0").status_code == 200


def test_boxes_are_in_the_upright_frame(shipped: TestClient, frame_png: bytes, tmp_path: Path) -> None:
    """A phone frame stored sideways with an EXIF rotation: boxes refer to the frame as shown."""
    upright = Image.open(io.BytesIO(frame_png))
    sideways = upright.transpose(Image.Transpose.ROTATE_90)  # orientation 6 turns it back by 270 degrees
    exif = Image.Exif()
    exif[0x0112] = 6
    sideways.save(tmp_path / "sideways.jpg", format="JPEG", quality=98, exif=exif.tobytes())
    body = post_frame(shipped, (tmp_path / "sideways.jpg").read_bytes(), BOXES, top_k="0").json()
    assert (body["width"], body["height"]) == FRAME_SIZE
    straight = post_frame(shipped, frame_png, BOXES, top_k="0").json()
    for rotated, plain in zip(body["results"], straight["results"], strict=True):
        assert np.dot(rotated["embedding"], plain["embedding"]) > 0.95, "the same person, JPEG aside"
