"""`synth.generate`: the attribute file, the JPEGs it writes and byte-identical output per seed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

import synth
from tests.synth.conftest import ARGS, files
from training.data.attributes_mat import MARKET_FIELDS, read_attribute_mat


def test_attribute_file_matches_summary(tiny: tuple[Path, synth.SynthSummary]) -> None:
    root, summary = tiny
    labels = read_attribute_mat(root / "market_attribute.mat", "market_attribute", required=MARKET_FIELDS)
    for split in ("train", "test"):
        assert labels[split] == summary.splits[split].attributes
        for row in labels[split].values():
            assert set(row) == set(MARKET_FIELDS)
            assert 1 <= row["age"] <= 4
            assert sum(row[f] == 2 for f in MARKET_FIELDS if f.startswith("up") and f != "up") <= 1
            assert sum(row[f] == 2 for f in MARKET_FIELDS if f.startswith("down") and f != "down") <= 1


def test_images_decode_at_requested_size(tmp_path: Path) -> None:
    summary = synth.generate(tmp_path, 4, 2, 2, 2, seed=3, height=96, width=40, progress=False)
    paths = list(tmp_path.rglob("*.jpg"))
    assert len(paths) == sum(summary.folders.values()) > 0
    for path in paths:
        with Image.open(path) as img:
            assert img.format == "JPEG" and img.size == (40, 96) and img.mode == "RGB"
            assert np.asarray(img).std() > 10  # a scene, not a blank frame


def test_same_seed_same_bytes_whatever_the_workers(tmp_path: Path, tiny: tuple[Path, synth.SynthSummary]) -> None:
    root, _ = tiny
    synth.generate(tmp_path / "w2", seed=0, workers=2, progress=False, **ARGS)
    assert files(tmp_path / "w2") == files(root)
