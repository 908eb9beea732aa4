"""Drawing: every attribute is visible from every viewpoint."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from synth.figure import VIEWS, draw_person
from synth.identity import PALETTE, Person, sample_person


def _draw(person: Person, view: str) -> np.ndarray:
    img = Image.new("RGB", (128, 256), (128, 128, 128))
    draw_person(img, person, view, 0.7, 64, 250, 230)
    return np.asarray(img).astype(int)


BINARY = ["hair_long", "sleeve_short", "lower_short", "dress", "hat", "backpack", "bag", "handbag"]


@pytest.mark.parametrize("attribute", [*BINARY, "gender", "age", "upper", "lower"])
def test_each_attribute_changes_every_view(attribute: str) -> None:
    """Flipping one attribute changes the drawing from every viewpoint: none is invisible to some camera."""
    base = replace(
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
    if attribute in BINARY:
        changed = replace(base, **{attribute: True})
    elif attribute == "gender":
        changed = replace(base, gender=2)
    elif attribute == "age":
        changed = replace(base, age=1)
    else:
        changed = replace(base, **{attribute: 0, f"{attribute}_rgb": PALETTE["black"]})
    for view in VIEWS:
        diff = np.abs(_draw(base, view) - _draw(changed, view)).sum(axis=2) > 30
        assert diff.sum() > 80, f"{attribute} barely visible from the {view}: {diff.sum()} pixels"
