"""`model_id` names everything that makes embeddings comparable and stored labels meaningful: the ONNX bytes, the
manifest's `input` (preprocessing) and `outputs` (embedding, heads). Issue 13 finding 5: the same ONNX bytes with
`input.mean/std` edited, or the gender labels swapped, started on an existing gallery and mixed embeddings.
"""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.gallery import ModelMismatch
from app.main import create_app
from app.settings import Settings
from personid.manifest import ManifestError, check_model, load_manifest, manifest_path, model_id, parse_manifest
from tests.app.conftest import image_file, person_image


def _raw(model_path: Path) -> dict[str, Any]:
    return json.loads(manifest_path(model_path).read_text())


def _head(raw: dict[str, Any], name: str) -> dict[str, Any]:
    return next(head for head in raw["outputs"]["attributes"]["heads"] if head["name"] == name)


def _swap_gender(raw: dict[str, Any]) -> None:
    _head(raw, "gender")["labels"].reverse()


def _edit_mean_std(raw: dict[str, Any]) -> None:
    raw["input"]["mean"], raw["input"]["std"] = [0.5, 0.5, 0.5], [0.5, 0.5, 0.5]


def _swap_two_heads(raw: dict[str, Any]) -> None:
    """Two binary heads trade places (names swap, columns stay): every stored tag of them now means the other."""
    a, b = [head for head in raw["outputs"]["attributes"]["heads"] if head["type"] == "binary"][:2]
    a["name"], b["name"] = b["name"], a["name"]
    for members in raw["groups"].values():
        members[:] = [b["name"] if m == a["name"] else a["name"] if m == b["name"] else m for m in members]


# Every edit that changes an embedding or what a stored label means.
MEANINGFUL_EDITS: dict[str, Callable[[dict[str, Any]], None]] = {
    "mean and std": _edit_mean_std,
    "std alone": lambda raw: raw["input"].update(std=[0.2, 0.2, 0.2]),
    "scale": lambda raw: raw["input"].update(scale=1.0),
    "input size": lambda raw: raw["input"].update(height=raw["input"]["height"] * 2),
    "gender labels swapped": _swap_gender,
    "a label renamed": lambda raw: _head(raw, "gender")["labels"].__setitem__(0, "man"),
    "two heads swapped": _swap_two_heads,
    "embedding not normalised": lambda raw: raw["outputs"]["embedding"].update(normalized=False),
}


def _id_of(model_path: Path, raw: dict[str, Any]) -> str:
    manifest = parse_manifest(raw)
    return model_id(model_path, manifest.input, manifest.outputs)


@pytest.mark.parametrize("case", list(MEANINGFUL_EDITS))
def test_every_meaningful_manifest_edit_changes_the_id(model_path: Path, case: str) -> None:
    raw = _raw(model_path)
    assert _id_of(model_path, raw) == raw["model_id"]
    edited = copy.deepcopy(raw)
    MEANINGFUL_EDITS[case](edited)
    assert _id_of(model_path, edited) != raw["model_id"]


def test_the_id_ignores_what_changes_no_embedding_or_label(model_path: Path) -> None:
    """Display groups, metrics, names and the JSON layout (key order, spelled-out defaults) keep the id."""
    raw = _raw(model_path)
    edited = copy.deepcopy(raw)
    edited.update(
        name="renamed",
        metrics={"reid": {"rank1": 1.0}},
        groups={"all": [head["name"] for head in raw["outputs"]["attributes"]["heads"]]},
    )
    edited["input"] = dict(reversed(list(edited["input"].items())))
    del edited["input"]["color_order"], edited["input"]["dtype"]  # their defaults
    edited["input"]["scale"] = 255  # the same number
    assert _id_of(model_path, edited) == raw["model_id"]
    assert (
        model_id(model_path.read_bytes() + b"\0", parse_manifest(raw).input, parse_manifest(raw).outputs)
        != (raw["model_id"])
    )


def _copy_with(model_path: Path, folder: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    folder.mkdir()
    onnx_copy = folder / "m.onnx"
    shutil.copy(model_path, onnx_copy)
    raw = _raw(model_path)
    edit(raw)
    manifest_path(onnx_copy).write_text(json.dumps(raw, indent=2))
    return onnx_copy


@pytest.mark.parametrize("case", ["mean and std", "gender labels swapped"])
def test_an_edited_manifest_is_refused_before_serving(model_path: Path, tmp_path: Path, case: str) -> None:
    onnx_copy = _copy_with(model_path, tmp_path / "edited", MEANINGFUL_EDITS[case])
    with pytest.raises(ManifestError, match=r"preprocessing .* or heads/embedding \(outputs\) changed since export"):
        check_model(load_manifest(onnx_copy), onnx_copy)


@pytest.mark.parametrize("case", ["mean and std", "gender labels swapped"])
def test_an_edited_manifest_never_reaches_an_existing_gallery(
    model_path: Path, tmp_path: Path, make_settings: Callable[..., Settings], case: str
) -> None:
    """The issue's cases on a gallery with an identity: refused at start whether the edit kept the old id or
    wrote the new one; the unedited model restarts and matches itself at ~1, as before."""
    settings = make_settings()
    probe = {"image": image_file(person_image(21))}
    with TestClient(create_app(settings)) as client:
        enrolled = client.post("/v1/identities", data={"identity_id": "self"}, files=[("images", probe["image"])])
        assert enrolled.status_code == 201, enrolled.text

    edited = _copy_with(model_path, tmp_path / "edited", MEANINGFUL_EDITS[case])
    with (
        pytest.raises(ManifestError, match="changed since export"),
        TestClient(create_app(settings.model_copy(update={"model_path": edited}))),
    ):
        pass

    def restamped(raw: dict[str, Any]) -> None:  # someone "fixes" the id: another model for the gallery
        MEANINGFUL_EDITS[case](raw)
        raw["model_id"] = _id_of(model_path, raw)

    relabelled = _copy_with(model_path, tmp_path / "restamped", restamped)
    with (
        pytest.raises(ModelMismatch, match="Re-index"),
        TestClient(create_app(settings.model_copy(update={"model_path": relabelled}))),
    ):
        pass

    with TestClient(create_app(settings)) as client:
        matches = client.post("/v1/search", files=probe).json()["matches"]
    assert matches[0]["identity_id"] == "self" and matches[0]["score"] == pytest.approx(1.0, abs=1e-4)


def test_a_manifest_of_the_old_definition_is_named(model_path: Path, tmp_path: Path) -> None:
    """Exported before the id covered the manifest: say so, and what the id is now, instead of "edited"."""

    def old_id(raw: dict[str, Any]) -> None:
        raw["model_id"] = "sha256-" + hashlib.sha256(model_path.read_bytes()).hexdigest()[:16]

    onnx_copy = _copy_with(model_path, tmp_path / "old", old_id)
    with pytest.raises(ManifestError, match="older personid from the ONNX bytes alone") as refused:
        check_model(load_manifest(onnx_copy), onnx_copy)
    assert _raw(model_path)["model_id"] in str(refused.value) and "re-indexed" in str(refused.value)


def test_shipped_default_manifest_carries_the_id_of_its_graph_and_spec() -> None:
    """models/default.json was re-stamped with the id's current definition; its ONNX file is unchanged."""
    onnx = Path(__file__).resolve().parents[2] / "models" / "default.onnx"
    manifest = load_manifest(onnx)
    assert manifest.model_id == model_id(onnx, manifest.input, manifest.outputs)
