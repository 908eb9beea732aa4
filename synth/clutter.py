"""Cluttered street scenes: real ground and wall textures, road markings, poles, bollards, benches and cars.

Texture photos come from scikit-image's bundled data images (brick, grass, gravel; the moon's surface as
rough render in the held-out families) when it is installed, procedural noise otherwise. Ground and wall
families are split: the held-out style draws only from its own. Like `scene`, a few large scenes are
rendered once per camera and process, and each image crops a window.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from synth.identity import RGB
from synth.seeds import seeded_rng

GROUNDS: tuple[str, ...] = ("pavement", "asphalt", "grass", "gravel")
WALLS: tuple[str, ...] = ("brick", "concrete", "glass", "hedge")
HELDOUT_GROUNDS: tuple[str, ...] = ("cobble", "planks")
HELDOUT_WALLS: tuple[str, ...] = ("render", "tiles")
PHOTO = {"brick": "brick", "grass": "grass", "gravel": "gravel", "render": "moon"}  # skimage data image names
TINT: dict[str, RGB] = {
    "pavement": (150, 148, 144), "asphalt": (70, 72, 76), "grass": (82, 120, 58), "gravel": (150, 138, 118),
    "brick": (150, 86, 64), "concrete": (168, 164, 156), "glass": (70, 84, 96), "hedge": (50, 86, 48),
    "cobble": (120, 112, 104), "planks": (130, 96, 66), "render": (196, 176, 150), "tiles": (206, 206, 200),
}  # fmt: skip
CAR_COLOURS: tuple[RGB, ...] = (
    (30, 30, 32),
    (200, 200, 204),
    (140, 142, 146),
    (230, 230, 228),
    (40, 52, 84),
    (120, 30, 30),
)
SCENE_W, SCENE_H = 384, 340  # one camera scene; windows of WINDOW_H rows are cropped and resized
WINDOW_H = 256


@lru_cache(maxsize=8)
def _photo(name: str) -> np.ndarray | None:
    """A bundled grey texture photo as a multiplier around 1, or None without scikit-image."""
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / f"{name}.png"
    if not path.exists():
        return None
    arr = np.asarray(Image.open(path).convert("L"), np.float32)
    return arr / arr.mean()


def _texture(rng: np.random.Generator, family: str, w: int, h: int) -> np.ndarray:
    """An RGB float texture of `family` filling `w` x `h`."""
    photo = _photo(PHOTO[family]) if family in PHOTO else None
    if photo is not None:  # tiled at a quarter of its size: stones and blades at street scale
        tile = np.asarray(Image.fromarray(photo).resize((128, 128), Image.BILINEAR), np.float32)
        oy, ox = int(rng.integers(128)), int(rng.integers(128))
        big = np.tile(tile, ((h + oy) // 128 + 1, (w + ox) // 128 + 1))[oy : oy + h, ox : ox + w]
        base = 1 + 0.6 * (big - 1)
    else:
        small = rng.random((max(2, h // 4), max(2, w // 4))).astype(np.float32)
        base = 0.8 + 0.4 * np.asarray(Image.fromarray(small).resize((w, h), Image.BICUBIC), np.float32)
    y, x = np.mgrid[0:h, 0:w]
    if family == "pavement":
        base = base * np.where((y % 22 < 2) | (x % 30 < 2), 0.75, 1.0)
    elif family == "cobble":
        base = base * np.where(((y + (x // 14) * 5) % 12 < 2) | (x % 14 < 2), 0.6, 1.0)
    elif family == "planks":
        base = base * np.where(y % 16 < 2, 0.55, 1.0) * (1 + 0.08 * np.sin(x / 3.0))
    elif family == "tiles":
        base = base * np.where((y % 18 < 1) | (x % 18 < 1), 0.7, 1.0)
    elif family == "concrete":
        base = base * np.where(x % 70 < 2, 0.8, 1.0)
    tone = np.array(TINT[family], np.float32) * float(rng.uniform(0.75, 1.15))
    return base[..., None] * tone


def _props(d: ImageDraw.ImageDraw, rng: np.random.Generator, ground: str, horizon: int, w: int, h: int) -> None:
    """Road markings on asphalt, poles, bollards, a bench or bin, parked cars along the horizon."""
    if ground == "asphalt":
        for y in range(horizon + int(rng.integers(10, 40)), h, int(rng.integers(40, 90))):
            colour = (214, 210, 196) if rng.random() < 0.7 else (210, 180, 60)
            d.rectangle([0, y, w, y + int(rng.integers(4, 12))], fill=colour)
    for _ in range(int(rng.integers(1, 4))):  # parked cars
        cw, ch = int(rng.integers(90, 160)), int(rng.integers(36, 56))
        x, y = int(rng.integers(-40, w)), horizon + int(rng.integers(0, 40))
        body = CAR_COLOURS[int(rng.integers(len(CAR_COLOURS)))]
        d.rounded_rectangle([x, y, x + cw, y + ch], radius=12, fill=body)
        d.rounded_rectangle([x + cw * 0.2, y - ch * 0.45, x + cw * 0.8, y + 4], radius=10, fill=body)
        d.rectangle([x + cw * 0.26, y - ch * 0.35, x + cw * 0.74, y], fill=(40, 48, 58))
        for wx in (x + cw * 0.22, x + cw * 0.78):
            d.ellipse([wx - 11, y + ch - 11, wx + 11, y + ch + 11], fill=(22, 22, 22))
    for _ in range(int(rng.integers(1, 5))):  # poles, bollards, bins
        x = int(rng.integers(0, w))
        grey = int(rng.integers(30, 120))
        if rng.random() < 0.5:
            d.rectangle([x, 0, x + int(rng.integers(3, 8)), horizon + int(rng.integers(10, 60))], fill=(grey,) * 3)
        else:
            y = horizon + int(rng.integers(20, max(21, h - horizon)))
            d.rounded_rectangle([x, y - 34, x + 14, y], radius=4, fill=(grey, grey, grey + 10))


def scene(rng: np.random.Generator, ground: str, wall: str, horizon: float) -> Image.Image:
    """One large scene: a wall above `horizon` (a fraction of the height), the ground below, clutter on both."""
    cut = int(SCENE_H * horizon)
    arr = np.concatenate(
        [_texture(rng, wall, SCENE_W, max(cut, 1))[:cut], _texture(rng, ground, SCENE_W, SCENE_H - cut)], axis=0
    )
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    d = ImageDraw.Draw(img)
    if wall == "glass":
        for x in range(int(rng.integers(0, 40)), SCENE_W, int(rng.integers(50, 90))):
            d.line([(x, 0), (x, cut)], fill=(190, 190, 190), width=3)
    _props(d, rng, ground, cut, SCENE_W, SCENE_H)
    d.line([(0, cut), (SCENE_W, cut)], fill=(60, 60, 60), width=2)
    return img


@lru_cache(maxsize=64)
def _scenes(seed: int, cam: int, heldout: bool, looking_down: bool) -> tuple[Image.Image, ...]:
    """Camera `cam`'s scenes: its ground and wall families (from the held-out ones when asked)."""
    rng = seeded_rng(seed, 13, cam, int(heldout))
    grounds, walls = (HELDOUT_GROUNDS, HELDOUT_WALLS) if heldout else (GROUNDS, WALLS)
    out = []
    for _ in range(3):
        ground, wall = str(rng.choice(grounds)), str(rng.choice(walls))
        horizon = rng.uniform(0.08, 0.3) if looking_down else rng.uniform(0.35, 0.55)
        out.append(scene(rng, ground, wall, float(horizon)))
    return tuple(out)


def cluttered(seed: int, cam: int, w: int, h: int, rng: np.random.Generator, heldout: bool, down: bool) -> Image.Image:
    """A `w` x `h` background: a random window of one of camera `cam`'s cluttered scenes, resized."""
    bg = _scenes(seed, cam, heldout, down)[int(rng.integers(3))]
    wh = WINDOW_H
    ww = min(SCENE_W - 1, max(8, round(wh * w / h)))
    x0, y0 = int(rng.integers(0, SCENE_W - ww)), int(rng.integers(0, SCENE_H - wh))
    return bg.crop((x0, y0, x0 + ww, y0 + wh)).resize((w, h), Image.BILINEAR)
