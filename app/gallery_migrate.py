"""Move a gallery that qdrant-client's local mode wrote (personid before the in-process engine) into
Qdrant's engine, at the first open: every point with its id, vector and payload, and the collections' stamps.

The new shards are written aside (`<collection>.migrating`), checked point for point by count, and renamed
into place in one step, so a migration cut short is redone from the start at the next open. The old files are
left as they were (a downgrade still finds them); once satisfied, delete `<qdrant_path>/collection/`.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from qdrant_client import QdrantClient, models

from app.gallery import strict_json
from app.gallery_edge import EdgeStore, edge_folder
from app.gallery_store import GalleryUnavailable, Kind, Stamp, StoredPoint

PAGE = 1000

log = logging.getLogger(__name__)


def local_mode_names(collection: str) -> dict[Kind, str]:
    """The collection names qdrant-client's local mode used for the two kinds."""
    return {"images": collection, "identities": f"{collection}_identities"}


def needs_migration(qdrant_path: Path, collection: str) -> bool:
    """A local-mode collection is there and the in-process engine has no gallery of that name yet."""
    local = qdrant_path / "collection" / collection
    return local.is_dir() and not (edge_folder(qdrant_path, collection) / "images").is_dir()


def _stamp(client: QdrantClient, name: str) -> Stamp:
    info = client.get_collection(name)
    stored = info.config.metadata or {}
    vectors = info.config.params.vectors
    size = vectors.size if isinstance(vectors, models.VectorParams) else -1
    return Stamp(
        model_id=str(stored.get("model_id", "unknown")),
        dim=int(stored.get("dim", size)),
        format=int(stored.get("personid_format", 1)),
    )


def _floats(vector: object) -> list[float]:
    """The single unnamed vector the gallery's collections hold."""
    assert isinstance(vector, list), f"expected one unnamed vector, got {type(vector).__name__}"
    return [float(x) for x in vector]


def _storable(kind: Kind, point: StoredPoint) -> StoredPoint:
    """The point, or a copy whose metadata is kept as ASCII text under `legacy_metadata` when the payload is not
    strict JSON of at most MAX_STORED_DEPTH levels. Older versions stored such values (NaN, lone surrogates,
    400 levels; they answered `{}` for them); the engine refuses the first two and cannot read back the last
    from its log."""
    try:
        strict_json(point.payload)
        return point
    except ValueError as error:
        payload = {**point.payload, "metadata": {}, "legacy_metadata": ascii(point.payload.get("metadata"))}
        log.warning(
            "%s point %s (identity %r): payload %s; its metadata is kept as text in legacy_metadata",
            kind,
            point.id,
            point.payload.get("identity_id"),
            error,
        )
        return StoredPoint(id=point.id, vector=point.vector, payload=payload)


def _copy(client: QdrantClient, name: str, target: EdgeStore, kind: Kind) -> int:
    """Every point of a local-mode collection into the target shard; returns how many."""
    total = client.count(name, exact=True).count
    offset = None
    copied = 0
    while True:
        records, offset = client.scroll(name, limit=PAGE, offset=offset, with_payload=True, with_vectors=True)
        points = [StoredPoint(id=str(r.id), vector=_floats(r.vector), payload=dict(r.payload or {})) for r in records]
        if points:
            target.upsert(kind, [_storable(kind, point) for point in points])
        copied += len(points)
        if copied % (100 * PAGE) < PAGE:
            log.info("migrating %s: %d of %d points", name, copied, total)
        if offset is None:
            break
    if target.count(kind) != total:
        raise RuntimeError(f"migration of {name}: {target.count(kind)} points written, {total} expected")
    return copied


def migrate_local_mode(qdrant_path: Path, collection: str) -> bool:
    """Migrate `collection` from local mode when `needs_migration`; returns whether it did."""
    if not needs_migration(qdrant_path, collection):
        return False
    try:
        client = QdrantClient(path=str(qdrant_path))
    except RuntimeError as error:
        raise GalleryUnavailable(f"The embedded Qdrant folder {qdrant_path} is in use by another process.") from error
    final = edge_folder(qdrant_path, collection)
    staging = final.with_name(f"{collection}.migrating")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        target = EdgeStore(staging)
        try:
            for kind, name in local_mode_names(collection).items():
                if not client.collection_exists(name):
                    continue
                target.create(kind, _stamp(client, name))
                copied = _copy(client, name, target, kind)
                log.warning("migrated %d points of %s from qdrant-client's local mode", copied, name)
        finally:
            target.close()
    except GalleryUnavailable:
        raise
    except Exception as error:  # any engine or count failure: the service answers 503 and the old files stay
        raise GalleryUnavailable(
            f"Migrating the local-mode gallery in {qdrant_path} failed ({error}); its files are untouched."
        ) from error
    finally:
        client.close()
    shutil.rmtree(final, ignore_errors=True)  # at most an empty folder: needs_migration saw no shard there
    staging.rename(final)
    log.warning(
        "gallery %r migrated to %s; the old local-mode files in %s are no longer read (delete them when satisfied)",
        collection,
        final,
        qdrant_path / "collection",
    )
    return True
