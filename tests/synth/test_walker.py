"""Articulated walkers: every attribute visible from every heading, and the gait actually moves the legs."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image, ImageDraw

from synth.figure import _body, _Pen
from synth.identity import PALETTE, Person, sample_person
from synth.looks import Looks
from synth.walker import draw_walker
from tests.synth.test_figure import BINARY

HEADINGS = [0.0, math.pi / 4, math.pi / 2, 3 * math.pi / 4, math.pi]


def _draw(person: Person, yaw: float, phase: float = 0.7, style: str = "loose") -> np.ndarray:
    img = Image.new("RGB", (128, 256), (128, 128, 128))
    pen = _Pen(ImageDraw.Draw(img), 64, 20, 230, 0.0, _body(person).hip_y)
    draw_walker(pen, person, Looks(style, False, "plain", "plain", 0.5), yaw, phase)
    return np.asarray(img).astype(int)


BASE = replace(
    sample_person(np.random.default_rng(5), 1),
    age=3,
    gender=1,
    upper=6,
    lower=5,
    upper_rgb=PALETTE["blue"],
    lower_rgb=PALETTE["gray"],
    cane=False,
    bald=False,
    **dict.fromkeys(BINARY, False),
)


@pytest.mark.parametrize("attribute", [*BINARY, "gender", "age", "upper", "lower", "ponytail"])
def test_each_attribute_changes_every_heading(attribute: str) -> None:
    base, style = BASE, "loose"
    if attribute in BINARY:
        changed = replace(base, **{attribute: True})
    elif attribute == "ponytail":
        changed, style = replace(base, hair_long=True), "ponytail"
    elif attribute == "gender":
        changed = replace(base, gender=2)
    elif attribute == "age":
        changed = replace(base, age=1)
    else:
        changed = replace(base, **{attribute: 0, f"{attribute}_rgb": PALETTE["black"]})
    for yaw in HEADINGS:
        diff = np.abs(_draw(base, yaw) - _draw(changed, yaw, style=style)).sum(axis=2) > 30
        assert diff.sum() > 60, f"{attribute} barely visible at heading {yaw:.2f}: {diff.sum()} pixels"


def test_gait_moves_the_legs_seen_from_the_side() -> None:
    a, b = _draw(BASE, math.pi / 2, 0.0), _draw(BASE, math.pi / 2, math.pi / 2)
    legs = (np.abs(a - b).sum(axis=2) > 30)[150:]
    assert legs.sum() > 200
