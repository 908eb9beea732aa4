"""The bulk filler writes what `Gallery.enroll` writes: the service opens, counts, reads and searches it alike."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from app.gallery import Gallery, identity_point_id, unit
from bench.gallery import BENCH_MODEL_ID, IMAGES_PER_IDENTITY, fill_collections, gallery_settings, raw_client

DIM = 32
POINTS = 40


def stored(settings: Any, identity_id: str) -> tuple[dict, dict, list[float]]:
    """(record payload, first image payload, first image vector) of `identity_id`, read past `Gallery`."""
    client = raw_client(settings)
    try:
        record = client.retrieve(f"{settings.collection}_identities", [identity_point_id(identity_id)])[0]
        image = client.retrieve(settings.collection, [record.payload["image_ids"][0]], with_vectors=True)[0]
    finally:
        client.close()
    return record.payload, image.payload, image.vector


def test_filled_gallery_reads_like_an_enrolled_one(tmp_path: Path) -> None:
    settings = gallery_settings("embedded", tmp_path / "gallery", "bench_test")
    assert fill_collections(settings, POINTS, DIM) > 0
    filler_record, filler_image, vector = stored(settings, "filler-3")

    gallery = Gallery.open(settings, dim=DIM, model_id=BENCH_MODEL_ID)
    try:
        vectors = unit(np.random.default_rng(0).standard_normal((IMAGES_PER_IDENTITY, DIM)).astype(np.float32))
        hashes = [f"e{j}" for j in range(IMAGES_PER_IDENTITY)]
        gallery.enroll("enrolled", None, {}, vectors, hashes, [{} for _ in hashes])
        assert gallery.count() == {"identities": POINTS // IMAGES_PER_IDENTITY + 1, "images": POINTS + 4}
        filler = gallery.get("filler-3")
        assert filler.name is None and filler.metadata == {} and len(filler.image_ids) == IMAGES_PER_IDENTITY
        for mode in ("centroid", "groups"):
            gallery.search_mode = mode
            assert gallery.search(np.asarray(vector), top_k=5)[0].identity_id == "filler-3"
    finally:
        gallery.close()

    enrolled_record, enrolled_image, _ = stored(settings, "enrolled")
    assert filler_record.keys() == enrolled_record.keys()
    assert filler_image.keys() == enrolled_image.keys()
    assert filler_record["model_id"] == filler_image["model_id"] == BENCH_MODEL_ID
