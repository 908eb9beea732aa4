"""Losses against hand-computed cases and independent plain-Python/numpy references."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from pytorch_metric_learning import distances, losses, reducers

from training.modeling.losses import (
    AttributeLoss,
    CenterLoss,
    CentroidTripletLoss,
    CrossEntropyLabelSmooth,
    IslandLoss,
    attribute_accuracy,
    center_parameters,
    rescale_center_grads,
)


@dataclass
class H:
    type: str
    size: int


def ctl_reference(x: np.ndarray, labels: list[int], margin: float) -> float:
    """Per-anchor loop: leave-one-out positive centroid, nearest other-class centroid, hinge."""
    classes = sorted(set(labels))
    centroid = {c: x[[i for i, y in enumerate(labels) if y == c]].mean(0) for c in classes}
    terms = []
    for i, y in enumerate(labels):
        others = [j for j, z in enumerate(labels) if z == y and j != i]
        if not others or len(classes) < 2:
            continue
        d_pos = math.dist(x[i], x[others].mean(0))
        d_neg = min(math.dist(x[i], centroid[c]) for c in classes if c != y)
        terms.append(max(0.0, d_pos - d_neg + margin))
    return sum(terms) / len(terms)


def test_ctl_hand_case_with_singleton_class() -> None:
    # classes 0 and 1 share the centroid (1, 0); every anchor is 2 from its positive and 1 from the other
    # centroid: 2 - 1 + 0.5 = 1.5. The singleton class 2 at (10, 10) is skipped as an anchor and is never nearest.
    x = torch.tensor([[0.0, 0.0], [2.0, 0.0], [1.0, 1.0], [1.0, -1.0], [10.0, 10.0]], requires_grad=True)
    loss = CentroidTripletLoss(margin=0.5)(x, torch.tensor([0, 0, 1, 1, 2]))
    assert loss.item() == pytest.approx(1.5, abs=1e-5)
    loss.backward()
    assert torch.isfinite(x.grad).all()
    assert x.grad[:4].abs().sum() > 0
    assert x.grad[4].abs().sum() == 0  # the singleton only enters as a candidate negative, never the nearest


def test_ctl_inactive_margin_gives_zero() -> None:
    # anchor (0,0): positive (2,0) at 2, other centroid (0,4) at 4: 2 - 4 + 0.5 < 0; the others likewise
    x = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 3.0], [0.0, 5.0]])
    assert CentroidTripletLoss(0.5)(x, torch.tensor([0, 0, 1, 1])).item() == pytest.approx(0.0, abs=1e-6)


def test_ctl_matches_loop_reference_on_random_batches() -> None:
    rng = np.random.default_rng(0)
    for trial in range(5):
        labels = rng.integers(0, 5, size=20).tolist()
        x = rng.normal(size=(20, 8)).astype(np.float32)
        got = CentroidTripletLoss(margin=0.3 + 0.2 * trial)(torch.from_numpy(x), torch.tensor(labels)).item()
        assert got == pytest.approx(ctl_reference(x.astype(np.float64), labels, 0.3 + 0.2 * trial), abs=1e-4)


def test_ctl_no_valid_anchor_is_zero_with_gradient() -> None:
    x = torch.randn(3, 4, requires_grad=True)
    for labels in ([0, 1, 2], [5, 5, 5]):  # all singletons; one class only (no negative)
        loss = CentroidTripletLoss()(x, torch.tensor(labels))
        assert loss.item() == 0.0
        loss.backward()
        assert torch.isfinite(x.grad).all()


def _pml_comparable_batch(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two classes of equal size: one negative centroid per anchor, so PML's "all negatives" is our "hardest"."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(8, 16, generator=g), torch.tensor([0, 1, 0, 1, 0, 1, 0, 1])


def _pml_settings() -> dict:
    """PML normalises every vector (centroids too) and averages over non-zero triplets unless told otherwise."""
    return {"distance": distances.LpDistance(normalize_embeddings=False), "reducer": reducers.MeanReducer()}


@pytest.mark.parametrize(("seed", "margin"), [(0, 0.5), (1, 0.1), (2, 2.0)])
def test_ctl_matches_pml_triplet_machinery(seed: int, margin: float) -> None:
    """pytorch-metric-learning 2.x dropped CentroidTripletLoss; its TripletMarginLoss (which PML's CTL delegated to)
    scores our triplets given as reference embeddings: leave-one-out positives and the other class's centroid."""
    x, labels = _pml_comparable_batch(seed)
    n = len(labels)
    pos = torch.stack([x[(labels == labels[i]) & (torch.arange(n) != i)].mean(0) for i in range(n)])
    neg = torch.stack([x[labels != labels[i]].mean(0) for i in range(n)])
    idx = torch.arange(n)
    pml = losses.TripletMarginLoss(margin=margin, **_pml_settings())
    expected = pml(
        x,
        labels,
        indices_tuple=(idx, idx, idx + n),
        ref_emb=torch.cat([pos, neg]),
        ref_labels=torch.cat([labels, 1 - labels]),
    )
    assert expected.item() > 0
    assert CentroidTripletLoss(margin)(x, labels).item() == pytest.approx(expected.item(), abs=1e-5)


def test_center_loss_hand_case_and_gradients() -> None:
    loss_fn = CenterLoss(num_classes=2, feat_dim=2)
    with torch.no_grad():
        loss_fn.centers.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0]]))
    x = torch.tensor([[1.0, 0.0], [1.0, 3.0]], requires_grad=True)
    loss = loss_fn(x, torch.tensor([0, 1]))
    # (0.5 * 1 + 0.5 * 4) / 2
    assert loss.item() == pytest.approx(1.25)
    loss.backward()
    # d/dx_i = (x_i - c_yi) / N ; d/dc_j = -sum_i[y_i = j](x_i - c_j) / N
    assert torch.allclose(x.grad, torch.tensor([[0.5, 0.0], [0.0, 1.0]]))
    assert torch.allclose(loss_fn.centers.grad, torch.tensor([[-0.5, 0.0], [0.0, -1.0]]))


def test_center_loss_rejects_bad_labels() -> None:
    with pytest.raises(ValueError, match="labels must lie"):
        CenterLoss(3, 2)(torch.zeros(2, 2), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="dim"):
        CenterLoss(3, 2)(torch.zeros(2, 4), torch.tensor([0, 1]))


def test_center_step_does_not_depend_on_loss_weight() -> None:
    """The Bag of Tricks recipe: centre grads divided by the weight, own SGD at center_lr."""
    x = torch.randn(6, 3)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    steps = []
    for weight in (1.0, 0.0005):
        torch.manual_seed(0)
        loss_fn = IslandLoss(3, 3, lambda1=1.0)
        start = loss_fn.centers.detach().clone()
        (params,) = center_parameters([torch.nn.Linear(2, 2), loss_fn])
        assert params is loss_fn.centers
        opt = torch.optim.SGD([params], lr=0.5)
        (weight * loss_fn(x, labels)).backward()
        rescale_center_grads(loss_fn, weight)
        opt.step()
        steps.append(loss_fn.centers.detach() - start)
    assert steps[0].abs().sum() > 0
    assert torch.allclose(steps[0], steps[1], atol=1e-5)
    with pytest.raises(TypeError):
        rescale_center_grads(torch.nn.Linear(2, 2), 1.0)


def test_island_loss_hand_case_uses_batch_classes_only() -> None:
    loss_fn = IslandLoss(num_classes=3, feat_dim=2, lambda1=2.0)
    with torch.no_grad():
        loss_fn.centers.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]))
    # x on the centres: center term 0. Batch classes {0, 1}: cos = 0 -> mean (cos + 1) = 1 -> 2 * 1
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert loss_fn(x, torch.tensor([0, 1])).item() == pytest.approx(2.0)
    # all three: ordered pairs (0,1),(1,0): 1; (0,2),(2,0): 0; (1,2),(2,1): 1 -> 4 / 6; + center term 0.5 * 1 / 3
    x3 = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 1.0]])
    assert loss_fn(x3, torch.tensor([0, 1, 2])).item() == pytest.approx(1 / 6 + 2 * 4 / 6, abs=1e-6)


def test_island_loss_gradients_and_single_class() -> None:
    loss_fn = IslandLoss(4, 5)
    x = torch.randn(3, 5, requires_grad=True)
    loss = loss_fn(x, torch.tensor([2, 2, 2]))  # one class: no pair
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(x.grad).all()
    loss_fn.zero_grad()
    loss_fn(torch.randn(4, 5), torch.tensor([0, 1, 2, 3])).backward()
    assert loss_fn.centers.grad.abs().sum(1).gt(0).all()


def test_label_smoothing_hand_case() -> None:
    eps, k = 0.1, 3
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, -1.0]])
    labels = torch.tensor([0, 2])
    expected = 0.0
    for row, y in zip(logits.tolist(), labels.tolist(), strict=True):
        log_z = math.log(sum(math.exp(v) for v in row))
        q = [(1 - eps) * (c == y) + eps / k for c in range(k)]
        expected += -sum(qc * (v - log_z) for qc, v in zip(q, row, strict=True))
    assert CrossEntropyLabelSmooth(k, eps)(logits, labels).item() == pytest.approx(expected / 2, abs=1e-6)
    with pytest.raises(ValueError, match="N x 4"):
        CrossEntropyLabelSmooth(4)(logits, labels)


HEADS = [H("softmax", 3), H("binary", 1), H("binary", 1)]


def _sigmoid(v: float) -> float:
    return 1 / (1 + math.exp(-v))


def test_attribute_loss_hand_case_with_unknowns() -> None:
    logits = torch.tensor([[1.0, 0.0, -1.0, 0.5, 2.0], [0.0, 2.0, 0.0, -1.0, 0.0], [0.5, 0.5, 0.5, 3.0, -2.0]])
    targets = torch.tensor([[0, 1, -1], [-1, 0, -1], [2, 1, -1]])
    p = 0.25
    loss_fn = AttributeLoss(HEADS, pos_ratios=torch.tensor([math.nan, p, 0.5]))
    total, per_head = loss_fn(logits, targets)

    def ce(row: list[float], y: int) -> float:
        return math.log(sum(math.exp(v) for v in row)) - row[y]

    softmax = (ce([1.0, 0.0, -1.0], 0) + ce([0.5, 0.5, 0.5], 2)) / 2
    w_pos, w_neg = math.exp(1 - p), math.exp(p)
    binary = (
        -w_pos * math.log(_sigmoid(0.5)) - w_neg * math.log(1 - _sigmoid(-1.0)) - w_pos * math.log(_sigmoid(3.0))
    ) / 3
    assert per_head.tolist() == pytest.approx([softmax, binary, 0.0], abs=1e-5)
    assert total.item() == pytest.approx((softmax + binary) / 3, abs=1e-5)


def test_attribute_loss_from_targets_and_gradients() -> None:
    targets = torch.tensor([[0, 1, 0], [0, 0, -1], [1, 1, -1], [-1, 1, -1]])
    loss_fn = AttributeLoss.from_targets(HEADS, targets)
    assert loss_fn.pos_ratios[1].item() == pytest.approx(0.75)
    assert loss_fn.pos_ratios[2].item() == pytest.approx(0.0)
    # softmax analogue: class frequencies 2/3, 1/3, 0 -> exp(1 - f)
    assert loss_fn.class_weights[:3].tolist() == pytest.approx([math.exp(1 / 3), math.exp(2 / 3), math.e], abs=1e-6)
    logits = torch.randn(4, 5, requires_grad=True)
    total, per_head = loss_fn(logits, torch.full((4, 3), -1))  # nothing known: zeros, finite gradient
    total.backward()
    assert per_head.tolist() == [0.0, 0.0, 0.0] and torch.isfinite(logits.grad).all()
    logits.grad = None
    loss_fn(logits, targets)[0].backward()
    assert logits.grad[3, :3].abs().sum() == 0  # row 3's softmax target is unknown
    assert logits.grad[0].abs().sum() > 0


def test_attribute_loss_softmax_class_weights_divide_by_count() -> None:
    logits = torch.tensor([[0.0, 1.0, 0.0, 0.0, 0.0], [2.0, 0.0, 0.0, 0.0, 0.0]])
    targets = torch.tensor([[1, -1, -1], [0, -1, -1]])
    loss_fn = AttributeLoss(HEADS, class_weights=[torch.tensor([1.0, 3.0, 1.0]), None, None])
    z1, z2 = math.log(math.e + 2), math.log(math.exp(2) + 2)
    expected = (3.0 * (z1 - 1.0) + 1.0 * (z2 - 2.0)) / 2
    assert loss_fn(logits, targets)[1][0].item() == pytest.approx(expected, abs=1e-5)


def test_attribute_loss_rejects_bad_shapes_and_values() -> None:
    loss_fn = AttributeLoss(HEADS)
    with pytest.raises(ValueError, match="N x 5"):
        loss_fn(torch.zeros(2, 4), torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="out of range"):
        loss_fn(torch.zeros(2, 5), torch.tensor([[3, 0, 0], [0, 0, 0]]))
    with pytest.raises(ValueError, match="out of range"):
        loss_fn(torch.zeros(2, 5), torch.tensor([[0, 2, 0], [0, 0, 0]]))
    with pytest.raises(ValueError, match="one column"):
        AttributeLoss([H("binary", 2)])


def test_attribute_accuracy_per_head() -> None:
    logits = torch.tensor([[1.0, 0.0, -1.0, 0.5, 2.0], [0.0, 2.0, 0.0, -1.0, 0.0], [0.5, 0.5, 3.5, 3.0, -2.0]])
    targets = torch.tensor([[0, 1, -1], [2, 1, -1], [2, 1, -1]])
    acc = attribute_accuracy(logits, targets, HEADS)
    assert acc[:2].tolist() == pytest.approx([2 / 3, 2 / 3])
    assert math.isnan(acc[2].item())


def test_attribute_loss_logit_adjust_offsets_from_priors() -> None:
    targets = torch.tensor([[0, 1, 0], [0, 0, -1], [1, 1, -1], [-1, 1, -1]])
    loss_fn = AttributeLoss.from_targets(HEADS, targets, balance="logit_adjust", tau=0.5)
    # softmax priors 2/3, 1/3, 0 (unseen: the rarest seen prior, 1/3); binary p = 0.75, and 0 (all one value: 0)
    expected = [0.5 * math.log(2 / 3), 0.5 * math.log(1 / 3), 0.5 * math.log(1 / 3), 0.5 * math.log(3.0), 0.0]
    assert loss_fn.logit_offsets.tolist() == pytest.approx(expected, rel=1e-4)
    assert torch.isnan(loss_fn.pos_ratios).all() and (loss_fn.class_weights == 1).all()
    logits = torch.tensor([[0.3, -0.2, 0.1, 0.4, -1.0]])
    shifted = AttributeLoss(HEADS)(logits + loss_fn.logit_offsets, torch.tensor([[0, 1, 0]]))[1]
    assert loss_fn(logits, torch.tensor([[0, 1, 0]]))[1].tolist() == pytest.approx(shifted.tolist(), abs=1e-6)
    with pytest.raises(ValueError, match="balance"):
        AttributeLoss.from_targets(HEADS, targets, balance="focal")
    with pytest.raises(ValueError, match="tau"):
        AttributeLoss.from_targets(HEADS, targets, balance="logit_adjust", tau=-1.0)
    assert "logit_offsets" not in loss_fn.state_dict()  # rebuilt from the data, so old checkpoints still resume


@pytest.mark.parametrize(
    ("balance", "low", "high"), [("none", 0.8, 1.5), ("deepmar", 0.4, 0.9), ("logit_adjust", -0.15, 0.15)]
)
def test_attribute_loss_balance_moves_the_decision_threshold(balance: str, low: float, high: float) -> None:
    """A 1-d logistic model fit on a 10%-positive attribute (positives at x ~ N(1, 1), negatives N(-1, 1)): the
    balanced-error threshold is x = 0. Plain BCE puts it near log(9)/2 ~ 1.1 (positives mostly missed), DeepMAR's
    weights (ratio e^0.8) near (log 9 - 0.8)/2 ~ 0.7, logit adjustment at 0."""
    gen = torch.Generator().manual_seed(0)
    y = (torch.rand(4000, generator=gen) < 0.1).long()
    x = torch.randn(4000, generator=gen) + (2 * y - 1).float()
    heads = [H("binary", 1)]
    loss_fn = AttributeLoss.from_targets(heads, y[:, None], balance=balance)
    w = torch.zeros(2, requires_grad=True)
    opt = torch.optim.LBFGS([w], max_iter=200)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = loss_fn((w[0] * x + w[1])[:, None], y[:, None])[0]
        loss.backward()
        return loss

    opt.step(closure)
    w = w.detach()
    assert low < float(-w[1] / w[0]) < high
    pos_recall = float(((w[0] * x + w[1]) > 0)[y == 1].float().mean())
    assert (pos_recall > 0.75) == (balance == "logit_adjust")


def test_attribute_accuracy_balanced_is_mean_recall_per_class() -> None:
    # binary head: targets 1, 0, 0, 0 and the model says "no" everywhere -> accuracy 3/4, balanced (0 + 1) / 2
    logits = torch.tensor([[0.0, 0.0, 0.0, -1.0, 0.0]] * 3 + [[0.0, 0.0, 5.0, -1.0, 0.0]])
    targets = torch.tensor([[0, 1, -1], [0, 0, -1], [1, 0, -1], [2, 0, -1]])
    plain = attribute_accuracy(logits, targets, HEADS)
    balanced = attribute_accuracy(logits, targets, HEADS, balanced=True)
    # softmax head: predictions 0, 0, 0, 2 for targets 0, 0, 1, 2 -> accuracy 3/4; recalls 1, 0, 1 -> 2/3
    assert plain[:2].tolist() == pytest.approx([0.75, 0.75])
    assert balanced[:2].tolist() == pytest.approx([2 / 3, 0.5])
    assert math.isnan(balanced[2].item())
