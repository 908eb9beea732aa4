"""Identities: Market's attribute vocabulary, the rates they are drawn at, and per-identity details.

Each identity gets its own skin, hair and shoe colour, clothing pattern and build on top of its Market
attributes, so that identities with equal attributes still differ for re-identification.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from synth.seeds import seeded_rng
from training.data.attributes_mat import MARKET_FIELDS

RGB = tuple[int, int, int]

# Market's colour vocabulary (field suffixes) and the base colour each is drawn with.
UPPER_COLOURS: tuple[str, ...] = ("black", "white", "red", "purple", "yellow", "gray", "blue", "green")
LOWER_COLOURS: tuple[str, ...] = ("black", "white", "pink", "purple", "yellow", "gray", "blue", "green", "brown")
UPPER_WEIGHTS = (0.19, 0.17, 0.11, 0.07, 0.08, 0.14, 0.13, 0.11)
LOWER_WEIGHTS = (0.30, 0.07, 0.07, 0.05, 0.05, 0.12, 0.19, 0.06, 0.09)
PALETTE: dict[str, RGB] = {
    "black": (28, 28, 32),
    "white": (232, 232, 226),
    "red": (196, 32, 38),
    "purple": (112, 48, 150),
    "yellow": (236, 202, 40),
    "gray": (126, 126, 130),
    "blue": (36, 72, 176),
    "green": (38, 134, 62),
    "pink": (240, 140, 178),
    "brown": (112, 70, 38),
}
# Colours outside the vocabulary, for identities whose colour flags are all "no" (about 10 % in the real file).
OFF_VOCABULARY: tuple[RGB, ...] = ((236, 124, 30), (214, 194, 156), (28, 142, 142), (176, 168, 96))
SKIN: tuple[RGB, ...] = ((246, 214, 186), (232, 190, 152), (206, 156, 116), (170, 118, 80), (122, 82, 54), (88, 58, 40))
HAIR: tuple[RGB, ...] = ((26, 22, 20), (58, 38, 24), (98, 62, 34), (188, 156, 96), (126, 54, 28))
OLD_HAIR: tuple[RGB, ...] = ((168, 168, 166), (214, 214, 210), (126, 124, 122))
SHOES: tuple[RGB, ...] = ((20, 20, 22), (236, 236, 236), (96, 60, 34), (110, 110, 116), (40, 60, 130), (180, 40, 40))
ACCESSORY: tuple[RGB, ...] = (
    (24, 24, 26),
    (60, 60, 66),
    (30, 50, 110),
    (120, 30, 36),
    (90, 60, 36),
    (40, 90, 60),
    (200, 200, 196),
    (160, 110, 60),
)
# Hats: picked far from the hair colour so that a hat is never mistaken for hair.
HATS: tuple[RGB, ...] = (
    (24, 24, 26),
    (200, 200, 196),
    (196, 40, 40),
    (230, 200, 50),
    (40, 60, 150),
    (240, 240, 240),
    (40, 110, 60),
    (230, 120, 40),
)
PATTERNS: tuple[str, ...] = ("plain", "hstripes", "vstripes", "logo", "yoke", "band", "jacket")
PATTERN_WEIGHTS = (0.32, 0.14, 0.08, 0.20, 0.09, 0.08, 0.09)
LOGOS: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "bar")


@dataclass(frozen=True)
class Person:
    """One identity: its Market attributes and the details that tell it apart from look-alikes."""

    pid: int
    gender: int  # 1 male, 2 female
    age: int  # 1 young, 2 teenager, 3 adult, 4 old
    hair_long: bool
    sleeve_short: bool
    lower_short: bool
    dress: bool
    hat: bool
    backpack: bool
    bag: bool
    handbag: bool
    upper: int  # index into UPPER_COLOURS, -1 = none of them
    lower: int  # index into LOWER_COLOURS, -1 = none of them
    upper_rgb: RGB
    lower_rgb: RGB
    skin: RGB
    hair: RGB
    shoes: RGB
    hat_rgb: RGB
    backpack_rgb: RGB
    bag_rgb: RGB
    handbag_rgb: RGB
    pattern: str
    pattern_rgb: RGB
    logo: str
    build: float  # width factor
    stature: float  # height factor in the crop
    carry_side: int  # +1 the person's right, -1 left
    cane: bool
    bald: bool
    hat_brim: bool

    def market_attributes(self) -> dict[str, int]:
        """The identity's row of `market_attribute.mat` (1 = no / first class, 2 = yes / second)."""
        labels = {
            "age": self.age,
            "gender": self.gender,
            "hair": 2 if self.hair_long else 1,
            "up": 2 if self.sleeve_short else 1,
            "down": 2 if self.lower_short else 1,
            "clothes": 1 if self.dress else 2,
            "hat": 2 if self.hat else 1,
            "backpack": 2 if self.backpack else 1,
            "bag": 2 if self.bag else 1,
            "handbag": 2 if self.handbag else 1,
        }
        for i, name in enumerate(UPPER_COLOURS):
            labels[f"up{name}"] = 2 if i == self.upper else 1
        for i, name in enumerate(LOWER_COLOURS):
            labels[f"down{name}"] = 2 if i == self.lower else 1
        return {f: labels[f] for f in MARKET_FIELDS}


def _jitter(rng: np.random.Generator, rgb: RGB, amount: float = 0.10) -> RGB:
    scale = rng.uniform(1 - amount, 1 + amount * 0.6)
    return tuple(int(np.clip(c * scale + rng.integers(-8, 9), 0, 255)) for c in rgb)  # type: ignore[return-value]


def _distance(a: RGB, b: RGB) -> int:
    return sum(abs(x - y) for x, y in zip(a, b, strict=True))


def _pick(rng: np.random.Generator, options: Sequence[RGB]) -> RGB:
    return options[int(rng.integers(len(options)))]


def sample_person(rng: np.random.Generator, pid: int) -> Person:
    """A Market-like identity; rates are Market's, raised where Market is too rare to learn from."""
    gender = 2 if rng.random() < 0.45 else 1
    age = int(rng.choice([1, 2, 3, 4], p=[0.09, 0.43, 0.36, 0.12]))
    female = gender == 2
    hair_long = rng.random() < (0.72 if female else 0.10)
    dress = female and age != 4 and rng.random() < 0.33
    lower_short = rng.random() < (0.5 if dress else 0.3)
    upper = -1 if rng.random() < 0.10 else int(rng.choice(len(UPPER_COLOURS), p=UPPER_WEIGHTS))
    lower_p = np.array(LOWER_WEIGHTS)
    if not female:
        lower_p[LOWER_COLOURS.index("pink")] *= 0.2
    lower = -1 if rng.random() < 0.07 else int(rng.choice(len(LOWER_COLOURS), p=lower_p / lower_p.sum()))
    upper_rgb = _jitter(rng, PALETTE[UPPER_COLOURS[upper]] if upper >= 0 else _pick(rng, OFF_VOCABULARY))
    lower_rgb = _jitter(rng, PALETTE[LOWER_COLOURS[lower]] if lower >= 0 else _pick(rng, OFF_VOCABULARY))
    pattern = str(rng.choice(PATTERNS, p=PATTERN_WEIGHTS))
    contrast = [
        c
        for c in (*PALETTE.values(), *OFF_VOCABULARY)
        if sum(abs(a - b) for a, b in zip(c, upper_rgb, strict=True)) > 200
    ]
    hair = _jitter(rng, _pick(rng, OLD_HAIR if age == 4 else HAIR), 0.08)
    build = float(rng.uniform(0.9, 1.12)) * (0.92 if age == 2 else 1.0)
    return Person(
        pid=pid,
        gender=gender,
        age=age,
        hair_long=bool(hair_long),
        sleeve_short=bool(rng.random() < 0.6),
        lower_short=bool(lower_short),
        dress=bool(dress),
        hat=bool(rng.random() < 0.14),
        backpack=bool(rng.random() < (0.45 if age <= 2 else 0.22)),
        bag=bool(rng.random() < 0.22),
        handbag=bool(rng.random() < (0.24 if female else 0.08)),
        upper=upper,
        lower=lower,
        upper_rgb=upper_rgb,
        lower_rgb=lower_rgb,
        skin=_jitter(rng, _pick(rng, SKIN), 0.05),
        hair=hair,
        shoes=_jitter(rng, _pick(rng, SHOES), 0.05),
        hat_rgb=_jitter(rng, _pick(rng, [c for c in HATS if _distance(c, hair) > 150])),
        backpack_rgb=_jitter(rng, _pick(rng, ACCESSORY)),
        bag_rgb=_jitter(rng, _pick(rng, ACCESSORY)),
        handbag_rgb=_jitter(rng, _pick(rng, (*ACCESSORY, (200, 60, 90), (220, 180, 140)))),
        pattern=pattern,
        pattern_rgb=_jitter(rng, _pick(rng, contrast)),
        logo=str(rng.choice(LOGOS)),
        build=build,
        stature=float(rng.uniform(0.95, 1.0)) * (0.86 if age == 1 else 1.0),
        carry_side=1 if rng.random() < 0.5 else -1,
        cane=age == 4 and rng.random() < 0.5,
        bald=age == 4 and not female and rng.random() < 0.5,
        hat_brim=bool(rng.random() < 0.6),
    )


@lru_cache(maxsize=4096)
def identity(seed: int, pid: int) -> Person:
    """Identity `pid` of the set drawn with `seed`: the same person in every image and every worker."""
    return sample_person(seeded_rng(seed, 1, pid), pid)
