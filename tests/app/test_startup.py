"""Start-up policy: a model that cannot be served as described, or a gallery of another model, refuses to start."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.engine import EngineError, choose_providers
from app.gallery import Gallery, ModelMismatch
from app.main import create_app
from app.settings import Settings
from personid.manifest import ManifestError, legacy_model_id, manifest_path, model_id, parse_manifest
from tests.standin import build_standin_model


def test_app_refuses_to_start_on_a_mismatch(
    model_path: Path, tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    raw = json.loads(manifest_path(model_path).read_text())
    onnx_copy = tmp_path / "m.onnx"
    shutil.copy(model_path, onnx_copy)
    raw["outputs"]["embedding"]["dim"] = 999
    edited = parse_manifest(raw)  # a consistent id, so that the graph check is what refuses it
    raw["model_id"] = model_id(onnx_copy, edited.input, edited.outputs)
    manifest_path(onnx_copy).write_text(json.dumps(raw))
    with pytest.raises(ManifestError, match="N x 999"), TestClient(create_app(make_settings(model_path=onnx_copy))):
        pass


def test_gallery_of_another_model_refuses_to_start(make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    """The same Qdrant folder opened with a different model: its vectors are not comparable."""
    settings = make_settings()
    with TestClient(create_app(settings)) as client:
        assert client.get("/readyz").status_code == 200
    other = build_standin_model(tmp_path / "other", seed=1)
    with pytest.raises(ModelMismatch, match="Re-index"), TestClient(create_app(make_settings(model_path=other))):
        pass


def test_provider_choice() -> None:
    assert choose_providers([], ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    with_gpu = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert choose_providers([], with_gpu) == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert choose_providers(["TensorrtExecutionProvider", "CPUExecutionProvider"], with_gpu)[0].startswith("Tensorrt")
    with pytest.raises(EngineError, match="CUDAExecutionProvider"):
        choose_providers(["CUDAExecutionProvider"], ["CPUExecutionProvider"])


def test_gallery_stamped_with_the_legacy_id_of_the_same_model_is_adopted(
    make_settings: Callable[..., Settings], model_path: Path
) -> None:
    """A gallery made before the model id covered the manifest (ONNX bytes alone) keeps working after an upgrade."""
    settings = make_settings()
    legacy = legacy_model_id(model_path.read_bytes())
    dim = parse_manifest(json.loads(manifest_path(model_path).read_text())).outputs.embedding.dim
    old = Gallery.open(settings, dim=dim, model_id=legacy)
    old.close()
    with TestClient(create_app(settings)) as client:
        assert client.get("/readyz").status_code == 200
        current = client.get("/v1/model").json()["model_id"]
    reopened = Gallery.open(settings, dim=dim, model_id=current)  # re-stamped: no adoption needed any more
    reopened.close()
    with pytest.raises(ModelMismatch):
        Gallery.open(settings, dim=dim, model_id=legacy)
