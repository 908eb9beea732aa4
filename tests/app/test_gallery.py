"""The Qdrant gallery against a real embedded Qdrant in a temporary folder."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from app.gallery import (
    Gallery,
    GalleryUnavailable,
    IdentityExists,
    IdentityNotFound,
    InvalidArgument,
    ModelMismatch,
    aggregate_attributes,
)
from app.gallery_edge import IN_USE, edge_folder
from app.settings import Settings
from bench.search_modes import synthetic_clusters

DIM = 16
MODEL = "sha256-0123456789abcdef"


def _settings(folder: Path, **overrides: object) -> Settings:
    return Settings(**{"qdrant_path": folder, "collection": "persons", **overrides})


def _unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)


def _attrs(gender: str = "female", color: str = "red", score: float = 0.9) -> dict:
    return {"gender": {"label": gender, "score": score}, "upper_color": {"label": color, "score": score}}


@pytest.fixture
def gallery(tmp_path: Path, request: pytest.FixtureRequest) -> Gallery:
    opened = Gallery.open(_settings(tmp_path / "qdrant", search_mode=getattr(request, "param", "centroid")), DIM, MODEL)
    yield opened
    opened.close()


def _enroll(gallery: Gallery, identity_id: str | None, vectors: np.ndarray, attrs: dict | None = None, **kw: object):
    hashes = [f"{identity_id}-{index}" for index in range(len(vectors))]
    return gallery.enroll(
        identity_id, kw.get("name"), kw.get("metadata", {}), vectors, hashes, [attrs or _attrs()] * len(vectors)
    )


def test_enroll_and_get_round_trip(gallery: Gallery) -> None:
    vectors = _unit(np.random.default_rng(0).normal(size=(3, DIM)))
    per_image = [_attrs("female", "red", 0.9), _attrs("female", "blue", 0.6), _attrs("male", "red", 0.7)]
    hashes = ["a", "b", "c"]
    created = gallery.enroll("alice", "Alice", {"team": "x"}, vectors, hashes, per_image)
    got = gallery.get("alice")
    assert got == created
    assert (got.name, got.metadata, len(got.image_ids)) == ("Alice", {"team": "x"}, 3)
    assert got.attributes["gender"] == {"label": "female", "score": pytest.approx(1.5 / 3)}
    assert got.attributes["upper_color"] == {"label": "red", "score": pytest.approx(1.6 / 3)}
    assert got.created_at == got.updated_at and got.created_at.endswith("Z")
    generated = _enroll(gallery, None, vectors[:1])
    assert generated.identity_id and generated.identity_id != "alice"
    assert gallery.count() == {"identities": 2, "images": 4}


def test_list_pages_are_exact_and_stable(gallery: Gallery) -> None:
    rng = np.random.default_rng(1)
    ids = {f"person-{index}" for index in range(25)}
    for identity_id in ids:
        _enroll(gallery, identity_id, _unit(rng.normal(size=(2, DIM))))

    def walk() -> list[list[str]]:
        pages, cursor = [], None
        while True:
            page, cursor = gallery.list_identities(limit=10, offset=cursor)
            pages.append([identity.identity_id for identity in page])
            if cursor is None:
                return pages

    pages = walk()
    assert [len(page) for page in pages] == [10, 10, 5]
    flat = [identity_id for page in pages for identity_id in page]
    assert len(flat) == len(set(flat)) and set(flat) == ids
    assert walk() == pages
    with pytest.raises(InvalidArgument, match="cursor"):
        gallery.list_identities(limit=10, offset="not-a-cursor")


@pytest.mark.parametrize("gallery", ["groups", "centroid"], indirect=True)
def test_delete_removes_every_vector(gallery: Gallery) -> None:
    rng = np.random.default_rng(2)
    bob = _unit(rng.normal(size=(4, DIM)))
    _enroll(gallery, "bob", bob)
    gallery.add_images("bob", _unit(rng.normal(size=(2, DIM))), ["x", "y"], [_attrs()] * 2)
    _enroll(gallery, "carol", _unit(rng.normal(size=(2, DIM))))
    assert gallery.count_points("bob") == 6
    gallery.delete("bob")
    assert gallery.count_points("bob") == 0
    assert gallery.count() == {"identities": 1, "images": 2}
    with pytest.raises(IdentityNotFound):
        gallery.get("bob")
    assert all(match.identity_id != "bob" for match in gallery.search(bob[0], top_k=5))
    for call in (lambda: gallery.delete("bob"), lambda: gallery.add_images("bob", bob[:1], ["z"], [_attrs()])):
        with pytest.raises(IdentityNotFound):
            call()


@pytest.mark.parametrize("gallery", ["groups", "centroid"], indirect=True)
def test_search_ranks_identities_with_exact_scores(gallery: Gallery) -> None:
    rng = np.random.default_rng(3)
    stored = {}
    for index in range(6):
        vectors = _unit(rng.normal(size=(3, DIM)))
        stored[f"p{index}"] = vectors
        gender = "female" if index % 2 else "male"
        _enroll(gallery, f"p{index}", vectors, _attrs(gender, "red" if index < 3 else "blue"), name=f"P{index}")
    query = _unit(stored["p4"][1] + 0.1 * rng.normal(size=DIM))

    def expected(vectors: np.ndarray) -> float:
        if gallery.search_mode == "groups":
            return float(np.max(vectors @ query))
        return float(_unit(vectors.mean(axis=0)) @ query)

    truth = sorted(((expected(v), i) for i, v in stored.items()), reverse=True)
    matches = gallery.search(query, top_k=6)
    assert [m.identity_id for m in matches] == [i for _, i in truth]
    assert [m.score for m in matches] == pytest.approx([s for s, _ in truth], abs=1e-5)
    best = matches[0]
    assert (best.identity_id, best.name) == ("p4", "P4")
    assert best.image_id == gallery.get("p4").image_ids[1]
    assert best.attributes["gender"]["label"] == "male"
    assert len(gallery.search(query, top_k=2)) == 2
    threshold = (truth[1][0] + truth[2][0]) / 2
    assert [m.identity_id for m in gallery.search(query, top_k=6, min_score=threshold)] == [i for _, i in truth[:2]]
    filtered = gallery.search(query, top_k=6, attribute_filter={"gender": "female", "upper_color": "blue"})
    assert {m.identity_id for m in filtered} == {"p3", "p5"}
    assert gallery.search(query, attribute_filter={"gender": "unknown"}) == []
    with pytest.raises(InvalidArgument):
        gallery.search(query, attribute_filter={"gender.x": "female"})
    with pytest.raises(InvalidArgument):
        gallery.search(query[:-1])


def test_retried_writes_do_not_duplicate(gallery: Gallery) -> None:
    rng = np.random.default_rng(4)
    vectors = _unit(rng.normal(size=(3, DIM)))
    first = _enroll(gallery, "dave", vectors)
    with pytest.raises(IdentityExists):
        _enroll(gallery, "dave", vectors)
    assert gallery.count() == {"identities": 1, "images": 3}
    added = gallery.add_images("dave", vectors[:2], ["dave-0", "new"], [_attrs()] * 2)
    again = gallery.add_images("dave", vectors[:2], ["dave-0", "new"], [_attrs()] * 2)
    assert added == again and added[0] == first.image_ids[0]
    assert gallery.get("dave").image_ids == [*first.image_ids, added[1]]
    assert gallery.count() == {"identities": 1, "images": 4}


def test_points_left_by_a_killed_write_are_swept_at_open(tmp_path: Path) -> None:
    """Points written by an enroll or add that died before its record: nobody lists them, reopening removes them."""
    rng = np.random.default_rng(5)
    gallery = Gallery.open(_settings(tmp_path), DIM, MODEL)
    _enroll(gallery, "erin", _unit(rng.normal(size=(2, DIM))))
    for owner in ("erin", "frank"):  # an unlisted image of a known identity, and one of an identity never recorded
        identity = {"identity_id": owner, "name": None, "metadata": {}, "created_at": "2020-01-01T00:00:00.000Z"}
        points = gallery._image_points(identity, _unit(rng.normal(size=(1, DIM))), ["lost"], [_attrs()], "t", None)
        gallery.store.upsert("images", points)
    assert gallery.count() == {"identities": 1, "images": 4}
    gallery.close()
    (edge_folder(tmp_path, "persons") / IN_USE).write_text("1")  # as a process killed before its close leaves it
    gallery = Gallery.open(_settings(tmp_path), DIM, MODEL)
    assert gallery.count() == {"identities": 1, "images": 2}
    assert gallery.count_points("frank") == 0
    _enroll(gallery, "frank", _unit(rng.normal(size=(1, DIM))))
    assert gallery.count() == {"identities": 2, "images": 3}
    gallery.close()


def test_reopen_keeps_everything_searchable(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    vectors = _unit(rng.normal(size=(5, 3, DIM)))
    first = Gallery.open(_settings(tmp_path), DIM, MODEL)
    for index, images in enumerate(vectors):
        _enroll(first, f"id{index}", images, name=f"N{index}")
    first.close()
    second = Gallery.open(_settings(tmp_path), DIM, MODEL)
    try:
        assert second.count() == {"identities": 5, "images": 15}
        assert second.get("id2").name == "N2"
        assert second.search(vectors[3, 0], top_k=1)[0].identity_id == "id3"
    finally:
        second.close()


def test_model_mismatch_and_locked_folder(tmp_path: Path) -> None:
    gallery = Gallery.open(_settings(tmp_path), DIM, MODEL)
    with pytest.raises(GalleryUnavailable, match="in use by another process"):
        Gallery.open(_settings(tmp_path), DIM, MODEL)
    gallery.close()
    with pytest.raises(ModelMismatch, match="PERSONID_COLLECTION"):
        Gallery.open(_settings(tmp_path), DIM, "sha256-ffffffffffffffff")
    with pytest.raises(ModelMismatch, match="dim 16"):
        Gallery.open(_settings(tmp_path), DIM * 2, MODEL)
    other = Gallery.open(_settings(tmp_path, collection="reindexed"), DIM * 2, "sha256-ffffffffffffffff")
    other.close()


def test_invalid_batches_are_refused(gallery: Gallery) -> None:
    vectors = _unit(np.random.default_rng(7).normal(size=(2, DIM)))
    with pytest.raises(InvalidArgument, match="one of each"):
        gallery.enroll("x", None, {}, vectors, ["a"], [_attrs()] * 2)
    with pytest.raises(InvalidArgument, match="N x 16"):
        gallery.enroll("x", None, {}, vectors[:, :8], ["a", "b"], [_attrs()] * 2)
    with pytest.raises(InvalidArgument, match="identity_id"):
        gallery.enroll("  ", None, {}, vectors, ["a", "b"], [_attrs()] * 2)
    assert gallery.count() == {"identities": 0, "images": 0}


def test_concurrent_enroll_search_delete_keeps_exact_counts(gallery: Gallery) -> None:
    rng = np.random.default_rng(8)
    pool = _unit(rng.normal(size=(64, DIM)))
    kept: dict[str, int] = {}
    errors: list[BaseException] = []
    record = threading.Lock()
    deadline = time.monotonic() + 3.0

    def client(worker: int) -> None:
        step = 0
        try:
            while time.monotonic() < deadline:
                identity_id = f"w{worker}-{step}"
                images = pool[(step + worker) % 60 : (step + worker) % 60 + 2]
                _enroll(gallery, identity_id, images)
                gallery.search(images[0], top_k=3, attribute_filter={"gender": "female"})
                count = 2
                if step % 3 == 1:
                    count += len(gallery.add_images(identity_id, pool[:1], [f"extra-{step}"], [_attrs()]))
                if step % 4 == 3:
                    gallery.delete(identity_id)
                else:
                    with record:
                        kept[identity_id] = count
                gallery.list_identities(limit=5)
                step += 1
        except BaseException as error:  # collected and re-raised on the main thread
            errors.append(error)

    threads = [threading.Thread(target=client, args=(worker,)) for worker in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(kept) > 8
    assert gallery.count() == {"identities": len(kept), "images": sum(kept.values())}
    listed, cursor = [], None
    while True:
        page, cursor = gallery.list_identities(limit=50, offset=cursor)
        listed += [identity.identity_id for identity in page]
        if cursor is None:
            break
    assert sorted(listed) == sorted(kept)


def test_centroid_search_beats_groups_on_noisy_clusters(tmp_path: Path) -> None:
    """The measurement behind the default: with noisy images the identity centroid is the better template."""
    gallery_vectors, queries = synthetic_clusters(60, 4, 2, DIM, noise=1.5, seed=9)
    gallery = Gallery.open(_settings(tmp_path), DIM, MODEL)
    for index, images in enumerate(gallery_vectors):
        gallery.enroll(f"id{index}", None, {}, images, [str(j) for j in range(4)], [{}] * 4)
    accuracy = {}
    for mode in ("groups", "centroid"):
        gallery.search_mode = mode
        hits = [gallery.search(q, top_k=1)[0].identity_id == f"id{i}" for i, qs in enumerate(queries) for q in qs]
        accuracy[mode] = float(np.mean(hits))
    gallery.close()
    assert accuracy["centroid"] > accuracy["groups"]


def test_aggregate_attributes_is_a_score_weighted_vote() -> None:
    votes = [_attrs("male", "red", 0.9), _attrs("female", "red", 0.6), _attrs("female", "blue", 0.6)]
    assert aggregate_attributes(votes) == {
        "gender": {"label": "female", "score": pytest.approx(0.4)},
        "upper_color": {"label": "red", "score": pytest.approx(0.5)},
    }


def test_unreachable_server_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(GalleryUnavailable, match="unreachable"):
        Gallery.open(_settings(tmp_path, qdrant_url="http://127.0.0.1:9"), DIM, MODEL)


def test_metadata_is_stored_once_on_the_record(gallery: Gallery) -> None:
    """Issue 13 finding 3: a copy per image point made RSS and disk grow with every image added."""
    rng = np.random.default_rng(8)
    _enroll(gallery, "meta", _unit(rng.normal(size=(2, DIM))), metadata={"blob": "x" * 1000})
    gallery.add_images("meta", _unit(rng.normal(size=(3, DIM))), ["c", "d", "e"], [_attrs()] * 3)
    points, _ = gallery.store.scroll("images", 100)
    assert len(points) == 5 and not any("metadata" in point.payload for point in points)
    assert gallery.get("meta").metadata == {"blob": "x" * 1000}


def test_points_of_older_versions_with_metadata_still_work(gallery: Gallery) -> None:
    """Image points written before metadata moved to the record carry a copy: search, add and delete ignore it."""
    rng = np.random.default_rng(9)
    vectors = _unit(rng.normal(size=(2, DIM)))
    _enroll(gallery, "older", vectors, metadata={"team": "x"})
    points, _ = gallery.store.scroll("images", 100, vectors=True)
    gallery.store.upsert("images", [replace(p, payload={**p.payload, "metadata": {"team": "x"}}) for p in points])
    for mode in ("centroid", "groups"):
        gallery.search_mode = mode
        assert gallery.search(vectors[0], top_k=1)[0].identity_id == "older"
    gallery.add_images("older", _unit(rng.normal(size=(1, DIM))), ["new"], [_attrs()])
    assert gallery.get("older").metadata == {"team": "x"} and len(gallery.get("older").image_ids) == 3
    gallery.delete("older")
    assert gallery.count() == {"identities": 0, "images": 0}


@pytest.mark.parametrize(
    ("name", "metadata", "words"),
    [
        (None, {"x": "\ud800"}, "metadata holds text that is not valid Unicode"),
        ("\udc80", {}, "name holds text that is not valid Unicode"),
        (None, {"x": float("nan")}, "NaN"),
        (None, {"x": [float("-inf")]}, "NaN or Infinity"),
        (None, {"x": 2**64}, "64-bit"),
        (None, {1: "a"}, "key that is not a string"),
        (None, {"x": {1, 2}}, "set"),
        (None, {"a": [[[[{}]]]]}, "deeper than 5 levels"),
        (None, {"blob": "é" * 40}, "at most 64"),
        (None, ["not", "an object"], "must be a JSON object"),
    ],
)
def test_unreturnable_metadata_is_refused_before_anything_is_written(
    tmp_path: Path, name: str | None, metadata: object, words: str
) -> None:
    gallery = Gallery.open(_settings(tmp_path, max_metadata_bytes=64, max_json_depth=5), DIM, MODEL)
    try:
        vectors = _unit(np.random.default_rng(10).normal(size=(2, DIM)))
        with pytest.raises(InvalidArgument, match=words):
            gallery.enroll("bad", name, metadata, vectors, ["a", "b"], [_attrs()] * 2)  # type: ignore[arg-type]
        assert gallery.count() == {"identities": 0, "images": 0}
        assert gallery.list_identities(10) == ([], None)
        assert gallery.enroll("good", None, {"a": [[[1]]]}, vectors, ["a", "b"], [_attrs()] * 2).metadata
    finally:
        gallery.close()


@pytest.mark.parametrize("identity_id", [".", ".."])
def test_dot_segment_identity_ids_are_refused(gallery: Gallery, identity_id: str) -> None:
    with pytest.raises(InvalidArgument, match="path normalisation"):
        _enroll(gallery, identity_id, _unit(np.random.default_rng(11).normal(size=(1, DIM))))
    assert gallery.count() == {"identities": 0, "images": 0}


def test_open_asks_for_the_index_build_instead_of_blocking(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An HNSW build holds the process for minutes: the open only says that `personid gallery optimize` is due."""
    gallery = Gallery.open(_settings(tmp_path), DIM, MODEL)
    _enroll(gallery, "a", _unit(np.random.default_rng(12).normal(size=(4, DIM))))
    gallery.close()
    monkeypatch.setattr("app.gallery.REINDEX_AT", 3)
    with caplog.at_level(logging.WARNING):
        gallery = Gallery.open(_settings(tmp_path), DIM, MODEL)
    try:
        assert gallery.store.unindexed() == 5, "nothing was built at open"
        assert any("personid gallery optimize" in record.getMessage() for record in caplog.records)
    finally:
        gallery.close()
