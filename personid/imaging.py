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
    """RGB image -> float32 3 x H x W: bilinear resize, / scale, (x - mean) / std, in float32 in this order."""
    resized = image.resize((spec.width, spec.height), Image.Resampling.BILINEAR)
    scaled = np.asarray(resized, dtype=np.float32) / np.float32(spec.scale)
    normalised = (scaled - np.asarray(spec.mean, dtype=np.float32)) / np.asarray(spec.std, dtype=np.float32)
    return np.ascontiguousarray(normalised.transpose(2, 0, 1))
