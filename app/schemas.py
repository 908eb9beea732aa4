"""Response bodies of the v1 API (requests with images are multipart forms, declared in `app/routes/`)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

# 1-64 of letters, digits, `_`, `.`, `-`, except `.` and `..`: URL path normalisation (RFC 3986) would turn
# /v1/identities/.. into another path, so no client could reach such an identity.
IDENTITY_ID_PATTERN = (
    r"^(?:[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}|\.[A-Za-z0-9_-][A-Za-z0-9_.-]{0,62}|\.\.[A-Za-z0-9_.-]{1,62})$"
)


class _Body(BaseModel):
    model_config = ConfigDict(protected_namespaces=())


class HeadResult(_Body):
    label: str = Field(description="The most probable label.")
    score: float = Field(description="Its probability.")
    scores: dict[str, float] = Field(description="Probability of every label of the head.")


class AttributesResponse(_Body):
    model_id: str
    attributes: dict[str, dict[str, HeadResult]] = Field(
        description="Group (age, gender, hair, upper_body, lower_body, accessories) -> head -> result."
    )


class EmbeddingResponse(_Body):
    embedding: list[float]
    dim: int
    model_id: str


class AttributesResult(_Body):
    attributes: dict[str, dict[str, HeadResult]]


class AttributesBatchResponse(_Body):
    model_id: str
    results: list[AttributesResult] = Field(description="One per `images` part, in upload order.")


class EmbeddingResult(_Body):
    embedding: list[float]


class EmbeddingBatchResponse(_Body):
    model_id: str
    dim: int
    results: list[EmbeddingResult] = Field(description="One per `images` part, in upload order.")


class StoredAttribute(_Body):
    label: str
    score: float


class IdentityResponse(_Body):
    identity_id: str
    name: str | None
    metadata: dict[str, Any]
    image_ids: list[str]
    attributes: dict[str, StoredAttribute] = Field(
        description="Per head, the label voted by the identity's images (score-weighted) and its mean score."
    )
    created_at: str
    updated_at: str


class IdentityPage(_Body):
    items: list[IdentityResponse]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


class ImagesAdded(_Body):
    identity_id: str
    image_ids: list[str] = Field(description="Ids of the uploaded images, in upload order (known ones included).")


class MatchResponse(_Body):
    identity_id: str
    name: str | None
    score: float = Field(description="Cosine similarity, higher is closer.")
    image_id: str = Field(description="The identity's image closest to the query.")
    attributes: dict[str, StoredAttribute]


class SearchResponse(_Body):
    model_id: str
    matches: list[MatchResponse] = Field(description="Best first.")


class SearchResult(_Body):
    matches: list[MatchResponse] = Field(description="Best first.")


class SearchBatchResponse(_Body):
    model_id: str
    results: list[SearchResult] = Field(description="One per `images` part, in upload order.")


class FrameResult(_Body):
    box: list[float] = Field(description="The box as sent: [x1, y1, x2, y2].")
    crop: list[int] = Field(description="The crop cut around it with the training crops' framing, in frame pixels.")
    attributes: dict[str, dict[str, HeadResult]]
    embedding: list[float]
    matches: list[MatchResponse] | None = Field(description="Best first; null when `top_k` is 0.")


class FrameResponse(_Body):
    model_id: str
    width: int = Field(description="The frame's width, upright (after its EXIF rotation).")
    height: int
    dim: int
    results: list[FrameResult] = Field(description="One per box, in the order sent.")


class DescriptionSearchResponse(_Body):
    matches: list[MatchResponse] = Field(
        description="Identities whose voted attributes have every label asked, most confident first; `score` is the "
        "mean voted score of the described heads and `image_id` the identity's first image."
    )
    next_offset: int | None = Field(description="Pass as `offset` for the next page; null on the last page.")


class ModelResponse(_Body):
    model_id: str
    name: str
    providers: list[str] = Field(description="ONNX Runtime execution providers in use, in priority order.")
    manifest: dict[str, Any] = Field(description="The manifest without the training config.")


class HealthResponse(_Body):
    status: str


class ReadyResponse(_Body):
    status: str
    model_id: str
    providers: list[str]
    gallery: dict[str, int] = Field(description="Identities and images stored.")
