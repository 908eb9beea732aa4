"""Realistic partial occluders at the crop edge: a pole or sign post, a bin or bollard, a car's bonnet.

They cover an edge strip or a bottom corner only, so the attributes of the person in the middle stay visible.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from synth.clutter import CAR_COLOURS
from synth.figure import shade


def edge_occluder(img: Image.Image, rng: np.random.Generator) -> None:
    """Draw one occluder in front of the person, at the left or right edge or along the bottom."""
    w, h = img.size
    d = ImageDraw.Draw(img)
    left = rng.random() < 0.5
    kind = int(rng.integers(3))
    grey = int(rng.integers(25, 140))
    colour = (grey, grey, int(grey * 1.05))
    if kind == 0:  # pole or sign post
        pw = w * rng.uniform(0.06, 0.14)
        x = rng.uniform(0, w * 0.1) if left else rng.uniform(w * 0.86, w - pw)
        d.rectangle([x, 0, x + pw, h], fill=colour)
        d.rectangle([x + pw * 0.6, 0, x + pw, h], fill=shade(colour, 0.7))
        if rng.random() < 0.5:
            sign = tuple(int(c) for c in rng.integers(30, 220, 3))
            sy = h * rng.uniform(0.05, 0.3)
            d.rectangle([x - pw * 1.5, sy, x + pw * 2.5, sy + h * 0.12], fill=sign)
    elif kind == 1:  # bin or bollard in a bottom corner
        bw, bh = w * rng.uniform(0.18, 0.32), h * rng.uniform(0.1, 0.22)
        x = -bw * 0.2 if left else w - bw * 0.8
        d.rounded_rectangle([x, h - bh, x + bw, h + 4], radius=bw * 0.15, fill=colour)
        d.rectangle([x, h - bh, x + bw, h - bh + bh * 0.12], fill=shade(colour, 1.3))
    else:  # a car's bonnet along the bottom
        body = CAR_COLOURS[int(rng.integers(len(CAR_COLOURS)))]
        top = h * rng.uniform(0.86, 0.93)
        d.rounded_rectangle([-10, top, w + 10, h + 20], radius=h * 0.05, fill=body)
        d.line([(0, top + h * 0.02), (w, top + h * 0.015)], fill=shade(body, 1.35), width=max(1, h // 100))
