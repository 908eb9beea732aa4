"""Cameras: what each one does to every image it takes (viewpoint mix, scale, colour, blur, noise, JPEG).

Per-camera looks make cross-camera re-identification a real task rather than matching identical renders.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageFilter

from personid.imaging import PERSON_SCALE
from synth.seeds import seeded_rng

SUPERSAMPLE = 2  # draw at 2x and box-downsample: cheap anti-aliasing for Pillow's aliased primitives
STYLES: tuple[str, ...] = ("brick", "shop", "park", "concrete", "station")  # background styles, see synth.scene


@dataclass(frozen=True)
class Camera:
    """What one camera does to every image it takes."""

    index: int
    view_weights: tuple[float, float, float]  # front, back, side
    scale: float  # person height / crop height
    gain: float
    white_balance: tuple[float, float, float]
    contrast: float
    blur: float  # Gaussian radius at output scale
    noise: float  # std of pixel noise
    quality: int  # JPEG quality
    occlusion: float  # probability of an occluder
    style: str  # background style


@lru_cache(maxsize=64)
def camera(seed: int, index: int) -> Camera:
    """Camera `index` (1-based): a dominant viewpoint in turn (front, back, side, side...) and its own look."""
    rng = seeded_rng(seed, 2, index)
    dominant = (0, 1, 2, 2)[(index - 1) % 4]
    weights = [0.2, 0.2, 0.2]
    weights[dominant] = 0.6
    wb = rng.uniform(0.9, 1.1, 3)
    return Camera(
        index=index,
        view_weights=(weights[0], weights[1], weights[2]),
        scale=float(rng.uniform(*PERSON_SCALE)),
        gain=float(rng.uniform(0.82, 1.12)),
        white_balance=(float(wb[0]), float(wb[1]), float(wb[2])),
        contrast=float(rng.uniform(0.85, 1.08)),
        blur=float(rng.uniform(0.0, 0.55)),
        noise=float(rng.uniform(1.5, 6.0)),
        quality=int(rng.integers(68, 96)),
        occlusion=float(rng.uniform(0.06, 0.18)),
        style=STYLES[(index - 1 + int(rng.integers(len(STYLES)))) % len(STYLES)] if index > 5 else STYLES[index - 1],
    )


@lru_cache(maxsize=8)
def _noise_field(height: int, width: int) -> np.ndarray:
    """Unit sensor noise, drawn once per process; each image takes a random window (drawing it anew costs more)."""
    return np.random.default_rng(12345).standard_normal((height + 64, width + 64, 3), dtype=np.float32)


def finish(img: Image.Image, cam: Camera, rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """Camera look: downsample, blur, per-camera white balance, gain and contrast, sensor noise."""
    img = img.reduce(SUPERSAMPLE) if img.size != (width, height) else img
    if img.size != (width, height):
        img = img.resize((width, height), Image.BILINEAR)
    blur = cam.blur + rng.uniform(0, 0.3)
    if blur > 0.15:
        img = img.filter(ImageFilter.BoxBlur(blur))
    arr = np.asarray(img, dtype=np.float32)
    gain = cam.gain * rng.uniform(0.9, 1.1) * np.array(cam.white_balance, np.float32)
    mean = float(arr.mean())
    y, x = int(rng.integers(64)), int(rng.integers(64))
    noise = _noise_field(height, width)[y : y + height, x : x + width]
    arr = arr * (gain * cam.contrast) + (mean * (1 - cam.contrast) * gain + 0.5) + noise * cam.noise
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
