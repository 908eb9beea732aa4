"""What every section feeds the model: synthetic JPEG crops, preprocessed exactly as the service does."""

from __future__ import annotations

import math
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.measure import BenchError

CPU = "CPUExecutionProvider"


def sample_jpegs(count: int, seed: int = 0) -> list[bytes]:
    """`count` Market-format JPEG person crops (128 x 64) from `synth`: what a detector would post."""
    from synth import sample_crops

    with tempfile.TemporaryDirectory() as tmp:
        try:
            return [f.read_bytes() for f in sample_crops(Path(tmp), count, seed)]
        except ValueError as error:
            raise BenchError(str(error)) from error


def image_limits() -> Any:
    """The service's default upload limits, so preprocessing here is exactly the service's."""
    from app.preprocess import ImageLimits
    from app.settings import Settings

    fields = Settings.model_fields
    return ImageLimits(max_pixels=fields["max_image_pixels"].default, min_side=fields["min_image_side"].default)


def preprocess_rows(blobs: Sequence[bytes], spec: Any) -> np.ndarray:
    """Uploaded bytes -> N x 3 x H x W model rows with the service's own `app.preprocess.preprocess`."""
    from app.preprocess import preprocess

    limits = image_limits()
    return np.stack([preprocess(blob, spec, limits) for blob in blobs])


def rows_for_batch(rows: np.ndarray, batch: int) -> np.ndarray:
    """`batch` rows, repeating the sample when it is smaller."""
    reps = math.ceil(batch / len(rows))
    return np.ascontiguousarray(np.concatenate([rows] * reps)[:batch])


def load_engine(path: Path, threads: int) -> Any:
    """The service's own `Engine` (same session options, manifest checks) on CPU with `threads` intra-op threads."""
    from app.engine import Engine

    return Engine.load(path, [CPU], threads)
