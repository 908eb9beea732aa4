"""Real-format person crops on demand, for tools that need a few images and have no data set."""

from __future__ import annotations

import math
from pathlib import Path

from synth.writer import generate


def sample_crops(out: Path, count: int, seed: int = 0) -> list[Path]:
    """Write a small synthetic set into `out` and return `count` of its crops, sorted by name: real-format
    inputs for export verification, int8 calibration and benchmarks (never noise)."""
    per_identity = 4
    identities = max(3, math.ceil(count / per_identity) + 1)
    generate(
        out,
        identities=identities,
        test_identities=1,
        cameras=2,
        images_per_identity=per_identity,
        seed=seed,
        progress=False,
    )
    files = sorted(out.rglob("*.jpg"))
    if len(files) < count:
        raise ValueError(f"synth wrote {len(files)} images, {count} needed")
    return files[:count]
