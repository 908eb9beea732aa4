"""Market-1501's layout: which identity goes to which split, camera and folder, and the file names.

Every test identity gets queries only in cameras that leave it a gallery image in another camera (Market's
protocol discards same-camera matches), and the gallery gets `0000` distractors and `-1` junk as Market does.
"""

from __future__ import annotations

import re

import numpy as np

from synth.render import Job
from synth.seeds import seeded_rng

FOLDERS: tuple[str, ...] = ("bounding_box_train", "bounding_box_test", "query")
NAME_RE = re.compile(r"^(-1|\d{4})_c(\d+)s(\d+)_(\d{6})_(\d{2})\.jpg$")


def _camera_counts(rng: np.random.Generator, images: int, cameras: int) -> dict[int, int]:
    """How many images each camera took of one identity: at least two cameras, every chosen one at least one."""
    n_cams = min(images, cameras, int(rng.integers(min(2, cameras), cameras + 1)) if cameras > 2 else cameras)
    n_cams = max(n_cams, min(2, images, cameras))
    chosen = sorted(int(c) + 1 for c in rng.choice(cameras, n_cams, replace=False))
    counts = dict.fromkeys(chosen, 1)
    for c in rng.choice(chosen, images - n_cams):
        counts[int(c)] += 1
    return counts


def _queries(counts: dict[int, int]) -> set[int]:
    """Cameras that give one query image each, such that every query keeps a gallery image in another camera."""
    chosen: set[int] = set()
    for cam in sorted(counts, key=lambda c: (-counts[c], c)):
        trial = chosen | {cam}
        gallery = {c: n - (c in trial) for c, n in counts.items()}
        if all(any(n > 0 for c, n in gallery.items() if c != q) for q in trial):
            chosen = trial
    return chosen


def name(pid: int, cam: int, seq: int, frame: int, box: int) -> str:
    prefix = "-1" if pid < 0 else f"{pid:04d}"
    return f"{prefix}_c{cam}s{seq}_{frame:06d}_{box:02d}.jpg"
    """Market's file name `PPPP_cCsS_FFFFFF_NN.jpg` (`-1` for junk)."""


def plan(
    seed: int, identities: int, test_identities: int, cameras: int, per_identity: int, height: int, width: int
) -> tuple[list[int], list[int], list[Job]]:
    rng = seeded_rng(seed, 0)
    pids = [int(p) for p in rng.choice(np.arange(1, 1502), identities, replace=False)]
    test = sorted(pids[:test_identities])
    train = sorted(pids[test_identities:])
    jobs: list[Job] = []

    def job(path: str, kind: int, pid: int, cam: int, index: int) -> Job:
        return Job(path, kind, pid, cam, index, seed, height, width)

    for split, ids in (("train", train), ("test", test)):
        for pid in ids:
            prng = seeded_rng(seed, 5, pid)
            counts = _camera_counts(prng, per_identity, cameras)
            queries = _queries(counts) if split == "test" else set()
            index = 0
            for cam, n in counts.items():
                seq = int(prng.integers(1, 7))
                frame = int(prng.integers(100, 60000))
                for j in range(n):
                    frame += int(prng.integers(5, 120))
                    folder = (
                        "bounding_box_train"
                        if split == "train"
                        else ("query" if j == 0 and cam in queries else "bounding_box_test")
                    )
                    jobs.append(
                        job(f"{folder}/{name(pid, cam, seq, frame, int(prng.integers(1, 4)))}", 0, pid, cam, index)
                    )
                    index += 1
    extra = max(2, test_identities // 4)
    for kind, pid in ((1, 0), (2, -1)):
        for i in range(extra):
            cam = i % cameras + 1
            jobs.append(job(f"bounding_box_test/{name(pid, cam, 1 + i % 6, 1000 + 37 * i, 1)}", kind, pid, cam, i))
    return train, test, jobs
