"""`personid proxy` on a small generated proxy set: one report for an ONNX model, its checkpoint and a peer, with
the per-head balanced accuracy of the heads issue 12 names; the set is generated once and then reused."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import pytest

import synth
from training.evaluation.proxy import REPORTED_HEADS, main, style_options
from training.export.exporter import main as export_main
from training.peer import PeerNet, save_peer

from .test_export import make_checkpoint

pytestmark = pytest.mark.slow  # trains / exports real networks: a minute or more on 2 cores

SIZES = ["--identities", "10", "--test-identities", "6", "--images-per-identity", "4", "--workers", "1"]


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    assert main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1, "proxy prints exactly one JSON line on stdout"
    return json.loads(lines[0])


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("proxy-models")
    checkpoint = make_checkpoint(root / "model.pt", seed=2)
    onnx = root / "tiny.onnx"
    assert export_main(["--checkpoint", str(checkpoint), "--out", str(onnx), "--no-verify"]) == 0
    return {"checkpoint": checkpoint, "onnx": onnx}


def test_onnx_and_checkpoint_give_the_same_proxy_row(
    models: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, out = tmp_path / "proxy", tmp_path / "report.json"
    onnx = run(["--onnx", str(models["onnx"]), "--data", str(data), "--out", str(out), *SIZES], capsys)
    assert onnx["proxy"] == {"data": str(data), "style": "classic", "generated": True}
    assert json.loads(out.read_text()) == onnx
    row = onnx["summary"]
    assert set(row["balanced_accuracy"]) == set(REPORTED_HEADS)
    assert all(0.0 <= v <= 1.0 for v in row["balanced_accuracy"].values())
    assert row["balanced_min"] == min(row["balanced_accuracy"].values())
    assert row["balanced_mean"] == pytest.approx(sum(row["balanced_accuracy"].values()) / len(REPORTED_HEADS))
    assert row["rank1"] == onnx["reid"]["rank1"] and row["mA"] == onnx["attributes"]["mA"]

    again = run(["--checkpoint", str(models["checkpoint"]), "--data", str(data), *SIZES], capsys)
    assert again["proxy"]["generated"] is False  # reused, not drawn again
    assert again["summary"]["rank1"] == pytest.approx(row["rank1"], abs=0.02)
    assert again["summary"]["mAP"] == pytest.approx(row["mAP"], abs=0.02)
    for head, value in row["balanced_accuracy"].items():
        assert again["summary"]["balanced_accuracy"][head] == pytest.approx(value, abs=0.05), head


def test_peer_is_scored_for_reid_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    info = {"num_classes": 4, "height": 64, "width": 32, "epochs": 0}
    peer = save_peer(PeerNet(4), info, tmp_path / "peer.pt")
    report = run(["--peer", str(peer), "--data", str(tmp_path / "proxy"), *SIZES], capsys)
    assert report["summary"]["balanced_accuracy"] == {} and report["summary"]["mA"] is None
    assert 0.0 <= report["summary"]["mAP"] <= 1.0 and report["model"]["peer"] == str(peer)


def test_styles() -> None:
    assert style_options("classic") in ({}, {"realism": pytest.importorskip("synth.realism").OFF})
    if "realism" in inspect.signature(synth.generate).parameters:
        realism = style_options("heldout")["realism"]
        assert realism.heldout_style and all(realism.enabled().get(f) for f in ("bodies", "camera", "backgrounds"))
    else:
        with pytest.raises(ValueError, match="realism switches"):
            style_options("heldout")
    with pytest.raises(ValueError, match="unknown proxy style"):
        style_options("photo")
