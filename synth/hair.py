"""Hairstyles for the articulated walkers: long hair loose over the shoulders or tied back, short crops and bobs.

Hair length is a Market attribute, so long hair shows from every side: loose hair frames the face and falls
in front of the shoulders, a ponytail hangs down the back and peeks out beside the neck from the front.
"""

from __future__ import annotations

from synth.figure import _Body, _Pen
from synth.identity import Person


def behind_body(pen: _Pen, p: Person, b: _Body, view: str, style: str) -> None:
    """Hair that the torso covers: the back of loose long hair seen from the front or side."""
    if not p.hair_long or p.bald or style != "loose":
        return
    hw, cy, end = b.head_w / 2, b.head_h / 2, b.shoulder_y + 0.12
    if view == "front":
        pen.poly([(-hw * 1.15, cy - 0.01), (hw * 1.15, cy - 0.01), (hw * 1.4, end), (-hw * 1.4, end)], p.hair)


def over_body(pen: _Pen, p: Person, b: _Body, view: str, style: str) -> None:
    """Hair over the back or the shoulders, drawn after the torso and before the head."""
    if not p.hair_long or p.bald:
        return
    hw, cy, end = b.head_w / 2, b.head_h / 2, b.shoulder_y + 0.12
    if style == "ponytail":
        tail = 0.03 if view != "front" else 0.022
        x = {"back": 0.0, "side": -hw * 0.95, "front": hw * 1.05}[view]
        pen.limb([(x, cy), (x - (0.02 if view == "side" else 0.0), end - 0.02)], tail, p.hair)
    elif view == "back":
        pen.poly([(-hw * 1.05, cy), (hw * 1.05, cy), (hw * 1.35, end + 0.03), (-hw * 1.35, end + 0.03)], p.hair)
        pen.ellipse(0, end + 0.03, hw * 1.35, 0.022, p.hair)
    elif view == "side":
        pen.poly([(-hw * 1.05, cy - 0.01), (hw * 0.1, cy - 0.01), (-hw * 0.1, end), (-hw * 1.4, end + 0.02)], p.hair)


def over_head(pen: _Pen, p: Person, b: _Body, view: str, style: str, beard: bool) -> None:
    """Hair framing the face and falling over the shoulders, a bob, a beard: drawn after the head."""
    hw, hh = b.head_w / 2, b.head_h / 2
    cy = hh + (0.01 if p.age == 4 else 0.0)
    if beard and view != "back":
        x0 = hw * 0.3 if view == "side" else 0.0
        pen.chord(x0, cy + hh * 0.35, hw * (0.6 if view == "side" else 0.85), hh * 0.6, 0, 180, p.hair)
    if p.bald or view == "back":
        return
    sides = (-1, 1) if view == "front" else (-1,)
    if p.hair_long and style == "loose":
        for s in sides:
            x = s * hw * (0.85 if view == "front" else 0.6)
            pen.poly(
                [
                    (x, cy - hh * 0.6),
                    (x + s * hw * 0.45, cy - hh * 0.3),
                    (x + s * hw * 0.6, b.shoulder_y + 0.1),
                    (x + s * hw * 0.05, b.shoulder_y + 0.1),
                ],
                p.hair,
            )
    elif not p.hair_long and style == "bob":
        for s in sides:
            x = s * hw * (0.9 if view == "front" else 0.5)
            pen.poly(
                [
                    (x, cy - hh * 0.6),
                    (x + s * hw * 0.3, cy - hh * 0.3),
                    (x + s * hw * 0.28, cy + hh * 0.7),
                    (x - s * hw * 0.05, cy + hh * 0.7),
                ],
                p.hair,
            )
