"""Drawing a person: every Market attribute made visible from the front, back and side.

Age shows in proportions (head ratio, leg length, grey hair, stoop), gender in build and silhouette; hair,
sleeves, lower-body length and type, hat, backpack, shoulder bag, handbag and clothing colours are drawn
plainly so a model can learn them, and identity details (pattern, accessory colours) tell look-alikes apart.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from PIL import Image, ImageDraw

from synth.identity import RGB, Person

VIEWS: tuple[str, ...] = ("front", "back", "side")


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


def shade(rgb: RGB, f: float) -> RGB:
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
    pen.rect(-neck / 2, cy + hh * 0.6, neck / 2, b.shoulder_y + 0.01, shade(p.skin, 0.9))
    if view == "front":
        pen.ellipse(0, cy, hw, hh, p.skin)
        if p.bald:
            pen.ellipse(-hw * 0.92, cy - hh * 0.1, hw * 0.16, hh * 0.4, p.hair)
            pen.ellipse(hw * 0.92, cy - hh * 0.1, hw * 0.16, hh * 0.4, p.hair)
        else:
            pen.chord(0, cy - hh * 0.05, hw * 1.06, hh * 1.02, 180, 360, p.hair)
            pen.ellipse(0, cy - hh * 0.45, hw * 0.9, hh * 0.32, p.hair)
        eye = shade(p.skin, 0.35)
        pen.ellipse(-hw * 0.38, cy + hh * 0.1, hw * 0.13, hh * 0.08, eye)
        pen.ellipse(hw * 0.38, cy + hh * 0.1, hw * 0.13, hh * 0.08, eye)
        pen.rect(-hw * 0.25, cy + hh * 0.52, hw * 0.25, cy + hh * 0.6, shade(p.skin, 0.6))
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
        pen.ellipse(hw * 0.55, cy + hh * 0.05, hw * 0.12, hh * 0.08, shade(p.skin, 0.35))
    if p.hat:
        side = 1.0 if view == "side" else 0.0
        pen.chord(0, cy - hh * 0.2, hw * 1.12, hh * 0.95, 180, 360, p.hat_rgb)
        pen.rect(-hw * 1.12, cy - hh * 0.28, hw * 1.12, cy - hh * 0.12, shade(p.hat_rgb, 0.8))
        if p.hat_brim and view == "front":
            pen.ellipse(0, cy - hh * 0.16, hw * 1.25, hh * 0.12, shade(p.hat_rgb, 0.75))
        elif p.hat_brim and side:
            pen.poly(
                [(hw * 0.6, cy - hh * 0.26), (hw * 1.75, cy - hh * 0.12), (hw * 0.6, cy - hh * 0.08)],
                shade(p.hat_rgb, 0.75),
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
    lower, skin = p.lower_rgb, shade(p.skin, 0.95)
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
    skin, lower = shade(p.skin, 0.95 * f), shade(p.lower_rgb, f)
    pen.limb([hip, knee], b.thigh_w, skin)
    pen.limb([knee, ankle], b.shin_w, skin)
    pen.limb([(ankle[0] - 0.012, ankle[1] + 0.018), (ankle[0] + 0.05, ankle[1] + 0.02)], 0.034, shade(p.shoes, f))
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
    skin, upper = shade(p.skin, f), shade(p.upper_rgb, f)
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
    c = shade(p.handbag_rgb, f)
    pen.limb([(x - 0.025, y + 0.035), (x, y - 0.004), (x + 0.025, y + 0.035)], 0.008, shade(c, 0.7))
    pen.rect(x - 0.045, y + 0.03, x + 0.045, y + 0.105, c, radius=0.012)


def _draw_front_back(pen: _Pen, p: Person, b: _Body, view: str, phase: float) -> None:
    back = view == "back"
    right = 1 if back else -1  # image-x sign of the person's right side
    carry = right * p.carry_side
    sw, half = b.shoulder_w / 2, b.shoulder_w / 2
    if p.backpack and not back:
        pen.rect(-sw * 0.78, b.shoulder_y - 0.03, sw * 0.78, b.waist_y, shade(p.backpack_rgb, 0.85), radius=0.02)
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
    pen.poly([*torso[3:6], (sw * 0.7, b.hip_y + 0.015), (sw * 0.75, y0 + 0.06)], shade(p.upper_rgb, 0.88))
    _pattern(pen, p, b, view, half)
    if p.backpack and back:
        bp = p.backpack_rgb
        pen.rect(-sw * 0.74, b.shoulder_y - 0.012, sw * 0.74, b.waist_y + 0.035, bp, radius=0.025)
        pen.rect(-sw * 0.5, b.waist_y - 0.05, sw * 0.5, b.waist_y + 0.02, shade(bp, 0.8), radius=0.012)
        pen.limb([(-sw * 0.2, b.shoulder_y - 0.015), (sw * 0.2, b.shoulder_y - 0.015)], 0.01, shade(bp, 0.7))
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
                shade(p.backpack_rgb, 0.85),
            )
    if p.bag:
        strap = shade(p.bag_rgb, 0.6)
        bx, by = carry * (b.hip_w / 2 + 0.025), b.hip_y - 0.01
        pen.limb([(-carry * sw * 0.55, b.shoulder_y + 0.004), (bx * 0.8, by - 0.02)], 0.011, strap)
        pen.rect(bx - 0.05, by - 0.025, bx + 0.05, by + 0.055, p.bag_rgb, radius=0.012)
        pen.rect(bx - 0.05, by - 0.025, bx + 0.05, by + 0.0, shade(p.bag_rgb, 0.8), radius=0.008)
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
        shade(p.upper_rgb, 0.86),
    )
    _pattern(pen, p, b, "side", d)
    if p.backpack:
        bp = p.backpack_rgb
        pen.rect(-d - 0.11, b.shoulder_y - 0.005, -d + 0.012, b.waist_y + 0.035, bp, radius=0.025)
        pen.rect(-d - 0.125, b.waist_y - 0.06, -d - 0.06, b.waist_y + 0.02, shade(bp, 0.8), radius=0.012)
        pen.limb([(-d * 0.3, b.shoulder_y), (d * 0.5, b.shoulder_y + 0.1)], 0.016, shade(bp, 0.85))
    if p.bag:
        pen.limb([(-d * 0.5, b.shoulder_y + 0.002), (d * 0.7, b.hip_y - 0.03)], 0.011, shade(p.bag_rgb, 0.6))
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
