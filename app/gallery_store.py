"""What the gallery needs of a storage engine (`Store`), the points it moves, and the gallery's errors.

Two engines implement `Store`: `app.gallery_edge` (Qdrant's own engine in-process, the embedded mode) and
`app.gallery_server` (a Qdrant server or cluster through qdrant-client). Filters are conjunctions of exact
keyword matches (`Conditions`), the only kind the gallery asks for, so both engines translate them the same way.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Kind = Literal["images", "identities"]
KINDS: tuple[Kind, Kind] = ("images", "identities")
# (payload key, keyword value) pairs that must all hold; a field holding a list matches when any element does
Conditions = list[tuple[str, str]]
# True: the whole payload; False: none; a list: only these keys (dotted paths allowed)
PayloadSelection = bool | list[str]


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
class StoredPoint:
    """A point as read from or written to an engine: string id, float vector (when asked), payload, score."""

    id: str
    vector: list[float] | None = None
    payload: dict[str, Any] = field(default_factory=dict)
    score: float = 0.0

    @classmethod
    def read(cls, record: Any) -> StoredPoint:
        """A record or scored point of either engine (both shape them alike: id, vector, payload, score)."""
        vector = record.vector
        return cls(
            id=str(record.id),
            vector=[float(x) for x in vector] if isinstance(vector, list) else None,
            payload=dict(record.payload or {}),
            score=float(getattr(record, "score", 0.0)),
        )


# Payload keys both engines index (keyword): lookups by identity and attribute filters.
INDEXED_KEYS = ("identity_id", "attr_tags")


@dataclass(frozen=True)
class Stamp:
    """What a collection records about its embeddings: the model that made them and their dimension."""

    model_id: str
    dim: int
    format: int = 1


class Store(Protocol):
    """One gallery's two collections (`images`, `identities`) on one engine."""

    server_mode: bool
    location: str
    # the previous process did not close the gallery (embedded): points it left unlisted need a sweep
    crashed: bool

    def errors(self) -> AbstractContextManager[None]:
        """Context in which the engine's transport and closed-handle failures become `GalleryUnavailable`."""
        ...

    def stamp(self, kind: Kind) -> Stamp | None:
        """The collection's stamp, None when the collection does not exist."""
        ...

    def create(self, kind: Kind, stamp: Stamp) -> None: ...

    def restamp(self, kind: Kind, stamp: Stamp) -> None: ...

    def upsert(self, kind: Kind, points: list[StoredPoint]) -> None: ...

    def delete_ids(self, kind: Kind, ids: list[str]) -> None: ...

    def delete_where(self, kind: Kind, match: Conditions) -> None: ...

    def retrieve(
        self, kind: Kind, ids: list[str], payload: PayloadSelection = True, vectors: bool = False
    ) -> list[StoredPoint]:
        """The points that exist among `ids` (missing ones are left out)."""
        ...

    def scroll(
        self,
        kind: Kind,
        limit: int,
        offset: str | None = None,
        match: Conditions | None = None,
        payload: PayloadSelection = True,
        vectors: bool = False,
    ) -> tuple[list[StoredPoint], str | None]:
        """A page in point id order and the id the next page starts at (None at the end)."""
        ...

    def count(self, kind: Kind, match: Conditions | None = None) -> int:
        """Exact number of points (matching `match`)."""
        ...

    def query(
        self,
        kind: Kind,
        vector: list[float],
        limit: int,
        min_score: float | None = None,
        match: Conditions | None = None,
        payload: PayloadSelection = True,
    ) -> list[StoredPoint]:
        """Nearest points by cosine, best first."""
        ...

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
        """The best point of each of the `limit` best groups (points sharing the `group_by` value), best first."""
        ...

    def unindexed(self) -> int:
        """Points not yet in the search index (searched exactly until `maintain` builds it)."""
        ...

    def maintain(self) -> bool:
        """Build what the engine defers (the search index): minutes at 100k points, so run by
        `personid gallery optimize`, restore and the benchmark, never at open or in a request. Returns whether
        anything was built."""
        ...

    def close(self) -> None: ...


def scroll_all(
    store: Store, kind: Kind, payload: PayloadSelection = True, vectors: bool = False, page: int = 1000
) -> Iterator[StoredPoint]:
    """Every point of a collection, page by page."""
    offset: str | None = None
    while True:
        points, offset = store.scroll(kind, page, offset, payload=payload, vectors=vectors)
        yield from points
        if offset is None:
            return
