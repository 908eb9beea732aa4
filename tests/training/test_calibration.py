"""Per-head temperature scaling: it repairs a known mis-calibration, and the exported graph gives exactly the
eager model's calibrated probabilities (ONNX Runtime against PyTorch on generated images)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from personid.manifest import HeadSpec, load_manifest
from personid.session import open_session
from synth import generate
from training.data.datasets import load_dataset
from training.data.transforms import EvalTransform
from training.engine.checkpoint import load_model
from training.evaluation.evaluate import extract
from training.export.calibration import (
    calibration_figures,
    column_temperatures,
    fit_temperatures,
    logits_from_probabilities,
    probabilities,
    reliability_diagram,
)
from training.export.exporter import held_out_logits, main, run_onnx
from training.modeling.model import attribute_probabilities

from .test_export import HEIGHT, WIDTH, make_checkpoint

HEADS = [
    HeadSpec(name="gender", type="binary", labels=["male", "female"], offset=0, size=1),
    HeadSpec(name="color", type="softmax", labels=["red", "green", "blue"], offset=1, size=3),
]


def overconfident(n: int, scale: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from the true probabilities of logits z, reported as `scale` * z: over-confident by `scale`."""
    rng = np.random.default_rng(seed)
    binary = rng.normal(0, 1.5, (n, 1))
    multi = rng.normal(0, 1.5, (n, 3))
    gender = (rng.random(n) < 1 / (1 + np.exp(-binary[:, 0]))).astype(np.int64)
    p = np.exp(multi) / np.exp(multi).sum(1, keepdims=True)
    color = (rng.random((n, 1)) > p.cumsum(1)).sum(1)
    targets = np.stack([gender, color], axis=1)
    targets[:20, 0] = -1  # unknown labels are left out of the fit
    return np.concatenate([binary, multi], axis=1) * scale, targets


def test_temperature_undoes_overconfidence() -> None:
    logits, targets = overconfident(6000, scale=3.0)
    temperatures = fit_temperatures(logits, targets, HEADS)
    assert temperatures["gender"] == pytest.approx(3.0, rel=0.15)
    assert temperatures["color"] == pytest.approx(3.0, rel=0.15)
    check_logits, check_targets = overconfident(6000, scale=3.0, seed=1)
    before = calibration_figures(check_logits, check_targets, HEADS, None)
    after = calibration_figures(check_logits, check_targets, HEADS, temperatures)
    for head in ("gender", "color"):
        assert after["per_head"][head]["nll"] < before["per_head"][head]["nll"]
        assert after["per_head"][head]["ece"] < 0.5 * before["per_head"][head]["ece"]
    assert after["ece"] < 0.03 < before["ece"]
    # Decisions do not move: same argmax, same side of 0.5.
    p0, p1 = probabilities(check_logits, HEADS), probabilities(check_logits, HEADS, temperatures)
    np.testing.assert_array_equal(p0[:, 0] > 0.5, p1[:, 0] > 0.5)
    np.testing.assert_array_equal(p0[:, 1:].argmax(1), p1[:, 1:].argmax(1))


def test_calibrated_model_is_left_alone_and_underconfidence_is_sharpened() -> None:
    logits, targets = overconfident(6000, scale=1.0)
    assert fit_temperatures(logits, targets, HEADS)["gender"] == pytest.approx(1.0, rel=0.15)
    logits, targets = overconfident(6000, scale=0.5)
    assert fit_temperatures(logits, targets, HEADS)["color"] == pytest.approx(0.5, rel=0.15)


def test_reliability_diagram_is_a_png(tmp_path: Path) -> None:
    logits, targets = overconfident(500, scale=3.0)
    path = reliability_diagram(logits, targets, HEADS, {"gender": 3.0, "color": 3.0}, tmp_path / "r.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("calib") / "synth"
    generate(root, identities=12, test_identities=8, cameras=2, images_per_identity=4, seed=3, height=HEIGHT,
             width=WIDTH, progress=False)  # fmt: skip
    return root


def test_export_folds_the_temperatures_into_the_graph(data: Path, tmp_path: Path) -> None:
    checkpoint = make_checkpoint(tmp_path / "model.pt", seed=1)
    out, png = tmp_path / "models" / "calibrated.onnx", tmp_path / "reliability.png"
    argv = ["--checkpoint", str(checkpoint), "--out", str(out), "--calibrate-on", str(data)]
    assert main([*argv, "--reliability-png", str(png), "--images", str(data / "query")]) == 0
    manifest = load_manifest(out)
    assert manifest.calibration is not None and png.is_file()
    temperatures = manifest.calibration.temperatures
    assert set(temperatures) == set(manifest.heads)
    assert any(abs(t - 1.0) > 0.05 for t in temperatures.values())  # the check below could fail
    block = json.loads(out.with_suffix(".json").read_text())["calibration"]
    assert block["details"]["fit_images"] > 0 and block["details"]["check_images"] > 0
    assert {"nll_before", "nll_after", "per_head"} <= set(block["details"]) and block["ece_before"] is not None

    model, _ = load_model(checkpoint, map_location="cpu")
    heads = model.schema.heads
    logits, _, _ = held_out_logits(model, data, "auto", (HEIGHT, WIDTH, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]))
    with torch.no_grad():
        eager = attribute_probabilities(
            torch.from_numpy(logits) / torch.from_numpy(column_temperatures(heads, temperatures)), model.schema
        ).numpy()
    np.testing.assert_allclose(eager, probabilities(logits, heads, temperatures), atol=1e-5)

    split = load_dataset(data)
    records = [r for r in split.query + split.gallery if r.attrs is not None]
    session = open_session(out)
    _, graph = extract(lambda images: run_onnx(session, images.numpy()), records, EvalTransform(manifest.input),
                       len(heads))  # fmt: skip
    np.testing.assert_allclose(graph, eager, atol=1e-4)
    assert np.abs(graph - probabilities(logits, heads)).max() > 1e-3  # not the uncalibrated probabilities


def test_logits_recovered_from_graph_probabilities() -> None:
    logits, targets = overconfident(200, scale=1.0)
    probs = probabilities(logits, HEADS)
    recovered = logits_from_probabilities(probs, HEADS)
    np.testing.assert_allclose(probabilities(recovered, HEADS), probs, atol=1e-9)
    np.testing.assert_allclose(recovered[:, 0], logits[:, 0], atol=1e-6)  # binary: the log-odds themselves
    assert fit_temperatures(recovered, targets, HEADS) == pytest.approx(fit_temperatures(logits, targets, HEADS))


def test_a_head_without_mistakes_keeps_its_temperature() -> None:
    logits, targets = overconfident(300, scale=3.0)
    targets[:, 0] = np.where(targets[:, 0] >= 0, (logits[:, 0] > 0).astype(np.int64), -1)  # gender always right
    temperatures = fit_temperatures(logits, targets, HEADS)
    assert temperatures["gender"] == 1.0 and temperatures["color"] > 2.0
