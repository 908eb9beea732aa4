"""The identity gallery on Qdrant: enroll, add images, get/list/delete identities, search by embedding.

Two collections (see docs/gallery.md for why):
- `<collection>`: one point per enrolled image (vector = the image embedding), payload: identity_id, name,
  image_id, attributes, attr_tags, model_id. Not the metadata: it is stored once, on the record.
- `<collection>_identities`: one point per identity (vector = its centroid, the normalised mean of its image
  embeddings), the identity record: name, metadata, image_ids, aggregated attributes, timestamps.
  It makes get/list/count exact and cheap, and is the index of centroid search.
Both collections record the model id and dimension (their `Stamp`), so embeddings of another model are
never mixed in. The engine is a `Store` (app/gallery_store.py): Qdrant's engine in-process when embedded
(app/gallery_edge.py), a Qdrant server otherwise (app/gallery_server.py). Metadata is stored only when it can
be returned as strict JSON (`strict_json`); a record written otherwise by an older version is answered with
`{}` and a warning in the log.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import re
import threading
import uuid
from contextlib import nullcontext, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from app.gallery_store import KINDS, Conditions, Kind, Stamp, Store, StoredPoint

# the errors live beside the engines that raise them; callers import them from here
from app.gallery_store import GalleryError as GalleryError
from app.gallery_store import GalleryUnavailable as GalleryUnavailable
from app.gallery_store import IdentityExists as IdentityExists
from app.gallery_store import IdentityNotFound as IdentityNotFound
from app.gallery_store import ImageNotFound as ImageNotFound
from app.gallery_store import InvalidArgument as InvalidArgument
from app.gallery_store import ModelMismatch as ModelMismatch

if TYPE_CHECKING:
    from app.settings import Settings

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
# Fixed namespace of the deterministic point ids: a retried write lands on the same points.
POINT_NAMESPACE = uuid.UUID("6f1c2b1e-5d0a-4c59-9a43-6f0f2f3d8b7e")
MAX_IDENTITY_ID_LENGTH = 256
# Deepest metadata the gallery stores whatever the settings allow: far below what the JSON encoders of the
# responses recurse to (pydantic gives up near 256 levels), so a stored record can always be answered.
MAX_STORED_DEPTH = 64
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_FILTER_KEY = re.compile(r"^[A-Za-z0-9_]+$")
# unindexed points above which the open warns that `personid gallery optimize` is due
REINDEX_AT = 20_000

SearchMode = Literal["groups", "centroid"]


@dataclass
class Identity:
    identity_id: str
    name: str | None
    metadata: dict[str, Any]
    image_ids: list[str]
    attributes: dict[str, Any]
    created_at: str
    updated_at: str


@dataclass
class Match:
    identity_id: str
    name: str | None
    score: float
    image_id: str
    attributes: dict[str, Any] = field(default_factory=dict)


def strict_json(value: Any, max_depth: int = MAX_STORED_DEPTH) -> bytes:
    """`value` as compact UTF-8 JSON (RFC 8259: no NaN or Infinity, valid Unicode), or a ValueError saying why
    it cannot be stored and returned as JSON.

    The nesting (at most `max_depth` and `MAX_STORED_DEPTH` levels) is measured without recursing, so a value
    thousands of levels deep is refused, not a crash; integers must fit 64 bits (Qdrant's integer payload);
    object keys must be strings.
    """
    max_depth = min(max_depth, MAX_STORED_DEPTH)
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            if depth > max_depth:
                raise ValueError(f"nests deeper than {max_depth} levels")
            if isinstance(node, dict):
                if not all(isinstance(key, str) for key in node):
                    raise ValueError("has an object key that is not a string")
                node = list(node.values())
            stack.extend((item, depth + 1) for item in node)
        elif isinstance(node, float) and not math.isfinite(node):
            raise ValueError("holds NaN or Infinity, which JSON cannot carry")
        elif isinstance(node, int) and not isinstance(node, bool) and not INT64_MIN <= node <= INT64_MAX:
            raise ValueError("holds an integer outside the signed 64-bit range")
        elif not isinstance(node, str | int | float | None):
            raise ValueError(f"holds a {type(node).__name__}, which is not JSON")
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")
    except UnicodeEncodeError as error:
        raise ValueError(
            f"holds text that is not valid Unicode ({error.reason}: {error.object[error.start : error.end]!a})"
        ) from error


def check_metadata(metadata: Any, max_bytes: int | None = None, max_depth: int = MAX_STORED_DEPTH) -> dict[str, Any]:
    """`metadata`, or a ValueError unless it is an object the gallery can store and return: strict JSON
    (`strict_json`), at most `max_depth` (and `MAX_STORED_DEPTH`) levels and `max_bytes` as compact UTF-8 JSON."""
    if not isinstance(metadata, dict):
        raise ValueError(f"must be a JSON object, got {type(metadata).__name__}")
    size = len(strict_json(metadata, max_depth))
    if max_bytes is not None and size > max_bytes:
        raise ValueError(f"is {size} bytes as compact UTF-8 JSON; at most {max_bytes} are stored")
    return metadata


def image_point_id(identity_id: str, image_hash: str) -> str:
    """The id of an image's point: the same image added twice to one identity is one point."""
    return str(uuid.uuid5(POINT_NAMESPACE, f"image\x00{identity_id}\x00{image_hash}"))


def identity_point_id(identity_id: str) -> str:
    """The id of an identity's record point (Qdrant ids must be UUIDs or integers, identity ids are free text)."""
    return str(uuid.uuid5(POINT_NAMESPACE, f"identity\x00{identity_id}"))


def attribute_tags(attributes: dict[str, Any]) -> list[str]:
    """Flat `head=label` strings of a per-image attribute dict: one keyword index filters every head."""
    return sorted(f"{head}={value['label']}" for head, value in attributes.items())


def aggregate_attributes(per_image: list[dict[str, Any]]) -> dict[str, Any]:
    """Identity attributes by score-weighted vote: per head the label with the largest summed score.

    The score is that sum divided by the number of images that have the head, so an image that
    predicted another label counts as 0 for it.
    """
    sums: dict[str, dict[str, float]] = {}
    seen: dict[str, int] = {}
    for attributes in per_image:
        for head, value in attributes.items():
            sums.setdefault(head, {})
            sums[head][value["label"]] = sums[head].get(value["label"], 0.0) + float(value["score"])
            seen[head] = seen.get(head, 0) + 1
    result = {}
    for head, by_label in sums.items():
        label = max(by_label, key=lambda name: (by_label[name], name))
        result[head] = {"label": label, "score": round(by_label[label] / seen[head], 6)}
    return result


def image_payload(
    identity: dict[str, Any],
    image_hash: str,
    attributes: dict[str, Any],
    model_id: str,
    now: str,
    thumbnail: bytes | None = None,
) -> dict[str, Any]:
    """The payload of an image point: what a search by images needs (the metadata stays on the record alone), and
    the image's small JPEG thumbnail (base64) when thumbnails are kept; no search ever asks for that field."""
    image_id = image_point_id(identity["identity_id"], image_hash)
    extra = {} if thumbnail is None else {"thumbnail": base64.b64encode(thumbnail).decode("ascii")}
    return {
        "identity_id": identity["identity_id"],
        "name": identity["name"],
        "image_id": image_id,
        "image_hash": image_hash,
        "attributes": attributes,
        "attr_tags": attribute_tags(attributes),
        "model_id": model_id,
        "created_at": now,
        "updated_at": now,
        **extra,
    }


def identity_payload(
    identity: dict[str, Any],
    image_ids: list[str],
    attributes: dict[str, Any],
    attr_tags: list[str],
    model_id: str,
    now: str,
) -> dict[str, Any]:
    """The payload of an identity record point (its vector is the centroid of its images)."""
    return {
        "identity_id": identity["identity_id"],
        "name": identity["name"],
        "metadata": identity["metadata"],
        "image_ids": image_ids,
        "attributes": attributes,
        "attr_tags": attr_tags,
        "model_id": model_id,
        "created_at": identity["created_at"],
        "updated_at": now,
    }


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def unit(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (a zero row stays zero instead of dividing by zero)."""
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    scaled: np.ndarray = vectors / np.maximum(norms, 1e-12)
    return scaled


class Gallery:
    """Identities and their image embeddings in Qdrant; safe to call from many threads of one process.

    The embedded engine is not thread-safe (and holds the GIL in every call anyway), so every call holds one
    lock there. With a server, reads run concurrently; writes hold the lock so that the "exists?" check and the
    write of an identity are one step within this process.
    """

    def __init__(
        self,
        store: Store,
        dim: int,
        model_id: str,
        search_mode: SearchMode = "centroid",
        max_metadata_bytes: int | None = None,
        max_metadata_depth: int = MAX_STORED_DEPTH,
    ) -> None:
        self._store = store
        self._dim = dim
        self._model_id = model_id
        self._server_mode = store.server_mode
        self._location = store.location
        self._max_metadata_bytes = max_metadata_bytes
        self._max_metadata_depth = max_metadata_depth
        self.search_mode: SearchMode = search_mode
        self._write_lock = threading.RLock()
        self._read_lock = nullcontext() if self._server_mode else self._write_lock

    @classmethod
    def open(cls, settings: Settings, dim: int, model_id: str, adopt: str | None = None) -> Gallery:
        """Connect (server when `qdrant_url` is set, else embedded on disk) and create or check the collections.

        Embedded: a folder written by an older personid (qdrant-client's local mode) is migrated first; the open
        never builds the search index (`personid gallery optimize` does), it says when one is due. `adopt`: an
        older id of the same
        model (the ONNX-bytes-only id of personid before the manifest joined it); collections stamped with it are
        re-stamped with `model_id` instead of refused, so an upgrade keeps them.
        """
        store = open_store(settings)
        gallery = cls(
            store,
            dim,
            model_id,
            settings.search_mode,
            max_metadata_bytes=settings.max_metadata_bytes,
            max_metadata_depth=settings.max_json_depth,
        )
        try:
            gallery._ensure_collections(adopt)
        except BaseException:
            store.close()
            raise
        return gallery

    @property
    def server_mode(self) -> bool:
        return self._server_mode

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def store(self) -> Store:
        """The engine under the gallery, for bulk tools (backup, benchmarks); hold `lock` while using it."""
        return self._store

    @property
    def lock(self) -> threading.RLock:
        return self._write_lock

    def close(self) -> None:
        with self._write_lock:
            self._store.close()

    # ---- writes -------------------------------------------------------------------------------------------

    def enroll(
        self,
        identity_id: str | None,
        name: str | None,
        metadata: dict[str, Any],
        embeddings: np.ndarray,
        image_hashes: list[str],
        attributes: list[dict[str, Any]],
        thumbnails: list[bytes] | None = None,
    ) -> Identity:
        """Create an identity from its images; the record is written after its points, so it is never partial.

        Everything is checked before the first write, so a refused enroll stores nothing.
        """
        vectors = self._check_batch(embeddings, image_hashes, attributes)
        explicit_id = identity_id is not None
        identity_id = str(uuid.uuid4()) if identity_id is None else self._check_identity_id(identity_id)
        self._check_text_fields(name, metadata or {})
        now = _now()
        with self._write_lock, self._store.errors():
            if self._record(identity_id) is not None:
                raise IdentityExists(f"Identity {identity_id!r} already exists; add images to it instead.")
            if explicit_id:
                # a process may have died between an enroll's points and its record: those points belong to
                # nobody (an indexed delete; random ids are swept at open after a crash instead)
                self._store.delete_where("images", [("identity_id", identity_id)])
            identity = {"identity_id": identity_id, "name": name, "metadata": metadata or {}, "created_at": now}
            points = self._image_points(identity, vectors, image_hashes, attributes, now, thumbnails)
            image_ids = list(dict.fromkeys(point.id for point in points))
            return self._write_points_then_record(identity, points, image_ids, now)

    def add_images(
        self,
        identity_id: str,
        embeddings: np.ndarray,
        image_hashes: list[str],
        attributes: list[dict[str, Any]],
        thumbnails: list[bytes] | None = None,
    ) -> list[str]:
        """Add images to an identity; an image already there (same hash) is not added twice."""
        vectors = self._check_batch(embeddings, image_hashes, attributes)
        with self._write_lock, self._store.errors():
            record = self._record(identity_id)
            if record is None:
                raise IdentityNotFound(f"Identity {identity_id!r} not found.")
            now = _now()
            identity = record.payload
            points = self._image_points(identity, vectors, image_hashes, attributes, now, thumbnails)
            known = set(identity["image_ids"])
            new_points = [point for point in points if point.id not in known]
            if new_points:
                image_ids = list(dict.fromkeys([*identity["image_ids"], *(point.id for point in new_points)]))
                self._write_points_then_record(identity, new_points, image_ids, now)
            return [point.id for point in points]

    def delete(self, identity_id: str) -> None:
        """Remove an identity and every vector of it (the record first, so it vanishes from lists at once)."""
        with self._write_lock, self._store.errors():
            if self._record(identity_id) is None:
                raise IdentityNotFound(f"Identity {identity_id!r} not found.")
            self._store.delete_ids("identities", [identity_point_id(identity_id)])
            self._store.delete_where("images", [("identity_id", identity_id)])

    # ---- reads --------------------------------------------------------------------------------------------

    def get(self, identity_id: str) -> Identity:
        with self._read_lock, self._store.errors():
            record = self._record(identity_id)
        if record is None:
            raise IdentityNotFound(f"Identity {identity_id!r} not found.")
        return _identity(record.payload)

    def thumbnail(self, identity_id: str, image_id: str) -> bytes:
        """The JPEG thumbnail kept for one of an identity's images."""
        with self._read_lock, self._store.errors():
            record = self._record(identity_id)
            if record is None:
                raise IdentityNotFound(f"Identity {identity_id!r} not found.")
            if image_id not in record.payload["image_ids"]:
                raise ImageNotFound(f"Identity {identity_id!r} has no image {image_id!r}.")
            points = self._store.retrieve("images", [image_id], payload=["thumbnail"])
        stored = points[0].payload.get("thumbnail") if points else None
        if not isinstance(stored, str):
            raise ImageNotFound(f"No thumbnail is kept for image {image_id!r} (PERSONID_STORE_THUMBNAILS was off).")
        return base64.b64decode(stored)

    def search_attributes(
        self, constraints: dict[str, str], limit: int, offset: int = 0
    ) -> tuple[list[Match], int | None]:
        """Identities whose voted attributes carry every `head -> label` asked, most confident first.

        Confidence is the mean voted score of the constrained heads (ties by identity id); pages by offset. Every
        matching record is read to rank them, so a broad description on a large gallery costs a full scan.
        """
        if not constraints:
            raise InvalidArgument("Describe at least one attribute (head -> label).")
        if limit < 1 or offset < 0:
            raise InvalidArgument("limit must be at least 1 and offset at least 0.")
        condition: Conditions = [(f"attributes.{head}.label", label) for head, label in constraints.items()]
        fields = ["identity_id", "name", "image_ids", "attributes"]
        records: list[dict[str, Any]] = []
        cursor: str | None = None
        with self._read_lock, self._store.errors():
            while True:
                page, cursor = self._store.scroll("identities", 1000, cursor, condition, payload=fields)
                records += [record.payload for record in page]
                if cursor is None:
                    break
        ranked = sorted(
            (
                Match(
                    identity_id=payload["identity_id"],
                    name=payload["name"],
                    score=float(np.mean([payload["attributes"][head]["score"] for head in constraints])),
                    image_id=payload["image_ids"][0],
                    attributes=payload["attributes"],
                )
                for payload in records
            ),
            key=lambda match: (-match.score, match.identity_id),
        )
        end = offset + limit
        return ranked[offset:end], end if end < len(ranked) else None

    def list_identities(self, limit: int, offset: str | None = None) -> tuple[list[Identity], str | None]:
        """A page of identities in a stable order (by record id) and the cursor of the next page, None at the end."""
        if limit < 1:
            raise InvalidArgument("limit must be at least 1.")
        if offset is not None:
            try:
                offset = str(uuid.UUID(offset))
            except ValueError as error:
                raise InvalidArgument(
                    f"Invalid cursor {offset!r}: pass the next_cursor of the previous page."
                ) from error
        with self._read_lock, self._store.errors():
            records, next_offset = self._store.scroll("identities", limit, offset)
        return [_identity(record.payload) for record in records], next_offset

    def count(self) -> dict[str, int]:
        with self._read_lock, self._store.errors():
            identities = self._store.count("identities")
            images = self._store.count("images")
        return {"identities": identities, "images": images}

    def count_points(self, identity_id: str) -> int:
        """Image points stored for an identity id (with or without its record): deletions can be checked."""
        with self._read_lock, self._store.errors():
            return self._store.count("images", [("identity_id", identity_id)])

    def search(
        self,
        embedding: np.ndarray,
        top_k: int = 5,
        min_score: float | None = None,
        attribute_filter: dict[str, str] | None = None,
    ) -> list[Match]:
        """Identities nearest to an embedding, best first, each with its best-matching image.

        `centroid` ranks identity centroids (cosine to the centroid); `groups` ranks images and keeps each
        identity's best image (cosine to that image). Scores of the two modes are not on the same scale.
        """
        query = np.asarray(embedding, dtype=np.float32).reshape(-1)
        if query.shape != (self._dim,) or not np.all(np.isfinite(query)):
            raise InvalidArgument(f"The query embedding must be {self._dim} finite numbers, got shape {query.shape}.")
        if top_k < 1:
            raise InvalidArgument("top_k must be at least 1.")
        query = unit(query)
        condition = _attribute_filter(attribute_filter)
        with self._read_lock, self._store.errors():
            if self.search_mode == "groups":
                return self._search_groups(query, top_k, min_score, condition)
            return self._search_centroids(query, top_k, min_score, condition)

    # ---- internals ----------------------------------------------------------------------------------------

    def _search_groups(
        self, query: np.ndarray, top_k: int, min_score: float | None, condition: Conditions | None
    ) -> list[Match]:
        hits = self._store.query_groups(
            "images", query.tolist(), "identity_id", top_k, min_score, condition, payload=["identity_id", "image_id"]
        )
        ids = [identity_point_id(hit.payload["identity_id"]) for hit in hits]
        records = {
            record.id: record.payload
            for record in self._store.retrieve("identities", ids, payload=["name", "attributes"])
        }
        # an identity being deleted (record gone, points going) is not a match
        return [
            Match(
                identity_id=hit.payload["identity_id"],
                name=records[pid]["name"],
                score=hit.score,
                image_id=hit.payload["image_id"],
                attributes=records[pid]["attributes"],
            )
            for hit, pid in zip(hits, ids, strict=True)
            if pid in records
        ]

    def _search_centroids(
        self, query: np.ndarray, top_k: int, min_score: float | None, condition: Conditions | None
    ) -> list[Match]:
        hits = self._store.query(
            "identities",
            query.tolist(),
            top_k,
            min_score,
            condition,
            payload=["identity_id", "name", "image_ids", "attributes"],
        )
        image_ids = [image_id for hit in hits for image_id in hit.payload["image_ids"]]
        images = self._store.retrieve("images", image_ids, payload=False, vectors=True)
        image_scores = {point.id: float(np.dot(unit(np.asarray(point.vector)), query)) for point in images}
        matches = []
        for hit in hits:
            scored = [(image_scores[i], i) for i in hit.payload["image_ids"] if i in image_scores]
            if not scored:
                continue
            matches.append(
                Match(
                    identity_id=hit.payload["identity_id"],
                    name=hit.payload["name"],
                    score=hit.score,
                    image_id=max(scored)[1],
                    attributes=hit.payload["attributes"],
                )
            )
        return matches

    def _record(self, identity_id: str) -> StoredPoint | None:
        records = self._store.retrieve("identities", [identity_point_id(identity_id)])
        return records[0] if records else None

    def _image_points(
        self,
        identity: dict[str, Any],
        vectors: np.ndarray,
        image_hashes: list[str],
        attributes: list[dict[str, Any]],
        now: str,
        thumbnails: list[bytes] | None,
    ) -> list[StoredPoint]:
        if thumbnails is not None and len(thumbnails) != len(image_hashes):
            raise InvalidArgument(f"{len(thumbnails)} thumbnails for {len(image_hashes)} images: one per image.")
        thumbs: list[bytes | None] = [*thumbnails] if thumbnails is not None else [None] * len(image_hashes)
        return [
            StoredPoint(
                id=image_point_id(identity["identity_id"], image_hash),
                vector=vector.tolist(),
                payload=image_payload(identity, image_hash, image_attributes, self._model_id, now, thumb),
            )
            for vector, image_hash, image_attributes, thumb in zip(
                vectors, image_hashes, attributes, thumbs, strict=True
            )
        ]

    def _write_points_then_record(
        self, identity: dict[str, Any], points: list[StoredPoint], image_ids: list[str], now: str
    ) -> Identity:
        """Points first, record last; if that fails the new points are taken back, so no image is left unlisted."""
        try:
            self._store.upsert("images", points)
            return self._write_record(identity, image_ids, now, written=points)
        except BaseException:
            with suppress(Exception):
                self._store.delete_ids("images", [point.id for point in points])
            raise

    def sweep_unlisted_points(self) -> int:
        """Delete image points that no identity record lists (left by a process killed mid-write); returns how many."""
        with self._write_lock, self._store.errors():
            owners: dict[str, list[str]] = {}
            offset = None
            while True:
                records, offset = self._store.scroll("images", 10_000, offset, payload=["identity_id"])
                for record in records:
                    owners.setdefault(record.payload["identity_id"], []).append(record.id)
                if offset is None:
                    break
            listed: set[str] = set()
            identity_ids = list(owners)
            for start in range(0, len(identity_ids), 1000):
                batch = [identity_point_id(identity_id) for identity_id in identity_ids[start : start + 1000]]
                for record in self._store.retrieve("identities", batch, payload=["image_ids"]):
                    listed.update(record.payload["image_ids"])
            stray = [point_id for point_ids in owners.values() for point_id in point_ids if point_id not in listed]
            self._store.delete_ids("images", stray)
            return len(stray)

    def _write_record(
        self, identity: dict[str, Any], image_ids: list[str], now: str, written: list[StoredPoint]
    ) -> Identity:
        """Write the identity record from its points: the centroid and attributes follow the images. The points
        this call has just `written` are taken as written (the last of a repeated id wins, as in the engine);
        the others are read back by id."""
        fresh = {point.id: point for point in written}
        older = [image_id for image_id in image_ids if image_id not in fresh]
        stored = self._store.retrieve("images", older, payload=["attributes", "attr_tags"], vectors=True)
        by_id = {**{point.id: point for point in stored}, **fresh}
        points = [by_id[image_id] for image_id in image_ids if image_id in by_id]
        vectors = np.asarray([point.vector for point in points], dtype=np.float32)
        centroid = unit(unit(vectors).mean(axis=0))
        per_image = [point.payload["attributes"] for point in points]
        tags = sorted({tag for point in points for tag in point.payload["attr_tags"]})
        payload = identity_payload(identity, image_ids, aggregate_attributes(per_image), tags, self._model_id, now)
        record = StoredPoint(id=identity_point_id(identity["identity_id"]), vector=centroid.tolist(), payload=payload)
        self._store.upsert("identities", [record])
        return _identity(payload)

    def _check_batch(
        self, embeddings: np.ndarray, image_hashes: list[str], attributes: list[dict[str, Any]]
    ) -> np.ndarray:
        vectors = np.asarray(embeddings, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self._dim or len(vectors) == 0:
            raise InvalidArgument(f"Embeddings must be N x {self._dim} with N >= 1, got shape {vectors.shape}.")
        if not (len(vectors) == len(image_hashes) == len(attributes)):
            raise InvalidArgument(
                f"{len(vectors)} embeddings, {len(image_hashes)} image hashes and {len(attributes)} attribute dicts: "
                "one of each per image."
            )
        if not np.all(np.isfinite(vectors)) or np.any(np.linalg.norm(vectors, axis=1) == 0):
            raise InvalidArgument("Embeddings must be finite and non-zero.")
        return vectors

    def _check_text_fields(self, name: str | None, metadata: dict[str, Any]) -> None:
        """What an identity stores must come back as JSON: a lone surrogate or NaN stored once broke every list."""
        if name is not None and not isinstance(name, str):
            raise InvalidArgument(f"name must be a string, got {type(name).__name__}.")
        try:
            strict_json(name)
        except ValueError as error:
            raise InvalidArgument(f"name {error}.") from error
        try:
            check_metadata(metadata, self._max_metadata_bytes, self._max_metadata_depth)
        except ValueError as error:
            raise InvalidArgument(f"metadata {error}.") from error

    @staticmethod
    def _check_identity_id(identity_id: str) -> str:
        if not isinstance(identity_id, str) or not identity_id.strip() or len(identity_id) > MAX_IDENTITY_ID_LENGTH:
            raise InvalidArgument(
                f"identity_id must be a non-blank string of at most {MAX_IDENTITY_ID_LENGTH} characters."
            )
        if identity_id in {".", ".."}:
            raise InvalidArgument(
                f"identity_id {identity_id!r} cannot be used: URL path normalisation turns /v1/identities/"
                f"{identity_id} into another path, so no client could reach it."
            )
        return identity_id

    def _ensure_collections(self, adopt: str | None) -> None:
        wanted = Stamp(model_id=self._model_id, dim=self._dim, format=FORMAT_VERSION)
        with self._write_lock, self._store.errors():
            for kind in KINDS:
                stored = self._store.stamp(kind)
                if stored is None:
                    self._store.create(kind, wanted)
                else:
                    self._check_stamp(kind, stored, adopt)
        if self._store.crashed:
            swept = self.sweep_unlisted_points()
            self._store.crashed = False  # swept: a clean close may now drop the crash marker
            log.warning("the gallery was not closed cleanly; %d unlisted image points swept", swept)
        with self._write_lock, self._store.errors():
            unindexed = self._store.unindexed()
        if unindexed > REINDEX_AT:
            log.warning(
                "%d points of the gallery are not in its search index yet: searches scan them (slower as they "
                "grow); stop the service and run `personid gallery optimize` to build it (minutes per 100k points)",
                unindexed,
            )

    def _check_stamp(self, kind: Kind, stored: Stamp, adopt: str | None) -> None:
        if stored.dim == self._dim and stored.model_id == self._model_id:
            return
        if adopt is not None and stored.model_id == adopt and stored.dim == self._dim:
            self._store.restamp(kind, Stamp(model_id=self._model_id, dim=self._dim, format=stored.format))
            log.warning("%s: model id %s re-stamped as %s (same model, new id scheme)", kind, adopt, self._model_id)
            return
        where = "delete it on the server" if self._server_mode else f"delete the folder {self._location}"
        name = kind if self._server_mode else f"{kind} of {self._location}"
        raise ModelMismatch(
            f"Collection {name!r} holds embeddings of model {stored.model_id!r} (dim {stored.dim}); the loaded "
            f"model is {self._model_id!r} (dim {self._dim}). Embeddings of different models are not comparable. "
            f"Re-index: set PERSONID_COLLECTION to a new name (or {where}), then re-enroll the identities' images."
        )


def open_store(settings: Settings) -> Store:
    """The engine the settings name: a Qdrant server at `qdrant_url`, else Qdrant's engine in-process under
    `qdrant_path` (migrating a folder that qdrant-client's local mode wrote, first)."""
    if settings.qdrant_url:
        from app.gallery_server import ServerStore

        api_key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
        return ServerStore.connect(settings.qdrant_url, api_key, settings.collection)
    from app.gallery_edge import EdgeStore, edge_folder
    from app.gallery_migrate import migrate_local_mode

    migrate_local_mode(settings.qdrant_path, settings.collection)
    return EdgeStore(edge_folder(settings.qdrant_path, settings.collection), str(settings.qdrant_path))


def _returnable_metadata(payload: dict[str, Any]) -> dict[str, Any]:
    """The stored metadata, or `{}` when an older version stored some that JSON cannot carry (it would make
    every list answer 500): the identity stays readable and deletable, the log names it."""
    try:
        return check_metadata(payload.get("metadata", {}))
    except ValueError as error:
        log.warning(
            "identity %r: stored metadata %s; answering with {} (delete and re-enroll the identity to fix it)",
            payload["identity_id"],
            error,
        )
        return {}


def _identity(payload: dict[str, Any]) -> Identity:
    return Identity(
        identity_id=payload["identity_id"],
        name=payload["name"],
        metadata=_returnable_metadata(payload),
        image_ids=list(payload["image_ids"]),
        attributes=payload["attributes"],
        created_at=payload["created_at"],
        updated_at=payload["updated_at"],
    )


def _attribute_filter(attribute_filter: dict[str, str] | None) -> Conditions | None:
    """`{"gender": "female"}` -> every condition on the stored `head=label` tags must hold."""
    if not attribute_filter:
        return None
    conditions: Conditions = []
    for head, label in attribute_filter.items():
        if not isinstance(head, str) or not _FILTER_KEY.match(head) or not isinstance(label, str) or "=" in label:
            raise InvalidArgument(
                f"Bad attribute filter entry {head!r}: {label!r}; expected attribute name -> label, "
                'e.g. {"gender": "female"}.'
            )
        conditions.append(("attr_tags", f"{head}={label}"))
    return conditions
