"""Dynamic Task Prioritization (Guo et al., "Dynamic Task Prioritization for Multitask Learning", ECCV 2018)
and the per-batch KPIs it feeds on."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor


class DynamicTaskPrioritization:
    """Task weights from smoothed KPIs: `w_t = -(1 - k_t)^gamma * log(k_t)`, so harder tasks (lower KPI) weigh more.

    - KPI smoothing (the paper's): `k <- alpha * k_now + (1 - alpha) * k`; the first update sets k; NaN KPIs (e.g. a
      head with no known target in the batch) are skipped.
    - k is clamped to `clamp` (default [0.1, 0.99], as public code does) so log stays finite and a task at KPI 1
      keeps a small weight.
    - gamma default 1.0 (the paper's range is about 1-2; the focal exponent 2 makes a task at k=0.9 weigh 165x less
      than one at k=0.5, 1.0 about 33x, and re-id batch KPIs saturate early, so we take the milder one).
    - `normalize` (our choice, not the paper's): weights rescaled to sum to the number of tasks, so the overall loss
      scale stays that of unit fixed weights even when every task saturates.
    - A task with no KPI yet (warm-up, or a head never labelled in the data, whose KPI is always NaN) keeps its
      fixed weight, and the normalisation runs over the tasks that have one. With `enabled` False (ablation) every
      task has its fixed weight (default 1.0 each), unnormalised.
    """

    def __init__(
        self,
        tasks: Sequence[str],
        gamma: float = 1.0,
        alpha: float = 0.9,
        clamp: tuple[float, float] = (0.1, 0.99),
        enabled: bool = True,
        fixed_weights: Mapping[str, float] | None = None,
        normalize: bool = True,
    ) -> None:
        self.tasks = list(tasks)
        if not self.tasks or len(set(self.tasks)) != len(self.tasks):
            raise ValueError(f"tasks must be non-empty and unique, got {self.tasks}")
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}")
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"alpha must be in (0, 1], got {alpha}")
        low, high = clamp
        if not 0.0 < low <= high < 1.0:
            raise ValueError(f"clamp must satisfy 0 < low <= high < 1, got {clamp}")
        fixed = dict(fixed_weights or {})
        unknown = set(fixed) - set(self.tasks)
        if unknown:
            raise ValueError(f"fixed_weights name unknown tasks {sorted(unknown)}; tasks are {self.tasks}")
        self.gamma = gamma
        self.alpha = alpha
        self.clamp = (low, high)
        self.enabled = enabled
        self.normalize = normalize
        self.fixed_weights = {t: float(fixed.get(t, 1.0)) for t in self.tasks}
        self.kpis: dict[str, float] = {}

    def update(self, kpis: Mapping[str, float]) -> None:
        unknown = set(kpis) - set(self.tasks)
        if unknown:
            raise ValueError(f"KPIs for unknown tasks {sorted(unknown)}; tasks are {self.tasks}")
        for task, value in kpis.items():
            value = float(value)
            if math.isnan(value):
                continue
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"KPI of task {task!r} must be in [0, 1], got {value}")
            previous = self.kpis.get(task)
            self.kpis[task] = value if previous is None else self.alpha * value + (1.0 - self.alpha) * previous

    def weights(self) -> dict[str, float]:
        if not self.enabled:
            return dict(self.fixed_weights)
        low, high = self.clamp
        raw = {}
        for t in self.tasks:
            if t in self.kpis:
                k = min(max(self.kpis[t], low), high)
                raw[t] = -((1.0 - k) ** self.gamma) * math.log(k)
        if self.normalize and raw:
            scale = len(raw) / sum(raw.values())
            raw = {t: w * scale for t, w in raw.items()}
        return {t: raw.get(t, self.fixed_weights[t]) for t in self.tasks}

    def combine(self, losses: Mapping[str, Tensor]) -> Tensor:
        """`sum_t w_t * L_t` with the current weights as constants (no gradient through them)."""
        if set(losses) != set(self.tasks):
            raise ValueError(f"losses must name exactly the tasks {self.tasks}, got {sorted(losses)}")
        w = self.weights()
        return torch.stack([w[t] * losses[t] for t in self.tasks]).sum()

    def state_dict(self) -> dict[str, Any]:
        return {"tasks": list(self.tasks), "kpis": dict(self.kpis)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if list(state.get("tasks", [])) != self.tasks:
            raise ValueError(f"DTP state is for tasks {state.get('tasks')}, this run has {self.tasks}")
        self.kpis = {t: float(k) for t, k in dict(state["kpis"]).items()}


@torch.no_grad()
def batch_rank1(features: Tensor, labels: Tensor) -> float:
    """Re-id KPI: fraction of samples whose nearest OTHER sample in the batch (Euclidean) has the same label.
    Samples whose label appears once in the batch cannot score and are skipped; NaN if none is left."""
    if features.dim() != 2 or labels.shape != (features.shape[0],):
        raise ValueError(f"features must be N x D and labels N, got {tuple(features.shape)}, {tuple(labels.shape)}")
    same = labels.unsqueeze(0) == labels.unsqueeze(1)
    scorable = same.sum(1) > 1
    if not bool(scorable.any()):
        return math.nan
    dist = torch.cdist(features.float(), features.float())
    dist.fill_diagonal_(math.inf)
    nearest = dist.argmin(1)
    hits = labels[nearest] == labels
    return float(hits[scorable].float().mean())


@torch.no_grad()
def classification_accuracy(logits: Tensor, labels: Tensor) -> float:
    """KPI of a classification head: argmax accuracy over labels >= 0 (-1 = unknown); NaN if none is known."""
    if logits.dim() != 2 or labels.shape != (logits.shape[0],):
        raise ValueError(f"logits must be N x C and labels N, got {tuple(logits.shape)}, {tuple(labels.shape)}")
    known = labels >= 0
    if not bool(known.any()):
        return math.nan
    return float((logits.argmax(1)[known] == labels[known]).float().mean())
