"""Training losses: identity (label-smoothed CE), centroid triplet, center, island, attribute and distillation losses.

Formulas: docs in /work/shared/docs/reference.md section 1. Each loss is an `nn.Module`; the metric losses are
called as `loss(embeddings, labels)` with `embeddings` N x D float and `labels` N int64, and return a scalar.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from personid.manifest import HeadLike, head_slices


def _check_metric_inputs(embeddings: Tensor, labels: Tensor) -> None:
    if embeddings.dim() != 2:
        raise ValueError(f"embeddings must be N x D, got shape {tuple(embeddings.shape)}")
    if labels.dim() != 1 or labels.shape[0] != embeddings.shape[0]:
        raise ValueError(f"labels must be a vector of N={embeddings.shape[0]} ints, got shape {tuple(labels.shape)}")


def _zero_with_grad(x: Tensor) -> Tensor:
    """A 0 that still depends on `x`, so backward() works (and DDP sees every parameter used)."""
    return x.sum() * 0.0


class CentroidTripletLoss(nn.Module):
    """Centroid Triplet Loss (Wieczorek et al., "On the Unreasonable Effectiveness of Centroids in Image
    Retrieval", ICONIP 2021).

    For each anchor x_i: `max(0, ||x_i - c_pos|| - ||x_i - c_neg|| + margin)`, averaged over the valid anchors,
    with non-squared Euclidean distances (as in the authors' code) and
    - `c_pos` = mean of the OTHER samples of the anchor's class in the batch (the anchor is left out). This is the
      only positive centroid, so batch-hard "farthest positive" is trivially it;
    - `c_neg` = the nearest centroid of another class present in the batch (batch-hard over centroids), the
      centroid being the mean of all that class's samples in the batch.
    An anchor whose class has a single sample in the batch has no positive centroid and is skipped; an anchor with no
    other class in the batch has no negative and is skipped. With no valid anchor the loss is 0 (with a gradient
    path, no NaN).

    Difference from pytorch-metric-learning's `CentroidTripletLoss` (PML 1.1-1.7; removed from PML 2.x): PML uses
    ALL negative centroids (one triplet per anchor and other class) instead of the hardest, L2-normalises every
    vector its distance sees, centroids included (default `LpDistance`), averages over the non-zero triplets only
    (`AvgNonZeroReducer`), raises on a class with a single sample, and its margin default is 0.05. With
    `distance=LpDistance(normalize_embeddings=False), reducer=MeanReducer()` on two classes of equal size the two
    definitions coincide (tested).
    """

    def __init__(self, margin: float = 0.5) -> None:
        super().__init__()
        if margin < 0:
            raise ValueError(f"margin must be >= 0, got {margin}")
        self.margin = margin

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        _check_metric_inputs(embeddings, labels)
        embeddings = embeddings.float()  # under AMP: the 1e-12 clamp below underflows in float16
        classes, inverse = torch.unique(labels, return_inverse=True)
        onehot = F.one_hot(inverse, num_classes=classes.numel()).to(embeddings.dtype)  # N x P
        counts = onehot.sum(0)  # P
        sums = onehot.t() @ embeddings  # P x D
        own_count = counts[inverse]  # N
        valid = (own_count > 1) & (classes.numel() > 1)
        if not bool(valid.any()):
            return _zero_with_grad(embeddings)
        positive = (sums[inverse] - embeddings) / (own_count - 1).clamp(min=1).unsqueeze(1)
        centroids = sums / counts.unsqueeze(1)
        d_pos = (embeddings - positive).pow(2).sum(1).clamp(min=1e-12).sqrt()
        sq = embeddings.pow(2).sum(1, keepdim=True) + centroids.pow(2).sum(1) - 2.0 * embeddings @ centroids.t()
        d_all = sq.clamp(min=1e-12).sqrt()  # N x P; the clamp keeps the gradient finite at distance 0
        d_neg = d_all.masked_fill(onehot.bool(), float("inf")).min(1).values
        ones = torch.ones_like(d_pos[valid])
        return F.margin_ranking_loss(d_neg[valid], d_pos[valid], ones, margin=self.margin)


class CenterLoss(nn.Module):
    """Center loss (Wen et al., "A Discriminative Feature Learning Approach for Deep Face Recognition", ECCV 2016):
    `1/2 * ||x_i - c_{y_i}||^2` averaged over the batch; `self.centers` (num_classes x feat_dim) is a Parameter.

    Optimise the centres with their OWN optimizer so their rate does not depend on the loss weight (Bag of Tricks,
    Luo et al. 2019): leave `center_parameters(losses)` out of the model optimizer, build
    `torch.optim.SGD(center_parameters(losses), lr=center_lr)` (center_lr 0.5), and each step:
    `total.backward(); optimizer.step(); rescale_center_grads(loss_module, weight); center_optimizer.step()`, where
    `weight` is everything that multiplied this loss in `total` (config weight x DTP task weight). With AMP's
    GradScaler, call `scaler.unscale_(center_optimizer)` before rescaling and `scaler.step(center_optimizer)` after.
    """

    def __init__(self, num_classes: int, feat_dim: int) -> None:
        super().__init__()
        if num_classes < 1 or feat_dim < 1:
            raise ValueError(f"num_classes and feat_dim must be >= 1, got {num_classes}, {feat_dim}")
        self.num_classes = num_classes
        self.feat_dim = feat_dim
        self.centers = nn.Parameter(torch.randn(num_classes, feat_dim))

    def _check(self, embeddings: Tensor, labels: Tensor) -> None:
        _check_metric_inputs(embeddings, labels)
        if embeddings.shape[1] != self.feat_dim:
            raise ValueError(f"embeddings have dim {embeddings.shape[1]}, the centres {self.feat_dim}")
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= self.num_classes):
            raise ValueError(
                f"labels must lie in [0, {self.num_classes}), got [{int(labels.min())}, {int(labels.max())}]"
            )

    def center_term(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        return 0.5 * (embeddings - self.centers[labels]).pow(2).sum(1).mean()

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        self._check(embeddings, labels)
        return self.center_term(embeddings, labels)


class IslandLoss(CenterLoss):
    """Island loss (Cai et al., "Island Loss for Learning Discriminative Features in Facial Expression
    Recognition", FG 2018): center term + `lambda1 * mean_{j != k} (cos(c_j, c_k) + 1)`.

    Our choices (the paper sums over all classes, unnormalised, with 7 expression classes):
    - the pair term covers the centres of the classes PRESENT in the batch: with hundreds of identities the
      all-pairs term costs O(C^2 D) per step and pushes centres that received no fresh evidence;
    - the sum over ordered pairs is divided by their number P(P-1), so lambda1 does not depend on the batch's
      number of identities (0 with fewer than two classes);
    - lambda1 default 10, the value of public implementations (e.g. LeleFox/Pytorch-Focal-Center-Island-Loss;
      others use 0.5-10). Because of the normalisation it is per pair, not per sum.
    Centres are optimised as for `CenterLoss` (same helpers).
    """

    def __init__(self, num_classes: int, feat_dim: int, lambda1: float = 10.0) -> None:
        super().__init__(num_classes, feat_dim)
        if lambda1 < 0:
            raise ValueError(f"lambda1 must be >= 0, got {lambda1}")
        self.lambda1 = lambda1

    def pair_term(self, labels: Tensor) -> Tensor:
        present = torch.unique(labels)
        p = present.numel()
        if p < 2:
            return _zero_with_grad(self.centers)
        c = F.normalize(self.centers[present], dim=1)
        cos = c @ c.t()
        off_diagonal = ~torch.eye(p, dtype=torch.bool, device=cos.device)
        return (cos[off_diagonal] + 1.0).mean()

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        self._check(embeddings, labels)
        return self.center_term(embeddings, labels) + self.lambda1 * self.pair_term(labels)


def center_parameters(modules: Iterable[nn.Module]) -> list[nn.Parameter]:
    """The centre Parameters of the center/island losses among `modules` (for their own optimizer)."""
    return [m.centers for m in modules if isinstance(m, CenterLoss)]


def rescale_center_grads(module: nn.Module, weight: float) -> None:
    """Divide the centre gradients by the loss weight, so the centre step is `center_lr * dL/dc` whatever the
    weight (Bag of Tricks). Call after backward(), before the centre optimizer's step()."""
    if not isinstance(module, CenterLoss):
        raise TypeError(f"expected a CenterLoss or IslandLoss, got {type(module).__name__}")
    if weight <= 0:
        raise ValueError(f"the loss weight must be > 0 to rescale by it, got {weight}")
    if module.centers.grad is not None:
        module.centers.grad.mul_(1.0 / weight)


class CrossEntropyLabelSmooth(nn.Module):
    """Identity loss: cross-entropy with label smoothing (Szegedy et al. 2016, as used by Bag of Tricks, Luo et al.
    2019): target `(1 - eps) * onehot + eps / K`, which is exactly torch's `label_smoothing`. Kept as a module so the
    engine has one interface, and to check the class count."""

    def __init__(self, num_classes: int, epsilon: float = 0.1) -> None:
        super().__init__()
        if not 0.0 <= epsilon < 1.0:
            raise ValueError(f"epsilon must be in [0, 1), got {epsilon}")
        self.num_classes = num_classes
        self.epsilon = epsilon

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        if logits.dim() != 2 or logits.shape[1] != self.num_classes:
            raise ValueError(f"logits must be N x {self.num_classes}, got shape {tuple(logits.shape)}")
        return F.cross_entropy(logits, labels, label_smoothing=self.epsilon)


def _check_attr_inputs(attr_logits: Tensor, targets: Tensor, slices: list[slice]) -> None:
    columns = slices[-1].stop if slices else 0
    if attr_logits.dim() != 2 or attr_logits.shape[1] != columns:
        raise ValueError(f"attr_logits must be N x {columns}, got shape {tuple(attr_logits.shape)}")
    if targets.dim() != 2 or targets.shape != (attr_logits.shape[0], len(slices)):
        raise ValueError(f"targets must be N x H = {attr_logits.shape[0]} x {len(slices)}, got {tuple(targets.shape)}")


class AttributeLoss(nn.Module):
    """Attribute loss over heads whose columns are concatenated in `attr_logits` (schema order).

    - softmax head: cross-entropy over its columns, optionally with class weights;
    - binary head: BCE-with-logits on its column with the "weighted sigmoid cross entropy" of DeepMAR (Li et al.,
      "Multi-attribute Learning for Pedestrian Attribute Recognition in Surveillance Scenarios", ACPR 2015):
      `w_pos = exp(1 - p)`, `w_neg = exp(p)`, p = positive ratio of the attribute in the training set (sigma = 1).
      The softmax analogue (our choice) weights a sample of class c by `exp(1 - p_c)`; for two classes this is the
      binary rule exactly. Weights are in [1, e], so rare classes are helped without blowing up the loss.
    Each head's loss is the weighted sum over its known targets divided by their COUNT (as DeepMAR; torch's
    weighted CE would divide by the weight sum). Targets: N x H int64, -1 = unknown, contributing nothing; a head
    with no known target in the batch contributes 0. The total is the mean over the H heads.

    `pos_ratios` (H): the p of each binary head (entries of softmax heads are ignored; NaN = unweighted).
    `class_weights` (H entries, each None or a vector of the head's size): softmax class weights.
    `logit_offsets` (one per column, or None): added to the logits inside the loss only, for logit adjustment
    (Menon et al., "Long-tail learning via logit adjustment", ICLR 2021): with offset `tau * log prior` (softmax)
    or `tau * log(p / (1 - p))` (binary) the raw logits at inference minimise the BALANCED error, which is what
    mA measures; the DeepMAR weights only shift the threshold part of the way.
    `AttributeLoss.from_targets` computes them from the training targets.
    """

    def __init__(
        self,
        heads: Sequence[HeadLike],
        pos_ratios: Tensor | None = None,
        class_weights: Sequence[Tensor | None] | None = None,
        logit_offsets: Tensor | None = None,
    ) -> None:
        super().__init__()
        self.types = [h.type for h in heads]
        self.slices = head_slices(heads)
        h = len(self.slices)
        if h == 0:
            raise ValueError("AttributeLoss needs at least one head")
        ratios = torch.full((h,), math.nan) if pos_ratios is None else torch.as_tensor(pos_ratios, dtype=torch.float32)
        if ratios.shape != (h,):
            raise ValueError(f"pos_ratios must have one entry per head ({h}), got shape {tuple(ratios.shape)}")
        weights = torch.ones(self.slices[-1].stop)
        if class_weights is not None:
            if len(class_weights) != h:
                raise ValueError(f"class_weights must have one entry per head ({h}), got {len(class_weights)}")
            for sl, kind, w in zip(self.slices, self.types, class_weights, strict=True):
                if w is None or kind != "softmax":
                    continue
                w = torch.as_tensor(w, dtype=torch.float32)
                if w.shape != (sl.stop - sl.start,) or bool((w < 0).any()):
                    raise ValueError(f"class weights must be {sl.stop - sl.start} non-negative values, got {w}")
                weights[sl] = w
        offsets = (
            torch.zeros(self.slices[-1].stop)
            if logit_offsets is None
            else torch.as_tensor(logit_offsets, dtype=torch.float32)
        )
        if offsets.shape != weights.shape or not bool(torch.isfinite(offsets).all()):
            raise ValueError(f"logit_offsets must be {weights.numel()} finite values, got {offsets}")
        self.register_buffer("pos_ratios", ratios)
        self.register_buffer("class_weights", weights)
        self.register_buffer("logit_offsets", offsets, persistent=False)  # rebuilt from the data each run

    @classmethod
    def from_targets(
        cls, heads: Sequence[HeadLike], targets: Tensor, balance: str = "deepmar", tau: float = 1.0
    ) -> AttributeLoss:
        """Build the loss from the training targets (N x H, -1 unknown). `balance`: "deepmar" (weights as above),
        "logit_adjust" (offsets `tau * log prior`, no weights) or "none". A head with no known target stays
        plain; so does a binary head whose targets are all one value under logit adjustment, and an unseen
        softmax class takes the offset of the rarest seen one (log 0 would make it the likeliest at inference)."""
        if balance not in ("deepmar", "logit_adjust", "none"):
            raise ValueError(f"balance must be 'deepmar', 'logit_adjust' or 'none', got {balance!r}")
        if not (math.isfinite(tau) and tau >= 0):
            raise ValueError(f"tau must be a finite number >= 0, got {tau}")
        slices = head_slices(heads)
        targets = torch.as_tensor(targets)
        if targets.dim() != 2 or targets.shape[1] != len(slices):
            raise ValueError(f"targets must be N x {len(slices)}, got shape {tuple(targets.shape)}")
        ratios = torch.full((len(slices),), float("nan"))
        class_weights: list[Tensor | None] = [None] * len(slices)
        offsets = torch.zeros(slices[-1].stop)
        for j, (head, sl) in enumerate(zip(heads, slices, strict=True)):
            known = targets[:, j][targets[:, j] >= 0]
            if balance == "none" or not known.numel():
                continue
            if head.type == "binary":
                p = (known == 1).float().mean()
                if balance == "deepmar":
                    ratios[j] = p
                elif 0 < p < 1:
                    offsets[sl] = tau * torch.log(p / (1 - p))
                continue
            freq = torch.bincount(known, minlength=sl.stop - sl.start).float() / known.numel()
            if balance == "deepmar":
                class_weights[j] = torch.exp(1.0 - freq)
            else:
                offsets[sl] = tau * torch.log(freq.clamp(min=float(freq[freq > 0].min())))
        return cls(heads, ratios, class_weights, offsets)

    def forward(self, attr_logits: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        _check_attr_inputs(attr_logits, targets, self.slices)
        sizes = torch.tensor(
            [sl.stop - sl.start if t == "softmax" else 2 for sl, t in zip(self.slices, self.types, strict=True)],
            device=targets.device,
        )
        if bool(((targets < -1) | (targets >= sizes)).any()):
            raise ValueError("attribute targets out of range: softmax heads take -1..size-1, binary heads -1, 0, 1")
        per_head = []
        for j, (sl, kind) in enumerate(zip(self.slices, self.types, strict=True)):
            t = targets[:, j]
            known = t >= 0
            n_known = known.sum()
            logits = attr_logits[:, sl] + self.logit_offsets[sl].to(attr_logits.dtype)
            if kind == "softmax":
                losses = F.cross_entropy(
                    logits, t.clamp(min=0), weight=self.class_weights[sl].to(logits.dtype), reduction="none"
                )
            else:
                y = t.clamp(min=0).to(logits.dtype)
                p = self.pos_ratios[j]
                w = torch.where(y > 0, torch.exp(1.0 - p), torch.exp(p)).nan_to_num(nan=1.0)
                losses = F.binary_cross_entropy_with_logits(
                    logits[:, 0], y, weight=w.to(logits.dtype), reduction="none"
                )
            per_head.append((losses * known).sum() / n_known.clamp(min=1))
        stacked = torch.stack(per_head)
        return stacked.mean(), stacked


def attribute_accuracy(
    attr_logits: Tensor, targets: Tensor, heads: Sequence[HeadLike], balanced: bool = False
) -> Tensor:
    """Per-head accuracy (H) on the known targets: argmax for softmax heads, logit > 0 for binary heads.
    `balanced`: the mean over the classes present of their recall instead (mA's view: a head that always says
    "no hat" scores 0.5, not the share of people without one). A head with no known target gets NaN (the
    caller, e.g. DTP's update, skips it)."""
    slices = head_slices(heads)
    _check_attr_inputs(attr_logits, targets, slices)
    out = []
    with torch.no_grad():
        for j, (head, sl) in enumerate(zip(heads, slices, strict=True)):
            t = targets[:, j]
            known = t >= 0
            logits = attr_logits[:, sl]
            pred = logits.argmax(1) if head.type == "softmax" else (logits[:, 0] > 0).long()
            hit = (pred[known] == t[known]).float()
            if not hit.numel():
                out.append(torch.tensor(math.nan))
            elif balanced:
                out.append(torch.stack([hit[t[known] == c].mean() for c in torch.unique(t[known])]).mean())
            else:
                out.append(hit.mean())
    return torch.stack([o.float().cpu() for o in out])


def feature_distillation(student: Tensor, teacher: Tensor, kind: str = "cosine") -> Tensor:
    """Distance between the student's and the frozen teacher's pooled features (N x C each), averaged over the
    batch: `cosine` = 1 - cosine similarity (scale-free), `l2` = mean squared error. 0 when they agree."""
    if student.shape != teacher.shape:
        raise ValueError(f"student {tuple(student.shape)} and teacher {tuple(teacher.shape)} features differ in shape")
    student, teacher = student.float(), teacher.float().detach()
    if kind == "cosine":
        return (1.0 - F.cosine_similarity(student, teacher, dim=1)).mean()
    if kind == "l2":
        return (student - teacher).pow(2).mean()
    raise ValueError(f"unknown distillation kind {kind!r}; choose cosine or l2")
