"""Small JPEG thumbnails of enrolled images, so that matches can be shown to a person.

Made from the model's input row (de-normalised), not from the upload: it is what the model saw, it needs no second
decode, and it holds no more detail than the embedding was computed from.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from personid.manifest import InputSpec

THUMBNAIL_SIZE = (64, 128)  # width, height: Market-1501's crop shape at half size
THUMBNAIL_QUALITY = 80


def thumbnail_jpeg(row: np.ndarray, spec: InputSpec) -> bytes:
    """One preprocessed row (3 x H x W, normalised as `spec` says) -> a JPEG of about 64 x 128 pixels."""
    mean = np.asarray(spec.mean, dtype=np.float32)[:, None, None]
    std = np.asarray(spec.std, dtype=np.float32)[:, None, None]
    pixels = np.clip((row * std + mean) * spec.scale, 0, 255).round().astype(np.uint8).transpose(1, 2, 0)
    image = Image.fromarray(pixels, mode="RGB").resize(THUMBNAIL_SIZE, Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=THUMBNAIL_QUALITY, optimize=True)
    return buffer.getvalue()
