"""Directional light: shading across the body, a cast shadow on the ground and the light's colour temperature.

Each camera has its own sun (direction, strength, sunny or overcast, warm or cool), jittered per image.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageFilter

from synth.seeds import seeded_rng


@dataclass(frozen=True)
class Light:
    """The light of one image."""

    side: float  # -1 lit from the image's left .. +1 from the right
    strength: float  # shading contrast across the body, 0..0.4
    shadow: float  # shadow darkness, 0..0.6 (overcast: faint and blurred)
    length: float  # shadow length per person height; negative: cast away from the camera
    softness: float  # shadow blur, in person heights
    tint: tuple[float, float, float]  # colour temperature gains


@lru_cache(maxsize=64)
def _camera_light(seed: int, cam: int) -> tuple[float, float, bool, float]:
    rng = seeded_rng(seed, 12, cam)
    return float(rng.uniform(-1, 1)), float(rng.uniform(-0.9, 0.9)), bool(rng.random() < 0.6), float(rng.uniform(-1, 1))


def light_for(seed: int, cam: int, rng: np.random.Generator) -> Light:
    """Camera `cam`'s light, jittered for one image."""
    side, length, sunny, warmth = _camera_light(seed, cam)
    warmth = float(np.clip(warmth + rng.uniform(-0.2, 0.2), -1, 1))
    return Light(
        side=float(np.clip(side + rng.uniform(-0.2, 0.2), -1, 1)),
        strength=float(rng.uniform(0.18, 0.38) if sunny else rng.uniform(0.05, 0.15)),
        shadow=float(rng.uniform(0.35, 0.55) if sunny else rng.uniform(0.12, 0.25)),
        length=length + float(rng.uniform(-0.1, 0.1)),
        softness=0.01 if sunny else 0.04,
        tint=(1 + 0.07 * warmth, 1.0, 1 - 0.09 * warmth),
    )


def shade_person(layer: np.ndarray, light: Light) -> None:
    """Brighten the lit side of the RGBA `layer`'s figure and darken the other and the feet (in place)."""
    alpha = layer[..., 3]
    cols = np.flatnonzero(alpha.any(axis=0))
    rows = np.flatnonzero(alpha.any(axis=1))
    if cols.size < 2 or rows.size < 2:
        return
    h, w = alpha.shape
    x = (np.arange(w, dtype=np.float32) - cols[0]) / (cols[-1] - cols[0]) * 2 - 1
    y = (np.arange(h, dtype=np.float32) - rows[0]) / (rows[-1] - rows[0])
    across = 1 + light.strength * np.clip(x * light.side, -1, 1)
    down = 1.06 - 0.14 * np.clip(y, 0, 1)
    rgb = layer[..., :3].astype(np.float32)
    rgb *= (down[:, None] * across[None, :])[..., None]
    layer[..., :3] = np.minimum(rgb, 255)


def cast_shadow(background: Image.Image, layer: Image.Image, light: Light, foot: float, ph: float) -> Image.Image:
    """`background` (RGB) darkened in place where the figure's silhouette falls, sheared by the light."""
    length = light.length if abs(light.length) > 0.15 else 0.15
    shear = -light.side * 0.8
    mask = layer.getchannel("A").transform(
        layer.size,
        Image.AFFINE,
        (1, -shear / length, shear * foot / length, 0, -1 / length, foot + foot / length),
        Image.NEAREST,
    )
    mask = mask.filter(ImageFilter.BoxBlur(max(1.0, light.softness * ph))).point(lambda v: int(v * light.shadow))
    background.paste((0, 0, 0), (0, 0, *background.size), mask)
    return background


def tint(img: Image.Image, light: Light) -> Image.Image:
    """The whole picture under the light's colour temperature."""
    r, g, b = light.tint
    return img.convert("RGB", (r, 0, 0, 0, 0, g, 0, 0, 0, 0, b, 0))
