"""`personid eval` on a checkpoint and on its ONNX export (ONNX Runtime + manifest): one JSON object, same figures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from personid.manifest import load_manifest
from synth import generate
from training.config import load_config
from training.data.datasets import load_dataset
from training.data.transforms import EvalTransform, build_eval_transform
from training.engine.checkpoint import load_model, save_checkpoint
from training.evaluation.evaluate import aligned_targets, extract, main, onnx_runner, torch_runner
from training.modeling.model import build_model

REID_KEYS = {"rank1", "rank5", "rank10", "mAP", "mINP"}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("eval") / "synth"
    generate(
        root,
        identities=10,
        test_identities=5,
        cameras=2,
        images_per_identity=4,
        seed=1,
        height=64,
        width=32,
        progress=False,
    )
    return root


@pytest.fixture(scope="module")
def checkpoint(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    cfg = load_config(None, ["model.pretrained=null", "model.embedding_dim=32", "data.height=64", "data.width=32"])
    split = load_dataset(data)
    model = build_model(cfg.model, 5, split.schema)
    model.train()(torch.randn(8, 3, 64, 32))  # BN statistics away from init, as after training
    path = tmp_path_factory.mktemp("ckpt") / "last.pt"
    save_checkpoint(path, model, config=cfg.to_dict(), schema=split.schema, num_classes=5, epoch=1, dataset=str(data))
    return path


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> dict:
    assert main(args) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1, "eval prints exactly one JSON line on stdout"
    return json.loads(out[0])


def test_eval_checkpoint_prints_one_json_object(data: Path, checkpoint: Path, capsys: pytest.CaptureFixture) -> None:
    result = _run(["--checkpoint", str(checkpoint), "--data", str(data), "--workers", "0"], capsys)
    assert set(result["reid"]) >= REID_KEYS and set(result["reid_centroid"]) >= REID_KEYS
    for value in [*result["reid"].values(), *result["reid_centroid"].values()]:
        assert 0.0 <= value <= 1.0
    attributes = result["attributes"]
    assert {"mA", "per_attribute", "instance"} <= set(attributes)
    assert 0.0 <= attributes["mA"] <= 1.0
    assert "gender" in attributes["per_attribute"] and "upper_color.red" in attributes["per_attribute"]
    assert result["model"]["epoch"] == 1


def test_eval_onnx_runs_the_manifest_and_matches_checkpoint(
    data: Path, checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from training.export.exporter import export_checkpoint

    onnx_path = tmp_path / "m.onnx"
    export_checkpoint(checkpoint, onnx_path, verify=False, exporter="torchscript")
    capsys.readouterr()
    result = _run(["--onnx", str(onnx_path), "--data", str(data), "--workers", "0"], capsys)
    assert set(result["reid"]) >= REID_KEYS and set(result["reid_centroid"]) >= REID_KEYS
    assert 0.0 <= result["attributes"]["mA"] <= 1.0
    assert result["model"]["model_id"].startswith("sha256-")

    # Same images through both runtimes with the preprocessing each one is given (config vs manifest).
    model, _ = load_model(checkpoint)
    manifest = load_manifest(onnx_path)
    records = load_dataset(data).gallery
    heads = len(model.schema.heads)
    emb_t, probs_t = extract(torch_runner(model, "cpu"), records, build_eval_transform(64, 32), heads, 16)
    transform = EvalTransform(manifest.input)
    emb_o, probs_o = extract(onnx_runner(onnx_path, manifest), records, transform, heads, 16)
    np.testing.assert_allclose(emb_o, emb_t, atol=1e-4)
    np.testing.assert_allclose(probs_o, probs_t, atol=1e-4)


def test_eval_errors_are_clear(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lonely = tmp_path / "lonely.onnx"
    lonely.write_bytes(b"not really onnx")
    assert main(["--onnx", str(lonely), "--data", str(data)]) == 2
    assert "manifest" in capsys.readouterr().err
    assert main(["--checkpoint", str(tmp_path / "none.pt"), "--data", str(data)]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_targets_follow_the_model_head_order(data: Path) -> None:
    split = load_dataset(data)
    heads = list(reversed(split.schema.heads))
    records = [r for r in split.gallery if r.attrs is not None][:3]
    targets = aligned_targets(records, split.schema, heads)
    np.testing.assert_array_equal(targets, np.array([list(reversed(r.attrs)) for r in records]))
