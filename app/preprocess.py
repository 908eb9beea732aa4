"""Decode and validate an uploaded image, then preprocess it exactly as the manifest says (numpy + Pillow only).

Checks that need only the header (format, pixel count, smallest side) run before any pixel is decoded, so a
40000 x 40000 PNG of a few KB is refused without allocating gigabytes. The colour conversion and the array are
`personid.imaging`'s, the same code training's eval transform runs.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

from personid.imaging import to_array, to_rgb
from personid.manifest import InputSpec

# MPO is what many phone cameras write: a JPEG with extra frames; the first frame is the photo.
ACCEPTED_FORMATS = ("JPEG", "MPO", "PNG", "WEBP", "BMP", "TIFF", "GIF")
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


def preprocess(data: bytes, spec: InputSpec, limits: ImageLimits) -> np.ndarray:
    """Uploaded bytes -> the model's 3 x H x W input row; `ImageError` for anything unacceptable."""
    image = open_image(data, limits)
    try:
        rgb = to_rgb(image)
    except DECODE_ERRORS as exc:
        raise ImageError(422, "corrupt-image", f"the image could not be converted to RGB: {exc}") from exc
    return to_array(rgb, spec)
