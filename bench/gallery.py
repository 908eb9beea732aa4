"""Section 3, gallery: search latency, enroll rates, index build, open time and memory against gallery size, on
embedded Qdrant (Qdrant's engine in-process) and, when PERSONID_QDRANT_URL is set, a server.

The galleries are filled in bulk with random unit vectors through the gallery's own engine (`Gallery.store`),
with the point ids and payloads the service writes (two attribute heads, so attribute filters have something
to select), then searched with real model embeddings.
"""

from __future__ import annotations

import itertools
import os
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from bench.measure import Profile, percentiles_ms, time_calls

IMAGES_PER_IDENTITY = 4  # gallery filler: image points per identity
UPSERT_BATCH = 1024  # points per bulk upsert when filling a gallery
BULK_ENROLL_IMAGES = 32  # images of one bulk enroll: the service's default max_images_per_request
BENCH_MODEL_ID = "bench-filler"
GENDERS = ("female", "male")
COLOURS = ("black", "white", "grey", "red", "blue", "green", "yellow", "brown")
# the filtered searches ask for one identity in 16 (gender x upper colour)
FILTER = {"gender": "female", "upper_color": "red"}
FILTER_LABEL = "gender+upper_color (1/16)"


def gallery_settings(backend: str, folder: Path, collection: str) -> Any:
    """Service settings for one bench collection: embedded in `folder`, or the server at PERSONID_QDRANT_URL."""
    from app.settings import Settings

    if backend == "embedded":
        return Settings(qdrant_url=None, qdrant_path=folder, collection=collection)
    return Settings(qdrant_url=os.environ["PERSONID_QDRANT_URL"], collection=collection)


def filler_attributes(identity_index: int) -> dict[str, Any]:
    """The attributes of a filler identity's images: gender and upper colour cycle over the identities."""
    return {
        "gender": {"label": GENDERS[identity_index % 2], "score": 0.9},
        "upper_color": {"label": COLOURS[(identity_index // 2) % len(COLOURS)], "score": 0.8},
    }


def filler_points(identity_index: int, vectors: np.ndarray, now: str) -> tuple[list[Any], Any]:
    """One filler identity as the service stores it: its image points and its record (vector: their centroid).

    Ids and payloads come from `app.gallery`'s own builders, so searches read exactly what enrolling writes.
    """
    from app.gallery import (
        aggregate_attributes,
        attribute_tags,
        identity_payload,
        identity_point_id,
        image_payload,
        image_point_id,
        unit,
    )
    from app.gallery_store import StoredPoint

    identity_id = f"filler-{identity_index}"
    identity = {"identity_id": identity_id, "name": None, "metadata": {}, "created_at": now}
    attributes = filler_attributes(identity_index)
    hashes = [f"h{j}" for j in range(len(vectors))]
    ids = [image_point_id(identity_id, image_hash) for image_hash in hashes]
    images = [
        StoredPoint(id=pid, vector=v.tolist(), payload=image_payload(identity, h, attributes, BENCH_MODEL_ID, now))
        for pid, h, v in zip(ids, hashes, vectors, strict=True)
    ]
    voted = aggregate_attributes([attributes] * len(vectors))
    record = StoredPoint(
        id=identity_point_id(identity_id),
        vector=unit(unit(vectors).mean(axis=0)).tolist(),
        payload=identity_payload(identity, ids, voted, attribute_tags(attributes), BENCH_MODEL_ID, now),
    )
    return images, record


def fill_gallery(gallery: Any, points: int, dim: int, seed: int) -> float:
    """Bulk-upsert `points` image points (random unit vectors, IMAGES_PER_IDENTITY per identity) and their
    identity records through the gallery's engine; returns seconds.

    Written here because `Gallery.enroll` is one identity per call, with the reads it needs to vote attributes
    and a centroid: the rates of that path are the enroll figures.
    """
    from app.gallery import unit

    rng = np.random.default_rng(seed)
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    identities = points // IMAGES_PER_IDENTITY
    per_chunk = max(1, UPSERT_BATCH // IMAGES_PER_IDENTITY)
    start = time.perf_counter()
    with (
        tqdm(total=identities * IMAGES_PER_IDENTITY, desc=f"fill {points} points", unit="pt", leave=False) as bar,
        gallery.lock,
    ):
        for first in range(0, identities, per_chunk):
            count = min(per_chunk, identities - first)
            vectors = unit(rng.standard_normal((count, IMAGES_PER_IDENTITY, dim), dtype=np.float32))
            images, records = [], []
            for k in range(count):
                identity_images, record = filler_points(first + k, vectors[k], now)
                images += identity_images
                records.append(record)
            gallery.store.upsert("images", images)
            gallery.store.upsert("identities", records)
            bar.update(len(images))
    return time.perf_counter() - start


def fill_collections(settings: Any, points: int, dim: int) -> tuple[float, float]:
    """Create the collections with `Gallery.open` (exactly as the service does), bulk-fill them and build the
    index as `personid gallery optimize` does; returns (fill seconds, index build seconds)."""
    from app.gallery import Gallery

    gallery = Gallery.open(settings, dim=dim, model_id=BENCH_MODEL_ID)
    try:
        fill_s = fill_gallery(gallery, points, dim, seed=points)
        start = time.perf_counter()
        with gallery.lock:
            gallery.store.maintain()
        index_s = time.perf_counter() - start
    finally:
        gallery.close()
    return fill_s, index_s


def rss_mb() -> float:
    """This process's resident memory in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def time_searches(gallery: Any, backend: str, points: int, queries: np.ndarray, profile: Profile) -> list[dict]:
    """One row per search mode and filter: `Gallery.search` (top 5) latency over the query embeddings."""
    rows = []
    for attribute_filter, label in ((None, "none"), (FILTER, FILTER_LABEL)):
        for mode in ("centroid", "groups"):
            gallery.search_mode = mode
            cycle = itertools.cycle(queries)

            def search(cycle: Any = cycle, attribute_filter: Any = attribute_filter) -> None:
                gallery.search(next(cycle), top_k=5, attribute_filter=attribute_filter)

            times = time_calls(search, 1, len(queries), profile.budget_s)
            rows.append(
                {
                    "backend": backend,
                    "points": points,
                    "mode": mode,
                    "filter": label,
                    "searches": len(times),
                    **percentiles_ms(times),
                }
            )
    return rows


def time_enrolls(gallery: Any, points: int, dim: int, images: int, repeats: int, budget_s: float) -> list[float]:
    """Seconds per `Gallery.enroll` of a new `images`-image identity into the filled gallery."""
    from app.gallery import unit

    rng = np.random.default_rng(points + images)
    enrolled = itertools.count()

    def enroll() -> None:
        index = next(enrolled)
        vectors = unit(rng.standard_normal((images, dim), dtype=np.float32))
        hashes = [f"new-{images}-{index}-{j}" for j in range(images)]
        attributes = [filler_attributes(index)] * images
        gallery.enroll(f"new-{images}-{index}", None, {}, vectors, hashes, attributes)

    return time_calls(enroll, 0, repeats, budget_s)


def bench_gallery_size(
    backend: str, folder: Path, points: int, dim: int, queries: np.ndarray, profile: Profile
) -> list[dict[str, Any]]:
    """Fill a fresh gallery with `points` image points and index it, reopen it (timed), then time searches
    (both modes, with and without an attribute filter) and enrolls of 1, 4 and 32 images."""
    from app.gallery import Gallery

    collection = f"bench_{uuid.uuid4().hex[:8]}"
    settings = gallery_settings(backend, folder / collection, collection)
    fill_s, index_s = fill_collections(settings, points, dim)
    rss_before = rss_mb()
    start = time.perf_counter()
    gallery = Gallery.open(settings, dim=dim, model_id=BENCH_MODEL_ID)
    open_s = time.perf_counter() - start
    try:
        rows = time_searches(gallery, backend, points, queries, profile)
        rss_searched = rss_mb()
        one = time_enrolls(gallery, points, dim, 1, profile.enrolls, profile.budget_s)
        four = time_enrolls(gallery, points, dim, IMAGES_PER_IDENTITY, profile.enrolls, profile.budget_s)
        bulk = time_enrolls(gallery, points, dim, BULK_ENROLL_IMAGES, profile.enrolls, profile.budget_s)
    finally:
        gallery.close()
        if backend == "server":
            drop_server_collections(settings)
    for row in rows:
        row.update(
            {
                "fill_s": fill_s,
                "fill_points_per_s": points / fill_s,
                "index_s": index_s,
                "open_s": open_s,
                "rss_mb": rss_searched,
                "rss_gallery_mb": rss_searched - rss_before,
                "enroll_images_per_s": IMAGES_PER_IDENTITY * len(four) / sum(four),
                "enrolls": len(four),
                "enroll_p50_ms": float(np.median(four)) * 1000,
                "enroll1_p50_ms": float(np.median(one)) * 1000,
                "bulk_enroll_images_per_s": BULK_ENROLL_IMAGES * len(bulk) / sum(bulk),
            }
        )
    return rows


def drop_server_collections(settings: Any) -> None:
    """Remove a bench run's collections from the server."""
    from qdrant_client import QdrantClient

    key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
    client = QdrantClient(url=settings.qdrant_url, api_key=key, timeout=60)
    try:
        for name in (settings.collection, f"{settings.collection}_identities"):
            client.delete_collection(name)
    finally:
        client.close()


def bench_gallery(dim: int, queries: np.ndarray, profile: Profile) -> dict[str, Any]:
    """Every gallery size on embedded Qdrant, and on the server at PERSONID_QDRANT_URL when it is set."""
    backends = ["embedded"] + (["server"] if os.environ.get("PERSONID_QDRANT_URL") else [])
    notes = [] if "server" in backends else ["Qdrant server: skipped (set PERSONID_QDRANT_URL to measure one)."]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="personid-bench-gallery-") as tmp:
        for backend in backends:
            for points in tqdm(profile.gallery_sizes, desc=f"bench gallery ({backend})", unit="size"):
                size_rows = bench_gallery_size(backend, Path(tmp), points, dim, queries, profile)
                rows += size_rows
                r = size_rows[0]
                print(
                    f"bench gallery: {backend} {points} points: fill {r['fill_s']:.1f} s, index {r['index_s']:.1f} s, "
                    f"open {r['open_s']:.2f} s, RSS {r['rss_mb']:.0f} MiB, enroll 1 image p50 "
                    f"{r['enroll1_p50_ms']:.1f} ms, bulk enroll {r['bulk_enroll_images_per_s']:.0f} images/s",
                    file=sys.stderr,
                )
                for s in size_rows:
                    print(
                        f"  {s['mode']:8s} filter {s['filter']:26s} p50 {s['p50_ms']:.2f} ms, p95 {s['p95_ms']:.2f} ms",
                        file=sys.stderr,
                    )
    return {"rows": rows, "dim": dim, "notes": notes, "images_per_identity": IMAGES_PER_IDENTITY}
