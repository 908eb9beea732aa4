"""Seeded random streams: each draw comes from a generator keyed by what it is for.

Keys used: (seed, 0) the identity draw, (seed, 1, pid) an identity, (seed, 2, camera) a camera,
(seed, 3, camera) its background scenes, (seed, 5, pid) an identity's cameras and file names,
(seed, 4 + kind, pid + 1, camera, index) one image. Since no draw depends on another image's, any file can be
rendered alone, in any process, and come out byte-identical.
"""

from __future__ import annotations

import numpy as np


def seeded_rng(*key: int) -> np.random.Generator:
    """The generator for `key` (each part taken modulo 2**32)."""
    return np.random.default_rng([int(k) & 0xFFFFFFFF for k in key])
