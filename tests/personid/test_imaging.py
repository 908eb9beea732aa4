"""`personid.imaging.to_array` is the model input's one definition (training and service): its channels-first
arithmetic must give, bit for bit, the formula it documents."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from personid.imaging import to_array
from personid.manifest import InputSpec


def documented(image: Image.Image, spec: InputSpec) -> np.ndarray:
    """Bilinear resize, / scale, (x - mean) / std in float32, over H x W x 3, then channels first."""
    resized = image.resize((spec.width, spec.height), Image.Resampling.BILINEAR)
    scaled = np.asarray(resized, dtype=np.float32) / np.float32(spec.scale)
    normalised = (scaled - np.asarray(spec.mean, dtype=np.float32)) / np.asarray(spec.std, dtype=np.float32)
    return np.ascontiguousarray(normalised.transpose(2, 0, 1))


@pytest.mark.parametrize("size", [(64, 128), (128, 256), (17, 301), (640, 360)])
def test_to_array_is_the_documented_formula_bit_for_bit(size: tuple[int, int]) -> None:
    spec = InputSpec(name="images", height=256, width=128)
    pixels = np.random.default_rng(sum(size)).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    row = to_array(image, spec)
    assert row.dtype == np.float32 and row.shape == (3, 256, 128) and row.flags.c_contiguous
    assert np.array_equal(row.view(np.uint32), documented(image, spec).view(np.uint32))
