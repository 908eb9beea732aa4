"""The identity gallery on Qdrant: enroll, add images, get/list/delete identities, search by embedding.

Two collections (see docs/gallery.md for why):
- `<collection>`: one point per enrolled image (vector = the image embedding), payload: identity_id, name,
  image_id, attributes, attr_tags, model_id. Not the metadata: it is stored once, on the record.
- `<collection>_identities`: one point per identity (vector = its centroid, the normalised mean of its image
  embeddings), the identity record: name, metadata, image_ids, aggregated attributes, timestamps.
  It makes get/list/count exact and cheap, and is the index of centroid search.
Both collections record the model id and dimension in their metadata, so embeddings of another model are
never mixed in. Metadata is stored only when it can be returned as strict JSON (`strict_json`); a record
written otherwise by an older version is answered with `{}` and a warning in the log.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import re
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import httpx
import numpy as np
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

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

SearchMode = Literal["groups", "centroid"]


class GalleryError(Exception):
    """Base of every gallery error."""


class IdentityNotFound(GalleryError):
    """No identity with that id (HTTP 404)."""


class ImageNotFound(GalleryError):
    """No image (or no thumbnail of it) with that id in that identity (HTTP 404)."""


class IdentityExists(GalleryError):
    """Enroll with an identity id that is already enrolled (HTTP 409): add images to it instead."""


class ModelMismatch(GalleryError):
    """The collection holds embeddings of another model or dimension: they are not comparable."""


class GalleryUnavailable(GalleryError):
    """The Qdrant server cannot be reached, or the embedded folder is locked by another process (HTTP 503)."""


class InvalidArgument(GalleryError, ValueError):
    """A bad cursor, filter, identity id or batch (HTTP 400/422)."""


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


@contextmanager
def _translated() -> Iterator[None]:
    """Turn transport failures into GalleryUnavailable, so the service answers 503 rather than 500."""
    try:
        yield
    except (ResponseHandlingException, httpx.TransportError) as error:
        raise GalleryUnavailable(f"Qdrant server unreachable: {error}") from error
    except UnexpectedResponse as error:
        if error.status_code is not None and error.status_code >= 500:
            raise GalleryUnavailable(f"Qdrant server error {error.status_code}: {error.content!r}") from error
        raise
    except RuntimeError as error:
        if "closed" in str(error):
            raise GalleryUnavailable("The gallery is closed.") from error
        raise


class Gallery:
    """Identities and their image embeddings in Qdrant; safe to call from many threads of one process.

    The embedded client is plain Python over in-memory numpy arrays and SQLite, not thread-safe, so every
    call holds one lock there. With a server, reads run concurrently; writes hold the lock so that the
    "exists?" check and the write of an identity are one step within this process.
    """

    def __init__(
        self,
        client: QdrantClient,
        collection: str,
        dim: int,
        model_id: str,
        server_mode: bool,
        search_mode: SearchMode = "centroid",
        location: str = "",
        max_metadata_bytes: int | None = None,
        max_metadata_depth: int = MAX_STORED_DEPTH,
    ) -> None:
        self._client = client
        self._images = collection
        self._identities = f"{collection}_identities"
        self._dim = dim
        self._model_id = model_id
        self._server_mode = server_mode
        self._location = location
        self._max_metadata_bytes = max_metadata_bytes
        self._max_metadata_depth = max_metadata_depth
        self.search_mode: SearchMode = search_mode
        self._write_lock = threading.RLock()
        self._read_lock = nullcontext() if server_mode else self._write_lock

    @classmethod
    def open(cls, settings: Settings, dim: int, model_id: str, adopt: str | None = None) -> Gallery:
        """Connect (server when `qdrant_url` is set, else embedded on disk) and create or check the collections.

        `adopt`: an older id of the same model (the ONNX-bytes-only id of personid before the manifest joined it);
        collections stamped with it are re-stamped with `model_id` instead of refused, so an upgrade keeps them.
        """
        search_mode: SearchMode = settings.search_mode
        if settings.qdrant_url:
            api_key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
            client = QdrantClient(url=settings.qdrant_url, api_key=api_key, timeout=10)
            location = settings.qdrant_url
            try:
                with _translated():
                    client.get_collections()
            except GalleryError:
                client.close()
                raise
        else:
            location = str(settings.qdrant_path)
            try:
                client = QdrantClient(path=location)
            except RuntimeError as error:
                if "already accessed" not in str(error):
                    raise
                raise GalleryUnavailable(
                    f"The embedded Qdrant folder {location} is in use by another process (embedded Qdrant allows "
                    "one process: run one worker, stop the other process, or use a Qdrant server with "
                    "PERSONID_QDRANT_URL)."
                ) from error
        gallery = cls(
            client,
            settings.collection,
            dim,
            model_id,
            bool(settings.qdrant_url),
            search_mode,
            location,
            max_metadata_bytes=settings.max_metadata_bytes,
            max_metadata_depth=settings.max_json_depth,
        )
        try:
            gallery._ensure_collections(adopt)
        except BaseException:
            client.close()
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

    def close(self) -> None:
        with self._write_lock:
            self._client.close()

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
        with self._write_lock, _translated():
            if self._record(identity_id) is not None:
                raise IdentityExists(f"Identity {identity_id!r} already exists; add images to it instead.")
            if explicit_id and self._server_mode:
                # another process may have died between an enroll's points and its record: those points belong
                # to nobody (embedded mode sweeps them at open instead, as the scan is not indexed there)
                self._delete_points_of(identity_id)
            identity = {"identity_id": identity_id, "name": name, "metadata": metadata or {}, "created_at": now}
            points = self._image_points(identity, vectors, image_hashes, attributes, now, thumbnails)
            image_ids = list(dict.fromkeys(str(point.id) for point in points))
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
        with self._write_lock, _translated():
            record = self._record(identity_id)
            if record is None:
                raise IdentityNotFound(f"Identity {identity_id!r} not found.")
            now = _now()
            identity = _payload(record)
            points = self._image_points(identity, vectors, image_hashes, attributes, now, thumbnails)
            known = set(identity["image_ids"])
            new_points = [point for point in points if point.id not in known]
            if new_points:
                image_ids = list(dict.fromkeys([*identity["image_ids"], *(str(point.id) for point in new_points)]))
                self._write_points_then_record(identity, new_points, image_ids, now)
            return [str(point.id) for point in points]

    def delete(self, identity_id: str) -> None:
        """Remove an identity and every vector of it (the record first, so it vanishes from lists at once)."""
        with self._write_lock, _translated():
            if self._record(identity_id) is None:
                raise IdentityNotFound(f"Identity {identity_id!r} not found.")
            self._client.delete(
                self._identities, models.PointIdsList(points=[identity_point_id(identity_id)]), wait=True
            )
            self._delete_points_of(identity_id)

    # ---- reads --------------------------------------------------------------------------------------------

    def get(self, identity_id: str) -> Identity:
        with self._read_lock, _translated():
            record = self._record(identity_id)
        if record is None:
            raise IdentityNotFound(f"Identity {identity_id!r} not found.")
        return _identity(_payload(record))

    def thumbnail(self, identity_id: str, image_id: str) -> bytes:
        """The JPEG thumbnail kept for one of an identity's images."""
        with self._read_lock, _translated():
            record = self._record(identity_id)
            if record is None:
                raise IdentityNotFound(f"Identity {identity_id!r} not found.")
            if image_id not in _payload(record)["image_ids"]:
                raise ImageNotFound(f"Identity {identity_id!r} has no image {image_id!r}.")
            points = self._client.retrieve(self._images, [image_id], with_payload=["thumbnail"])
        stored = _payload(points[0]).get("thumbnail") if points else None
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
        conditions: list[models.Condition] = [
            models.FieldCondition(key=f"attributes.{head}.label", match=models.MatchValue(value=label))
            for head, label in constraints.items()
        ]
        fields = ["identity_id", "name", "image_ids", "attributes"]
        records, cursor = [], None
        with self._read_lock, _translated():
            while True:
                page, cursor = self._client.scroll(
                    self._identities, models.Filter(must=conditions), limit=1000, offset=cursor, with_payload=fields
                )
                records += [_payload(record) for record in page]
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
        with self._read_lock, _translated():
            records, next_offset = self._client.scroll(
                self._identities, limit=limit, offset=offset, with_payload=True, with_vectors=False
            )
        return [_identity(_payload(record)) for record in records], None if next_offset is None else str(next_offset)

    def count(self) -> dict[str, int]:
        with self._read_lock, _translated():
            identities = self._client.count(self._identities, exact=True).count
            images = self._client.count(self._images, exact=True).count
        return {"identities": identities, "images": images}

    def count_points(self, identity_id: str) -> int:
        """Image points stored for an identity id (with or without its record): deletions can be checked."""
        with self._read_lock, _translated():
            return self._client.count(self._images, count_filter=_identity_filter(identity_id), exact=True).count

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
        query_filter = _attribute_filter(attribute_filter)
        with self._read_lock, _translated():
            if self.search_mode == "groups":
                return self._search_groups(query, top_k, min_score, query_filter)
            return self._search_centroids(query, top_k, min_score, query_filter)

    # ---- internals ----------------------------------------------------------------------------------------

    def _search_groups(
        self, query: np.ndarray, top_k: int, min_score: float | None, query_filter: models.Filter | None
    ) -> list[Match]:
        groups = self._client.query_points_groups(
            self._images,
            query=query.tolist(),
            group_by="identity_id",
            limit=top_k,
            group_size=1,
            score_threshold=min_score,
            query_filter=query_filter,
            with_payload=["identity_id", "image_id"],
        ).groups
        hits = [group.hits[0] for group in groups]
        payloads = [_payload(hit) for hit in hits]
        ids = [identity_point_id(payload["identity_id"]) for payload in payloads]
        records = {
            record.id: _payload(record)
            for record in self._client.retrieve(self._identities, ids, with_payload=["name", "attributes"])
        }
        # an identity being deleted (record gone, points going) is not a match
        return [
            Match(
                identity_id=payload["identity_id"],
                name=records[pid]["name"],
                score=float(hit.score),
                image_id=payload["image_id"],
                attributes=records[pid]["attributes"],
            )
            for hit, payload, pid in zip(hits, payloads, ids, strict=True)
            if pid in records
        ]

    def _search_centroids(
        self, query: np.ndarray, top_k: int, min_score: float | None, query_filter: models.Filter | None
    ) -> list[Match]:
        hits = self._client.query_points(
            self._identities,
            query=query.tolist(),
            limit=top_k,
            score_threshold=min_score,
            query_filter=query_filter,
            with_payload=["identity_id", "name", "image_ids", "attributes"],
        ).points
        image_ids = [image_id for hit in hits for image_id in _payload(hit)["image_ids"]]
        images = self._client.retrieve(self._images, image_ids, with_payload=False, with_vectors=True)
        image_scores = {str(point.id): float(np.dot(unit(np.asarray(point.vector)), query)) for point in images}
        matches = []
        for hit in hits:
            payload = _payload(hit)
            scored = [(image_scores[i], i) for i in payload["image_ids"] if i in image_scores]
            if not scored:
                continue
            matches.append(
                Match(
                    identity_id=payload["identity_id"],
                    name=payload["name"],
                    score=float(hit.score),
                    image_id=max(scored)[1],
                    attributes=payload["attributes"],
                )
            )
        return matches

    def _record(self, identity_id: str) -> models.Record | None:
        records = self._client.retrieve(self._identities, [identity_point_id(identity_id)], with_payload=True)
        return records[0] if records else None

    def _delete_points_of(self, identity_id: str) -> None:
        self._client.delete(self._images, models.FilterSelector(filter=_identity_filter(identity_id)), wait=True)

    def _image_points(
        self,
        identity: dict[str, Any],
        vectors: np.ndarray,
        image_hashes: list[str],
        attributes: list[dict[str, Any]],
        now: str,
        thumbnails: list[bytes] | None,
    ) -> list[models.PointStruct]:
        if thumbnails is not None and len(thumbnails) != len(image_hashes):
            raise InvalidArgument(f"{len(thumbnails)} thumbnails for {len(image_hashes)} images: one per image.")
        thumbs: list[bytes | None] = [*thumbnails] if thumbnails is not None else [None] * len(image_hashes)
        return [
            models.PointStruct(
                id=image_point_id(identity["identity_id"], image_hash),
                vector=vector.tolist(),
                payload=image_payload(identity, image_hash, image_attributes, self._model_id, now, thumb),
            )
            for vector, image_hash, image_attributes, thumb in zip(
                vectors, image_hashes, attributes, thumbs, strict=True
            )
        ]

    def _write_points_then_record(
        self, identity: dict[str, Any], points: list[models.PointStruct], image_ids: list[str], now: str
    ) -> Identity:
        """Points first, record last; if that fails the new points are taken back, so no image is left unlisted."""
        try:
            self._client.upsert(self._images, points, wait=True)
            return self._write_record(identity, image_ids, now)
        except BaseException:
            with suppress(Exception):
                self._client.delete(self._images, models.PointIdsList(points=[point.id for point in points]), wait=True)
            raise

    def _sweep_unlisted_points(self) -> int:
        """Delete image points that no identity record lists (left by a process killed mid-write); returns how many."""
        owners: dict[str, list[str]] = {}
        offset = None
        while True:
            records, offset = self._client.scroll(
                self._images, limit=10_000, offset=offset, with_payload=["identity_id"], with_vectors=False
            )
            for record in records:
                owners.setdefault(_payload(record)["identity_id"], []).append(str(record.id))
            if offset is None:
                break
        listed: set[str] = set()
        identity_ids = list(owners)
        for start in range(0, len(identity_ids), 1000):
            batch = [identity_point_id(identity_id) for identity_id in identity_ids[start : start + 1000]]
            for record in self._client.retrieve(self._identities, batch, with_payload=["image_ids"]):
                listed.update(_payload(record)["image_ids"])
        stray: list[models.ExtendedPointId] = [
            point_id for point_ids in owners.values() for point_id in point_ids if point_id not in listed
        ]
        if stray:
            self._client.delete(self._images, models.PointIdsList(points=stray), wait=True)
        return len(stray)

    def _write_record(self, identity: dict[str, Any], image_ids: list[str], now: str) -> Identity:
        """Write the identity record from its stored points: the centroid and attributes follow the images."""
        points = self._client.retrieve(
            self._images, image_ids, with_payload=["attributes", "attr_tags"], with_vectors=True
        )
        vectors = np.asarray([point.vector for point in points], dtype=np.float32)
        centroid = unit(unit(vectors).mean(axis=0))
        per_image = [_payload(point)["attributes"] for point in points]
        tags = sorted({tag for point in points for tag in _payload(point)["attr_tags"]})
        payload = identity_payload(identity, image_ids, aggregate_attributes(per_image), tags, self._model_id, now)
        record = models.PointStruct(
            id=identity_point_id(identity["identity_id"]), vector=centroid.tolist(), payload=payload
        )
        self._client.upsert(self._identities, [record], wait=True)
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
        with self._write_lock, _translated():
            for name in (self._images, self._identities):
                if self._client.collection_exists(name):
                    self._check_collection(name, adopt)
                    continue
                self._client.create_collection(
                    name,
                    vectors_config=models.VectorParams(size=self._dim, distance=models.Distance.COSINE),
                    metadata={"personid_format": FORMAT_VERSION, "model_id": self._model_id, "dim": self._dim},
                )
                if self._server_mode:  # embedded Qdrant has no payload indexes: it scans
                    for key in ("identity_id", "attr_tags"):
                        self._client.create_payload_index(name, key, models.PayloadSchemaType.KEYWORD, wait=True)
            if not self._server_mode:
                self._sweep_unlisted_points()

    def _check_collection(self, name: str, adopt: str | None) -> None:
        info = self._client.get_collection(name)
        stored = info.config.metadata or {}
        vectors = info.config.params.vectors
        size = vectors.size if isinstance(vectors, models.VectorParams) else None
        if stored.get("model_id") == self._model_id and stored.get("dim") == self._dim == size:
            return
        if adopt is not None and stored.get("model_id") == adopt and stored.get("dim") == self._dim == size:
            self._client.update_collection(name, metadata={**stored, "model_id": self._model_id})
            log.warning(
                "collection %r: model id %s re-stamped as %s (same model, new id scheme)", name, adopt, self._model_id
            )
            return
        where = "delete it on the server" if self._server_mode else f"delete the folder {self._location}"
        raise ModelMismatch(
            f"Collection {name!r} holds embeddings of model {stored.get('model_id', 'unknown')!r} "
            f"(dim {size}); the loaded model is {self._model_id!r} (dim {self._dim}). Embeddings of different "
            f"models are not comparable. Re-index: set PERSONID_COLLECTION to a new name (or {where}), then "
            "re-enroll the identities' images."
        )


def _payload(point: models.Record | models.ScoredPoint) -> dict[str, Any]:
    """A point's payload: every point the gallery writes has one, though Qdrant's types allow none."""
    assert point.payload is not None, f"point {point.id} has no payload"
    return point.payload


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


def _identity_filter(identity_id: str) -> models.Filter:
    return models.Filter(must=[models.FieldCondition(key="identity_id", match=models.MatchValue(value=identity_id))])


def _attribute_filter(attribute_filter: dict[str, str] | None) -> models.Filter | None:
    """`{"gender": "female"}` -> every condition on the stored `head=label` tags must hold."""
    if not attribute_filter:
        return None
    conditions: list[models.Condition] = []
    for head, label in attribute_filter.items():
        if not isinstance(head, str) or not _FILTER_KEY.match(head) or not isinstance(label, str) or "=" in label:
            raise InvalidArgument(
                f"Bad attribute filter entry {head!r}: {label!r}; expected attribute name -> label, "
                'e.g. {"gender": "female"}.'
            )
        conditions.append(models.FieldCondition(key="attr_tags", match=models.MatchValue(value=f"{head}={label}")))
    return models.Filter(must=conditions)
