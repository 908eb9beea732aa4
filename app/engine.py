"""The ONNX Runtime session with its manifest: provider choice, inference, attribute decoding."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from personid.manifest import Manifest, check_against_session, check_model_id, legacy_model_id, load_manifest
from personid.session import CPU, CUDA, open_session

log = logging.getLogger(__name__)


class EngineError(RuntimeError):
    """The model cannot be served as configured (the message says why and what to do)."""


class ModelMissing(EngineError):
    """No model file yet: the service still starts, and says so on /readyz."""


def choose_providers(requested: list[str], available: list[str]) -> list[str]:
    """Requested providers as given (all must exist); otherwise CUDA when the runtime has it, then CPU.

    TensorRT is never chosen unless asked: its engine build takes minutes on the first request.
    """
    if requested:
        missing = [p for p in requested if p not in available]
        if missing:
            raise EngineError(
                f"execution providers {missing} are not available in this onnxruntime; it has {available}"
            )
        return list(requested)
    return [CUDA, CPU] if CUDA in available else [CPU]


class Engine:
    """Runs the exported graph; the manifest (already checked against the graph here) says how to read it."""

    def __init__(self, session: Any, manifest: Manifest, legacy_id: str | None = None) -> None:
        check_against_session(manifest, session)
        self.session = session
        self.manifest = manifest
        self.legacy_id = legacy_id  # this model's id before the manifest joined it: galleries stamped so adopt it
        self._outputs = [manifest.outputs.embedding.name, manifest.outputs.attributes.name]
        self._heads = manifest.outputs.attributes.heads

    @classmethod
    def load(cls, model_path: Path, providers: list[str], threads: int) -> Engine:
        """Open `model_path` and its manifest; `ModelMissing` if there is no file, `EngineError`/`ManifestError`
        if it cannot be served."""
        model_path = Path(model_path)
        if not model_path.is_file():
            raise ModelMissing(f"model file {model_path} not found; train and export one (see README)")
        manifest = load_manifest(model_path)
        onnx_bytes = model_path.read_bytes()
        check_model_id(manifest, onnx_bytes, model_path)
        chosen = choose_providers(providers, ort.get_available_providers())
        try:
            session = open_session(model_path, chosen, threads, spin=False)  # cores are shared with HTTP work
        except Exception as exc:
            raise EngineError(f"onnxruntime cannot load {model_path}: {exc}") from exc
        engine = cls(session, manifest, legacy_model_id(onnx_bytes))
        log.info("model %s (%s) loaded with providers %s", manifest.name, manifest.model_id, engine.providers)
        return engine

    @property
    def providers(self) -> list[str]:
        """The providers ORT actually uses (it silently drops ones that fail to initialise)."""
        return list(self.session.get_providers())

    @property
    def model_id(self) -> str:
        return self.manifest.model_id

    def embed_and_attributes(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """N x 3 x H x W float32 -> (N x D embeddings, N x M attribute probabilities)."""
        embedding, attributes = self.session.run(self._outputs, {self.manifest.input.name: batch})
        return embedding, attributes

    def decode_heads(self, row: np.ndarray) -> dict[str, dict[str, Any]]:
        """One attribute row -> {head: {label, score, scores: {label: probability}}} in manifest order."""
        decoded: dict[str, dict[str, Any]] = {}
        for head in self._heads:
            values = row[head.offset : head.offset + head.size].astype(float)
            probabilities = [1.0 - values[0], values[0]] if head.type == "binary" else values.tolist()
            best = int(np.argmax(probabilities))
            decoded[head.name] = {
                "label": head.labels[best],
                "score": float(probabilities[best]),
                "scores": {label: float(p) for label, p in zip(head.labels, probabilities, strict=True)},
            }
        return decoded

    def decode_attributes(self, row: np.ndarray) -> dict[str, dict[str, dict[str, Any]]]:
        """One attribute row grouped the way people read them: {group: {head: {label, score, scores}}}."""
        heads = self.decode_heads(row)
        return {
            group: {name: heads[name] for name in members} for group, members in self.manifest.display_groups.items()
        }
