"""`personid synth`: procedural pedestrians written exactly in Market-1501's layout.

No person dataset can be downloaded where this project is built and tested, so tests, demos and the
default model all train on what this writes. The real loaders read it unchanged: `bounding_box_train/`,
`bounding_box_test/` (with `0000` distractors and `-1` junk), `query/`, names `PPPP_cCsS_FFFFFF_NN.jpg`
and `market_attribute.mat` in the published structure.

Every Market attribute is drawn so that it is visible (age by body proportions, grey hair and stoop;
gender by build and silhouette; hair, sleeves, lower-body length and type, hat, backpack, shoulder bag,
handbag, upper and lower colour), each identity gets its own details (skin, hair and shoe colour, clothing
pattern, build) so identities with equal attributes still differ, and each camera has its own viewpoint
mix, scale, lighting, white balance, backgrounds, blur, noise, JPEG quality and occluders.

Determinism: every image's random generator is seeded from (seed, kind, id, camera, index), so the same
arguments give byte-identical files whatever `--workers` is.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import multiprocessing
import os
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont
from tqdm import tqdm

from training.attributes_mat import MARKET_FIELDS, read_attribute_mat, write_attribute_mat

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
VIEWS: tuple[str, ...] = ("front", "back", "side")
AGE_NAMES = ("young", "teenager", "adult", "old")
SUPERSAMPLE = 2  # draw at 2x and box-downsample: cheap anti-aliasing for Pillow's aliased primitives
NAME_RE = re.compile(r"^(-1|\d{4})_c(\d+)s(\d+)_(\d{6})_(\d{2})\.jpg$")


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


@dataclass
class SplitSummary:
    identities: list[str]
    images: int
    attributes: dict[str, dict[str, int]]


@dataclass
class SynthSummary:
    """What was written: the tests compare the loaders against this."""

    out: str
    splits: dict[str, SplitSummary]
    folders: dict[str, int]
    distractors: int
    junk: int
    arguments: dict[str, object] = field(default_factory=dict)
    seconds: float = 0.0  # wall clock
    images_per_second: float = 0.0  # per wall-clock second
    cpu_seconds: float = 0.0  # this process and its workers: the fair figure on a busy machine


_NOT_RECORDED = ("out", "seconds", "images_per_second", "cpu_seconds")  # synth.json stays byte-identical


@dataclass(frozen=True)
class _Job:
    """One file to render; plain data so it pickles cheaply to worker processes."""

    path: str
    kind: int  # 0 identity, 1 distractor, 2 junk
    pid: int
    camera: int
    index: int
    seed: int
    cameras: int
    height: int
    width: int


# ---------------------------------------------------------------- identities and cameras


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng([int(k) & 0xFFFFFFFF for k in key])


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
    return sample_person(_rng(seed, 1, pid), pid)


@lru_cache(maxsize=64)
def camera(seed: int, index: int) -> Camera:
    """Camera `index` (1-based): a dominant viewpoint in turn (front, back, side, side...) and its own look."""
    rng = _rng(seed, 2, index)
    dominant = (0, 1, 2, 2)[(index - 1) % 4]
    weights = [0.2, 0.2, 0.2]
    weights[dominant] = 0.6
    wb = rng.uniform(0.9, 1.1, 3)
    styles = ("brick", "shop", "park", "concrete", "station")
    return Camera(
        index=index,
        view_weights=(weights[0], weights[1], weights[2]),
        scale=float(rng.uniform(0.80, 0.92)),
        gain=float(rng.uniform(0.82, 1.12)),
        white_balance=(float(wb[0]), float(wb[1]), float(wb[2])),
        contrast=float(rng.uniform(0.85, 1.08)),
        blur=float(rng.uniform(0.0, 0.55)),
        noise=float(rng.uniform(1.5, 6.0)),
        quality=int(rng.integers(68, 96)),
        occlusion=float(rng.uniform(0.06, 0.18)),
        style=styles[(index - 1 + int(rng.integers(len(styles)))) % len(styles)] if index > 5 else styles[index - 1],
    )


# ---------------------------------------------------------------- backgrounds


def _value_noise(rng: np.random.Generator, w: int, h: int, cell: int) -> np.ndarray:
    """Smooth noise in [0, 1]: a coarse random grid upsampled bicubically (fast, looks like dirt and foliage)."""
    small = (rng.random((max(2, h // cell), max(2, w // cell))) * 255).astype(np.uint8)
    return np.asarray(Image.fromarray(small).resize((w, h), Image.BICUBIC), dtype=np.float32) / 255.0


def _tone(base: RGB, noise: np.ndarray, amount: float) -> np.ndarray:
    return np.clip(np.array(base, np.float32) * (1 - amount / 2 + amount * noise[..., None]), 0, 255)


def _background(rng: np.random.Generator, style: str, w: int, h: int) -> Image.Image:
    """A street scene texture: wall/shop/hedge above a horizon, pavement/asphalt/grass below."""
    horizon = int(h * rng.uniform(0.42, 0.62))
    fine = _value_noise(rng, w, h, 3)
    coarse = _value_noise(rng, w, h, 24)
    mix = 0.5 * fine + 0.5 * coarse
    shade = float(rng.uniform(0.8, 1.15))

    def col(rgb: RGB) -> RGB:
        return tuple(int(min(255, c * shade)) for c in rgb)  # type: ignore[return-value]

    if style == "park":
        top = _tone(col((70, 110, 60)), 0.3 * fine + 0.7 * coarse, 0.9)
        bottom = _tone(col((96, 140, 70)) if rng.random() < 0.5 else col((170, 160, 140)), mix, 0.5)
    elif style == "shop":
        top = _tone(col((90, 100, 112)), coarse, 0.5)
        bottom = _tone(col((120, 120, 122)), mix, 0.35)
    elif style == "station":
        top = _tone(col((196, 192, 180)), mix, 0.2)
        bottom = _tone(col((150, 146, 140)), mix, 0.25)
    elif style == "concrete":
        top = _tone(col((168, 164, 156)), mix, 0.35)
        bottom = _tone(col((80, 82, 86)), fine, 0.4)
    else:  # brick
        top = _tone(col((150, 84, 62)) if rng.random() < 0.6 else col((140, 130, 120)), mix, 0.35)
        bottom = _tone(col((150, 150, 146)), mix, 0.3)
    arr = np.concatenate([top[:horizon], bottom[horizon:]], axis=0).astype(np.uint8)
    img = Image.fromarray(arr)
    d = ImageDraw.Draw(img)
    line = tuple(int(c) for c in (np.array(bottom[-1, 0]) * 0.7))
    if style == "brick":
        mortar = (190, 180, 170)
        bh = int(rng.integers(7, 11))
        for row, y in enumerate(range(0, horizon, bh)):
            d.line([(0, y), (w, y)], fill=mortar, width=1)
            for x in range((row % 2) * bh, w, bh * 2):
                d.line([(x, y), (x, y + bh)], fill=mortar, width=1)
    elif style == "shop":
        x = int(rng.integers(0, 30))
        while x < w:
            pw = int(rng.integers(40, 90))
            glass = tuple(int(c) for c in rng.integers(40, 110, 3))
            d.rectangle(
                [x + 4, int(horizon * 0.15), x + pw - 4, horizon - 6], fill=glass, outline=(200, 200, 200), width=3
            )
            d.line([(x + 10, horizon * 0.3), (x + pw * 0.6, horizon * 0.9)], fill=(150, 160, 170), width=2)
            x += pw
    elif style == "station":
        step = int(rng.integers(12, 20))
        for y in range(0, horizon, step):
            d.line([(0, y), (w, y)], fill=(150, 150, 146), width=1)
        for x in range(0, w, step):
            d.line([(x, 0), (x, horizon)], fill=(150, 150, 146), width=1)
        poster = tuple(int(c) for c in rng.integers(60, 200, 3))
        px = int(rng.integers(0, w - 60))
        d.rectangle([px, int(horizon * 0.2), px + 50, int(horizon * 0.75)], fill=poster, outline=(40, 40, 40), width=2)
    elif style == "concrete":
        for x in range(int(rng.integers(0, 40)), w, int(rng.integers(50, 90))):
            d.line([(x, 0), (x, horizon)], fill=(120, 118, 112), width=2)
        for y in range(horizon + 10, h, 26):
            d.rectangle([0, y, w, y + 10], fill=(205, 205, 200))
    if style in {"brick", "shop", "station"}:
        step = int(rng.integers(22, 36))
        for y in range(horizon, h, step // 2):
            d.line([(0, y), (w, y)], fill=line, width=1)
        for x in range(0, w, step):
            d.line([(x, horizon), (x - (x - w / 2) * 0.6, h)], fill=line, width=1)
    d.line([(0, horizon), (w, horizon)], fill=tuple(int(c * 0.6) for c in top[horizon - 1, 0]), width=3)
    return img


@lru_cache(maxsize=64)
def _backgrounds(seed: int, cam: int, w: int, h: int) -> tuple[Image.Image, ...]:
    """A few large scenes per camera, rendered once per process; each image crops a window from one."""
    rng = _rng(seed, 3, cam)
    style = camera(seed, cam).style
    return tuple(_background(rng, style, w * 3, int(h * 1.3)) for _ in range(3))


# ---------------------------------------------------------------- drawing


class _Pen:
    """Draws in person space: x in person heights from the body axis, y in person heights from the head top."""

    def __init__(self, draw: ImageDraw.ImageDraw, cx: float, top: float, ph: float, lean: float, hip: float):
        self.d, self.cx, self.top, self.ph, self.lean, self.hip = draw, cx, top, ph, lean, hip

    def p(self, x: float, y: float) -> tuple[float, float]:
        if y < self.hip:
            x += self.lean * (self.hip - y)
        return (self.cx + x * self.ph, self.top + y * self.ph)

    def poly(self, pts: Sequence[tuple[float, float]], fill: RGB) -> None:
        self.d.polygon([self.p(x, y) for x, y in pts], fill=fill)

    def ellipse(self, x: float, y: float, rx: float, ry: float, fill: RGB) -> None:
        px, py = self.p(x, y)
        self.d.ellipse([px - rx * self.ph, py - ry * self.ph, px + rx * self.ph, py + ry * self.ph], fill=fill)

    def chord(self, x: float, y: float, rx: float, ry: float, start: float, end: float, fill: RGB) -> None:
        px, py = self.p(x, y)
        box = [px - rx * self.ph, py - ry * self.ph, px + rx * self.ph, py + ry * self.ph]
        self.d.chord(box, start, end, fill=fill)

    def limb(self, pts: Sequence[tuple[float, float]], width: float, fill: RGB) -> None:
        """A thick polyline with round joints and caps (arms, legs, straps)."""
        px = [self.p(x, y) for x, y in pts]
        wpx = max(1.0, width * self.ph)
        self.d.line(px, fill=fill, width=round(wpx), joint="curve")
        r = wpx / 2
        for x, y in (px[0], px[-1]):
            self.d.ellipse([x - r, y - r, x + r, y + r], fill=fill)

    def rect(self, x0: float, y0: float, x1: float, y1: float, fill: RGB, radius: float = 0.0) -> None:
        a, b = self.p(x0, y0), self.p(x1, y1)
        box = [min(a[0], b[0]), min(a[1], b[1]), max(a[0], b[0]), max(a[1], b[1])]
        if radius > 0:
            self.d.rounded_rectangle(box, radius=radius * self.ph, fill=fill)
        else:
            self.d.rectangle(box, fill=fill)


def _shade(rgb: RGB, f: float) -> RGB:
    return tuple(int(min(255, c * f)) for c in rgb)  # type: ignore[return-value]


@dataclass(frozen=True)
class _Body:
    """Proportions in person heights; age sets the head ratio and leg length, gender the silhouette."""

    head_h: float
    head_w: float
    shoulder_y: float
    waist_y: float
    hip_y: float
    crotch_y: float
    knee_y: float
    ankle_y: float
    shoulder_w: float
    waist_w: float
    hip_w: float
    thigh_w: float
    shin_w: float
    arm_w: float
    upper_arm: float
    forearm: float
    depth: float


@lru_cache(maxsize=4096)
def _body(p: Person) -> _Body:
    head_h = {1: 0.195, 2: 0.158, 3: 0.132, 4: 0.135}[p.age]
    rest = 1.0 - head_h
    female = p.gender == 2
    shoulder = (0.215 if female else 0.265) * p.build * (1.05 if p.age == 1 else 1.0)
    crotch = head_h + rest * (0.47 if p.age == 1 else 0.455)
    limb = rest / 0.868
    return _Body(
        head_h=head_h,
        head_w=head_h * (0.8 if p.age == 1 else 0.74),
        shoulder_y=head_h + (0.012 if p.age == 4 else 0.026),
        waist_y=head_h + rest * 0.3,
        hip_y=crotch - 0.035,
        crotch_y=crotch,
        knee_y=crotch + (0.955 - crotch) * 0.5,
        ankle_y=0.955,
        shoulder_w=shoulder,
        waist_w=shoulder * (0.66 if female else 0.82),
        hip_w=shoulder * (1.0 if female else 0.78),
        thigh_w=(0.078 if female else 0.085) * p.build,
        shin_w=0.058 * p.build,
        arm_w=(0.046 if female else 0.056) * p.build,
        upper_arm=0.19 * limb,
        forearm=0.19 * limb,
        depth=(0.15 if female else 0.16) * p.build,
    )


def _polar(x: float, y: float, length: float, angle: float) -> tuple[float, float]:
    """Point `length` away at `angle` radians from straight down (positive = towards +x)."""
    return (x + length * math.sin(angle), y + length * math.cos(angle))


def _pattern(pen: _Pen, p: Person, b: _Body, view: str, half: float) -> None:
    """The identity's clothing detail on the torso (`half` = torso half-width at the chest)."""
    top, bottom = b.shoulder_y + 0.012, b.hip_y + 0.01
    c = p.pattern_rgb
    if p.pattern == "hstripes":
        y = top + 0.03
        while y < bottom - 0.01:
            pen.rect(-half * 0.9, y, half * 0.9, y + 0.009, c)
            y += 0.045
    elif p.pattern == "vstripes" and view != "side":
        for x in (-half * 0.5, 0.0, half * 0.5):
            pen.rect(x - 0.006, top + 0.01, x + 0.006, bottom - 0.01, c)
    elif p.pattern == "band":
        y = b.shoulder_y + (b.waist_y - b.shoulder_y) * 0.45
        pen.rect(-half * 0.92, y, half * 0.92, y + 0.028, c)
    elif p.pattern == "yoke":
        pen.rect(-half * 0.95, top - 0.006, half * 0.95, top + 0.03, c)
    elif p.pattern == "jacket" and view == "front":
        pen.poly([(-0.02, top), (0.02, top), (0.026, bottom), (-0.026, bottom)], c)
    elif p.pattern == "logo" and view == "front":
        x, y, r = 0.0, top + (b.waist_y - top) * 0.42, 0.032
        if p.logo == "circle":
            pen.ellipse(x, y, r, r, c)
        elif p.logo == "square":
            pen.rect(x - r, y - r, x + r, y + r, c)
        elif p.logo == "triangle":
            pen.poly([(x, y - r), (x + r, y + r), (x - r, y + r)], c)
        elif p.logo == "diamond":
            pen.poly([(x, y - r * 1.2), (x + r, y), (x, y + r * 1.2), (x - r, y)], c)
        else:
            pen.rect(x - r * 1.5, y - r * 0.35, x + r * 1.5, y + r * 0.35, c)


def _head(pen: _Pen, p: Person, b: _Body, view: str) -> None:
    """Neck, head, face, hair and hat; hair length and colour and the hat are attributes, keep them plain."""
    hw, hh = b.head_w / 2, b.head_h / 2
    cy = hh + (0.01 if p.age == 4 else 0.0)
    neck = b.head_w * 0.36
    pen.rect(-neck / 2, cy + hh * 0.6, neck / 2, b.shoulder_y + 0.01, _shade(p.skin, 0.9))
    if view == "front":
        pen.ellipse(0, cy, hw, hh, p.skin)
        if p.bald:
            pen.ellipse(-hw * 0.92, cy - hh * 0.1, hw * 0.16, hh * 0.4, p.hair)
            pen.ellipse(hw * 0.92, cy - hh * 0.1, hw * 0.16, hh * 0.4, p.hair)
        else:
            pen.chord(0, cy - hh * 0.05, hw * 1.06, hh * 1.02, 180, 360, p.hair)
            pen.ellipse(0, cy - hh * 0.45, hw * 0.9, hh * 0.32, p.hair)
        eye = _shade(p.skin, 0.35)
        pen.ellipse(-hw * 0.38, cy + hh * 0.1, hw * 0.13, hh * 0.08, eye)
        pen.ellipse(hw * 0.38, cy + hh * 0.1, hw * 0.13, hh * 0.08, eye)
        pen.rect(-hw * 0.25, cy + hh * 0.52, hw * 0.25, cy + hh * 0.6, _shade(p.skin, 0.6))
    elif view == "back":
        pen.ellipse(0, cy, hw, hh, p.skin if p.bald else p.hair)
        if p.bald:
            pen.chord(0, cy, hw * 1.02, hh * 1.02, 10, 170, p.hair)
    else:
        pen.ellipse(0, cy, hw * 1.05, hh, p.skin)
        pen.poly([(hw * 0.95, cy - hh * 0.1), (hw * 1.3, cy + hh * 0.25), (hw * 0.95, cy + hh * 0.35)], p.skin)
        if p.bald:
            pen.chord(-hw * 0.1, cy, hw * 1.05, hh * 1.02, 90, 200, p.hair)
        else:
            pen.chord(0, cy, hw * 1.1, hh * 1.04, 150, 360, p.hair)
            pen.ellipse(-hw * 0.45, cy, hw * 0.62, hh * 0.85, p.hair)
        pen.ellipse(hw * 0.55, cy + hh * 0.05, hw * 0.12, hh * 0.08, _shade(p.skin, 0.35))
    if p.hat:
        side = 1.0 if view == "side" else 0.0
        pen.chord(0, cy - hh * 0.2, hw * 1.12, hh * 0.95, 180, 360, p.hat_rgb)
        pen.rect(-hw * 1.12, cy - hh * 0.28, hw * 1.12, cy - hh * 0.12, _shade(p.hat_rgb, 0.8))
        if p.hat_brim and view == "front":
            pen.ellipse(0, cy - hh * 0.16, hw * 1.25, hh * 0.12, _shade(p.hat_rgb, 0.75))
        elif p.hat_brim and side:
            pen.poly(
                [(hw * 0.6, cy - hh * 0.26), (hw * 1.75, cy - hh * 0.12), (hw * 0.6, cy - hh * 0.08)],
                _shade(p.hat_rgb, 0.75),
            )


def _long_hair(pen: _Pen, p: Person, b: _Body, view: str) -> None:
    """Hair to below the shoulders: a band behind the head in front view, over the back in back/side view."""
    if not p.hair_long or p.bald:
        return
    hw, cy = b.head_w / 2, b.head_h / 2
    end = b.shoulder_y + 0.11
    if view == "front":
        pen.poly([(-hw * 1.15, cy - 0.01), (hw * 1.15, cy - 0.01), (hw * 1.35, end), (-hw * 1.35, end)], p.hair)
    elif view == "back":
        pen.poly([(-hw * 1.05, cy), (hw * 1.05, cy), (hw * 1.3, end + 0.03), (-hw * 1.3, end + 0.03)], p.hair)
        pen.ellipse(0, end + 0.03, hw * 1.3, 0.02, p.hair)
    else:
        pen.poly([(-hw * 1.05, cy - 0.01), (hw * 0.1, cy - 0.01), (-hw * 0.2, end), (-hw * 1.35, end + 0.02)], p.hair)


def _legs_front(pen: _Pen, p: Person, b: _Body, phase: float) -> None:
    lower, skin = p.lower_rgb, _shade(p.skin, 0.95)
    for side in (-1, 1):
        lift = 0.022 * max(0.0, math.sin(phase) * side)
        hx = side * b.hip_w * 0.26
        hip, knee, ankle = (hx, b.hip_y), (hx * 0.9, b.knee_y - lift), (hx * 0.85, b.ankle_y - lift)
        pen.limb([hip, knee], b.thigh_w, skin)
        pen.limb([knee, ankle], b.shin_w, skin)
        pen.ellipse(ankle[0] + side * 0.006, ankle[1] + 0.022, 0.034, 0.022, p.shoes)
        if not p.dress:
            if p.lower_short:
                mid = (hx * 0.95, b.crotch_y + (b.knee_y - b.crotch_y) * 0.45)
                pen.limb([hip, mid], b.thigh_w * 1.2, lower)
            else:
                pen.limb([hip, knee], b.thigh_w * 1.1, lower)
                pen.limb([knee, (ankle[0], ankle[1] - 0.006)], b.shin_w * 1.25, lower)
    if not p.dress:
        hw = b.hip_w / 2
        pen.poly(
            [(-hw, b.hip_y - 0.03), (hw, b.hip_y - 0.03), (hw * 0.95, b.crotch_y), (-hw * 0.95, b.crotch_y)], lower
        )


def _legs_side(pen: _Pen, p: Person, b: _Body, phase: float, far: bool) -> None:
    """One leg seen from the side, swinging with `phase`; the far leg is drawn darker, behind the body."""
    swing = 0.3 * math.sin(phase) * (-1 if far else 1)
    f = 0.78 if far else 1.0
    shin_angle = swing - (0.3 if swing < 0 else 0.04)
    hip = (0.0, b.hip_y)
    knee = _polar(*hip, b.knee_y - b.hip_y, swing)
    ankle = _polar(*knee, b.ankle_y - b.knee_y, shin_angle)
    skin, lower = _shade(p.skin, 0.95 * f), _shade(p.lower_rgb, f)
    pen.limb([hip, knee], b.thigh_w, skin)
    pen.limb([knee, ankle], b.shin_w, skin)
    pen.limb([(ankle[0] - 0.012, ankle[1] + 0.018), (ankle[0] + 0.05, ankle[1] + 0.02)], 0.034, _shade(p.shoes, f))
    if not p.dress:
        if p.lower_short:
            pen.limb([hip, _polar(*hip, (b.knee_y - b.hip_y) * 0.55, swing)], b.thigh_w * 1.25, lower)
        else:
            pen.limb([hip, knee], b.thigh_w * 1.12, lower)
            pen.limb([knee, _polar(*knee, b.ankle_y - b.knee_y - 0.006, shin_angle)], b.shin_w * 1.25, lower)


def _dress(pen: _Pen, p: Person, b: _Body, view: str) -> None:
    hem = b.ankle_y - 0.04 if not p.lower_short else b.knee_y - 0.05
    top = b.waist_y
    half_top = (b.waist_w if view != "side" else b.depth) / 2 * 1.05
    flare = (b.hip_w if view != "side" else b.depth) / 2 * (1.55 if p.lower_short else 1.8)
    pen.poly([(-half_top, top), (half_top, top), (flare, hem), (-flare, hem)], p.lower_rgb)


def _arm(pen: _Pen, p: Person, b: _Body, shoulder: tuple[float, float], angle: float, bend: float, f: float) -> tuple:
    elbow = _polar(*shoulder, b.upper_arm, angle)
    wrist = _polar(*elbow, b.forearm, angle + bend)
    skin, upper = _shade(p.skin, f), _shade(p.upper_rgb, f)
    pen.limb([shoulder, elbow, wrist], b.arm_w * 0.85, skin)
    if p.sleeve_short:
        pen.limb([shoulder, _polar(*shoulder, b.upper_arm * 0.55, angle)], b.arm_w * 1.12, upper)
    else:
        pen.limb([shoulder, elbow, _polar(*elbow, b.forearm * 0.9, angle + bend)], b.arm_w * 1.05, upper)
    hand = _polar(*wrist, 0.022, angle + bend)
    pen.ellipse(*hand, b.arm_w * 0.5, 0.026, skin)
    return hand


def _handbag(pen: _Pen, p: Person, hand: tuple[float, float], f: float) -> None:
    x, y = hand
    c = _shade(p.handbag_rgb, f)
    pen.limb([(x - 0.025, y + 0.035), (x, y - 0.004), (x + 0.025, y + 0.035)], 0.008, _shade(c, 0.7))
    pen.rect(x - 0.045, y + 0.03, x + 0.045, y + 0.105, c, radius=0.012)


def _draw_front_back(pen: _Pen, p: Person, b: _Body, view: str, phase: float) -> None:
    back = view == "back"
    right = 1 if back else -1  # image-x sign of the person's right side
    carry = right * p.carry_side
    sw, half = b.shoulder_w / 2, b.shoulder_w / 2
    if p.backpack and not back:
        pen.rect(-sw * 0.78, b.shoulder_y - 0.03, sw * 0.78, b.waist_y, _shade(p.backpack_rgb, 0.85), radius=0.02)
    _legs_front(pen, p, b, phase)
    if p.dress:
        _dress(pen, p, b, view)
    y0 = b.shoulder_y
    torso = [
        (-sw * 0.8, y0),
        (sw * 0.8, y0),
        (sw, y0 + 0.022),
        (sw * 0.97, y0 + 0.06),
        (b.waist_w / 2, b.waist_y),
        (b.hip_w / 2 * 1.02, b.hip_y + 0.015),
        (-b.hip_w / 2 * 1.02, b.hip_y + 0.015),
        (-b.waist_w / 2, b.waist_y),
        (-sw * 0.97, y0 + 0.06),
        (-sw, y0 + 0.022),
    ]
    pen.poly(torso, p.upper_rgb)
    pen.poly([*torso[3:6], (sw * 0.7, b.hip_y + 0.015), (sw * 0.75, y0 + 0.06)], _shade(p.upper_rgb, 0.88))
    _pattern(pen, p, b, view, half)
    if p.backpack and back:
        bp = p.backpack_rgb
        pen.rect(-sw * 0.74, b.shoulder_y - 0.012, sw * 0.74, b.waist_y + 0.035, bp, radius=0.025)
        pen.rect(-sw * 0.5, b.waist_y - 0.05, sw * 0.5, b.waist_y + 0.02, _shade(bp, 0.8), radius=0.012)
        pen.limb([(-sw * 0.2, b.shoulder_y - 0.015), (sw * 0.2, b.shoulder_y - 0.015)], 0.01, _shade(bp, 0.7))
    if not back:
        _long_hair(pen, p, b, view)
    hands = {}
    for side in (-1, 1):
        holds = p.handbag and side == carry
        swing = 0.05 * math.sin(phase) * side
        angle = side * (0.16 if holds else 0.07) + swing
        hands[side] = _arm(pen, p, b, (side * (sw - b.arm_w * 0.45), b.shoulder_y + 0.022), angle, -side * 0.06, 1.0)
    if p.backpack and not back:
        for side in (-1, 1):
            pen.limb(
                [(side * sw * 0.55, b.shoulder_y + 0.004), (side * sw * 0.5, b.waist_y - 0.02)],
                0.02,
                _shade(p.backpack_rgb, 0.85),
            )
    if p.bag:
        strap = _shade(p.bag_rgb, 0.6)
        bx, by = carry * (b.hip_w / 2 + 0.025), b.hip_y - 0.01
        pen.limb([(-carry * sw * 0.55, b.shoulder_y + 0.004), (bx * 0.8, by - 0.02)], 0.011, strap)
        pen.rect(bx - 0.05, by - 0.025, bx + 0.05, by + 0.055, p.bag_rgb, radius=0.012)
        pen.rect(bx - 0.05, by - 0.025, bx + 0.05, by + 0.0, _shade(p.bag_rgb, 0.8), radius=0.008)
    if p.handbag:
        _handbag(pen, p, hands[carry], 1.0)
    if p.cane:
        hx, hy = hands[carry]
        pen.limb([(hx, hy), (hx + carry * 0.03, 1.0)], 0.012, (70, 50, 30))
    _head(pen, p, b, view)
    if back:
        _long_hair(pen, p, b, view)
    if p.hair_long and view == "front" and not p.bald:
        hw, cy = b.head_w / 2, b.head_h / 2
        for side in (-1, 1):
            pen.poly(
                [
                    (side * hw * 0.8, cy - 0.02),
                    (side * hw * 1.15, cy - 0.01),
                    (side * hw * 1.3, cy + 0.09),
                    (side * hw * 0.95, cy + 0.09),
                ],
                p.hair,
            )


def _draw_side(pen: _Pen, p: Person, b: _Body, phase: float) -> None:
    """Facing +x; the caller mirrors half of the side views."""
    d = b.depth / 2
    arm_swing = 0.32 * math.sin(phase)
    shoulder = (0.0, b.shoulder_y + 0.025)
    far_hand = _arm(pen, p, b, shoulder, arm_swing, 0.15, 0.78)
    _legs_side(pen, p, b, phase, far=True)
    _legs_side(pen, p, b, phase, far=False)
    if not p.dress:
        pen.poly(
            [(-d, b.hip_y - 0.03), (d, b.hip_y - 0.03), (d * 0.8, b.crotch_y), (-d * 0.8, b.crotch_y)], p.lower_rgb
        )
    else:
        _dress(pen, p, b, "side")
    bust = 0.025 if p.gender == 2 and p.age >= 2 else 0.0
    torso = [
        (-d * 0.9, b.shoulder_y),
        (d * 0.9, b.shoulder_y),
        (d + bust, b.shoulder_y + 0.08),
        (d * 0.85, b.waist_y),
        (d * 1.0, b.hip_y + 0.015),
        (-d * 1.0, b.hip_y + 0.015),
        (-d * 0.85, b.waist_y),
        (-d * 1.05, b.shoulder_y + 0.07),
    ]
    pen.poly(torso, p.upper_rgb)
    pen.poly(
        [
            (-d * 0.9, b.shoulder_y),
            (-d * 0.4, b.shoulder_y),
            (-d * 0.45, b.hip_y + 0.015),
            (-d * 1.0, b.hip_y + 0.015),
            (-d * 0.85, b.waist_y),
            (-d * 1.05, b.shoulder_y + 0.07),
        ],
        _shade(p.upper_rgb, 0.86),
    )
    _pattern(pen, p, b, "side", d)
    if p.backpack:
        bp = p.backpack_rgb
        pen.rect(-d - 0.11, b.shoulder_y - 0.005, -d + 0.012, b.waist_y + 0.035, bp, radius=0.025)
        pen.rect(-d - 0.125, b.waist_y - 0.06, -d - 0.06, b.waist_y + 0.02, _shade(bp, 0.8), radius=0.012)
        pen.limb([(-d * 0.3, b.shoulder_y), (d * 0.5, b.shoulder_y + 0.1)], 0.016, _shade(bp, 0.85))
    if p.bag:
        pen.limb([(-d * 0.5, b.shoulder_y + 0.002), (d * 0.7, b.hip_y - 0.03)], 0.011, _shade(p.bag_rgb, 0.6))
        pen.rect(-0.045, b.hip_y - 0.035, 0.06, b.hip_y + 0.05, p.bag_rgb, radius=0.012)
    _long_hair(pen, p, b, "side")
    near_hand = _arm(pen, p, b, shoulder, -arm_swing if not p.handbag else 0.05, 0.12, 1.0)
    if p.handbag:
        _handbag(pen, p, near_hand, 1.0)
    if p.cane:
        pen.limb([far_hand if p.handbag else near_hand, (near_hand[0] + 0.08, 1.0)], 0.012, (70, 50, 30))
    _head(pen, p, b, "side")


def draw_person(img: Image.Image, p: Person, view: str, phase: float, cx: float, foot: float, ph: float) -> None:
    """Draw `p` standing with feet at `foot` (pixels), `ph` pixels tall, centred on `cx`, seen from `view`."""
    b = _body(p)
    top = foot - ph
    shadow = ImageDraw.Draw(img, "RGBA")
    shadow.ellipse([cx - ph * 0.16, foot - ph * 0.02, cx + ph * 0.16, foot + ph * 0.015], fill=(0, 0, 0, 70))
    lean = 0.2 if (p.age == 4 and view == "side") else 0.0
    pen = _Pen(ImageDraw.Draw(img), cx, top, ph, lean, b.hip_y)
    if view == "side":
        _draw_side(pen, p, b, phase)
    else:
        _draw_front_back(pen, p, b, view, phase)


def _occluder(img: Image.Image, rng: np.random.Generator, seed: int) -> None:
    """Something at the image edge in front of the person: a pole, a box or a passer-by."""
    w, h = img.size
    d = ImageDraw.Draw(img)
    kind = rng.integers(3)
    left = rng.random() < 0.5
    if kind == 0:
        pw = w * rng.uniform(0.08, 0.16)
        x = rng.uniform(0, w * 0.12) if left else rng.uniform(w * 0.8, w - pw)
        c = tuple(int(v) for v in rng.integers(40, 150) * np.array([1.0, 1.0, 1.05]))
        d.rectangle([x, 0, x + pw, h], fill=c)
        d.rectangle([x + pw * 0.65, 0, x + pw, h], fill=_shade(c, 0.75))
    elif kind == 1:
        bw, bh = w * rng.uniform(0.3, 0.5), h * rng.uniform(0.12, 0.25)
        x = -bw * 0.3 if left else w - bw * 0.7
        c = tuple(int(v) for v in rng.integers(60, 200, 3))
        d.rectangle([x, h - bh, x + bw, h], fill=c)
        d.rectangle([x, h - bh, x + bw, h - bh + bh * 0.15], fill=_shade(c, 1.2))
    else:
        other = sample_person(rng, 0)
        ph = h * rng.uniform(0.8, 0.95)
        cx = w * (rng.uniform(-0.3, -0.15) if left else rng.uniform(1.15, 1.3))
        draw_person(img, other, str(rng.choice(VIEWS)), float(rng.uniform(0, 2 * math.pi)), cx, h * 0.97, ph)


@lru_cache(maxsize=8)
def _noise_field(height: int, width: int) -> np.ndarray:
    """Unit sensor noise, drawn once per process; each image takes a random window (drawing it anew costs more)."""
    return np.random.default_rng(12345).standard_normal((height + 64, width + 64, 3), dtype=np.float32)


def _finish(img: Image.Image, cam: Camera, rng: np.random.Generator, width: int, height: int) -> Image.Image:
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


def _scene(job: _Job, rng: np.random.Generator) -> tuple[Image.Image, Camera]:
    cam = camera(job.seed, job.camera)
    w, h = job.width * SUPERSAMPLE, job.height * SUPERSAMPLE
    scenes = _backgrounds(job.seed, job.camera, w, h)
    bg = scenes[int(rng.integers(len(scenes)))]
    x0, y0 = int(rng.integers(0, bg.width - w)), int(rng.integers(0, bg.height - h))
    return bg.crop((x0, y0, x0 + w, y0 + h)), cam


def render(job: _Job) -> tuple[Image.Image, int]:
    """The image of one job and its JPEG quality, deterministic in the job's fields."""
    rng = _rng(job.seed, 4 + job.kind, job.pid + 1, job.camera, job.index)
    img, cam = _scene(job, rng)
    w, h = img.size
    if job.kind == 0:
        person = identity(job.seed, job.pid)
        view = str(rng.choice(VIEWS, p=cam.view_weights))
        ph = h * cam.scale * person.stature * rng.uniform(0.95, 1.05)
        foot = h * rng.uniform(0.94, 0.99)
        cx = w / 2 + w * rng.uniform(-0.06, 0.06)
        mirror = view == "side" and rng.random() < 0.5
        draw_person(img, person, view, float(rng.uniform(0, 2 * math.pi)), cx, foot, ph)
        if mirror:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        if rng.random() < cam.occlusion:
            _occluder(img, rng, job.seed)
    elif job.kind == 2 or rng.random() < 0.6:
        # junk and most distractors: a part of a body, badly framed (too big, cut, off-centre)
        person = sample_person(rng, 0)
        ph = h * rng.uniform(1.3, 2.4)
        foot = h * rng.uniform(0.6, 1.0) + (ph - h) * rng.uniform(0, 1)
        cx = w / 2 + w * rng.uniform(-0.45, 0.45)
        draw_person(img, person, str(rng.choice(VIEWS)), float(rng.uniform(0, 2 * math.pi)), cx, foot, ph)
    else:
        # a background-only false detection, maybe with a far-away person
        if rng.random() < 0.5:
            _occluder(img, rng, job.seed)
        else:
            ph = h * rng.uniform(0.25, 0.45)
            draw_person(
                img,
                sample_person(rng, 0),
                str(rng.choice(VIEWS)),
                0.0,
                w * rng.uniform(0.2, 0.8),
                h * rng.uniform(0.6, 0.95),
                ph,
            )
    quality = int(np.clip(cam.quality + rng.integers(-5, 6), 40, 98))
    return _finish(img, cam, rng, job.width, job.height), quality


def _write(job_and_root: tuple[_Job, str]) -> None:
    job, root = job_and_root
    image, quality = render(job)
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=quality)
    (Path(root) / job.path).write_bytes(buf.getvalue())


# ---------------------------------------------------------------- the dataset plan


def _camera_counts(rng: np.random.Generator, images: int, cameras: int) -> dict[int, int]:
    """How many images each camera took of one identity: at least two cameras, every chosen one at least one."""
    n_cams = min(images, cameras, int(rng.integers(min(2, cameras), cameras + 1)) if cameras > 2 else cameras)
    n_cams = max(n_cams, min(2, images, cameras))
    chosen = sorted(int(c) + 1 for c in rng.choice(cameras, n_cams, replace=False))
    counts = dict.fromkeys(chosen, 1)
    for c in rng.choice(chosen, images - n_cams):
        counts[int(c)] += 1
    return counts


def _queries(counts: dict[int, int]) -> set[int]:
    """Cameras that give one query image each, such that every query keeps a gallery image in another camera."""
    chosen: set[int] = set()
    for cam in sorted(counts, key=lambda c: (-counts[c], c)):
        trial = chosen | {cam}
        gallery = {c: n - (c in trial) for c, n in counts.items()}
        if all(any(n > 0 for c, n in gallery.items() if c != q) for q in trial):
            chosen = trial
    return chosen


def _name(pid: int, cam: int, seq: int, frame: int, box: int) -> str:
    prefix = "-1" if pid < 0 else f"{pid:04d}"
    return f"{prefix}_c{cam}s{seq}_{frame:06d}_{box:02d}.jpg"


def _plan(
    seed: int, identities: int, test_identities: int, cameras: int, per_identity: int, height: int, width: int
) -> tuple[list[int], list[int], list[_Job]]:
    rng = _rng(seed, 0)
    pids = [int(p) for p in rng.choice(np.arange(1, 1502), identities, replace=False)]
    test = sorted(pids[:test_identities])
    train = sorted(pids[test_identities:])
    jobs: list[_Job] = []

    def job(path: str, kind: int, pid: int, cam: int, index: int) -> _Job:
        return _Job(path, kind, pid, cam, index, seed, cameras, height, width)

    for split, ids in (("train", train), ("test", test)):
        for pid in ids:
            prng = _rng(seed, 5, pid)
            counts = _camera_counts(prng, per_identity, cameras)
            queries = _queries(counts) if split == "test" else set()
            index = 0
            for cam, n in counts.items():
                seq = int(prng.integers(1, 7))
                frame = int(prng.integers(100, 60000))
                for j in range(n):
                    frame += int(prng.integers(5, 120))
                    folder = (
                        "bounding_box_train"
                        if split == "train"
                        else ("query" if j == 0 and cam in queries else "bounding_box_test")
                    )
                    jobs.append(
                        job(f"{folder}/{_name(pid, cam, seq, frame, int(prng.integers(1, 4)))}", 0, pid, cam, index)
                    )
                    index += 1
    extra = max(2, test_identities // 4)
    for kind, pid in ((1, 0), (2, -1)):
        for i in range(extra):
            cam = i % cameras + 1
            jobs.append(job(f"bounding_box_test/{_name(pid, cam, 1 + i % 6, 1000 + 37 * i, 1)}", kind, pid, cam, i))
    return train, test, jobs


def _cpu_seconds() -> float:
    """User + system time of this process and of its finished worker processes."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def generate(
    out: Path,
    identities: int,
    test_identities: int | None = None,
    cameras: int = 4,
    images_per_identity: int = 8,
    seed: int = 0,
    workers: int = 1,
    height: int = 128,
    width: int = 64,
    progress: bool = True,
) -> SynthSummary:
    """Write a Market-1501-format data set of procedural pedestrians to `out` and return what was written."""
    test_identities = identities // 2 if test_identities is None else test_identities
    if not 2 <= identities <= 1501:
        raise ValueError(f"identities must be in 2..1501 (Market's id range), got {identities}")
    if not 1 <= test_identities < identities:
        raise ValueError(f"test identities must be in 1..{identities - 1}, got {test_identities}")
    if not 2 <= cameras <= 9:
        raise ValueError(f"cameras must be in 2..9 (one digit in the file name), got {cameras}")
    if images_per_identity < 2:
        raise ValueError("images per identity must be at least 2 (a query needs a gallery match in another camera)")
    if height < 16 or width < 8:
        raise ValueError(f"image size {width}x{height} is too small (at least 8 wide, 16 high)")
    out = Path(out)
    train, test, jobs = _plan(seed, identities, test_identities, cameras, images_per_identity, height, width)
    for folder in ("bounding_box_train", "bounding_box_test", "query"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    start, cpu_start = time.perf_counter(), _cpu_seconds()
    tasks = [(j, str(out)) for j in jobs]
    bar = tqdm(total=len(jobs), desc="synth", unit="img", disable=not progress)
    if workers <= 1:
        for task in tasks:
            _write(task)
            bar.update()
    else:
        with multiprocessing.get_context().Pool(workers) as pool:
            for _ in pool.imap_unordered(_write, tasks, chunksize=16):
                bar.update()
    bar.close()
    seconds, cpu = time.perf_counter() - start, _cpu_seconds() - cpu_start
    labels = {
        split: {f"{pid:04d}": identity(seed, pid).market_attributes() for pid in ids}
        for split, ids in (("train", train), ("test", test))
    }
    write_attribute_mat(out / "market_attribute.mat", "market_attribute", labels)
    folders = {
        f: sum(j.path.startswith(f + "/") for j in jobs) for f in ("bounding_box_train", "bounding_box_test", "query")
    }
    per_split = {"train": sum(j.kind == 0 and j.pid in set(train) for j in jobs)}
    per_split["test"] = sum(j.kind == 0 for j in jobs) - per_split["train"]
    summary = SynthSummary(
        out=str(out),
        splits={s: SplitSummary(sorted(labels[s]), per_split[s], labels[s]) for s in ("train", "test")},
        folders=folders,
        distractors=sum(j.kind == 1 for j in jobs),
        junk=sum(j.kind == 2 for j in jobs),
        arguments={
            "identities": identities,
            "test_identities": test_identities,
            "cameras": cameras,
            "images_per_identity": images_per_identity,
            "seed": seed,
            "height": height,
            "width": width,
        },
        seconds=round(seconds, 3),
        images_per_second=round(len(jobs) / max(seconds, 1e-9), 1),
        cpu_seconds=round(cpu, 3),
    )
    record = {k: v for k, v in asdict(summary).items() if k not in _NOT_RECORDED}
    (out / "synth.json").write_text(json.dumps(record, indent=1, sort_keys=True))
    return summary


# ---------------------------------------------------------------- contact sheet


def _caption(labels: dict[str, int]) -> list[str]:
    up = next((c for c in UPPER_COLOURS if labels.get(f"up{c}") == 2), "other")
    down = next((c for c in LOWER_COLOURS if labels.get(f"down{c}") == 2), "other")
    carried = [k for k in ("hat", "backpack", "bag", "handbag") if labels.get(k) == 2]
    return [
        f"{'female' if labels['gender'] == 2 else 'male'} {AGE_NAMES[labels['age'] - 1]}, "
        f"{'long' if labels['hair'] == 2 else 'short'} hair",
        f"{up} {'short' if labels['up'] == 2 else 'long'} sleeve",
        f"{down} {'short' if labels['down'] == 2 else 'long'} {'dress' if labels['clothes'] == 1 else 'pants'}",
        ", ".join(carried) or "no hat/bags",
    ]


def _diverse(by_id: dict[str, dict[int, Path]], labels: dict[str, dict[str, int]], n: int) -> list[str]:
    """Identities seen by the most cameras, picked greedily to show as many attribute values as possible."""
    most = max(len(v) for v in by_id.values())
    pool = sorted(pid for pid, v in by_id.items() if len(v) == most)
    pool += sorted(pid for pid, v in by_id.items() if len(v) < most)
    chosen: list[str] = []
    seen: set[tuple[str, int]] = set()
    while pool and len(chosen) < n:
        best = max(pool, key=lambda pid: (len(by_id[pid]), len(set(labels.get(pid, {}).items()) - seen)))
        chosen.append(best)
        pool.remove(best)
        seen |= set(labels.get(best, {}).items())
    return chosen


def sample_crops(out: Path, count: int, seed: int = 0) -> list[Path]:
    """Write a small synthetic set into `out` and return `count` of its crops, sorted by name: real-format
    inputs for export verification, int8 calibration and benchmarks (never noise)."""
    per_identity = 4
    identities = max(3, math.ceil(count / per_identity) + 1)
    generate(
        out,
        identities=identities,
        test_identities=1,
        cameras=2,
        images_per_identity=per_identity,
        seed=seed,
        progress=False,
    )
    files = sorted(out.rglob("*.jpg"))
    if len(files) < count:
        raise ValueError(f"synth wrote {len(files)} images, {count} needed")
    return files[:count]


def contact_sheet(directory: Path, out_png: Path, identities: int = 12) -> Path:
    """A grid of identities, one column per camera, captioned with their attributes: realism at a glance."""
    directory = Path(directory)
    labels = read_attribute_mat(directory / "market_attribute.mat", "market_attribute")
    by_id: dict[str, dict[int, Path]] = {}
    for folder in ("bounding_box_train", "query", "bounding_box_test"):
        for path in sorted((directory / folder).glob("*.jpg")):
            m = NAME_RE.match(path.name)
            if m and m.group(1) not in {"0000", "-1"}:
                by_id.setdefault(m.group(1), {}).setdefault(int(m.group(2)), path)
    if not by_id:
        raise FileNotFoundError(f"{directory}: no Market-1501 images found")
    cams = sorted({c for v in by_id.values() for c in v})
    all_labels = {**labels["train"], **labels["test"]}
    ranked = _diverse(by_id, all_labels, identities)
    first = Image.open(next(iter(by_id[ranked[0]].values())))
    tile_w, tile_h = first.width * 2, first.height * 2
    font = ImageFont.load_default(size=15)
    cols = 4 if len(ranked) > 6 else 2
    rows = math.ceil(len(ranked) / cols)
    cell_w, cell_h = len(cams) * (tile_w + 4) + 16, tile_h + 110
    sheet = Image.new("RGB", (cols * cell_w, rows * cell_h), (250, 250, 250))
    d = ImageDraw.Draw(sheet)
    for i, pid in enumerate(ranked):
        x0, y0 = (i % cols) * cell_w + 8, (i // cols) * cell_h + 8
        for j, cam in enumerate(cams):
            x = x0 + j * (tile_w + 4)
            if cam in by_id[pid]:
                sheet.paste(Image.open(by_id[pid][cam]).convert("RGB").resize((tile_w, tile_h), Image.NEAREST), (x, y0))
            d.text((x + 3, y0 + 2), f"c{cam}", fill=(255, 255, 0), font=font, stroke_width=2, stroke_fill=(0, 0, 0))
        lines = [f"id {pid}", *(_caption(all_labels[pid]) if pid in all_labels else [])]
        for k, line in enumerate(lines):
            d.text((x0, y0 + tile_h + 4 + k * 19), line, fill=(20, 20, 20), font=font)
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out_png)
    return out_png


# ---------------------------------------------------------------- CLI


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="personid synth", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="output folder (Market-1501 layout)")
    parser.add_argument("--identities", type=int, default=250, help="total identities, train + test")
    parser.add_argument("--test-identities", type=int, default=None, help="test identities (default: half)")
    parser.add_argument("--cameras", type=int, default=4)
    parser.add_argument("--images-per-identity", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1, help="processes; the output does not depend on it")
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--contact-sheet", type=Path, default=None, help="also write this PNG grid of identities")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    try:
        summary = generate(
            args.out,
            args.identities,
            args.test_identities,
            args.cameras,
            args.images_per_identity,
            args.seed,
            args.workers,
            args.height,
            args.width,
            progress=not args.no_progress,
        )
    except ValueError as exc:
        print(f"personid synth: {exc}", file=sys.stderr)
        return 2
    total = sum(summary.folders.values())
    print(
        f"{total} images in {summary.seconds:.2f} s = {summary.images_per_second:.0f} images/s "
        f"({args.workers} worker{'s' if args.workers != 1 else ''}; CPU {summary.cpu_seconds:.2f} s = "
        f"{total / max(summary.cpu_seconds, 1e-9):.0f} images per CPU-second) -> {args.out}"
    )
    print(
        f"train {len(summary.splits['train'].identities)} ids / {summary.folders['bounding_box_train']} images, "
        f"test {len(summary.splits['test'].identities)} ids: {summary.folders['query']} query, "
        f"{summary.folders['bounding_box_test']} gallery (incl. {summary.distractors} distractors, "
        f"{summary.junk} junk)"
    )
    if args.contact_sheet:
        print(f"contact sheet: {contact_sheet(args.out, args.contact_sheet)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
