"""A folder that qdrant-client's local mode wrote (personid before Qdrant's engine ran in-process) is migrated at
the first open with nothing lost: ids, vectors, payloads, thumbnails, identity records, and the model guard."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from app.gallery import Gallery, ModelMismatch, identity_point_id, unit
from app.gallery_edge import edge_folder
from app.gallery_migrate import needs_migration
from app.gallery_store import scroll_all
from app.settings import Settings
from tests.app.local_mode import write_local_mode_gallery

DIM = 16
MODEL = "sha256-0123456789abcdef"


def _settings(folder: Path, **overrides: object) -> Settings:
    return Settings(**{"qdrant_path": folder, "collection": "persons", **overrides})


def _identities(count: int, images: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Each identity's images near its own centre, so that every search below has one right answer."""
    rng = np.random.default_rng(seed)
    centres = unit(rng.normal(size=(count, 1, DIM)))
    clusters = unit(centres + 0.3 * rng.normal(size=(count, images, DIM)) / np.sqrt(DIM)).astype(np.float32)
    return {f"person-{i}": cluster for i, cluster in enumerate(clusters)}


def _local_points(folder: Path, name: str) -> dict[str, tuple[list[float], dict]]:
    from qdrant_client import QdrantClient

    client = QdrantClient(path=str(folder))
    try:
        records, _ = client.scroll(name, limit=10_000, with_payload=True, with_vectors=True)
    finally:
        client.close()
    return {str(r.id): (list(r.vector), dict(r.payload or {})) for r in records}  # type: ignore[arg-type]


def test_local_mode_folder_is_migrated_with_nothing_lost(tmp_path: Path) -> None:
    vectors = _identities(12, 3)
    write_local_mode_gallery(tmp_path, "persons", MODEL, vectors)
    before = {name: _local_points(tmp_path, name) for name in ("persons", "persons_identities")}
    assert needs_migration(tmp_path, "persons")

    gallery = Gallery.open(_settings(tmp_path), DIM, MODEL)
    try:
        assert gallery.count() == {"identities": 12, "images": 36}
        for kind, name in (("images", "persons"), ("identities", "persons_identities")):
            after = {p.id: (p.vector, p.payload) for p in scroll_all(gallery.store, kind, vectors=True)}
            assert after.keys() == before[name].keys(), kind
            for point_id, (vector, payload) in after.items():
                assert payload == before[name][point_id][1], point_id
                np.testing.assert_allclose(vector, before[name][point_id][0], atol=1e-6)
        listed, cursor = gallery.list_identities(100)
        assert cursor is None and sorted(i.identity_id for i in listed) == sorted(vectors)
        got = gallery.get("person-4")
        assert got.name == "Name 4" and got.metadata == {"index": 4} and len(got.image_ids) == 3
        assert gallery.thumbnail("person-4", got.image_ids[1]) == b"jpeg person-4 1"
        for mode in ("centroid", "groups"):
            gallery.search_mode = mode
            for identity_id, images in vectors.items():
                assert gallery.search(images[0], top_k=1)[0].identity_id == identity_id, (mode, identity_id)
        female = gallery.search(vectors["person-0"][0], top_k=20, attribute_filter={"gender": "female"})
        assert {m.identity_id for m in female} == {f"person-{i}" for i in range(0, 12, 2)}
        gallery.add_images("person-4", unit(np.ones((1, DIM))), ["new"], [{}])
        gallery.delete("person-5")
        assert gallery.count() == {"identities": 11, "images": 34}
    finally:
        gallery.close()

    assert not needs_migration(tmp_path, "persons"), "migrated once: the engine's copy is the gallery now"
    assert (tmp_path / "collection" / "persons").is_dir(), "the old files are left for the user to delete"
    reopened = Gallery.open(_settings(tmp_path), DIM, MODEL)
    try:
        assert reopened.count() == {"identities": 11, "images": 34}
        assert len(reopened.get("person-4").image_ids) == 4
    finally:
        reopened.close()


def test_migrated_stamp_still_guards_the_model(tmp_path: Path) -> None:
    write_local_mode_gallery(tmp_path, "persons", MODEL, _identities(2, 2))
    with pytest.raises(ModelMismatch, match="sha256-0123456789abcdef"):
        Gallery.open(_settings(tmp_path), DIM, "sha256-ffffffffffffffff")
    adopted = Gallery.open(_settings(tmp_path), DIM, "sha256-new", adopt=MODEL)
    try:
        assert adopted.count() == {"identities": 2, "images": 4}
    finally:
        adopted.close()


def test_a_migration_cut_short_is_redone(tmp_path: Path) -> None:
    write_local_mode_gallery(tmp_path, "persons", MODEL, _identities(3, 2))
    staging = edge_folder(tmp_path, "persons").with_name("persons.migrating")
    (staging / "images").mkdir(parents=True)
    (staging / "images" / "half-written").write_text("x")
    edge_folder(tmp_path, "persons").mkdir(parents=True)  # an empty folder left by a failed first open
    gallery = Gallery.open(_settings(tmp_path), DIM, MODEL)
    try:
        assert gallery.count() == {"identities": 3, "images": 6}
    finally:
        gallery.close()
    assert not staging.exists()


def test_metadata_the_engine_cannot_hold_is_kept_as_text(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Older versions stored NaN and lone surrogates (answered as {}); the engine refuses them as JSON, so the
    migrated record answers {} as before and keeps the old value as text."""
    metadata = {"person-0": {"x": float("nan")}, "person-1": {"x": "\ud800"}}
    write_local_mode_gallery(tmp_path, "persons", MODEL, _identities(3, 2), metadata=metadata)
    with caplog.at_level(logging.WARNING):
        gallery = Gallery.open(_settings(tmp_path), DIM, MODEL)
    try:
        assert gallery.count() == {"identities": 3, "images": 6}
        assert gallery.get("person-0").metadata == {} and gallery.get("person-1").metadata == {}
        assert gallery.get("person-2").metadata == {"index": 2}
        record = gallery.store.retrieve("identities", [identity_point_id("person-1")])[0]
        assert record.payload["legacy_metadata"] == "{'x': '\\ud800'}"
    finally:
        gallery.close()
    assert sum("legacy_metadata" in r.getMessage() for r in caplog.records) == 2


def test_a_migration_that_fails_is_unavailable_and_keeps_the_old_files(tmp_path: Path) -> None:
    """A point the engine refuses (a lone surrogate, which older versions stored) stops the migration with
    GalleryUnavailable (the service answers 503 and stays up), and the local-mode folder is left as it was."""
    from qdrant_client import QdrantClient, models

    from app.gallery import GalleryUnavailable

    write_local_mode_gallery(tmp_path, "persons", MODEL, _identities(2, 2))
    client = QdrantClient(path=str(tmp_path))
    try:
        bad = models.PointStruct(
            id=identity_point_id("bad"), vector=[1.0] + [0.0] * (DIM - 1), payload={"name": "\ud800"}
        )
        client.upsert("persons_identities", [bad], wait=True)
    finally:
        client.close()
    with pytest.raises(GalleryUnavailable, match="Migrating the local-mode gallery"):
        Gallery.open(_settings(tmp_path), DIM, MODEL)
    assert needs_migration(tmp_path, "persons")
    assert len(_local_points(tmp_path, "persons_identities")) == 3
