"""Gallery search modes measured on synthetic clusters: accuracy and latency of `groups` vs `centroid` search.

Measurements, not tests; moved out of `app/gallery.py` so that the serving image carries no benchmark.
"""

from __future__ import annotations

import tempfile
import time

import numpy as np

from app.gallery import Gallery, unit
from app.settings import Settings


def synthetic_clusters(
    identities: int,
    images: int,
    queries: int,
    dim: int,
    noise: float,
    views: int = 1,
    view_spread: float = 0.0,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Gallery (identities x images x dim) and queries (identities x queries x dim) as noisy unit vectors.

    Each identity has `views` view centres around its centre (a person seen from front and back); every image
    and query is a view centre plus isotropic noise of norm about `noise`.
    """
    rng = np.random.default_rng(seed)
    centres = unit(rng.normal(size=(identities, 1, dim)))
    view_centres = unit(centres + view_spread * unit(rng.normal(size=(identities, views, dim))))

    def draw(count: int) -> np.ndarray:
        picked = np.take_along_axis(view_centres, rng.integers(0, views, size=(identities, count, 1)), axis=1)
        return unit(picked + noise * rng.normal(size=(identities, count, dim)) / np.sqrt(dim)).astype(np.float32)

    return draw(images), draw(queries)


def _temporary_gallery(folder: str, dim: int) -> Gallery:
    return Gallery.open(Settings(qdrant_path=folder, collection="bench"), dim=dim, model_id="bench")


def _fill(gallery: Gallery, vectors: np.ndarray) -> float:
    """Enroll every identity of `vectors`; returns images enrolled per second."""
    start = time.perf_counter()
    for index, images in enumerate(vectors):
        hashes = [f"{index}-{j}" for j in range(len(images))]
        gallery.enroll(f"id{index}", None, {}, images, hashes, [{} for _ in hashes])
    return vectors.shape[0] * vectors.shape[1] / (time.perf_counter() - start)


def _run_queries(gallery: Gallery, queries: np.ndarray) -> tuple[float, float, float]:
    """Top-1 identity accuracy, p50 and p95 search latency (ms)."""
    correct, latencies = 0, []
    for index, per_identity in enumerate(queries):
        for query in per_identity:
            start = time.perf_counter()
            matches = gallery.search(query, top_k=5)
            latencies.append((time.perf_counter() - start) * 1000)
            correct += bool(matches) and matches[0].identity_id == f"id{index}"
    p50, p95 = np.percentile(latencies, [50, 95])
    return correct / len(latencies), float(p50), float(p95)


def compare_search_modes(
    identities: int = 500,
    images: int = 4,
    queries: int = 2,
    dim: int = 128,
    cases: tuple[tuple[str, float, int, float], ...] = (
        ("one view, noise 1.0", 1.0, 1, 0.0),
        ("one view, noise 1.5", 1.5, 1, 0.0),
        ("two views, noise 1.0", 1.0, 2, 1.0),
        ("two views, noise 1.5", 1.5, 2, 1.0),
    ),
) -> list[dict]:
    """Top-1 identity accuracy and latency of `groups` vs `centroid` search on the same synthetic gallery."""
    rows = []
    for label, noise, views, spread in cases:
        gallery_vectors, query_vectors = synthetic_clusters(identities, images, queries, dim, noise, views, spread)
        with tempfile.TemporaryDirectory() as folder:
            gallery = _temporary_gallery(folder, dim)
            _fill(gallery, gallery_vectors)
            for mode in ("groups", "centroid"):
                gallery.search_mode = mode
                accuracy, p50, p95 = _run_queries(gallery, query_vectors)
                rows.append({"case": label, "mode": mode, "top1": accuracy, "p50_ms": p50, "p95_ms": p95})
                print(f"{label:24s} {mode:9s} top-1 {accuracy:.3f}  p50 {p50:7.2f} ms  p95 {p95:7.2f} ms", flush=True)
            gallery.close()
    return rows


def bench_search(
    sizes: tuple[int, ...] = (1000, 10000, 50000), images: int = 4, dim: int = 512, queries: int = 50
) -> list[dict]:
    """Enroll rate and search p50/p95 of both modes against gallery size (image points), embedded mode."""
    rows = []
    for size in sizes:
        gallery_vectors, query_vectors = synthetic_clusters(size // images, images, 1, dim, noise=1.0, seed=size)
        with tempfile.TemporaryDirectory() as folder:
            gallery = _temporary_gallery(folder, dim)
            rate = _fill(gallery, gallery_vectors)
            sample = query_vectors[:queries]
            for mode in ("groups", "centroid"):
                gallery.search_mode = mode
                _, p50, p95 = _run_queries(gallery, sample)
                rows.append({"points": size, "mode": mode, "enroll_images_per_s": rate, "p50_ms": p50, "p95_ms": p95})
                print(
                    f"{size:6d} points  enroll {rate:7.1f} images/s  {mode:9s} p50 {p50:8.2f} ms  p95 {p95:8.2f} ms",
                    flush=True,
                )
            gallery.close()
    return rows
