"""A gallery folder as personid wrote it before Qdrant's engine ran in-process: qdrant-client's local mode,
the same collections, stamps, point ids, payloads and centroids as the old `Gallery` wrote (the builders are
the gallery's own), so migration is tested on what users have on disk."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from qdrant_client import QdrantClient, models

from app.gallery import aggregate_attributes, identity_payload, identity_point_id, image_payload, image_point_id, unit

NOW = "2025-06-01T12:00:00.000Z"


def attributes(index: int) -> dict[str, Any]:
    return {
        "gender": {"label": ("female", "male")[index % 2], "score": 0.9},
        "upper_color": {"label": ("red", "blue", "green")[index % 3], "score": 0.7},
    }


def thumbnail(identity_id: str, index: int, kept: bool) -> bytes | None:
    """A stand-in for the JPEG bytes, unique per image."""
    return f"jpeg {identity_id} {index}".encode() if kept else None


def write_local_mode_gallery(
    folder: Path,
    collection: str,
    model_id: str,
    vectors: dict[str, np.ndarray],
    metadata: dict[str, Any] | None = None,
    thumbnails: bool = True,
) -> None:
    """Identities (id -> images x dim embeddings) written with qdrant-client's local mode into `folder`;
    `metadata`: identity id -> what its record stores (written as given: older versions stored anything)."""
    dim = next(iter(vectors.values())).shape[1]
    client = QdrantClient(path=str(folder))
    try:
        for name in (collection, f"{collection}_identities"):
            client.create_collection(
                name,
                vectors_config=models.VectorParams(size=dim, distance=models.Distance.COSINE),
                metadata={"personid_format": 1, "model_id": model_id, "dim": dim},
            )
        for index, (identity_id, images) in enumerate(vectors.items()):
            identity = {
                "identity_id": identity_id,
                "name": f"Name {index}",
                "metadata": (metadata or {}).get(identity_id, {"index": index}),
                "created_at": NOW,
            }
            hashes = [f"{identity_id}-hash-{j}" for j in range(len(images))]
            per_image = [attributes(index)] * len(images)
            points = [
                models.PointStruct(
                    id=image_point_id(identity_id, image_hash),
                    vector=vector.tolist(),
                    payload=image_payload(
                        identity,
                        image_hash,
                        attrs,
                        model_id,
                        NOW,
                        f"jpeg {identity_id} {j}".encode() if thumbnails else None,
                    ),
                )
                for j, (vector, image_hash, attrs) in enumerate(zip(images, hashes, per_image, strict=True))
            ]
            client.upsert(collection, points, wait=True)
            tags = sorted({tag for point in points for tag in (point.payload or {})["attr_tags"]})
            record = models.PointStruct(
                id=identity_point_id(identity_id),
                vector=unit(unit(images).mean(axis=0)).tolist(),
                payload=identity_payload(
                    identity, [str(p.id) for p in points], aggregate_attributes(per_image), tags, model_id, NOW
                ),
            )
            client.upsert(f"{collection}_identities", [record], wait=True)
    finally:
        client.close()
