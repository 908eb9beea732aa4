"""Realistic looks on top of an identity's attributes: the shade of each colour label, hairstyle, fabric.

Annotators call navy, dark denim and faded denim all "blue", charcoal "black" or "gray", burgundy "red"; real
clothes are mostly dark and desaturated. Each label has a weighted list of such shades; the held-out style
draws from a disjoint list, as it does for fabrics. Labels never change here: only how they are drawn.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np

from synth.identity import LOWER_COLOURS, RGB, UPPER_COLOURS, Person, identity
from synth.realism import Realism
from synth.seeds import seeded_rng

Shades = dict[str, tuple[tuple[RGB, float], ...]]
SHADES: Shades = {
    "black": (((22, 22, 24), 0.35), ((34, 33, 36), 0.25), ((48, 48, 52), 0.2), ((32, 29, 27), 0.2)),
    "white": (((236, 236, 230), 0.4), ((216, 212, 198), 0.3), ((202, 205, 210), 0.3)),
    "red": (((168, 30, 36), 0.3), ((118, 24, 34), 0.35), ((192, 62, 50), 0.2), ((210, 42, 62), 0.15)),
    "purple": (((90, 50, 112), 0.35), ((72, 40, 82), 0.35), ((142, 112, 172), 0.3)),
    "yellow": (((222, 190, 62), 0.3), ((196, 158, 48), 0.4), ((236, 214, 122), 0.3)),
    "gray": (((70, 70, 74), 0.35), ((112, 112, 116), 0.3), ((150, 150, 152), 0.2), ((100, 106, 116), 0.15)),
    "blue": (
        ((32, 40, 66), 0.3),
        ((52, 70, 104), 0.25),
        ((86, 110, 146), 0.2),
        ((128, 150, 178), 0.15),
        ((42, 70, 160), 0.1),
    ),
    "green": (((60, 80, 46), 0.35), ((34, 70, 50), 0.3), ((70, 130, 80), 0.2), ((110, 150, 100), 0.15)),
    "pink": (((226, 150, 170), 0.4), ((200, 120, 140), 0.35), ((240, 100, 150), 0.25)),
    "brown": (((70, 48, 34), 0.35), ((110, 76, 50), 0.3), ((150, 112, 74), 0.2), ((90, 70, 56), 0.15)),
}
HELDOUT_SHADES: Shades = {
    "black": (((16, 18, 26), 0.5), ((42, 37, 34), 0.5)),
    "white": (((246, 246, 246), 0.5), ((226, 222, 212), 0.5)),
    "red": (((150, 20, 22), 0.4), ((222, 72, 72), 0.3), ((180, 50, 82), 0.3)),
    "purple": (((112, 62, 142), 0.5), ((132, 82, 122), 0.5)),
    "yellow": (((250, 226, 82), 0.5), ((212, 182, 92), 0.5)),
    "gray": (((90, 90, 92), 0.4), ((132, 128, 122), 0.35), ((172, 172, 176), 0.25)),
    "blue": (((24, 32, 52), 0.4), ((62, 84, 126), 0.35), ((102, 132, 172), 0.25)),
    "green": (((50, 60, 40), 0.4), ((40, 100, 72), 0.3), ((92, 122, 62), 0.3)),
    "pink": (((250, 172, 192), 0.5), ((212, 142, 162), 0.5)),
    "brown": (((86, 58, 40), 0.4), ((132, 96, 66), 0.3), ((62, 46, 38), 0.3)),
}
FABRICS: tuple[str, ...] = ("plain", "knit", "twill", "heather")
HELDOUT_FABRICS: tuple[str, ...] = ("rib", "check")
LONG_HAIR: tuple[str, ...] = ("loose", "ponytail")
SHORT_HAIR: tuple[str, ...] = ("crop", "side", "bob")


@dataclass(frozen=True)
class Looks:
    """How an identity is drawn when realism is on; its Market attributes stay the Person's."""

    hairstyle: str
    beard: bool
    upper_fabric: str
    lower_fabric: str
    folds: float  # fold shading depth, 0..1


def _shade(rng: np.random.Generator, name: str, table: Shades) -> RGB:
    options = table[name]
    weights = np.array([w for _, w in options])
    rgb = options[int(rng.choice(len(options), p=weights / weights.sum()))][0]
    scale = rng.uniform(0.93, 1.06)
    return tuple(int(np.clip(c * scale + rng.integers(-5, 6), 0, 255)) for c in rgb)  # type: ignore[return-value]


def sample_looks(rng: np.random.Generator, p: Person, r: Realism) -> tuple[Person, Looks]:
    """`p` recoloured with real-world shades (when `r.shades`) and its hairstyle, beard and fabrics."""
    table = HELDOUT_SHADES if r.heldout_style else SHADES
    up = _shade(rng, UPPER_COLOURS[p.upper], table) if p.upper >= 0 else p.upper_rgb
    down = _shade(rng, LOWER_COLOURS[p.lower], table) if p.lower >= 0 else p.lower_rgb
    if r.shades:  # drawn either way, so that switching shades leaves the other draws alone
        p = replace(p, upper_rgb=up, lower_rgb=down)
    fabrics = HELDOUT_FABRICS if r.heldout_style else FABRICS
    female = p.gender == 2
    if p.hair_long:
        style = str(rng.choice(LONG_HAIR, p=[0.6, 0.4]))
    else:
        style = str(rng.choice(SHORT_HAIR, p=[0.3, 0.2, 0.5] if female else [0.55, 0.45, 0.0]))
    denim = p.lower == LOWER_COLOURS.index("blue") and not r.heldout_style and rng.random() < 0.7
    return p, Looks(
        hairstyle=style,
        beard=not female and p.age >= 3 and rng.random() < 0.2,
        upper_fabric=str(rng.choice(fabrics)),
        lower_fabric="twill" if denim else str(rng.choice(fabrics)),
        folds=float(rng.uniform(0.3, 1.0)),
    )


@lru_cache(maxsize=4096)
def identity_looks(seed: int, pid: int, r: Realism) -> tuple[Person, Looks]:
    """Identity `pid` as drawn with realism `r`: the same shades and hairstyle in every image."""
    return sample_looks(seeded_rng(seed, 11, pid), identity(seed, pid), r)
