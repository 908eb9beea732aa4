"""Dynamic Task Prioritization: EMA, clamp, weights formula, fixed weights, state round trip, KPIs."""

from __future__ import annotations

import math

import pytest
import torch

from training.engine.dtp import DynamicTaskPrioritization, batch_rank1, classification_accuracy


def test_ema_first_update_sets_then_smooths_and_skips_nan() -> None:
    dtp = DynamicTaskPrioritization(["reid", "attr"], alpha=0.9)
    dtp.update({"reid": 0.5})
    assert dtp.kpis == {"reid": 0.5}
    dtp.update({"reid": 0.9, "attr": math.nan})
    assert dtp.kpis["reid"] == pytest.approx(0.9 * 0.9 + 0.1 * 0.5)
    assert "attr" not in dtp.kpis
    dtp.update({"attr": 0.3})
    dtp.update({"attr": 0.7})
    assert dtp.kpis["attr"] == pytest.approx(0.9 * 0.7 + 0.1 * 0.3)


def test_weights_formula_unnormalised_and_clamped() -> None:
    dtp = DynamicTaskPrioritization(["a", "b", "c"], gamma=2.0, normalize=False)
    dtp.update({"a": 0.5, "b": 1.0, "c": 0.0})
    w = dtp.weights()
    assert w["a"] == pytest.approx(-(0.5**2) * math.log(0.5))
    assert w["b"] == pytest.approx(-(0.01**2) * math.log(0.99))  # clamped to 0.99
    assert w["c"] == pytest.approx(-(0.9**2) * math.log(0.1))  # clamped to 0.1
    assert all(math.isfinite(v) and v > 0 for v in w.values())


def test_harder_task_gets_higher_weight_and_normalised_sum() -> None:
    dtp = DynamicTaskPrioritization(["reid", "id", "attr"])
    dtp.update({"reid": 0.95, "id": 0.4, "attr": 0.7})
    w = dtp.weights()
    assert w["id"] > w["attr"] > w["reid"]
    assert sum(w.values()) == pytest.approx(3.0)
    raw = {t: -(1 - k) * math.log(k) for t, k in {"reid": 0.95, "id": 0.4, "attr": 0.7}.items()}
    assert w["id"] / w["reid"] == pytest.approx(raw["id"] / raw["reid"])


def test_fixed_weights_when_disabled_and_for_tasks_without_kpi() -> None:
    dtp = DynamicTaskPrioritization(["reid", "id", "attr"], fixed_weights={"attr": 0.5})
    assert dtp.weights() == {"reid": 1.0, "id": 1.0, "attr": 0.5}  # no KPI yet
    dtp.update({"reid": 0.2, "id": 0.9, "attr": math.nan})  # attr never labelled: keeps its fixed weight
    w = dtp.weights()
    assert w["attr"] == 0.5
    assert w["reid"] + w["id"] == pytest.approx(2.0)  # normalised among the tasks with a KPI
    assert w["reid"] > w["id"]
    off = DynamicTaskPrioritization(["reid", "attr"], enabled=False, fixed_weights={"attr": 0.5})
    off.update({"reid": 0.2, "attr": 0.9})
    assert off.weights() == {"reid": 1.0, "attr": 0.5}


def test_combine_uses_detached_weights() -> None:
    dtp = DynamicTaskPrioritization(["reid", "attr"], normalize=False)
    dtp.update({"reid": 0.8, "attr": 0.3})
    a = torch.tensor(2.0, requires_grad=True)
    b = torch.tensor(3.0, requires_grad=True)
    total = dtp.combine({"reid": a, "attr": b})
    w = dtp.weights()
    assert total.item() == pytest.approx(2.0 * w["reid"] + 3.0 * w["attr"], rel=1e-6)
    total.backward()
    assert a.grad.item() == pytest.approx(w["reid"], rel=1e-6)
    assert b.grad.item() == pytest.approx(w["attr"], rel=1e-6)
    with pytest.raises(ValueError, match="exactly the tasks"):
        dtp.combine({"reid": a})


def test_state_round_trip() -> None:
    dtp = DynamicTaskPrioritization(["reid", "attr"])
    dtp.update({"reid": 0.8, "attr": 0.3})
    dtp.update({"reid": 0.6})
    resumed = DynamicTaskPrioritization(["reid", "attr"])
    resumed.load_state_dict(dtp.state_dict())
    assert resumed.weights() == dtp.weights()
    dtp.update({"reid": 0.1})
    resumed.update({"reid": 0.1})
    assert resumed.kpis == dtp.kpis
    with pytest.raises(ValueError, match="tasks"):
        DynamicTaskPrioritization(["reid"]).load_state_dict(dtp.state_dict())


def test_bad_input_is_rejected() -> None:
    dtp = DynamicTaskPrioritization(["reid"])
    with pytest.raises(ValueError, match="unknown tasks"):
        dtp.update({"other": 0.5})
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        dtp.update({"reid": 1.5})
    with pytest.raises(ValueError, match="unknown tasks"):
        DynamicTaskPrioritization(["reid"], fixed_weights={"x": 1.0})


def test_batch_rank1_hand_case() -> None:
    # 0 and 1 (label 7) are mutual neighbours: hits. 2 (label 8) is nearest to 1 (label 7): miss.
    # 3 (label 8) is nearest to 2: hit. 4 (label 9) is a singleton: skipped. -> 3 / 4
    features = torch.tensor([[0.0], [1.0], [2.5], [4.5], [100.0]])
    labels = torch.tensor([7, 7, 8, 8, 9])
    assert batch_rank1(features, labels) == pytest.approx(0.75)
    assert math.isnan(batch_rank1(features[:3], torch.tensor([1, 2, 3])))


def test_classification_accuracy() -> None:
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0], [0.0, 1.0]])
    assert classification_accuracy(logits, torch.tensor([0, 0, 0, -1])) == pytest.approx(2 / 3)
    assert math.isnan(classification_accuracy(logits, torch.full((4,), -1)))
