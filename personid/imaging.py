"""Image -> model input, the one definition that training's eval transform and the service both run.

Plain Pillow + numpy so the service needs no torch; training wraps `to_array` in a tensor. Bit-for-bit equality
of the two sides is what keeps the service's embeddings those the model was evaluated on.
"""

from __future__ import annotations

from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image, ImageOps

from personid.manifest import InputSpec

SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})
ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "La", "RGBa"})
WHITE = (255, 255, 255, 255)


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow image -> upright 8-bit RGB.

    - EXIF orientation is applied (phones store portrait shots as rotated landscape + a tag).
    - Transparency (RGBA, LA, PA, P with a transparent colour) is composited on white: a plain `convert("RGB")`
      would expose whatever colour editors left under transparent pixels (often black); white is what viewers show.
    - 16-bit grey keeps its top 8 bits (value >> 8), where Pillow's own conversion would clip everything above
      255 to white. F (float) is clipped to 0..255.
    - Everything else (L, 1, P, CMYK, YCbCr, ...) uses Pillow's `convert("RGB")`.
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


def load_rgb(source: str | Path | IO[bytes]) -> Image.Image:
    """Open and fully decode an image file (path or binary file object) as upright 8-bit RGB."""
    with Image.open(source) as image:
        image.load()
        return to_rgb(image)


def to_array(image: Image.Image, spec: InputSpec) -> np.ndarray:
    """RGB image -> float32 3 x H x W: bilinear resize, / scale, (x - mean) / std, in float32 in this order.

    Laid out channels-first before the arithmetic, which then runs in place over contiguous planes: the same
    float32 operations on the same values (so the same bits) at a third of the cost of broadcasting over the
    interleaved H x W x 3 layout, which the service pays on every image."""
    resized = image.resize((spec.width, spec.height), Image.Resampling.BILINEAR)
    planes = np.asarray(resized).transpose(2, 0, 1).astype(np.float32, order="C")
    planes /= np.float32(spec.scale)
    planes -= np.asarray(spec.mean, dtype=np.float32)[:, None, None]
    planes /= np.asarray(spec.std, dtype=np.float32)[:, None, None]
    return planes


# How a training crop frames its person: the person's height is PERSON_SCALE of the crop's (synth draws each
# camera's scale in this range, like Market-1501's detector crops), the feet at FEET_AT of the crop's height from
# the top, centred across; the crop has the model input's aspect. A client's tight detector box is cut with the
# middle of these ranges (`training_crop`) so the service sees crops framed like those the model learned from.
PERSON_SCALE = (0.80, 0.92)
FEET_AT = (0.94, 0.99)

Box = tuple[float, float, float, float]


def training_crop(box: Box, frame_size: tuple[int, int], aspect: float) -> tuple[int, int, int, int]:
    """A tight person box (x1, y1, x2, y2 in frame pixels) -> the integer crop around it framed like a training
    crop (`PERSON_SCALE`, `FEET_AT`; width / height = `aspect`), clipped to the frame (width, height).

    A box wider than the aspect allows grows the crop's height instead, so the whole box is always inside."""
    x1, y1, x2, y2 = box
    scale, feet = sum(PERSON_SCALE) / 2, sum(FEET_AT) / 2
    height = max((y2 - y1) / scale, (x2 - x1) / aspect)
    width = height * aspect
    top = y2 - feet * height
    centre = (x1 + x2) / 2
    frame_width, frame_height = frame_size
    left, right = max(0, round(centre - width / 2)), min(frame_width, round(centre + width / 2))
    return left, max(0, round(top)), right, min(frame_height, round(top + height))
