"""Street backgrounds: a few large scenes per camera in its style, from which every image crops a window."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

from synth.camera import camera
from synth.identity import RGB
from synth.seeds import seeded_rng


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
    rng = seeded_rng(seed, 3, cam)
    style = camera(seed, cam).style
    return tuple(_background(rng, style, w * 3, int(h * 1.3)) for _ in range(3))


def street(seed: int, cam: int, w: int, h: int, rng: np.random.Generator) -> Image.Image:
    """A `w` x `h` window, at a random place, of one of camera `cam`'s scenes."""
    scenes = _backgrounds(seed, cam, w, h)
    bg = scenes[int(rng.integers(len(scenes)))]
    x0, y0 = int(rng.integers(0, bg.width - w)), int(rng.integers(0, bg.height - h))
    return bg.crop((x0, y0, x0 + w, y0 + h))
