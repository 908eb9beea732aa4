"""The training loop: P x K batches, id + metric + attribute losses weighted by DTP, AMP on CUDA, DDP under
torchrun. The per-epoch side effects (evaluation, `last.pt` / `best.pt`, `metrics.jsonl`, `curves.png`, the
progress bar) are hooks (training.engine.hooks), as in fast-reid's `TrainerBase`.

Tasks for DTP (each with a KPI in [0, 1] measured on the batch):
- "id": identity classification loss; KPI = batch id accuracy;
- "reid": CTL + center + island (the metric losses); KPI = batch rank-1 of the pooled features;
- one task per attribute head; KPI = the head's batch accuracy (balanced accuracy with `dtp.balanced_kpi`).
  Each head's loss is divided by the number of heads so that, with unit weights, all attributes together weigh
  `loss.attributes.weight` (APR averages them).
Outside DTP, at a fixed weight: feature distillation from a frozen copy of the pretrained backbone
(`loss.distill`), which keeps the ImageNet features that transfer to real crops.
"""

from __future__ import annotations

import copy
import math
import os
import random
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader

from training.config import OptimConfig, TrainConfig, save_config
from training.data.datasets import ReidDataset, ReidSplit, load_dataset
from training.data.sampler import RandomIdentitySampler
from training.data.transforms import build_train_transform, colour_heads, greyscale_batch
from training.engine.checkpoint import load_training_state
from training.engine.dtp import DynamicTaskPrioritization, batch_rank1, classification_accuracy
from training.engine.hooks import HookBase, default_hooks
from training.modeling.losses import (
    AttributeLoss,
    CenterLoss,
    CentroidTripletLoss,
    CrossEntropyLabelSmooth,
    IslandLoss,
    attribute_accuracy,
    center_parameters,
    feature_distillation,
    rescale_center_grads,
)
from training.modeling.model import PersonModel, build_model


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device_name: str) -> Dist:
    """torchrun sets WORLD_SIZE/RANK/LOCAL_RANK; without them this is a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    info = Dist(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_name == "cuda" else "gloo")
    return info


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("device 'cuda' asked for, but torch sees no CUDA device")
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def lr_factor(step: int, warmup_steps: int, total_steps: int, cfg: OptimConfig) -> float:
    """Linear warm-up from `warmup_factor`, then cosine down to `min_lr_factor` (or constant)."""
    if step < warmup_steps:
        return cfg.warmup_factor + (1.0 - cfg.warmup_factor) * step / max(1, warmup_steps)
    if not cfg.cosine:
        return 1.0
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return cfg.min_lr_factor + (1.0 - cfg.min_lr_factor) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def build_optimizer(model: PersonModel, cfg: OptimConfig) -> torch.optim.Optimizer:
    """Backbone at `lr * backbone_lr_mult`, the new layers (neck, classifier, heads, ARM) at `lr * head_lr_mult`;
    no weight decay on 1-d parameters (BatchNorm, biases, GeM's p), as usual."""
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = defaultdict(list)
    for name, param in model.named_parameters():
        if param.requires_grad:
            groups[(name.startswith("backbone."), param.ndim <= 1)].append(param)
    param_groups = [
        {
            "params": params,
            "lr": cfg.lr * (cfg.backbone_lr_mult if is_backbone else cfg.head_lr_mult),
            "weight_decay": 0.0 if no_decay else cfg.weight_decay,
        }
        for (is_backbone, no_decay), params in groups.items()
    ]
    if cfg.name == "adamw":
        return torch.optim.AdamW(param_groups, lr=cfg.lr)
    if cfg.name == "sgd":
        return torch.optim.SGD(param_groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=True)
    raise ValueError(f"unknown optimizer {cfg.name!r}; choose adamw or sgd")


class Criterion(nn.Module):
    """All losses; `forward` returns the per-task losses (DTP combines them) and the batch KPIs."""

    def __init__(self, cfg: TrainConfig, num_classes: int, feat_dim: int, split: ReidSplit) -> None:
        super().__init__()
        self.cfg = cfg.loss
        self.balanced_kpi = cfg.dtp.balanced_kpi
        self.heads = list(split.schema.heads)
        self.id_loss = CrossEntropyLabelSmooth(num_classes, cfg.loss.id.label_smoothing)
        self.ctl = CentroidTripletLoss(cfg.loss.ctl.margin)
        self.center = CenterLoss(num_classes, feat_dim) if cfg.loss.center.weight > 0 else None
        self.island = IslandLoss(num_classes, feat_dim, cfg.loss.island.lambda1) if cfg.loss.island.weight > 0 else None
        known = [r.attrs for r in split.train if r.attrs is not None]
        targets = torch.tensor(known, dtype=torch.long) if known else torch.full((1, len(self.heads)), -1)
        self.attr_loss = AttributeLoss.from_targets(
            self.heads, targets, cfg.loss.attributes.balance, cfg.loss.attributes.tau
        )

    @property
    def tasks(self) -> list[str]:
        return ["id", "reid", *[h.name for h in self.heads]]

    def center_modules(self) -> list[tuple[CenterLoss, float]]:
        pairs = [(self.center, self.cfg.center.weight), (self.island, self.cfg.island.weight)]
        return [(module, weight) for module, weight in pairs if module is not None]

    def forward(
        self, out: dict[str, torch.Tensor], labels: torch.Tensor, attrs: torch.Tensor
    ) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        feature = out["feature"].float()
        id_logits = out["id_logits"].float()
        attr_logits = out["attr_logits"].float()
        reid = self.cfg.ctl.weight * self.ctl(feature, labels)
        for module, weight in self.center_modules():
            reid = reid + weight * module(feature, labels)
        _, per_head = self.attr_loss(attr_logits, attrs)
        scale = self.cfg.attributes.weight / len(self.heads)
        losses = {"id": self.cfg.id.weight * self.id_loss(id_logits, labels), "reid": reid}
        losses.update({h.name: scale * per_head[j] for j, h in enumerate(self.heads)})
        kpis = {"id": classification_accuracy(id_logits, labels), "reid": batch_rank1(feature, labels)}
        accuracy = attribute_accuracy(attr_logits, attrs, self.heads, self.balanced_kpi)
        kpis.update({h.name: float(accuracy[j]) for j, h in enumerate(self.heads)})
        return losses, kpis


def build_dtp(cfg: TrainConfig, tasks: list[str]) -> DynamicTaskPrioritization:
    """DTP over `dtp.tasks` (all when empty); the other tasks keep weight 1 (folded into `fixed_weights`)."""
    unknown = set(cfg.dtp.tasks) - set(tasks)
    if unknown:
        raise ValueError(f"dtp.tasks names unknown tasks {sorted(unknown)}; tasks are {tasks}")
    return DynamicTaskPrioritization(
        tasks,
        gamma=cfg.dtp.gamma,
        alpha=cfg.dtp.alpha,
        clamp=(cfg.dtp.clamp[0], cfg.dtp.clamp[1]),
        enabled=cfg.dtp.enabled,
        normalize=cfg.dtp.normalize,
    )


def task_weights(dtp: DynamicTaskPrioritization, selected: list[str]) -> dict[str, float]:
    """DTP weights for the selected tasks (renormalised among them), 1.0 for the others."""
    weights = dtp.weights()
    if not selected or set(selected) == set(dtp.tasks):
        return weights
    chosen = {t: weights[t] for t in selected}
    if dtp.enabled and dtp.normalize and all(t in dtp.kpis for t in dtp.tasks):
        total = sum(chosen.values())
        chosen = {t: w * len(chosen) / total for t, w in chosen.items()}
    return {t: chosen.get(t, 1.0) for t in dtp.tasks}


def _mean(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(sum(finite) / len(finite)) if finite else float("nan")


def data_sources(cfg: TrainConfig) -> dict[str, Path]:
    """The optional `data.schema` / `data.attributes` paths, as load_dataset keyword arguments."""
    return {key: Path(value) for key in ("schema", "attributes") if (value := getattr(cfg.data, key))}


def build_loader(
    cfg: TrainConfig, split: ReidSplit, pid_to_label: dict[int, int], ddp: Dist, device: torch.device
) -> tuple[DataLoader, RandomIdentitySampler]:
    """P x K batches (identities x images each); the sampler shards identities over the DDP ranks."""
    d = cfg.data
    train_set = ReidDataset(
        split.train,
        build_train_transform(d.height, d.width, erase_p=d.random_erasing, mean=d.mean, std=d.std, augment=d.augment),
        pid_to_label,
        num_heads=len(split.schema.heads),
    )
    sampler = RandomIdentitySampler(
        [r.pid for r in split.train],
        batch_size=d.identities_per_batch * d.images_per_identity,
        num_instances=d.images_per_identity,
        seed=cfg.seed,
        num_replicas=ddp.world,
        rank=ddp.rank,
    )
    loader = DataLoader(
        train_set,
        batch_size=d.identities_per_batch * d.images_per_identity,
        sampler=sampler,
        num_workers=d.workers,
        drop_last=True,
        pin_memory=device.type == "cuda",
        persistent_workers=d.workers > 0,
    )
    return loader, sampler


def build_center_optimizer(cfg: TrainConfig, criterion: Criterion) -> tuple[list[nn.Parameter], torch.optim.SGD | None]:
    """The center / island centres and their plain SGD at their own rates (None when both losses are off)."""
    centers = center_parameters([m for m, _ in criterion.center_modules()])
    center_lrs = [cfg.loss.center.lr] * (criterion.center is not None) + [cfg.loss.island.lr] * (
        criterion.island is not None
    )
    center_optimizer = (
        torch.optim.SGD([{"params": [p], "lr": lr} for p, lr in zip(centers, center_lrs, strict=True)])
        if centers
        else None
    )
    return centers, center_optimizer


@dataclass
class StepOutput:
    """What one step leaves for the epoch's means and the progress bar."""

    total: torch.Tensor
    losses: dict[str, torch.Tensor]
    kpis: dict[str, float]
    weights: dict[str, float]


@dataclass
class EpochMeters:
    """Per-task values of every step of an epoch; their means become the epoch's record."""

    losses: defaultdict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    kpis: defaultdict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    weights: defaultdict[str, list[float]] = field(default_factory=lambda: defaultdict(list))

    def add(self, out: StepOutput) -> None:
        for task, value in out.losses.items():
            self.losses[task].append(float(value.detach()))
        for task, value in out.kpis.items():
            self.kpis[task].append(value)
        for task, value in out.weights.items():
            self.weights[task].append(value)

    def means(self, tasks: list[str]) -> dict[str, dict[str, float]]:
        return {
            "losses": {t: _mean(v) for t, v in self.losses.items()},
            "kpis": {t: _mean(self.kpis[t]) for t in tasks},
            "weights": {t: _mean(self.weights[t]) for t in tasks},
        }


@dataclass
class TrainState:
    """Where training stands; `last.pt` keeps `best_map` and `history` so that `--resume` carries on."""

    epoch: int = 0
    step: int = 0
    best_map: float = -1.0
    is_best: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)
    step_output: StepOutput | None = None

    @property
    def record(self) -> dict[str, Any]:
        """The latest epoch's record, as written to metrics.jsonl ({} before the first epoch)."""
        return self.history[-1] if self.history else {}


class Trainer:
    """Builds data, model, losses and optimisers from the config (in the order that fixes the seeded random
    draws), then runs epochs of `run_step` and calls the hooks around training, each epoch and each step."""

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        self.ddp = setup_distributed("cuda" if cfg.device in ("cuda", "auto") and torch.cuda.is_available() else "cpu")
        self.device = resolve_device(cfg.device, self.ddp.local_rank)
        seed_everything(cfg.seed + self.ddp.rank)
        self.out_dir = Path(cfg.output)
        if self.ddp.main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            save_config(cfg, self.out_dir / "config.yaml")
        self.split = load_dataset(
            Path(cfg.data.path), kind=cfg.data.kind, on_bad_image=cfg.data.on_bad_image, **data_sources(cfg)
        )
        if self.split.schema is None:
            raise ValueError(f"{cfg.data.path}: the dataset has no attribute schema; the multi-task model needs one")
        pid_to_label = self.split.pid_to_label()
        self.num_classes = len(pid_to_label)
        self.loader, self.sampler = build_loader(cfg, self.split, pid_to_label, self.ddp, self.device)
        self.model = build_model(cfg.model, self.num_classes, self.split.schema).to(self.device)
        self.net: nn.Module = self.model
        self.teacher = build_teacher(self.model) if cfg.loss.distill.weight > 0 else None
        self.colour_heads = colour_heads(self.split.schema.heads)
        self.criterion = Criterion(cfg, self.num_classes, self.model.embedding_dim, self.split).to(self.device)
        self.optimizer = build_optimizer(self.model, cfg.optim)
        self.centers, self.center_optimizer = build_center_optimizer(cfg, self.criterion)
        self.dtp = build_dtp(cfg, self.criterion.tasks)
        self.use_amp = cfg.amp and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.steps_per_epoch = self._steps_per_epoch()
        total_steps = self.steps_per_epoch * cfg.epochs
        warmup_steps = int(cfg.optim.warmup_epochs * self.steps_per_epoch)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: lr_factor(step, warmup_steps, total_steps, cfg.optim)
        )
        self.state = TrainState()
        self.hooks: list[HookBase] = []

    def _steps_per_epoch(self) -> int:
        cfg, d = self.cfg, self.cfg.data
        steps = len(self.loader) if not cfg.max_steps_per_epoch else min(len(self.loader), cfg.max_steps_per_epoch)
        if steps == 0:
            raise ValueError(
                f"the training set gives no full batch of {d.identities_per_batch} x {d.images_per_identity}"
            )
        return steps

    def register_hooks(self, hooks: Sequence[HookBase]) -> None:
        self.hooks.extend(hooks)

    def training_state(self) -> dict[str, Any]:
        """Everything besides the weights that `resume` restores (saved in `last.pt`)."""
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "criterion": self.criterion.state_dict(),
            "center_optimizer": self.center_optimizer.state_dict() if self.center_optimizer is not None else None,
            "dtp": self.dtp.state_dict(),
            "scaler": self.scaler.state_dict(),
            "best_map": self.state.best_map,
            "history": self.state.history,
        }

    def resume(self) -> None:
        """Restore weights and `training_state` from OUTPUT/last.pt; training goes on at the next epoch."""
        last_path = self.out_dir / "last.pt"
        if not last_path.is_file():
            raise FileNotFoundError(f"--resume: {last_path} does not exist")
        checkpoint = load_training_state(last_path, self.model, map_location=self.device)
        ts = checkpoint["training_state"]
        self.optimizer.load_state_dict(ts["optimizer"])
        self.scheduler.load_state_dict(ts["scheduler"])
        self.criterion.load_state_dict(ts["criterion"])
        if self.center_optimizer is not None:
            self.center_optimizer.load_state_dict(ts["center_optimizer"])
        self.dtp.load_state_dict(ts["dtp"])
        self.scaler.load_state_dict(ts["scaler"])
        self.state = TrainState(epoch=checkpoint["epoch"], best_map=ts["best_map"], history=ts["history"])

    def train(self) -> dict[str, Any]:
        """Epochs from the one after `state.epoch` to `cfg.epochs`; returns the last epoch's record."""
        if self.ddp.world > 1:
            self.net = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        self._call("before_train")
        for epoch in range(self.state.epoch + 1, self.cfg.epochs + 1):
            self.state.epoch = epoch
            self.state.history.append(self.run_epoch())
            self._call("after_epoch")
            if self.ddp.world > 1:
                dist.barrier()
        self._call("after_train")
        if self.ddp.world > 1:
            dist.destroy_process_group()
        return self.state.record

    def run_epoch(self) -> dict[str, Any]:
        """`steps_per_epoch` steps; returns the epoch's record without the evaluation (a hook adds it)."""
        self.sampler.set_epoch(self.state.epoch)
        self.net.train()
        meters = EpochMeters()
        started = time.time()
        self._call("before_epoch")
        for step, batch in enumerate(self.loader):
            if step >= self.steps_per_epoch:
                break
            self.state.step = step
            self._call("before_step")
            self.state.step_output = self.run_step(batch)
            meters.add(self.state.step_output)
            self._call("after_step")
        return {
            "epoch": self.state.epoch,
            "lr": self.optimizer.param_groups[0]["lr"],
            "seconds": round(time.time() - started, 1),
            **meters.means(self.dtp.tasks),
        }

    def run_step(self, batch: dict[str, torch.Tensor]) -> StepOutput:
        """Forward, DTP-weighted total loss, backward, then the optimiser, centre and LR updates."""
        images = batch["image"].to(self.device, non_blocking=True)
        labels = batch["pid"].to(self.device, non_blocking=True)
        attrs = batch["attrs"].to(self.device, non_blocking=True)
        d = self.cfg.data
        images, attrs = greyscale_batch(images, attrs, d.augment.greyscale, self.colour_heads, d.mean, d.std)
        with torch.autocast(device_type=self.device.type, dtype=torch.float16, enabled=self.use_amp):
            out = self.net(images)
            if self.teacher is not None:
                with torch.no_grad():
                    target = self.model.pool(self.teacher(images))
        losses, kpis = self.criterion(out, labels, attrs)
        self.dtp.update(kpis)
        weights = task_weights(self.dtp, self.cfg.dtp.tasks)
        total = torch.stack([weights[t] * losses[t] for t in self.dtp.tasks]).sum()
        if self.teacher is not None:
            losses["distill"] = feature_distillation(out["pooled"], target, self.cfg.loss.distill.kind)
            total = total + self.cfg.loss.distill.weight * losses["distill"]
        if not torch.isfinite(total):
            raise FloatingPointError(
                f"epoch {self.state.epoch} step {self.state.step}: loss is {float(total)}; {losses}"
            )
        self.optimizer.zero_grad(set_to_none=True)
        if self.center_optimizer is not None:
            self.center_optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        if self.cfg.optim.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.optim.grad_clip)
        self.scaler.step(self.optimizer)
        if self.center_optimizer is not None:
            self._step_centers(self.center_optimizer, weights["reid"])
        self.scaler.update()
        self.scheduler.step()
        return StepOutput(total, losses, kpis, weights)

    def _step_centers(self, center_optimizer: torch.optim.Optimizer, reid_weight: float) -> None:
        """The centres live outside DDP's module: average their gradients by hand, then undo the loss weights
        (the centres move at their own learning rates, not at the loss weight's scale)."""
        self.scaler.unscale_(center_optimizer)
        if self.ddp.world > 1:
            for param in self.centers:
                if param.grad is not None:
                    dist.all_reduce(param.grad)
                    param.grad.div_(self.ddp.world)
        for module, weight in self.criterion.center_modules():
            rescale_center_grads(module, weight * reid_weight)
        self.scaler.step(center_optimizer)

    def _call(self, event: str) -> None:
        for hook in self.hooks:
            getattr(hook, event)(self)


def build_teacher(model: PersonModel) -> nn.Module:
    """A frozen copy of the backbone as it is now (the pretrained weights, before any step), in eval mode."""
    teacher = copy.deepcopy(model.backbone).eval()
    teacher.requires_grad_(False)
    return teacher


def train(cfg: TrainConfig, resume: bool = False) -> dict[str, Any]:
    """Run the whole training; returns the last epoch's record (as written to metrics.jsonl)."""
    trainer = Trainer(cfg)
    if resume:
        trainer.resume()
    if trainer.ddp.main:  # every side effect (evaluation, files, progress bar) belongs to rank 0
        trainer.register_hooks(default_hooks())
    return trainer.train()
