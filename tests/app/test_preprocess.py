"""The service's preprocessing equals the training eval transform bit for bit, for every image mode we accept.

This test may import torch and `training` (the service may not): it is the check that the rules written twice
(app/preprocess.py, training/data/transforms.py) are the same.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from app.preprocess import ImageError, ImageLimits, open_image, preprocess
from personid.imaging import load_rgb, to_rgb
from personid.manifest import InputSpec

transforms = pytest.importorskip("training.data.transforms")

SPEC = InputSpec(name="images", height=256, width=128, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
SMALL_SPEC = InputSpec(name="images", height=64, width=32, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))
LIMITS = ImageLimits(max_pixels=25_000_000, min_side=16)
RNG = np.random.default_rng(7)


def save(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def rgb_noise(width: int = 60, height: int = 130) -> Image.Image:
    return Image.fromarray(RNG.integers(0, 256, (height, width, 3), dtype=np.uint8))


def rgba_with_holes() -> Image.Image:
    pixels = RNG.integers(0, 256, (130, 60, 4), dtype=np.uint8)
    pixels[:40, :, 3] = 0  # fully transparent band (RGB under it is arbitrary)
    pixels[40:80, :, 3] = 128
    pixels[80:, :, 3] = 255
    return Image.fromarray(pixels, "RGBA")


def sixteen_bit() -> Image.Image:
    return Image.fromarray(RNG.integers(0, 65536, (130, 60), dtype=np.uint16))


def exif_rotated_jpeg() -> bytes:
    image = rgb_noise(130, 60)  # stored landscape; orientation 6 says "rotate to portrait"
    exif = Image.Exif()
    exif[0x0112] = 6
    return save(image, "JPEG", exif=exif, quality=95)


def palette_with_transparency() -> bytes:
    image = rgb_noise().convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    return save(image, "PNG", transparency=3)


CASES = {
    "RGB JPEG": lambda: save(rgb_noise(), "JPEG", quality=90),
    "RGB PNG": lambda: save(rgb_noise(), "PNG"),
    "L": lambda: save(rgb_noise().convert("L"), "PNG"),
    "LA": lambda: save(rgba_with_holes().convert("LA"), "PNG"),
    "1": lambda: save(rgb_noise().convert("1"), "PNG"),
    "P": lambda: save(rgb_noise().convert("P", palette=Image.Palette.ADAPTIVE, colors=32), "PNG"),
    "P with transparency": palette_with_transparency,
    "GIF": lambda: save(rgb_noise().convert("P", palette=Image.Palette.ADAPTIVE), "GIF"),
    "RGBA": lambda: save(rgba_with_holes(), "PNG"),
    "RGBA WebP": lambda: save(rgba_with_holes(), "WEBP", lossless=True),
    "CMYK JPEG": lambda: save(rgb_noise().convert("CMYK"), "JPEG", quality=90),
    "CMYK TIFF": lambda: save(rgb_noise().convert("CMYK"), "TIFF"),
    "I;16 PNG": lambda: save(sixteen_bit(), "PNG"),
    "I;16 TIFF": lambda: save(sixteen_bit(), "TIFF"),
    "F TIFF": lambda: save(Image.fromarray(RNG.uniform(-20, 300, (130, 60)).astype(np.float32)), "TIFF"),
    "BMP": lambda: save(rgb_noise(), "BMP"),
    "EXIF-rotated JPEG": exif_rotated_jpeg,
}


@pytest.mark.parametrize("spec", [SPEC, SMALL_SPEC], ids=["256x128 imagenet", "64x32 other stats"])
@pytest.mark.parametrize("case", list(CASES))
def test_service_preprocessing_equals_training_eval_transform(case: str, spec: InputSpec) -> None:
    data = CASES[case]()
    service = preprocess(data, spec, LIMITS)
    transform = transforms.build_eval_transform(spec.height, spec.width, spec.mean, spec.std)
    training = transform(load_rgb(io.BytesIO(data))).numpy()
    assert service.dtype == np.float32 and service.shape == (3, spec.height, spec.width)
    assert training.shape == service.shape
    assert np.array_equal(service, training), f"max difference {np.abs(service - training).max()}"


def test_exif_orientation_is_applied() -> None:
    image = to_rgb(open_image(exif_rotated_jpeg(), LIMITS))
    assert image.size == (60, 130)


def test_transparency_is_white_not_what_lies_under_it() -> None:
    pixels = np.zeros((20, 20, 4), np.uint8)  # black, fully transparent
    image = to_rgb(open_image(save(Image.fromarray(pixels, "RGBA"), "PNG"), LIMITS))
    assert np.all(np.asarray(image) == 255)


def test_sixteen_bit_keeps_its_top_byte() -> None:
    values = np.full((20, 20), 0xAB12, np.uint16)
    image = to_rgb(open_image(save(Image.fromarray(values), "PNG"), LIMITS))
    assert np.all(np.asarray(image) == 0xAB)


@pytest.mark.parametrize(
    ("data", "status", "kind"),
    [
        (b"", 422, "empty-image"),
        (b"GIF89a" + b"\0" * 3, 422, "not-an-image"),
        (save(rgb_noise(), "PPM"), 415, "unsupported-format"),
        (save(rgb_noise(15, 40), "PNG"), 422, "image-too-small"),
        (save(rgb_noise(), "JPEG")[:4000], 422, "corrupt-image"),
    ],
    ids=["empty", "garbage", "PPM", "small", "truncated"],
)
def test_open_image_errors(data: bytes, status: int, kind: str) -> None:
    with pytest.raises(ImageError) as error:
        open_image(data, LIMITS)
    assert (error.value.status, error.value.kind) == (status, kind)


def test_pixel_limit_is_checked_from_the_header() -> None:
    data = save(Image.new("L", (300, 200)), "PNG")
    with pytest.raises(ImageError) as error:
        open_image(data, ImageLimits(max_pixels=300 * 200 - 1, min_side=16))
    assert error.value.status == 413
    assert open_image(data, ImageLimits(max_pixels=300 * 200, min_side=16)).size == (300, 200)
