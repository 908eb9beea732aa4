"""The gallery on a Qdrant server or cluster, through qdrant-client (`PERSONID_QDRANT_URL`).

Collections `<collection>` (images) and `<collection>_identities`, each with keyword payload indexes on
`identity_id` and `attr_tags`; the stamp is the collection's metadata.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import httpx
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from app.gallery_store import INDEXED_KEYS, Conditions, GalleryUnavailable, Kind, PayloadSelection, Stamp, StoredPoint


@contextmanager
def translated() -> Iterator[None]:
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


def to_filter(match: Conditions | None) -> models.Filter | None:
    if not match:
        return None
    return models.Filter(
        must=[models.FieldCondition(key=key, match=models.MatchValue(value=value)) for key, value in match]
    )


class ServerStore:
    """`Store` on a Qdrant server; reads may run concurrently (the client is thread-safe)."""

    server_mode = True
    crashed = False  # other processes may be writing: no sweep at open (an explicit id's leftovers are deleted)

    def __init__(self, client: QdrantClient, collection: str, location: str) -> None:
        self.location = location
        self._client = client
        self._names: dict[Kind, str] = {"images": collection, "identities": f"{collection}_identities"}

    @classmethod
    def connect(cls, url: str, api_key: str | None, collection: str) -> ServerStore:
        """The server at `url`, checked reachable (GalleryUnavailable otherwise)."""
        client = QdrantClient(url=url, api_key=api_key, timeout=10)
        try:
            with translated():
                client.get_collections()
        except GalleryUnavailable:
            client.close()
            raise
        return cls(client, collection, url)

    def errors(self) -> AbstractContextManager[None]:
        return translated()

    def stamp(self, kind: Kind) -> Stamp | None:
        name = self._names[kind]
        if not self._client.collection_exists(name):
            return None
        info = self._client.get_collection(name)
        stored: dict[str, Any] = info.config.metadata or {}
        vectors = info.config.params.vectors
        size = vectors.size if isinstance(vectors, models.VectorParams) else -1
        dim = size if stored.get("dim") == size else -1  # a stamp that disagrees with the vectors matches nothing
        return Stamp(
            model_id=str(stored.get("model_id", "unknown")), dim=dim, format=int(stored.get("personid_format", 1))
        )

    def create(self, kind: Kind, stamp: Stamp) -> None:
        name = self._names[kind]
        self._client.create_collection(
            name,
            vectors_config=models.VectorParams(size=stamp.dim, distance=models.Distance.COSINE),
            metadata={"personid_format": stamp.format, "model_id": stamp.model_id, "dim": stamp.dim},
        )
        for key in INDEXED_KEYS:
            self._client.create_payload_index(name, key, models.PayloadSchemaType.KEYWORD, wait=True)

    def restamp(self, kind: Kind, stamp: Stamp) -> None:
        name = self._names[kind]
        stored = self._client.get_collection(name).config.metadata or {}
        self._client.update_collection(name, metadata={**stored, "model_id": stamp.model_id})

    def upsert(self, kind: Kind, points: list[StoredPoint]) -> None:
        structs = [models.PointStruct(id=p.id, vector=p.vector or [], payload=p.payload) for p in points]
        self._client.upsert(self._names[kind], structs, wait=True)

    def delete_ids(self, kind: Kind, ids: list[str]) -> None:
        selector = models.PointIdsList(points=list[models.ExtendedPointId](ids))
        self._client.delete(self._names[kind], selector, wait=True)

    def delete_where(self, kind: Kind, match: Conditions) -> None:
        selector = models.FilterSelector(filter=to_filter(match))
        self._client.delete(self._names[kind], selector, wait=True)

    def retrieve(
        self, kind: Kind, ids: list[str], payload: PayloadSelection = True, vectors: bool = False
    ) -> list[StoredPoint]:
        if not ids:
            return []
        records = self._client.retrieve(self._names[kind], ids, with_payload=payload, with_vectors=vectors)
        return [StoredPoint.read(record) for record in records]

    def scroll(
        self,
        kind: Kind,
        limit: int,
        offset: str | None = None,
        match: Conditions | None = None,
        payload: PayloadSelection = True,
        vectors: bool = False,
    ) -> tuple[list[StoredPoint], str | None]:
        records, next_offset = self._client.scroll(
            self._names[kind], to_filter(match), limit=limit, offset=offset, with_payload=payload, with_vectors=vectors
        )
        return [StoredPoint.read(record) for record in records], None if next_offset is None else str(next_offset)

    def count(self, kind: Kind, match: Conditions | None = None) -> int:
        return self._client.count(self._names[kind], count_filter=to_filter(match), exact=True).count

    def query(
        self,
        kind: Kind,
        vector: list[float],
        limit: int,
        min_score: float | None = None,
        match: Conditions | None = None,
        payload: PayloadSelection = True,
    ) -> list[StoredPoint]:
        hits = self._client.query_points(
            self._names[kind],
            query=vector,
            limit=limit,
            score_threshold=min_score,
            query_filter=to_filter(match),
            with_payload=payload,
        ).points
        return [StoredPoint.read(hit) for hit in hits]

    def query_groups(
        self,
        kind: Kind,
        vector: list[float],
        group_by: str,
        limit: int,
        min_score: float | None = None,
        match: Conditions | None = None,
        payload: PayloadSelection = True,
    ) -> list[StoredPoint]:
        groups = self._client.query_points_groups(
            self._names[kind],
            query=vector,
            group_by=group_by,
            limit=limit,
            group_size=1,
            score_threshold=min_score,
            query_filter=to_filter(match),
            with_payload=payload,
        ).groups
        return [StoredPoint.read(group.hits[0]) for group in groups]

    def unindexed(self) -> int:
        """The server indexes in the background: nothing waits on this process."""
        return 0

    def maintain(self) -> bool:
        """The server indexes in the background: nothing to do."""
        return False

    def close(self) -> None:
        self._client.close()
