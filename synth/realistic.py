"""Rendering one file with realism switches on: each factor replaces one step of the classic pipeline.

The person is painted on its own transparent layer (walker or classic figure), textured, lit, foreshortened
and composited over a cluttered or classic background with its cast shadow; occluders and neighbours come
next; the camera either degrades the small native image or applies the classic finish. The classic random
stream keeps its role (scene window, viewpoint, placement); every realism draw comes from a stream of its own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from personid.imaging import FEET_AT
from synth import clutter, lighting, optics
from synth.camera import SUPERSAMPLE, Camera, camera, finish
from synth.fabric import dress_fabric
from synth.figure import VIEWS, _body, _Pen, draw_person
from synth.identity import Person, sample_person
from synth.looks import Looks, identity_looks, sample_looks
from synth.occluders import edge_occluder
from synth.realism import Realism
from synth.render import Job, _occluder
from synth.scene import street
from synth.seeds import seeded_rng
from synth.walker import draw_walker

YAWS = {"front": (0.0, 0.35), "side": (0.3, 0.7), "back": (0.65, 1.0)}  # heading ranges, in units of pi


@dataclass(frozen=True)
class Figure:
    """One person to paint: who, how seen, where (pixels) and how tall."""

    person: Person
    looks: Looks
    view: str
    yaw: float
    phase: float
    cx: float
    foot: float
    ph: float
    mirror: bool


def _figure(
    rng: np.random.Generator,
    xr: np.random.Generator,
    p: Person,
    looks: Looks,
    view: str,
    where: tuple[float, float, float],
) -> Figure:
    """A figure seen from `view` (a heading in its range when bodies are on), at (cx, foot, ph)."""
    lo, hi = YAWS[view]
    yaw = float(xr.uniform(lo, hi)) * math.pi
    mirror = view == "side" and rng.random() < 0.5
    return Figure(p, looks, view, yaw, float(rng.uniform(0, 2 * math.pi)), *where, mirror)


def _paint(canvas: Image.Image, f: Figure, r: Realism) -> None:
    """Paint `f` on `canvas`: the articulated walker when bodies are on, else the classic figure."""
    if r.bodies:
        pen = _Pen(ImageDraw.Draw(canvas), f.cx, f.foot - f.ph, f.ph, 0.0, _body(f.person).hip_y)
        draw_walker(pen, f.person, f.looks, f.yaw, f.phase)
    else:
        draw_person(canvas, f.person, f.view, f.phase, f.cx, f.foot, f.ph)


def _layer(
    f: Figure, size: tuple[int, int], r: Realism, light: lighting.Light | None, xr: np.random.Generator, tilt: float
) -> Image.Image:
    """The figure alone on a transparent layer: painted, mirrored, cloth-textured, lit and foreshortened."""
    layer = Image.new("RGBA", size, (0, 0, 0, 0))
    _paint(layer, f, r)
    if (xr.random() < 0.5) if r.bodies else f.mirror:  # walkers face either way from any heading
        layer = layer.transpose(Image.FLIP_LEFT_RIGHT)
    box = layer.getbbox()
    if box and (r.fabric or light is not None):  # only the figure's box: most of the layer is empty
        arr = np.array(layer.crop(box))
        if r.fabric:
            dress_fabric(arr, f.person, f.looks, xr)
        if light is not None:
            lighting.shade_person(arr, light)
        layer.paste(Image.fromarray(arr), box[:2])
    return optics.look_down(layer, tilt, f.foot) if r.camera else layer


def _placements(
    job: Job, cam: Camera, rng: np.random.Generator, xr: np.random.Generator, r: Realism, w: int, h: int
) -> tuple[list[Figure], bool]:
    """The figures of one image as the classic generator places them, and whether a classic occluder is due."""
    if job.kind == 0:
        p, looks = identity_looks(job.seed, job.pid, r)
        view = str(rng.choice(VIEWS, p=cam.view_weights))
        ph = h * cam.scale * p.stature * rng.uniform(0.95, 1.05)
        foot = h * rng.uniform(*FEET_AT)
        cx = w / 2 + w * rng.uniform(-0.06, 0.06)
        return [_figure(rng, xr, p, looks, view, (cx, foot, ph))], bool(rng.random() < cam.occlusion)
    p, looks = sample_looks(xr, sample_person(rng, 0), r)
    if job.kind == 2 or rng.random() < 0.6:  # junk and most distractors: a badly framed part of a body
        ph = h * rng.uniform(1.3, 2.4)
        foot = h * rng.uniform(0.6, 1.0) + (ph - h) * rng.uniform(0, 1)
        cx = w / 2 + w * rng.uniform(-0.45, 0.45)
        return [_figure(rng, xr, p, looks, str(rng.choice(VIEWS)), (cx, foot, ph))], False
    if rng.random() < 0.5:
        return [], True
    where = (w * rng.uniform(0.2, 0.8), h * rng.uniform(0.6, 0.95), h * rng.uniform(0.25, 0.45))
    return [_figure(rng, xr, p, looks, "front", where)], False


def _neighbour(xr: np.random.Generator, r: Realism, w: int, h: int, main: Figure) -> Figure:
    """Someone walking past at the crop's left or right edge, about as tall as the person in the middle."""
    p, looks = sample_looks(xr, sample_person(xr, 0), r)
    left = xr.random() < 0.5
    cx = w * (xr.uniform(-0.3, -0.1) if left else xr.uniform(1.1, 1.3))
    view = str(xr.choice(VIEWS))
    where = (cx, main.foot + h * xr.uniform(-0.05, 0.04), main.ph * xr.uniform(0.85, 1.1))
    return Figure(p, looks, view, float(xr.uniform(*YAWS[view])) * math.pi, float(xr.uniform(0, 6.3)), *where, False)


def _background(job: Job, r: Realism, rng: np.random.Generator, xr: np.random.Generator, w: int, h: int) -> Image.Image:
    if r.backgrounds:
        return clutter.cluttered(job.seed, job.camera, w, h, xr, r.heldout_style, r.camera)
    if not r.camera:
        return street(job.seed, job.camera, w, h, rng)
    ss = (job.width * SUPERSAMPLE, job.height * SUPERSAMPLE)
    return street(job.seed, job.camera, *ss, rng).resize((w, h), Image.BILINEAR)


def render_realistic(job: Job) -> tuple[Image.Image, int]:
    """The image of `job` with its realism switches, deterministic in the job's fields."""
    r: Realism = job.realism
    rng = seeded_rng(job.seed, 4 + job.kind, job.pid + 1, job.camera, job.index)
    xr = seeded_rng(job.seed, 40 + job.kind, job.pid + 1, job.camera, job.index)
    cam = camera(job.seed, job.camera)
    ch = max(16, round(optics.person_pixels(xr) / cam.scale)) if r.camera else job.height
    cw = max(8, round(ch * job.width / job.height))
    ss = SUPERSAMPLE if ch < 120 or not r.camera else 1  # big native crops are shrunk anyway: no need
    w, h = cw * ss, ch * ss
    img = _background(job, r, rng, xr, w, h)
    figures, occluded = _placements(job, cam, rng, xr, r, w, h)
    light = lighting.light_for(job.seed, job.camera, xr) if r.light else None
    tilt = optics.tilt(job.seed, job.camera) + float(xr.uniform(-0.03, 0.03))
    crowd = r.occluders and job.kind == 0 and xr.random() < 0.3
    others = [_neighbour(xr, r, w, h, figures[0])] if crowd else []
    in_front = bool(xr.random() < 0.4)
    for f in figures + others if in_front else others + figures:
        layer = _layer(f, (w, h), r, light, xr, tilt)
        if light is not None:
            img = lighting.cast_shadow(img, layer, light, f.foot, f.ph)
        img.paste(layer, (0, 0), layer)
    if r.occluders and xr.random() < cam.occlusion * 1.6:
        edge_occluder(img, xr)
    elif occluded and not r.occluders:
        _occluder(img, rng)
    if light is not None:
        img = lighting.tint(img, light)
    quality = int(np.clip(cam.quality + rng.integers(-5, 6), 40, 98))
    if r.camera:
        return optics.degrade(img.reduce(ss) if ss > 1 else img, cam, xr, job.width, job.height), quality
    return finish(img, cam, rng, job.width, job.height), quality
