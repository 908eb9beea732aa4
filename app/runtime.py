"""`Runtime`: what the lifespan loads (model, micro-batcher, gallery) and the reasons why any of it is missing.

Start-up policy: no model file yet -> the app starts, /readyz says why it is not ready and model endpoints answer
503 (a fresh checkout or a volume still being filled must not crash-loop). A model that cannot be served as
described (manifest and graph disagree, a gallery made by another model) -> refuse to start with the reason:
serving it would give wrong answers. A Qdrant server that is not up yet -> start, 503, retry on later requests.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from app.batching import MicroBatcher
from app.engine import Engine, ModelMissing
from app.gallery import Gallery, GalleryUnavailable
from app.metrics import Metrics
from app.settings import Settings

log = logging.getLogger("personid")

GALLERY_RETRY_S = 5.0


@dataclass
class Runtime:
    """What the lifespan loads; endpoints reach it through `app.deps` (`RuntimeDep`, `EngineDep`, `GalleryDep`)."""

    settings: Settings
    metrics: Metrics
    engine: Engine | None = None
    batcher: MicroBatcher | None = None
    gallery: Gallery | None = None
    model_problem: str | None = None
    gallery_problem: str | None = None
    decode_pool: ThreadPoolExecutor | None = None  # decoding threads, one per core (`app.forms`)
    _gallery_tried: float = 0.0
    _gallery_lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def start(cls, settings: Settings, metrics: Metrics) -> Runtime:
        """Load the model and open the gallery; raises (refusing to start) only for what a restart cannot fix."""
        runtime = cls(settings, metrics)
        try:
            runtime.engine = Engine.load(settings.model_path, settings.providers, settings.threads)
        except ModelMissing as exc:
            runtime.model_problem = str(exc)
            log.warning("not ready: %s", exc)
            return runtime
        engine = runtime.engine
        runtime.decode_pool = ThreadPoolExecutor(max_workers=settings.threads, thread_name_prefix="decode")
        runtime.batcher = MicroBatcher(
            engine.embed_and_attributes,
            max_batch_size=settings.max_batch_size,
            max_wait_ms=settings.max_wait_ms,
            enabled=settings.batching,
            on_batch=metrics.observe_batch,
            workers=settings.threads,
        )
        runtime.open_gallery()
        return runtime

    def open_gallery(self) -> Gallery | None:
        """Open the gallery if it is not open; a server that is down is retried at most every few seconds."""
        if self.gallery is not None or self.engine is None:
            return self.gallery
        with self._gallery_lock:
            if self.gallery is None and time.monotonic() - self._gallery_tried >= GALLERY_RETRY_S:
                self._gallery_tried = time.monotonic()
                dim = self.engine.manifest.outputs.embedding.dim
                try:
                    self.gallery = Gallery.open(
                        self.settings, dim=dim, model_id=self.engine.model_id, adopt=self.engine.legacy_id
                    )
                    self.gallery_problem = None
                    log.info("gallery open: %s", self.settings.qdrant_url or self.settings.qdrant_path)
                except GalleryUnavailable as exc:
                    self.gallery_problem = str(exc)
                    log.warning("gallery not ready: %s", exc)
        return self.gallery

    async def infer(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings and attribute probabilities of preprocessed rows, through the micro-batcher."""
        assert self.batcher is not None
        embedding, attributes = await self.batcher.submit(rows)
        return embedding, attributes

    async def close(self) -> None:
        """Finish the queued model calls before the gallery closes, so no request is cut off mid-write."""
        if self.batcher is not None:
            await self.batcher.close()
        if self.decode_pool is not None:
            self.decode_pool.shutdown(wait=False)
        if self.gallery is not None:
            self.gallery.close()
