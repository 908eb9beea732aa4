"""Decode, validate and preprocess an uploaded image exactly as the manifest says (numpy + Pillow only).

Checks that need only the header (format, pixel count, smallest side) run before any pixel is decoded, so a
40000 x 40000 PNG of a few KB is refused without allocating gigabytes. The colour conversion is the same as
`training/transforms.py` (`to_rgb`, `preprocess_array`), bit for bit; `tests/test_preprocess.py` holds both
to it (this module may not import training, so the rules are written twice and compared by a test).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from app.manifest import InputSpec

# MPO is what many phone cameras write: a JPEG with extra frames; the first frame is the photo.
ACCEPTED_FORMATS = ("JPEG", "MPO", "PNG", "WEBP", "BMP", "TIFF", "GIF")
SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})
ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "La", "RGBa"})
WHITE = (255, 255, 255, 255)
# What Pillow raises on corrupt or truncated data, depending on the decoder.
DECODE_ERRORS = (OSError, SyntaxError, ValueError, IndexError, TypeError, EOFError)


class ImageError(ValueError):
    """An upload that is not an acceptable image; `status` is the HTTP status it maps to."""

    def __init__(self, status: int, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.kind, self.detail = status, kind, detail


@dataclass(frozen=True)
class ImageLimits:
    max_pixels: int
    min_side: int


def configure_pillow(max_pixels: int) -> None:
    """Make Pillow's own bomb guard agree with ours (it raises at 2x its limit, warns above it)."""
    Image.MAX_IMAGE_PIXELS = max_pixels


def open_image(data: bytes, limits: ImageLimits) -> Image.Image:
    """Bytes -> fully decoded Pillow image, or `ImageError` saying what is wrong with it."""
    if not data:
        raise ImageError(422, "empty-image", "the uploaded file is empty")
    try:
        image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise ImageError(413, "image-too-large", f"{exc}; the limit is {limits.max_pixels} pixels") from exc
    except (UnidentifiedImageError, *DECODE_ERRORS) as exc:
        raise ImageError(
            422, "not-an-image", f"the file is not an image we can read (accepted: {', '.join(ACCEPTED_FORMATS)})"
        ) from exc
    if image.format not in ACCEPTED_FORMATS:
        raise ImageError(
            415,
            "unsupported-format",
            f"{image.format} images are not accepted; use one of {', '.join(ACCEPTED_FORMATS)}",
        )
    width, height = image.size
    if width * height > limits.max_pixels:
        raise ImageError(
            413,
            "image-too-large",
            f"the image is {width}x{height} = {width * height} pixels; the limit is {limits.max_pixels}",
        )
    if min(width, height) < limits.min_side:
        raise ImageError(
            422,
            "image-too-small",
            f"the image is {width}x{height}; each side must be at least {limits.min_side} pixels",
        )
    try:
        image.load()
    except DECODE_ERRORS as exc:
        raise ImageError(422, "corrupt-image", f"the {image.format} image is truncated or corrupt: {exc}") from exc
    return image


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow image -> upright 8-bit RGB, with the same rules as `training.transforms.to_rgb`.

    EXIF orientation applied; transparency composited on white (what viewers show, instead of whatever colour
    lies under transparent pixels); 16-bit grey keeps its top 8 bits (Pillow's conversion would clip it to
    white); float clipped to 0..255; everything else through Pillow's `convert("RGB")`.
    """
    image = ImageOps.exif_transpose(image)
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in SIXTEEN_BIT_MODES:
        values = np.clip(np.asarray(image, dtype=np.int64), 0, 65535) >> 8
        return Image.fromarray(values.astype(np.uint8), mode="L").convert("RGB")
    if mode == "F":
        values = np.clip(np.asarray(image, dtype=np.float32), 0, 255).astype(np.uint8)
        return Image.fromarray(values, mode="L").convert("RGB")
    if mode in ALPHA_MODES or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, WHITE), rgba).convert("RGB")
    return image.convert("RGB")


def to_array(image: Image.Image, spec: InputSpec) -> np.ndarray:
    """RGB image -> float32 3 x H x W: bilinear resize, / scale, (x - mean) / std, in float32 in this order."""
    resized = image.resize((spec.width, spec.height), Image.BILINEAR)
    x = np.asarray(resized, dtype=np.float32) / np.float32(spec.scale)
    x = (x - np.asarray(spec.mean, dtype=np.float32)) / np.asarray(spec.std, dtype=np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def preprocess(data: bytes, spec: InputSpec, limits: ImageLimits) -> np.ndarray:
    """Uploaded bytes -> the model's 3 x H x W input row; `ImageError` for anything unacceptable."""
    image = open_image(data, limits)
    try:
        rgb = to_rgb(image)
    except DECODE_ERRORS as exc:
        raise ImageError(422, "corrupt-image", f"the image could not be converted to RGB: {exc}") from exc
    return to_array(rgb, spec)
