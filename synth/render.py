"""Rendering one file: scene, person (or distractor / junk), occluders and camera look, then the JPEG.

A job carries everything its image depends on, so workers render in any order and still write the bytes a
single process would.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from personid.imaging import FEET_AT
from synth.camera import SUPERSAMPLE, camera, finish
from synth.figure import VIEWS, draw_person, shade
from synth.identity import identity, sample_person
from synth.realism import OFF, Realism
from synth.scene import street
from synth.seeds import seeded_rng


@dataclass(frozen=True)
class Job:
    """One file to render; plain data so it pickles cheaply to worker processes."""

    path: str  # relative to the data set root
    kind: int  # 0 identity, 1 distractor, 2 junk
    pid: int
    camera: int
    index: int
    seed: int
    height: int
    width: int
    realism: Realism = OFF


def _occluder(img: Image.Image, rng: np.random.Generator) -> None:
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
        d.rectangle([x + pw * 0.65, 0, x + pw, h], fill=shade(c, 0.75))
    elif kind == 1:
        bw, bh = w * rng.uniform(0.3, 0.5), h * rng.uniform(0.12, 0.25)
        x = -bw * 0.3 if left else w - bw * 0.7
        c = tuple(int(v) for v in rng.integers(60, 200, 3))
        d.rectangle([x, h - bh, x + bw, h], fill=c)
        d.rectangle([x, h - bh, x + bw, h - bh + bh * 0.15], fill=shade(c, 1.2))
    else:
        other = sample_person(rng, 0)
        ph = h * rng.uniform(0.8, 0.95)
        cx = w * (rng.uniform(-0.3, -0.15) if left else rng.uniform(1.15, 1.3))
        draw_person(img, other, str(rng.choice(VIEWS)), float(rng.uniform(0, 2 * math.pi)), cx, h * 0.97, ph)


def render(job: Job) -> tuple[Image.Image, int]:
    """The image of one job and its JPEG quality, deterministic in the job's fields."""
    if job.realism.any:
        from synth.realistic import render_realistic  # it builds on this module's classic pieces

        return render_realistic(job)
    rng = seeded_rng(job.seed, 4 + job.kind, job.pid + 1, job.camera, job.index)
    cam = camera(job.seed, job.camera)
    img = street(job.seed, job.camera, job.width * SUPERSAMPLE, job.height * SUPERSAMPLE, rng)
    w, h = img.size
    if job.kind == 0:
        person = identity(job.seed, job.pid)
        view = str(rng.choice(VIEWS, p=cam.view_weights))
        ph = h * cam.scale * person.stature * rng.uniform(0.95, 1.05)
        foot = h * rng.uniform(*FEET_AT)
        cx = w / 2 + w * rng.uniform(-0.06, 0.06)
        mirror = view == "side" and rng.random() < 0.5
        draw_person(img, person, view, float(rng.uniform(0, 2 * math.pi)), cx, foot, ph)
        if mirror:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        if rng.random() < cam.occlusion:
            _occluder(img, rng)
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
            _occluder(img, rng)
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
    return finish(img, cam, rng, job.width, job.height), quality


def write(job_and_root: tuple[Job, str]) -> None:
    """Render `job` and write its JPEG under the root; one argument, for `Pool.imap_unordered`."""
    job, root = job_and_root
    image, quality = render(job)
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=quality)
    (Path(root) / job.path).write_bytes(buf.getvalue())
