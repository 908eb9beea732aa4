"""The bulk filler writes what `Gallery.enroll` writes: the service opens, counts, reads and searches it alike."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from app.gallery import Gallery, identity_point_id, unit
from bench.gallery import (
    BENCH_MODEL_ID,
    FILTER,
    IMAGES_PER_IDENTITY,
    fill_collections,
    filler_attributes,
    gallery_settings,
)

DIM = 32
POINTS = 64


def stored(gallery: Gallery, identity_id: str) -> tuple[dict, dict, dict[str, np.ndarray]]:
    """(record payload, first image payload, {mode: a vector it must find first}) of `identity_id`, read past
    the gallery's API: its centroid for centroid search, its first image for groups search."""
    record = gallery.store.retrieve("identities", [identity_point_id(identity_id)], vectors=True)[0]
    image = gallery.store.retrieve("images", [record.payload["image_ids"][0]], vectors=True)[0]
    return record.payload, image.payload, {"centroid": np.asarray(record.vector), "groups": np.asarray(image.vector)}


def test_filled_gallery_reads_like_an_enrolled_one(tmp_path: Path) -> None:
    settings = gallery_settings("embedded", tmp_path / "gallery", "bench_test")
    fill_s, index_s = fill_collections(settings, POINTS, DIM)
    assert fill_s > 0 and index_s >= 0

    gallery = Gallery.open(settings, dim=DIM, model_id=BENCH_MODEL_ID)
    try:
        filler_record, filler_image, probes = stored(gallery, "filler-3")
        vectors = unit(np.random.default_rng(0).standard_normal((IMAGES_PER_IDENTITY, DIM)).astype(np.float32))
        hashes = [f"e{j}" for j in range(IMAGES_PER_IDENTITY)]
        gallery.enroll("enrolled", None, {}, vectors, hashes, [filler_attributes(3)] * len(hashes))
        assert gallery.count() == {"identities": POINTS // IMAGES_PER_IDENTITY + 1, "images": POINTS + 4}
        filler = gallery.get("filler-3")
        assert filler.name is None and filler.metadata == {} and len(filler.image_ids) == IMAGES_PER_IDENTITY
        for mode in ("centroid", "groups"):
            gallery.search_mode = mode
            assert gallery.search(probes[mode], top_k=5)[0].identity_id == "filler-3"
            filtered = gallery.search(probes[mode], top_k=50, attribute_filter=FILTER)
            expected: Any = {f"filler-{i}" for i in range(POINTS // IMAGES_PER_IDENTITY) if i % 16 == 6}
            assert {m.identity_id for m in filtered} == expected, "the filter selects one identity in 16"
        enrolled_record, enrolled_image, _ = stored(gallery, "enrolled")
    finally:
        gallery.close()
    assert filler_record.keys() == enrolled_record.keys()
    assert filler_image.keys() == enrolled_image.keys()
    assert filler_record["model_id"] == filler_image["model_id"] == BENCH_MODEL_ID
    assert filler_record["attr_tags"] == enrolled_record["attr_tags"]
