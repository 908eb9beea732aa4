"""A surveillance camera: mounted above head height looking down, people 50-200 px tall, a cheap sensor.

The person is drawn at the size the camera really sees, foreshortened by the tilt, blurred, noised and JPEG
compressed at that size, and only then resized to the output size, as a detector's crop is.
"""

from __future__ import annotations

import io
import math
from functools import lru_cache

import numpy as np
from PIL import Image, ImageFilter

from synth.camera import Camera
from synth.seeds import seeded_rng

NOISE = 512  # side of the shared sensor-noise field each image takes a window of


def person_pixels(rng: np.random.Generator) -> float:
    """How tall the camera sees a person: log-uniform in 50..200 px, as detector crops are."""
    return float(math.exp(rng.uniform(math.log(50), math.log(200))))


@lru_cache(maxsize=64)
def tilt(seed: int, cam: int) -> float:
    """How steeply camera `cam` looks down (0 level .. 0.3 steep)."""
    return float(seeded_rng(seed, 14, cam).uniform(0.08, 0.3))


def look_down(layer: Image.Image, amount: float, foot: float) -> Image.Image:
    """Foreshorten a figure seen from above: head larger than feet, the body a little shorter, feet in place."""
    w, h = layer.size
    cx, top = w / 2, -h * amount * 0.35
    wide, narrow = 1 / (1 + amount), 1 / (1 - amount * 0.4)
    bottom = foot + (h - foot) * (1 + amount * 0.35)
    quad = (
        cx - cx * wide,
        top,
        cx - cx * narrow,
        bottom,
        cx + cx * narrow,
        bottom,
        cx + cx * wide,
        top,
    )
    return layer.transform(layer.size, Image.QUAD, quad, Image.NEAREST)  # 2x supersampled: reduce smooths it


@lru_cache(maxsize=2)
def _noise(side: int) -> np.ndarray:
    return np.random.default_rng(54321).standard_normal((side, side, 3), dtype=np.float32)


def degrade(img: Image.Image, cam: Camera, rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """Blur, sensor noise and JPEG 50-95 at the small native size, then the resize to `width` x `height` and
    the camera's white balance, gain and contrast."""
    img = img.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.2, 0.9))))
    arr = np.asarray(img, np.float32)
    h, w = arr.shape[:2]
    side = max(NOISE, h + 1, w + 1)
    y, x = int(rng.integers(side - h)), int(rng.integers(side - w))
    arr = arr + _noise(side)[y : y + h, x : x + w] * float(rng.uniform(1.5, 7.0))
    buf = io.BytesIO()
    Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(buf, format="JPEG", quality=int(rng.integers(50, 96)))
    img = Image.open(io.BytesIO(buf.getvalue())).convert("RGB").resize((width, height), Image.BICUBIC)
    arr = np.asarray(img, np.float32)
    gain = cam.gain * rng.uniform(0.9, 1.1) * np.array(cam.white_balance, np.float32)
    mean = float(arr.mean())
    arr = arr * (gain * cam.contrast) + (mean * (1 - cam.contrast) * gain + 0.5)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
