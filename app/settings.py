"""Service settings: every one is an environment variable `PERSONID_<NAME>` (pydantic-settings)."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_MODEL_PATH = Path("models/default.onnx")


@functools.cache
def _cores() -> int:
    """The core count, read once: `os.cpu_count()` costs about 0.1 ms a call in a container, on every request."""
    return os.cpu_count() or 1


class Settings(BaseSettings):
    """Configuration of `personid serve`; the same names are its command-line options."""

    model_config = SettingsConfigDict(env_prefix="PERSONID_", env_file=None, extra="ignore")

    host: str = Field("127.0.0.1", description="Address to bind.")
    port: int = Field(8000, ge=1, le=65535, description="Port to bind.")
    workers: int = Field(
        1, ge=1, description="Uvicorn worker processes; more than 1 needs a Qdrant server (--qdrant-url)."
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="Log level.")

    model_path: Path = Field(DEFAULT_MODEL_PATH, description="The .onnx model; its manifest (.json) sits beside it.")
    providers: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="ONNX Runtime execution providers in order (comma-separated); empty = CUDA if available, else CPU.",
    )
    intra_op_threads: int = Field(0, ge=0, description="ONNX Runtime intra-op threads; 0 = number of cores.")

    qdrant_path: Path = Field(Path("data/qdrant"), description="Embedded Qdrant storage folder (used when no URL).")
    qdrant_url: str | None = Field(None, description="Qdrant server URL; when set, replaces embedded mode.")
    qdrant_api_key: SecretStr | None = Field(None, description="API key for the Qdrant server.")
    collection: str = Field("persons", description="Qdrant collection name.")
    search_mode: Literal["groups", "centroid"] = Field(
        "centroid", description="Rank identities by their centroid, or by their best image (docs/gallery.md)."
    )

    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list, description="Comma-separated API keys; empty = no auth."
    )
    protect_reads: bool = Field(False, description="Require X-API-Key on reads too (when API keys are set).")
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Comma-separated CORS origins; empty = CORS off."
    )

    max_upload_bytes: int = Field(10 * 1024 * 1024, ge=1, description="Largest accepted upload, per file.")
    max_image_pixels: int = Field(25_000_000, ge=1, description="Largest accepted image (width x height).")
    min_image_side: int = Field(16, ge=1, description="Smallest accepted image side in pixels.")
    max_images_per_request: int = Field(
        32, ge=1, description="Most images in one request: an enroll, or a batch of crops (`images` parts)."
    )
    max_boxes_per_frame: int = Field(64, ge=1, description="Most person boxes in one /v1/frames request.")
    store_thumbnails: bool = Field(
        True, description="Keep a small JPEG (about 64x128, a few KB) of each enrolled image to show matches."
    )
    max_request_bytes: int = Field(
        64 * 1024 * 1024, ge=1, description="Largest request body of any kind, whatever the per-image limits allow."
    )
    decode_pixel_budget: int = Field(
        50_000_000,
        ge=1,
        description="Pixels decoded at once across all requests; an image waits until its pixels fit (at least "
        "max_image_pixels).",
    )
    max_metadata_bytes: int = Field(16 * 1024, ge=2, description="Largest `metadata` JSON object (UTF-8 bytes).")
    max_json_depth: int = Field(16, ge=1, description="Deepest nesting accepted in `metadata` and `filter` JSON.")
    body_timeout_s: float = Field(
        30.0, gt=0, description="Longest wait for the next chunk of a request body before answering 408."
    )
    max_connections: int = Field(
        1000, ge=1, description="Concurrent connections uvicorn accepts; more are answered 503 at once."
    )

    batching: bool = Field(True, description="Gather concurrent requests into one model call.")
    max_batch_size: int = Field(
        8,
        ge=1,
        description="Largest batch the micro-batcher forms from concurrent requests (on CPU a larger one costs as "
        "much per image and makes its requests wait longer; raise it on a GPU).",
    )
    max_wait_ms: float = Field(
        0.0,
        ge=0,
        description="Longest a request that finds the model idle waits for others to join it (requests arriving "
        "during a model call always form the next batch).",
    )

    @field_validator("providers", "api_keys", "cors_origins", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("decode_pixel_budget")
    @classmethod
    def _budget_fits_an_image(cls, value: int, info: ValidationInfo) -> int:
        """An image as large as allowed must fit in the budget on its own."""
        largest = info.data.get("max_image_pixels")
        if largest is not None and value < largest:
            raise ValueError(f"must be at least max_image_pixels ({largest}), the largest image accepted")
        return value

    @property
    def threads(self) -> int:
        """Intra-op threads actually used (also the decoding and inference pools' sizes)."""
        return self.intra_op_threads or _cores()
