"""Section 3, gallery: search latency and enroll rate against gallery size, embedded Qdrant (and a server).

The galleries are filled in bulk with random unit vectors (far faster than enrolling identity by identity),
with the same point ids and payloads the service writes, then searched with real model embeddings.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import sys
import tempfile
import time
import uuid
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from bench.measure import Profile, percentiles_ms, time_calls

IMAGES_PER_IDENTITY = 4  # gallery filler: image points per identity
UPSERT_BATCH = 1024  # points per bulk upsert when filling a gallery
BENCH_MODEL_ID = "bench-filler"
SHM = Path("/dev/shm")


def gallery_settings(backend: str, folder: Path, collection: str) -> Any:
    """Service settings for one bench collection: embedded in `folder`, or the server at PERSONID_QDRANT_URL."""
    from app.settings import Settings

    if backend == "embedded":
        return Settings(qdrant_url=None, qdrant_path=folder, collection=collection)
    return Settings(qdrant_url=os.environ["PERSONID_QDRANT_URL"], collection=collection)


def raw_client(settings: Any) -> Any:
    """A bare Qdrant client on the gallery's storage, for what `Gallery` does not offer (bulk upserts, drops)."""
    from qdrant_client import QdrantClient

    if settings.qdrant_url:
        key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
        return QdrantClient(url=settings.qdrant_url, api_key=key, timeout=60)
    return QdrantClient(path=str(settings.qdrant_path))


def filler_points(identity_id: str, vectors: np.ndarray, now: str) -> tuple[list[Any], Any]:
    """One filler identity as the service stores it: its image points and its record (vector: their centroid).

    Ids and payloads come from `app.gallery`'s own builders, so searches read exactly what enrolling writes.
    """
    from qdrant_client import models

    from app.gallery import identity_payload, identity_point_id, image_payload, image_point_id, unit

    identity = {"identity_id": identity_id, "name": None, "metadata": {}, "created_at": now}
    hashes = [f"h{j}" for j in range(len(vectors))]
    ids = [image_point_id(identity_id, image_hash) for image_hash in hashes]
    images = [
        models.PointStruct(id=pid, vector=v.tolist(), payload=image_payload(identity, h, {}, BENCH_MODEL_ID, now))
        for pid, h, v in zip(ids, hashes, vectors, strict=True)
    ]
    record = models.PointStruct(
        id=identity_point_id(identity_id),
        vector=unit(vectors.mean(axis=0)).tolist(),
        payload=identity_payload(identity, ids, {}, [], BENCH_MODEL_ID, now),
    )
    return images, record


def fill_gallery(client: Any, collection: str, points: int, dim: int, seed: int) -> float:
    """Bulk-upsert `points` image points (random unit vectors, IMAGES_PER_IDENTITY per identity) and their
    identity records into the collections `Gallery.open` created; returns seconds.

    Written here because `Gallery.enroll` is one identity per call (with a delete-by-filter that scans the
    whole collection in embedded mode), far too slow to fill 50k points.
    """
    from app.gallery import unit

    rng = np.random.default_rng(seed)
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    identities = points // IMAGES_PER_IDENTITY
    per_chunk = max(1, UPSERT_BATCH // IMAGES_PER_IDENTITY)
    start = time.perf_counter()
    with tqdm(total=identities * IMAGES_PER_IDENTITY, desc=f"fill {points} points", unit="pt", leave=False) as bar:
        for first in range(0, identities, per_chunk):
            count = min(per_chunk, identities - first)
            vectors = unit(rng.standard_normal((count, IMAGES_PER_IDENTITY, dim), dtype=np.float32))
            images, records = [], []
            for k in range(count):
                identity_images, record = filler_points(f"filler-{first + k}", vectors[k], now)
                images += identity_images
                records.append(record)
            client.upsert(collection, images, wait=True)
            client.upsert(f"{collection}_identities", records, wait=True)
            bar.update(len(images))
    return time.perf_counter() - start


def fill_collections(settings: Any, points: int, dim: int) -> float:
    """Create the collections with `Gallery.open` (exactly as the service does), bulk-fill them; returns seconds.

    Embedded mode fills a copy on tmpfs (/dev/shm) and then copies the folder into place: qdrant-client's
    local mode commits every point to SQLite on its own, which on a disk that syncs is a few dozen points per
    second (the enroll figures show that cost); the search figures only need the points loaded.
    """
    from app.gallery import Gallery

    embedded = not settings.qdrant_url
    staging = (
        tempfile.TemporaryDirectory(prefix="personid-bench-", dir=SHM)
        if embedded and SHM.is_dir() and os.access(SHM, os.W_OK)
        else contextlib.nullcontext(None)
    )
    with staging as stage:
        fill_settings = settings.model_copy(update={"qdrant_path": Path(stage) / "qdrant"}) if stage else settings
        Gallery.open(fill_settings, dim=dim, model_id=BENCH_MODEL_ID).close()
        client = raw_client(fill_settings)
        try:
            seconds = fill_gallery(client, settings.collection, points, dim, seed=points)
        finally:
            client.close()
        if stage:
            shutil.copytree(fill_settings.qdrant_path, settings.qdrant_path)
    return seconds


def time_searches(gallery: Any, backend: str, points: int, queries: np.ndarray, profile: Profile) -> list[dict]:
    """One row per search mode: `Gallery.search` (top 5) latency over the query embeddings."""
    rows = []
    for mode in ("centroid", "groups"):
        gallery.search_mode = mode
        cycle = itertools.cycle(queries)
        times = time_calls(lambda cycle=cycle: gallery.search(next(cycle), top_k=5), 1, len(queries), profile.budget_s)
        rows.append(
            {"backend": backend, "points": points, "mode": mode, "searches": len(times), **percentiles_ms(times)}
        )
    return rows


def time_enrolls(gallery: Any, points: int, dim: int, profile: Profile) -> list[float]:
    """Seconds per `Gallery.enroll` of a new IMAGES_PER_IDENTITY-image identity into the filled gallery."""
    from app.gallery import unit

    rng = np.random.default_rng(points + 1)
    enrolled = itertools.count()

    def enroll() -> None:
        index = next(enrolled)
        vectors = unit(rng.standard_normal((IMAGES_PER_IDENTITY, dim), dtype=np.float32))
        hashes = [f"new-{index}-{j}" for j in range(IMAGES_PER_IDENTITY)]
        gallery.enroll(f"new-{index}", None, {}, vectors, hashes, [{} for _ in hashes])

    return time_calls(enroll, 0, profile.enrolls, profile.budget_s)


def bench_gallery_size(
    backend: str, folder: Path, points: int, dim: int, queries: np.ndarray, profile: Profile
) -> list[dict[str, Any]]:
    """Fill a fresh gallery with `points` image points, then time searches (both modes) and enrolls."""
    from app.gallery import Gallery

    collection = f"bench_{uuid.uuid4().hex[:8]}"
    settings = gallery_settings(backend, folder / collection, collection)
    fill_s = fill_collections(settings, points, dim)
    start = time.perf_counter()
    gallery = Gallery.open(settings, dim=dim, model_id=BENCH_MODEL_ID)
    open_s = time.perf_counter() - start
    try:
        rows = time_searches(gallery, backend, points, queries, profile)
        enroll_times = time_enrolls(gallery, points, dim, profile)
    finally:
        gallery.close()
        if backend == "server":
            client = raw_client(settings)
            for name in (collection, f"{collection}_identities"):
                client.delete_collection(name)
            client.close()
    for row in rows:
        row.update(
            {
                "fill_s": fill_s,
                "fill_points_per_s": points / fill_s,
                "open_s": open_s,
                "enroll_images_per_s": IMAGES_PER_IDENTITY * len(enroll_times) / sum(enroll_times),
                "enrolls": len(enroll_times),
                "enroll_p50_ms": float(np.median(enroll_times)) * 1000,
            }
        )
    return rows


def bench_gallery(dim: int, queries: np.ndarray, profile: Profile) -> dict[str, Any]:
    """Every gallery size on embedded Qdrant, and on the server at PERSONID_QDRANT_URL when it is set."""
    backends = ["embedded"] + (["server"] if os.environ.get("PERSONID_QDRANT_URL") else [])
    notes = [] if "server" in backends else ["Qdrant server: skipped (set PERSONID_QDRANT_URL to measure one)."]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="personid-bench-gallery-") as tmp, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Ll]ocal mode.*")  # qdrant-client's advice above 20k points
        for backend in backends:
            for points in tqdm(profile.gallery_sizes, desc=f"bench gallery ({backend})", unit="size"):
                size_rows = bench_gallery_size(backend, Path(tmp), points, dim, queries, profile)
                rows += size_rows
                for r in size_rows:
                    print(
                        f"bench gallery: {backend} {points} points {r['mode']}: p50 {r['p50_ms']:.2f} ms, "
                        f"p95 {r['p95_ms']:.2f} ms; fill {r['fill_s']:.1f} s; enroll "
                        f"{r['enroll_images_per_s']:.1f} images/s",
                        file=sys.stderr,
                    )
    return {"rows": rows, "dim": dim, "notes": notes, "images_per_identity": IMAGES_PER_IDENTITY}
