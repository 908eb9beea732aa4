"""The manifest is validated and checked against the real ONNX graph; every mismatch is named."""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import onnxruntime as ort
import pytest

from personid.manifest import (
    Manifest,
    ManifestError,
    check_against_session,
    check_model,
    load_manifest,
    manifest_path,
)


@pytest.fixture(scope="module")
def raw(model_path: Path) -> dict[str, Any]:
    return json.loads(manifest_path(model_path).read_text())


@pytest.fixture(scope="module")
def session(model_path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])


def test_the_test_model_manifest_loads_and_matches_its_graph(model_path: Path, session: ort.InferenceSession) -> None:
    manifest = load_manifest(model_path)
    check_against_session(manifest, session)
    columns = [(h.offset, h.size) for h in manifest.outputs.attributes.heads]
    assert columns[0][0] == 0 and sum(size for _, size in columns) == manifest.outputs.attributes.size
    assert "config" not in (manifest.public()["training"] or {})


def edited(raw: dict[str, Any], edit: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    data = copy.deepcopy(raw)
    edit(data)
    return data


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = data
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        node[last] = value

    return edit


GRAPH_MISMATCHES = {
    "input name": (_set("input.name", "pixels"), "graph input is 'images'"),
    "input height": (_set("input.height", 128), "N x 3 x 128"),
    "embedding name": (_set("outputs.embedding.name", "features"), "'features' is not in the graph outputs"),
    "embedding dim": (_set("outputs.embedding.dim", 512), "N x 512"),
}
SCHEMA_MISMATCHES = {
    "head offsets": (_set("outputs.attributes.heads.1.offset", 5), "starts at column 5, expected 4"),
    "attribute size": (_set("outputs.attributes.size", 31), "attributes.size is 31"),
    "binary head with 3 labels": (_set("outputs.attributes.heads.1.labels", ["a", "b", "c"]), "exactly 2 labels"),
    "softmax size": (_set("outputs.attributes.heads.0.size", 3), "must have size 4"),
    "unknown group member": (_set("groups.hair", ["hair", "wings"]), "wings"),
    "format version": (_set("format_version", 2), "format_version"),
    "unknown head type": (_set("outputs.attributes.heads.0.type", "sigmoid"), "type"),
}


@pytest.mark.parametrize("case", list(GRAPH_MISMATCHES))
def test_graph_mismatch_is_named(raw: dict[str, Any], session: ort.InferenceSession, case: str) -> None:
    edit, words = GRAPH_MISMATCHES[case]
    manifest = Manifest.model_validate(edited(raw, edit))
    with pytest.raises(ManifestError) as error:
        check_against_session(manifest, session)
    assert words in str(error.value)


@pytest.mark.parametrize("case", list(SCHEMA_MISMATCHES))
def test_invalid_manifest_is_named(raw: dict[str, Any], model_path: Path, tmp_path: Path, case: str) -> None:
    edit, words = SCHEMA_MISMATCHES[case]
    onnx_copy = tmp_path / "m.onnx"
    shutil.copy(model_path, onnx_copy)
    manifest_path(onnx_copy).write_text(json.dumps(edited(raw, edit)))
    with pytest.raises(ManifestError) as error:
        load_manifest(onnx_copy)
    assert words in str(error.value) and str(manifest_path(onnx_copy)) in str(error.value)


def test_missing_or_unreadable_manifest(model_path: Path, tmp_path: Path) -> None:
    onnx_copy = tmp_path / "m.onnx"
    shutil.copy(model_path, onnx_copy)
    with pytest.raises(ManifestError, match="not found beside the model"):
        load_manifest(onnx_copy)
    manifest_path(onnx_copy).write_text("{broken")
    with pytest.raises(ManifestError, match="not readable JSON"):
        load_manifest(onnx_copy)


def test_manifest_of_another_export_is_refused(raw: dict[str, Any], model_path: Path, tmp_path: Path) -> None:
    onnx_copy = tmp_path / "m.onnx"
    onnx_copy.write_bytes(model_path.read_bytes() + b"\0")  # another file: checked before loading
    manifest_path(onnx_copy).write_text(json.dumps(raw))
    with pytest.raises(ManifestError, match="does not match"):
        check_model(load_manifest(onnx_copy), onnx_copy)
