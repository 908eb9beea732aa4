"""`personid export` on a real PersonModel (MobileNetV2 with the offline deep-sort weights, 64x32 input).

The graph is checked with ONNX Runtime alone (no torch in the loop) on generated Market-format images.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch

from personid.manifest import ManifestError, check_model, model_id, parse_manifest
from personid.session import open_session
from training.config import TrainConfig
from training.data.schema import AttributeSchema
from training.engine.checkpoint import load_model, save_checkpoint
from training.export.exporter import (
    ExportError,
    ExportWrapper,
    export_onnx,
    load_images,
    main,
    run_onnx,
    verify_against_torch,
)
from training.modeling.model import build_model

HEIGHT, WIDTH = 64, 32
DOCUMENTED_KEYS = {
    "format_version", "model_id", "name", "created", "opset", "backbone", "input", "outputs", "groups",
    "training", "metrics", "verification",
}  # fmt: skip


def make_checkpoint(path: Path, seed: int) -> Path:
    """A checkpoint of the default architecture with heads that give spread-out, input-dependent outputs."""
    torch.manual_seed(seed)
    config = TrainConfig()
    config.data.height, config.data.width = HEIGHT, WIDTH
    schema = AttributeSchema.builtin("market1501")
    model = build_model(config.model, 10, schema)
    with torch.no_grad():
        model.attr_head.weight.normal_(0, 0.05)
        model.arm.gate.weight.normal_(0, 0.05)
        model.bnneck.running_mean.normal_(0, 0.1)
    metrics = {"reid": {"mAP": 0.5, "rank1": 0.7}, "reid_centroid": {}, "attributes": {"mA": 0.6}}
    save_checkpoint(path, model, config=config.to_dict(), schema=schema, num_classes=10, epoch=3,
                    metrics=metrics, dataset="synth")  # fmt: skip
    return path


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("export")
    checkpoint = make_checkpoint(root / "model.pt", seed=0)
    out = root / "models" / "tiny.onnx"
    argv = ["--checkpoint", str(checkpoint), "--out", str(out), "--fp16", "--int8", "--calibration-images", "16"]
    assert main(argv) == 0
    images = load_images(7, HEIGHT, WIDTH, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225], seed=1)
    return {"root": root, "checkpoint": checkpoint, "out": out, "images": images}


def manifest_of(onnx_path: Path) -> dict[str, Any]:
    return json.loads(onnx_path.with_suffix(".json").read_text())


def id_of(onnx_path: Path, manifest: dict[str, Any]) -> str:
    """The model id of `onnx_path` read as `manifest` says (its input and outputs are part of the id)."""
    spec = parse_manifest(manifest)
    return model_id(onnx_path, spec.input, spec.outputs)


def test_manifest_has_documented_keys(exported: dict[str, Any]) -> None:
    out = exported["out"]
    manifest = manifest_of(out)
    assert set(manifest) >= DOCUMENTED_KEYS
    assert manifest["format_version"] == 1
    assert manifest["model_id"] == id_of(out, manifest)
    assert manifest["name"] == "tiny" and manifest["backbone"] == "mobilenet_v2" and manifest["precision"] == "fp32"
    assert manifest["opset"] == 18 and manifest["exporter"].endswith("/dynamo")
    assert manifest["input"]["height"] == HEIGHT and manifest["input"]["width"] == WIDTH
    assert manifest["outputs"]["embedding"] == {"name": "embedding", "dim": 512, "normalized": True}
    attrs = manifest["outputs"]["attributes"]
    assert attrs["size"] == 30 and len(attrs["heads"]) == 12
    assert attrs["heads"][1] == {
        "name": "gender",
        "type": "binary",
        "labels": ["male", "female"],
        "offset": 4,
        "size": 1,
    }
    assert manifest["groups"]["accessories"] == ["hat", "backpack", "bag", "handbag"]
    assert manifest["training"]["dataset"] == "synth" and manifest["training"]["epochs"] == 3
    assert manifest["training"]["config"]["data"]["height"] == HEIGHT
    assert manifest["metrics"]["reid"]["mAP"] == 0.5
    # The default architecture (input size does not change a CNN's weights) fits in one small file.
    assert out.stat().st_size <= 25e6
    assert not list(out.parent.glob("*.data"))


def test_onnx_outputs_follow_the_contract(exported: dict[str, Any]) -> None:
    manifest = manifest_of(exported["out"])
    session = open_session(exported["out"])
    emb, attr = run_onnx(session, exported["images"])
    assert emb.shape == (7, manifest["outputs"]["embedding"]["dim"])
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert attr.shape == (7, manifest["outputs"]["attributes"]["size"])
    for head in manifest["outputs"]["attributes"]["heads"]:
        cols = attr[:, head["offset"] : head["offset"] + head["size"]]
        assert np.all((cols >= 0) & (cols <= 1)), head["name"]
        if head["type"] == "softmax":
            np.testing.assert_allclose(cols.sum(axis=1), 1.0, atol=1e-5, err_msg=head["name"])
    # Different people give different outputs: the checks above are not met by a collapsed model.
    assert np.min(1 - emb @ emb.T + np.eye(7)) > 1e-3
    assert attr.std(axis=0).max() > 1e-2


def test_batch_one_equals_batch_seven(exported: dict[str, Any]) -> None:
    for name in ("tiny.onnx", "tiny.fp16.onnx", "tiny.int8.onnx"):
        session = open_session(exported["out"].parent / name)
        together = run_onnx(session, exported["images"])
        alone = run_onnx(session, exported["images"], batch_size=1)
        for a, b in zip(together, alone, strict=True):
            np.testing.assert_allclose(a, b, atol=1e-5, err_msg=name)


def test_verification_recorded_within_tolerance(exported: dict[str, Any]) -> None:
    verification = manifest_of(exported["out"])["verification"]
    assert verification["images"] == 8 and verification["reference"] == "pytorch"
    assert 0 <= verification["max_abs_diff_embedding"] <= 1e-4
    assert 0 <= verification["max_abs_diff_attributes"] <= 1e-4
    assert 0 <= verification["batch_consistency"] <= 1e-5


def test_fp16_variant_keeps_float32_io_and_agrees(exported: dict[str, Any]) -> None:
    path = exported["out"].parent / "tiny.fp16.onnx"
    manifest = manifest_of(path)
    assert manifest["precision"] == "fp16" and manifest["model_id"] == id_of(path, manifest)
    session = open_session(path)
    assert session.get_inputs()[0].type == "tensor(float)"
    assert {o.type for o in session.get_outputs()} == {"tensor(float)"}
    figures = manifest["verification"]
    assert figures["reference"] == "onnx-fp32"
    assert figures["max_abs_diff_attributes"] <= figures["tolerance"]
    assert figures["embedding_cosine_min"] > 0.999
    assert path.stat().st_size < 0.7 * exported["out"].stat().st_size


def test_int8_variant_reports_agreement(exported: dict[str, Any]) -> None:
    path = exported["out"].parent / "tiny.int8.onnx"
    manifest = manifest_of(path)
    assert manifest["precision"] == "int8" and manifest["model_id"] == id_of(path, manifest)
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    figures = manifest["verification"]
    assert figures["calibration_images"] == 16 and figures["fp32_convs"] == 4
    assert figures["min_cosine"] <= figures["embedding_cosine_min"] <= figures["embedding_cosine_mean"] <= 1 + 1e-6
    heads = {h["name"] for h in manifest["outputs"]["attributes"]["heads"]}
    assert set(figures["attribute_agreement"]) == heads
    assert all(0 <= v <= 1 for v in figures["attribute_agreement"].values())
    assert path.stat().st_size < 0.6 * exported["out"].stat().st_size


def test_model_id_follows_the_weights(exported: dict[str, Any]) -> None:
    root = exported["root"]
    other, _ = load_model(make_checkpoint(root / "other.pt", seed=1))
    same, _ = load_model(exported["checkpoint"])
    export_onnx(other, root / "other.onnx", HEIGHT, WIDTH)
    export_onnx(same, root / "same.onnx", HEIGHT, WIDTH)
    manifest = manifest_of(exported["out"])
    assert id_of(root / "same.onnx", manifest) == manifest["model_id"]
    assert id_of(root / "other.onnx", manifest) != manifest["model_id"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m["outputs"]["embedding"].update(dim=256), "N x 256"),
        (lambda m: m["outputs"]["attributes"].update(size=29), "attributes.size is 29"),
        (lambda m: m["input"].update(name="image"), "the graph input is 'images' but the manifest says 'image'"),
        (lambda m: m["input"].update(height=128), "the manifest says N x 3 x 128"),
        (lambda m: m["outputs"]["attributes"]["heads"][1].update(offset=5), "head 'gender' starts at column 5"),
        (lambda m: m.update(model_id="sha256-0000000000000000"), "does not match"),
        (lambda m: m["groups"].update(extra=["beard"]), "groups name heads that do not exist: ['beard']"),
        (lambda m: m.pop("outputs"), "outputs: Field required"),
    ],
)
def test_mismatched_manifest_is_refused(exported: dict[str, Any], change: Any, message: str) -> None:
    """Export checks what it writes with the service's own checks (`personid.manifest.check_model`)."""
    manifest = manifest_of(exported["out"])
    check_model(parse_manifest(manifest), exported["out"])
    broken = copy.deepcopy(manifest)
    change(broken)
    with pytest.raises(ManifestError) as info:
        edited = parse_manifest(broken)
        if edited.model_id == manifest["model_id"]:  # re-stamped, so that the graph check is what refuses it
            edited = edited.model_copy(update={"model_id": model_id(exported["out"], edited.input, edited.outputs)})
        check_model(edited, exported["out"])
    assert message in str(info.value)


def test_verification_failure_stops_the_export(exported: dict[str, Any]) -> None:
    model, _ = load_model(exported["checkpoint"])
    with torch.no_grad():
        model.attr_head.bias.add_(0.5)  # PyTorch now differs from the exported graph
    with pytest.raises(ExportError, match="max_abs_diff_attributes"):
        verify_against_torch(ExportWrapper(model), exported["out"], exported["images"])


def test_cli_reports_bad_input(tmp_path: Path, exported: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--checkpoint", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "m.onnx")]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert main(["--checkpoint", str(exported["checkpoint"]), "--out", str(tmp_path / "m.pt")]) == 1
    assert "--out must end in .onnx" in capsys.readouterr().err
    metrics = tmp_path / "metrics.json"
    metrics.write_text("[1, 2]")
    argv = ["--checkpoint", str(exported["checkpoint"]), "--out", str(tmp_path / "m.onnx"), "--metrics", str(metrics)]
    assert main(argv) == 1
    assert "expected a JSON object" in capsys.readouterr().err
