"""Articulated walkers: a 3-D stick skeleton in mid-stride, turned to any heading and projected to the image.

Heading `yaw` runs from 0 (facing the camera) through pi/2 (walking to the right, seen from the side) to pi
(walking away), so three-quarter views come for free. Legs swing with the gait phase and bend at the knee
in the swing phase, arms swing against the legs; parts are painted far to near. Every Market attribute is
drawn from every heading (see `figure` for the classic, flat figure this replaces when `bodies` is on).
"""

from __future__ import annotations

import math

from synth import hair
from synth.figure import _Body, _body, _handbag, _head, _pattern, _Pen, shade
from synth.identity import Person
from synth.looks import Looks

Point = tuple[float, float]
FAR = 0.78  # far limbs are darker


class _Pose:
    """Projection of person-space points (X the person's left, Y down, Z forward) for one heading."""

    def __init__(self, yaw: float):
        self.c, self.s = math.cos(yaw), math.sin(yaw)

    def p(self, x: float, y: float, z: float) -> Point:
        return (x * self.c + z * self.s, y)

    def width(self, half_w: float, half_d: float) -> float:
        """Projected half-width of an elliptic cross-section."""
        return math.hypot(half_w * self.c, half_d * self.s)

    def far(self, side: int) -> bool:
        """Whether the limb on `side` (+1 the person's left) is on the far side of the body."""
        return -side * self.s < -0.3


def view_of(yaw: float) -> str:
    """The classic view closest to a heading (which head and pattern drawing to use)."""
    return "front" if yaw < 0.3 * math.pi else ("back" if yaw > 0.7 * math.pi else "side")


def _leg(pen: _Pen, pose: _Pose, p: Person, b: _Body, side: int, phase: float) -> None:
    """One leg: thigh swing and knee flexion follow the gait phase; trousers, shorts or bare skin."""
    phi = phase + (0.0 if side > 0 else math.pi)
    theta = 0.36 * math.sin(phi)
    knee_flex = 0.08 + 0.6 * max(0.0, math.cos(phi + 0.3))
    f = FAR if pose.far(side) else 1.0
    x = side * b.hip_w * 0.26
    hy, th, sh = b.hip_y, b.knee_y - b.hip_y, b.ankle_y - b.knee_y
    knee_yz = (hy + th * math.cos(theta), th * math.sin(theta))
    ankle_yz = (knee_yz[0] + sh * math.cos(theta - knee_flex), knee_yz[1] + sh * math.sin(theta - knee_flex))
    hip, knee, ankle = pose.p(x, hy, 0.0), pose.p(x, *knee_yz), pose.p(x * 0.9, *ankle_yz)
    skin, lower = shade(p.skin, 0.95 * f), shade(p.lower_rgb, f)
    pen.limb([hip, knee], b.thigh_w, skin)
    pen.limb([knee, ankle], b.shin_w, skin)
    heel = pose.p(x * 0.9, ankle_yz[0] + 0.02, ankle_yz[1] - 0.012)
    toe = pose.p(x * 0.9, ankle_yz[0] + 0.022, ankle_yz[1] + 0.05)
    pen.limb([heel, toe], 0.034, shade(p.shoes, f))
    if p.dress:
        return
    if p.lower_short:
        mid = pose.p(x, hy + th * 0.55 * math.cos(theta), th * 0.55 * math.sin(theta))
        pen.limb([hip, mid], b.thigh_w * 1.25, lower)
    else:
        pen.limb([hip, knee, ankle], b.thigh_w * 1.12, lower)
        pen.limb([knee, (ankle[0], ankle[1] - 0.006)], b.shin_w * 1.25, lower)


def _arm(pen: _Pen, pose: _Pose, p: Person, b: _Body, side: int, phase: float, holds: bool) -> Point:
    """One arm swinging against the same-side leg, elbow bent forward; returns the hand."""
    phi = phase + (0.0 if side > 0 else math.pi)
    alpha = 0.05 if holds else -0.32 * math.sin(phi)
    bend = 0.12 + 0.3 * max(0.0, -math.sin(phi))
    f = FAR if pose.far(side) else 1.0
    x = side * (b.shoulder_w / 2 - b.arm_w * 0.45)
    sy = b.shoulder_y + 0.022
    ey, ez = sy + b.upper_arm * math.cos(alpha), b.upper_arm * math.sin(alpha)
    wy, wz = ey + b.forearm * math.cos(alpha + bend), ez + b.forearm * math.sin(alpha + bend)
    out = side * (0.02 if holds else 0.008)
    shoulder, elbow, wrist = pose.p(x, sy, 0.0), pose.p(x + out, ey, ez), pose.p(x + out * 1.5, wy, wz)
    skin, upper = shade(p.skin, f), shade(p.upper_rgb, f)
    pen.limb([shoulder, elbow, wrist], b.arm_w * 0.85, skin)
    if p.sleeve_short:
        pen.limb([shoulder, ((shoulder[0] + elbow[0]) / 2, (shoulder[1] + elbow[1]) / 2)], b.arm_w * 1.12, upper)
    else:
        cuff = (elbow[0] + (wrist[0] - elbow[0]) * 0.9, elbow[1] + (wrist[1] - elbow[1]) * 0.9)
        pen.limb([shoulder, elbow, cuff], b.arm_w * 1.05, upper)
    hand = (wrist[0] + (wrist[0] - elbow[0]) * 0.12, wrist[1] + 0.02)
    pen.ellipse(*hand, b.arm_w * 0.5, 0.026, skin)
    if holds and p.handbag:
        _handbag(pen, p, hand, f)
    return hand


def _torso(pen: _Pen, pose: _Pose, p: Person, b: _Body, view: str) -> None:
    """Lower garment top (trousers' seat or dress), torso, its shaded side and the clothing pattern."""
    d = b.depth / 2
    if p.dress:
        hem = b.ankle_y - 0.04 if not p.lower_short else b.knee_y - 0.05
        top, flare = pose.width(b.waist_w / 2, d) * 1.05, pose.width(b.hip_w / 2, d) * (1.55 if p.lower_short else 1.8)
        pen.poly([(-top, b.waist_y), (top, b.waist_y), (flare, hem), (-flare, hem)], p.lower_rgb)
    else:
        hw = pose.width(b.hip_w / 2, d)
        pen.poly(
            [(-hw, b.hip_y - 0.03), (hw, b.hip_y - 0.03), (hw * 0.95, b.crotch_y), (-hw * 0.95, b.crotch_y)],
            p.lower_rgb,
        )
    sw, ww, hw = pose.width(b.shoulder_w / 2, d), pose.width(b.waist_w / 2, d * 0.9), pose.width(b.hip_w / 2, d)
    bust = 0.025 * pose.s if p.gender == 2 and p.age >= 2 else 0.0
    y0 = b.shoulder_y
    torso = [
        (-sw * 0.8, y0),
        (sw * 0.8, y0),
        (sw, y0 + 0.022),
        (sw * 0.97 + bust, y0 + 0.07),
        (ww, b.waist_y),
        (hw * 1.02, b.hip_y + 0.015),
        (-hw * 1.02, b.hip_y + 0.015),
        (-ww, b.waist_y),
        (-sw * 0.97, y0 + 0.06),
        (-sw, y0 + 0.022),
    ]
    pen.poly(torso, p.upper_rgb)
    pen.poly([*torso[3:6], (sw * 0.65, b.hip_y + 0.015), (sw * 0.7, y0 + 0.06)], shade(p.upper_rgb, 0.88))
    _pattern(pen, p, b, view, sw)


def _backpack(pen: _Pen, pose: _Pose, p: Person, b: _Body, back_visible: bool) -> None:
    """On the back: the whole pack when the back shows, its edges behind the shoulders otherwise."""
    bp, sw = p.backpack_rgb, b.shoulder_w / 2
    cx, half = pose.p(0.0, 0.0, -b.depth / 2 - 0.05)[0], pose.width(sw * 0.74, 0.06)
    top = b.shoulder_y - (0.012 if back_visible else 0.03)
    pen.rect(cx - half, top, cx + half, b.waist_y + 0.035, bp if back_visible else shade(bp, 0.85), radius=0.025)
    if back_visible:
        pen.rect(cx - half * 0.7, b.waist_y - 0.05, cx + half * 0.7, b.waist_y + 0.02, shade(bp, 0.8), radius=0.012)


def _bag(pen: _Pen, pose: _Pose, p: Person, b: _Body) -> None:
    """Shoulder bag at the carrying hip, its strap across the body from the other shoulder."""
    carry = -p.carry_side  # the person's right is -X
    bx = pose.p(carry * (b.hip_w / 2 + 0.025), 0.0, 0.0)[0]
    sx = pose.p(-carry * b.shoulder_w / 2 * 0.55, 0.0, 0.0)[0]
    by = b.hip_y - 0.01
    pen.limb([(sx, b.shoulder_y + 0.004), (bx * 0.8, by - 0.02)], 0.011, shade(p.bag_rgb, 0.6))
    pen.rect(bx - 0.05, by - 0.025, bx + 0.05, by + 0.055, p.bag_rgb, radius=0.012)


def _straps(pen: _Pen, pose: _Pose, p: Person, b: _Body) -> None:
    if p.backpack and pose.c > 0.2:
        sw = pose.width(b.shoulder_w / 2, b.depth / 2)
        for side in (-1, 1):
            pen.limb(
                [(side * sw * 0.55, b.shoulder_y + 0.004), (side * sw * 0.5, b.waist_y - 0.02)],
                0.02,
                shade(p.backpack_rgb, 0.85),
            )


def draw_walker(pen: _Pen, p: Person, looks: Looks, yaw: float, phase: float) -> None:
    """Paint `p` mid-stride at heading `yaw` (0..pi), far parts first."""
    b = _body(p)
    pose, view = _Pose(yaw), view_of(yaw)
    carry = -p.carry_side
    back_visible = pose.c < 0.3
    if p.backpack and not back_visible:
        _backpack(pen, pose, p, b, False)
    hair.behind_body(pen, p, b, view, looks.hairstyle)
    sides = sorted((-1, 1), key=lambda s: -s * pose.s)  # far side first
    hands: dict[int, Point] = {}
    for side in sides:
        if pose.far(side):
            hands[side] = _arm(pen, pose, p, b, side, phase, p.handbag and side == carry)
    for side in sides:
        _leg(pen, pose, p, b, side, phase)
    _torso(pen, pose, p, b, view)
    _straps(pen, pose, p, b)
    if p.backpack and back_visible:
        _backpack(pen, pose, p, b, True)
    if p.bag:
        _bag(pen, pose, p, b)
    hair.over_body(pen, p, b, view, looks.hairstyle)
    for side in sides:
        if not pose.far(side):
            hands[side] = _arm(pen, pose, p, b, side, phase, p.handbag and side == carry)
    if p.cane:
        hx, hy = hands[carry]
        pen.limb([(hx, hy), (hx + 0.04 * pose.s + 0.02, 1.0)], 0.012, (70, 50, 30))
    _head(pen, p, b, view)
    hair.over_head(pen, p, b, view, looks.hairstyle, looks.beard)
