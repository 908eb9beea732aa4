"""The eval transform is the service contract: checked bit for bit against a plain numpy reimplementation."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from personid.imaging import load_rgb, to_rgb
from personid.manifest import IMAGENET_MEAN, IMAGENET_STD
from training.data.transforms import build_eval_transform, build_train_transform, input_spec

RNG = np.random.default_rng(0)


def reference_preprocess(rgb: Image.Image, height: int, width: int) -> np.ndarray:
    """What the service does (docs/architecture.md, Preprocessing), written out independently."""
    pixels = np.array(rgb.resize((width, height), Image.BILINEAR)).astype(np.float32)
    scaled = pixels / np.float32(255)
    normalised = (scaled - np.array(IMAGENET_MEAN, np.float32)) / np.array(IMAGENET_STD, np.float32)
    return np.transpose(normalised, (2, 0, 1))


def image_of_mode(mode: str, size: tuple[int, int]) -> Image.Image:
    w, h = size
    if mode == "I;16":
        return Image.fromarray(RNG.integers(0, 65536, (h, w), dtype=np.uint16))
    rgba = Image.fromarray(RNG.integers(0, 256, (h, w, 4), dtype=np.uint8))
    if mode == "P":
        return rgba.convert("RGB").quantize(64)
    return rgba.convert(mode)


@pytest.mark.parametrize(
    ("mode", "size", "fmt"),
    [("RGB", (64, 128), "JPEG"), ("RGB", (37, 91), "PNG"), ("L", (50, 60), "PNG"), ("P", (30, 70), "PNG"),
     ("CMYK", (40, 100), "JPEG"), ("RGB", (300, 500), "JPEG")],
)  # fmt: skip
def test_eval_transform_matches_numpy_bit_for_bit(mode: str, size: tuple[int, int], fmt: str) -> None:
    buffer = io.BytesIO()
    image_of_mode(mode, size).save(buffer, fmt)
    with Image.open(io.BytesIO(buffer.getvalue())) as decoded:
        decoded.load()
        assert decoded.mode == mode
        expected = reference_preprocess(decoded.convert("RGB"), 256, 128)
        got = build_eval_transform(256, 128)(decoded)
    assert got.dtype == torch.float32 and tuple(got.shape) == (3, 256, 128)
    assert np.array_equal(got.numpy(), expected)  # exact, not allclose


def test_rgba_is_composited_on_white() -> None:
    pixels = np.zeros((2, 3, 4), dtype=np.uint8)
    pixels[0, 0] = (10, 20, 30, 255)  # opaque: kept
    pixels[0, 1] = (10, 20, 30, 0)  # transparent: white, whatever colour hides under it
    pixels[0, 2] = (0, 0, 0, 128)  # half: about mid grey
    rgb = np.array(to_rgb(Image.fromarray(pixels)))
    assert rgb[0, 0].tolist() == [10, 20, 30] and rgb[0, 1].tolist() == [255, 255, 255]
    assert np.all(np.abs(rgb[0, 2].astype(int) - 127) <= 1)
    la = np.array(to_rgb(Image.fromarray(pixels[..., [0, 3]]).convert("LA")))
    assert la[0, 1].tolist() == [255, 255, 255] and la[0, 0].tolist() == [10, 10, 10]


def test_sixteen_bit_grey_keeps_its_top_byte(tmp_path: Path) -> None:
    values = np.array([[0, 255, 256, 32768, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "g16.png")
    rgb = np.array(load_rgb(tmp_path / "g16.png"))
    assert rgb.shape == (1, 5, 3) and rgb[0, :, 0].tolist() == [0, 0, 1, 128, 255]
    assert np.array_equal(rgb[..., 0], rgb[..., 2])


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    pixels = np.zeros((20, 10, 3), dtype=np.uint8)
    pixels[0, 0] = (255, 0, 0)  # red top-left in storage order
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    image.save(tmp_path / "rotated.png", exif=exif)
    upright = load_rgb(tmp_path / "rotated.png")
    assert upright.size == (20, 10)
    assert np.array(upright)[0, -1].tolist() == [255, 0, 0]  # top-left moved to top-right
    with Image.open(tmp_path / "rotated.png") as raw:
        assert torch.equal(build_eval_transform(32, 16)(raw), build_eval_transform(32, 16)(upright))


def test_load_rgb_accepts_file_objects(tmp_path: Path) -> None:
    image_of_mode("RGB", (16, 32)).save(tmp_path / "a.jpg")
    assert load_rgb(io.BytesIO((tmp_path / "a.jpg").read_bytes())).tobytes() == load_rgb(tmp_path / "a.jpg").tobytes()


def test_train_transform_geometry_without_randomness() -> None:
    image = image_of_mode("RGB", (64, 128))
    plain = build_train_transform(64, 32, pad=0, flip_p=0.0, erase_p=0.0)(image)
    reference = torch.from_numpy(reference_preprocess(image, 64, 32))
    assert plain.shape == (3, 64, 32) and torch.allclose(plain, reference, atol=1e-6)
    flipped = build_train_transform(64, 32, pad=0, flip_p=1.0, erase_p=0.0)(image)
    assert torch.allclose(flipped, reference.flip(-1), atol=1e-6)


def test_train_transform_augments_and_keeps_colours() -> None:
    torch.manual_seed(0)
    image = image_of_mode("RGB", (64, 128))
    transform = build_train_transform(64, 32)
    outputs = torch.stack([transform(image) for _ in range(8)])
    assert outputs.shape == (8, 3, 64, 32)
    assert (outputs[0] - outputs[1:]).abs().amax() > 0.1  # crops / flips / erasing differ
    names = " ".join(type(t).__name__ for t in transform.transforms)
    assert "ColorJitter" not in names and "RandomErasing" in names and "RandomCrop" in names
    solid = Image.new("RGB", (64, 128), (200, 30, 40))  # no jitter: a solid colour stays that colour
    out = build_train_transform(64, 32, pad=0, erase_p=0.0)(solid)
    expected = (torch.tensor([200, 30, 40]) / 255 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    assert torch.allclose(out.mean(dim=(1, 2)), expected.float(), atol=1e-5)


def test_input_spec_describes_the_eval_transform() -> None:
    spec = input_spec(256, 128)
    assert build_eval_transform(256, 128).spec == spec
    assert spec.model_dump(mode="json") == {
        "name": "images", "layout": "NCHW", "height": 256, "width": 128, "color_order": "RGB", "resize": "bilinear",
        "scale": 255.0, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "dtype": "float32",
    }  # fmt: skip
