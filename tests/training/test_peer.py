"""`personid peer` end to end at tiny scale: torchreid's recipe trains one epoch on a generated set from the
ImageNet weights, and our metrics score it in-domain and on a proxy set (metrics JSON checked)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from synth import generate
from training.modeling.backbones import DEEP_SORT, build_backbone
from training.peer import PeerNet, load_peer, main

pytestmark = pytest.mark.slow  # trains / exports real networks: a minute or more on 2 cores

REID_KEYS = {"rank1", "rank5", "rank10", "mAP", "mINP"}


@pytest.fixture(scope="module")
def sets(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("peer")
    common = {"cameras": 2, "images_per_identity": 4, "height": 64, "width": 32, "progress": False}
    generate(root / "data", identities=18, test_identities=8, seed=2, **common)
    generate(root / "proxy", identities=10, test_identities=6, seed=9, **common)
    return root / "data", root / "proxy"


def test_peer_starts_from_our_imagenet_weights() -> None:
    body, _ = build_backbone("mobilenet_v2", DEEP_SORT)
    peer = PeerNet(5)
    for (name, ours), theirs in zip(body.state_dict().items(), peer.features.state_dict().values(), strict=True):
        assert torch.equal(ours, theirs), name
    peer.eval()
    assert peer(torch.zeros(2, 3, 64, 32)).shape == (2, 1280)  # torchreid's test-time feature v


def test_peer_trains_and_reports_our_metrics(
    sets: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, proxy = sets
    out = tmp_path / "peer"
    argv = ["--data", str(data), "--proxy", str(proxy), "--out", str(out), "--epochs", "1", "--height", "64"]
    assert main([*argv, "--width", "32", "--workers", "0", "--device", "cpu"]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    result = json.loads((out / "metrics.json").read_text())
    assert printed["in_domain"] == result["in_domain"]["reid"]
    model = result["model"]
    assert model["epochs"] == 1 and model["num_classes"] == 10 and model["train_images"] == 40
    assert model["recipe"]["loss"]["triplet_margin"] == 0.3 and model["recipe"]["engine"] == "ImageTripletEngine"
    for scored in (result["in_domain"], result["proxies"][str(proxy)]):
        assert set(scored["reid"]) == REID_KEYS and set(scored["reid_centroid"]) == REID_KEYS
        assert all(0.0 <= v <= 1.0 for v in scored["reid"].values())
        assert scored["attributes"]["mA"] is None  # the peer has no attribute heads
    assert result["in_domain"]["images"]["query"] > 0

    peer, info = load_peer(out / "peer.pt")
    assert info["num_classes"] == 10 and not peer.training
    # Training moved the weights away from the ImageNet start.
    body, _ = build_backbone("mobilenet_v2", DEEP_SORT)
    assert not torch.equal(body.state_dict()["18.0.weight"], peer.features.state_dict()["18.0.weight"])


def test_too_few_identities_for_a_batch_is_a_clear_error(sets: tuple[Path, Path], tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    data, _ = sets
    assert main(["--data", str(data), "--out", str(tmp_path), "--identities-per-batch", "64", "--epochs", "1"]) == 2
    assert "fewer than P = 64" in capsys.readouterr().err
