"""Cloth: a weave or knit texture and soft folds on the garments, found by their exact fill colours.

Pillow's primitives are aliased, so a garment's pixels carry exactly its fill colour (or one of the few
shades the figures use); the texture multiplies just those pixels. Held-out fabrics are never used otherwise.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image

from synth.figure import shade
from synth.identity import RGB, Person
from synth.looks import Looks

SHADE_FACTORS = (1.0, 0.88, 0.86, 0.78)  # the shades `figure` and `walker` paint clothes with
TILE = 64


@lru_cache(maxsize=16)
def _tile(fabric: str) -> np.ndarray:
    """A TILE x TILE multiplier around 1 for one fabric family."""
    rng = np.random.default_rng(sum(map(ord, fabric)))
    y, x = np.mgrid[0:TILE, 0:TILE].astype(np.float32)
    grain = rng.standard_normal((TILE, TILE)).astype(np.float32)
    patterns = {
        "plain": 0.03 * grain,
        "knit": 0.07 * np.sin(x * np.pi / 2) * np.sign(np.sin(y * np.pi / 3)) + 0.03 * grain,
        "twill": 0.09 * np.sin((x + y) * np.pi / 2) + 0.05 * grain,
        "heather": 0.10 * grain,
        "rib": 0.10 * np.sin(x * np.pi / 1.5) + 0.02 * grain,
        "check": 0.12 * (np.sign(np.sin(x * np.pi / 8)) * np.sign(np.sin(y * np.pi / 8))) + 0.03 * grain,
    }
    return (1.0 + patterns[fabric]).astype(np.float32)


@lru_cache(maxsize=2)
def _fold_field(side: int) -> np.ndarray:
    """Vertical-ish soft folds, drawn once per process: coarse noise stretched along y, as cloth hangs."""
    small = np.random.default_rng(777).standard_normal((side // 24, side // 6)).astype(np.float32)
    field = np.asarray(Image.fromarray(small).resize((side, side), Image.BICUBIC), dtype=np.float32)
    return np.clip(field, -2, 2)


def _folds(rng: np.random.Generator, h: int, w: int, depth: float) -> np.ndarray:
    """A random window of the fold field, as deep as the garment's folds."""
    side = max(512, h + 1, w + 1)
    y, x = int(rng.integers(side - h)), int(rng.integers(side - w))
    return 1.0 + 0.10 * depth * _fold_field(side)[y : y + h, x : x + w]


def _packed(rgbs: list[RGB]) -> set[int]:
    """Opaque RGBA pixels as the uint32 a little-endian view of the layer holds."""
    return {r | (g << 8) | (b << 16) | (255 << 24) for r, g, b in rgbs}


def dress_fabric(layer: np.ndarray, p: Person, looks: Looks, rng: np.random.Generator) -> None:
    """Texture and fold the upper and lower garments of `p` in the RGBA uint8 `layer` (in place)."""
    h, w = layer.shape[:2]
    pixels = np.ascontiguousarray(layer).view(np.uint32)[..., 0]
    folds = _folds(rng, h, w, looks.folds)
    oy, ox = int(rng.integers(TILE)), int(rng.integers(TILE))
    gain = np.ones((h, w), np.float32)
    for colours, fabric in (([p.upper_rgb, p.pattern_rgb], looks.upper_fabric), ([p.lower_rgb], looks.lower_fabric)):
        mask = np.zeros((h, w), bool)
        for key in _packed([shade(c, f) for c in colours for f in SHADE_FACTORS]):
            mask |= pixels == key
        if mask.any():
            tile = np.tile(_tile(fabric), ((h + oy) // TILE + 1, (w + ox) // TILE + 1))[oy : oy + h, ox : ox + w]
            gain = np.where(mask, tile * folds, gain)
    layer[..., :3] = np.minimum(layer[..., :3] * gain[..., None], 255)
