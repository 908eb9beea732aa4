"""`personid gallery backup` / `restore`: one file that moves a gallery between folders, machines and modes.

Server mode runs on the same `ServerStore` code as against a server, with qdrant-client's in-memory engine
(the Qdrant API without a server: none can run here), so the file is proven to cross between the two modes.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from qdrant_client import QdrantClient

from app.gallery import Gallery, Identity
from app.gallery_backup import BackupError, backup, restore
from app.gallery_server import ServerStore
from app.settings import Settings
from personid.cli import main as personid_main
from tests.app.local_mode import attributes

DIM = 16
MODEL = "sha256-0123456789abcdef"
# the in-memory engine standing in for a server keeps no payload indexes and says so; it still filters
pytestmark = pytest.mark.filterwarnings("ignore:Payload indexes have no effect:UserWarning")


def _settings(folder: Path) -> Settings:
    return Settings(qdrant_path=folder, collection="persons")


def _clusters(count: int, images: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(count, 1, DIM))
    vectors = centres + 0.4 * rng.normal(size=(count, images, DIM))
    return vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)


def _fill(folder: Path) -> np.ndarray:
    """A gallery enrolled through `Gallery` with names, metadata, thumbnails, attributes and one deletion."""
    vectors = _clusters(30, 3)
    gallery = Gallery.open(_settings(folder), DIM, MODEL)
    try:
        for index, images in enumerate(vectors):
            hashes = [f"{index}-{j}" for j in range(len(images))]
            thumbs = [f"jpeg {index} {j}".encode() for j in range(len(images))]
            gallery.enroll(
                f"id{index}", f"N{index}", {"i": index}, images, hashes, [attributes(index)] * len(images), thumbs
            )
        gallery.delete("id7")
    finally:
        gallery.close()
    return vectors


def _snapshot(gallery: Gallery, queries: np.ndarray) -> tuple[dict, list[Identity], dict, list]:
    """Counts, every identity, every thumbnail and the search results of both modes, with and without a filter."""
    identities, cursor = [], None
    while True:
        page, cursor = gallery.list_identities(7, cursor)
        identities += page
        if cursor is None:
            break
    thumbs = {
        (i.identity_id, image): gallery.thumbnail(i.identity_id, image) for i in identities for image in i.image_ids
    }
    results = []
    for mode in ("centroid", "groups"):
        gallery.search_mode = mode
        for attribute_filter in (None, {"gender": "male"}):
            for query in queries:
                matches = gallery.search(query, top_k=5, attribute_filter=attribute_filter)
                results.append([(m.identity_id, m.image_id, round(m.score, 5)) for m in matches])
    return gallery.count(), identities, thumbs, results


def _assert_same_results(got: list, expected: list) -> None:
    """The same matches in the same order; scores equal to float32 rounding (the engines compute them apart)."""
    assert [[m[:2] for m in r] for r in got] == [[m[:2] for m in r] for r in expected]
    np.testing.assert_allclose([m[2] for r in got for m in r], [m[2] for r in expected for m in r], atol=1e-5)


def _open_snapshot(folder: Path, queries: np.ndarray) -> tuple[dict, list[Identity], dict, list]:
    gallery = Gallery.open(_settings(folder), DIM, MODEL)
    try:
        return _snapshot(gallery, queries)
    finally:
        gallery.close()


def test_backup_and_restore_on_a_fresh_folder_gives_the_same_gallery(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    vectors = _fill(tmp_path / "source")
    queries = vectors[:, 0] + 0.01
    file = tmp_path / "gallery.tar"
    assert personid_main(["gallery", "backup", "--qdrant-path", str(tmp_path / "source"), "--out", str(file)]) == 0
    assert personid_main(["gallery", "restore", "--qdrant-path", str(tmp_path / "copy"), str(file)]) == 0
    capsys.readouterr()
    assert personid_main(["gallery", "info", "--qdrant-path", str(tmp_path / "copy")]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["counts"] == {"images": 87, "identities": 29} and info["stamp"]["images"] == {
        "model_id": MODEL,
        "dim": DIM,
    }
    before = _open_snapshot(tmp_path / "source", queries)
    after = _open_snapshot(tmp_path / "copy", queries)
    assert before[0] == after[0] == {"identities": 29, "images": 87}
    assert before == after


def test_a_backup_moves_a_gallery_to_server_mode_and_back(tmp_path: Path) -> None:
    vectors = _fill(tmp_path / "source")
    queries = vectors[:, 1] + 0.01
    gallery = Gallery.open(_settings(tmp_path / "source"), DIM, MODEL)
    try:
        first = backup(gallery.store, tmp_path / "embedded.tar")
        expected = _snapshot(gallery, queries)
    finally:
        gallery.close()
    server = ServerStore(QdrantClient(location=":memory:"), "persons", "in-memory Qdrant API")
    try:
        restore(server, tmp_path / "embedded.tar")
        served = _snapshot(Gallery(server, DIM, MODEL), queries)
        assert served[:3] == expected[:3]
        _assert_same_results(served[3], expected[3])
        second = backup(server, tmp_path / "server.tar")
    finally:
        server.close()
    assert second["counts"] == first["counts"] == {"identities": 29, "images": 87}
    assert second["stamp"] == first["stamp"]
    back = tmp_path / "back"
    assert personid_main(["gallery", "restore", "--qdrant-path", str(back), str(tmp_path / "server.tar")]) == 0
    returned = _open_snapshot(back, queries)
    assert returned[:3] == expected[:3]
    _assert_same_results(returned[3], expected[3])


def test_restore_refuses_what_it_would_damage(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _fill(tmp_path / "source")
    file = tmp_path / "gallery.tar"
    source = ["--qdrant-path", str(tmp_path / "source")]
    assert personid_main(["gallery", "backup", *source, "--out", str(file)]) == 0
    assert personid_main(["gallery", "restore", *source, str(file)]) == 1
    assert "already holds a gallery" in capsys.readouterr().err
    not_a_backup = tmp_path / "other.tar"
    with tarfile.open(not_a_backup, "w") as archive:
        archive.add(file, arcname="something.bin")
    assert personid_main(["gallery", "restore", "--qdrant-path", str(tmp_path / "new"), str(not_a_backup)]) == 1
    assert "Not a gallery backup" in capsys.readouterr().err
    for name, content in (("text.tar", b"not a tar file at all"), ("missing.tar", None)):
        path = tmp_path / name
        if content is not None:
            path.write_bytes(content)
        assert personid_main(["gallery", "restore", "--qdrant-path", str(tmp_path / "new"), str(path)]) == 1
        assert "Cannot read" in capsys.readouterr().err
    busy = Gallery.open(_settings(tmp_path / "source"), DIM, MODEL)
    try:
        assert personid_main(["gallery", "backup", *source, "--out", str(tmp_path / "x.tar")]) == 1
        assert "in use by another process" in capsys.readouterr().err
    finally:
        busy.close()
    with pytest.raises(BackupError, match="No gallery"):
        server = ServerStore(QdrantClient(location=":memory:"), "persons", "empty")
        backup(server, tmp_path / "empty.tar")
