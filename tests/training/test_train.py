"""`personid train` end to end on a tiny generated set (configs/smoke.yaml): files, finite losses, resume."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import pytest
import torch

from synth import generate
from training.config import load_config
from training.data.datasets import load_dataset
from training.engine import Criterion, lr_factor, task_weights
from training.engine.checkpoint import load_model, read_checkpoint
from training.train import main

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "configs" / "smoke.yaml"


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_smoke_trains_end_to_end_and_resumes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, run = tmp_path / "data", tmp_path / "run"
    # `data` does not exist: the smoke config's `data.synthesize` block generates it first.
    assert main(["--config", str(SMOKE), "--data", str(data), "--output", str(run), "--device", "cpu"]) == 0
    assert (data / "bounding_box_train").is_dir() and (data / "market_attribute.mat").is_file()
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["epoch"] == 2 and 0.0 <= summary["eval"]["reid"]["mAP"] <= 1.0

    for name in ("last.pt", "best.pt", "metrics.jsonl", "curves.png", "config.yaml"):
        assert (run / name).is_file(), name
    assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    records = _records(run)
    assert [r["epoch"] for r in records] == [1, 2]
    tasks = {"id", "reid", "age", "gender", "upper_color", "lower_color"}
    for record in records:
        assert tasks <= set(record["losses"]) and tasks <= set(record["weights"])
        assert all(math.isfinite(v) for v in record["losses"].values())
        assert set(record["eval"]) >= {"reid", "reid_centroid", "attributes"}
    assert load_config(run / "config.yaml").data.path == str(data)

    model, info = load_model(run / "last.pt")
    assert info["epoch"] == 2 and info["num_classes"] == 6  # 12 identities, 6 of them for testing
    assert model(torch.rand(1, 3, 64, 32))["embedding"].shape == (1, 64)
    before = read_checkpoint(run / "last.pt")["model"]

    # --resume continues at epoch 3 from the saved weights, optimiser and DTP state.
    assert main(["--config", str(SMOKE), "--data", str(data), "--output", str(run), "--epochs", "3", "--resume"]) == 0
    records = _records(run)
    assert [r["epoch"] for r in records] == [1, 2, 3]
    state = read_checkpoint(run / "last.pt")
    assert state["epoch"] == 3
    assert [h["epoch"] for h in state["training_state"]["history"]] == [1, 2, 3]
    assert any(not torch.equal(before[k], state["model"][k]) for k in before)


def test_missing_data_without_synthesize_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--config", str(SMOKE), "--data", str(tmp_path / "nothing"), "--set", "data.synthesize=null"])
    assert code == 2
    assert "does not exist" in capsys.readouterr().err


def test_resume_without_checkpoint_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    assert main(["--config", str(SMOKE), "--data", str(data), "--output", str(tmp_path / "run"), "--resume"]) == 2
    assert "last.pt does not exist" in capsys.readouterr().err


def test_lr_schedule_warms_up_then_decays() -> None:
    cfg = load_config(None).optim
    factors = [lr_factor(step, 10, 100, cfg) for step in range(100)]
    assert factors[0] == pytest.approx(cfg.warmup_factor)
    assert factors[10] == pytest.approx(1.0)
    assert factors[-1] < 0.05 and all(a >= b for a, b in itertools.pairwise(factors[10:]))


def test_task_weights_only_steer_selected_tasks() -> None:
    from training.engine.dtp import DynamicTaskPrioritization

    dtp = DynamicTaskPrioritization(["id", "reid", "hat"], normalize=True)
    dtp.update({"id": 0.9, "reid": 0.3, "hat": 0.5})
    everything = task_weights(dtp, [])
    assert sum(everything.values()) == pytest.approx(3.0)
    assert everything["reid"] > everything["hat"] > everything["id"]
    some = task_weights(dtp, ["id", "reid"])
    assert some["hat"] == 1.0 and some["id"] + some["reid"] == pytest.approx(2.0)


def test_criterion_follows_the_attribute_balance_and_kpi_settings(tmp_path: Path) -> None:
    generate(tmp_path / "d", identities=12, test_identities=6, cameras=2, images_per_identity=2, progress=False)
    split = load_dataset(tmp_path / "d")
    cfg = load_config(SMOKE)
    out = {
        "feature": torch.randn(4, 8),
        "id_logits": torch.randn(4, 6),
        "attr_logits": torch.full((4, split.schema.num_outputs), -5.0),
    }
    labels = torch.tensor([0, 0, 1, 1])
    attrs = torch.tensor([r.attrs for r in split.train[:4]])
    hat = [h.name for h in split.schema.heads].index("hat")
    attrs[:, hat] = torch.tensor([1, 0, 0, 0])  # one hat in four; the logits say "no hat" everywhere

    plain = Criterion(cfg, 6, 8, split)
    assert plain(out, labels, attrs)[1]["hat"] == pytest.approx(0.75)
    assert torch.isfinite(plain.attr_loss.pos_ratios[hat]) and not plain.attr_loss.logit_offsets.any()
    cfg.dtp.balanced_kpi = True
    cfg.loss.attributes.balance = "logit_adjust"
    balanced = Criterion(cfg, 6, 8, split)
    assert balanced(out, labels, attrs)[1]["hat"] == pytest.approx(0.5)
    assert torch.isnan(balanced.attr_loss.pos_ratios).all() and balanced.attr_loss.logit_offsets.any()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_smoke_trains_on_cuda_with_amp(tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = [
        "--config",
        str(SMOKE),
        "--data",
        str(tmp_path / "data"),
        "--output",
        str(run),
        "--device",
        "cuda",
        "--set",
        "amp=true",
        "--epochs",
        "1",
    ]
    assert main(args) == 0
    record = _records(run)[-1]
    assert all(math.isfinite(v) for v in record["losses"].values())
    assert read_checkpoint(run / "last.pt")["training_state"]["scaler"]  # the GradScaler was active
