"""The training loop: P x K batches, id + metric + attribute losses weighted by DTP, AMP on CUDA, DDP under
torchrun, per-epoch checkpoints (`last.pt`, `best.pt` by mAP), `metrics.jsonl` and `curves.png`.

Tasks for DTP (each with a KPI in [0, 1] measured on the batch):
- "id": identity classification loss; KPI = batch id accuracy;
- "reid": CTL + center + island (the metric losses); KPI = batch rank-1 of the pooled features;
- one task per attribute head; KPI = the head's batch accuracy (balanced accuracy with `dtp.balanced_kpi`).
  Each head's loss is divided by the number of heads so that, with unit weights, all attributes together weigh
  `loss.attributes.weight` (APR averages them).
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from training.checkpoint import load_training_state, save_checkpoint
from training.config import TrainConfig, save_config
from training.datasets import ReidDataset, ReidSplit, load_dataset
from training.dtp import DynamicTaskPrioritization, batch_rank1, classification_accuracy
from training.evaluate import evaluate_model
from training.losses import (
    AttributeLoss,
    CenterLoss,
    CentroidTripletLoss,
    CrossEntropyLabelSmooth,
    IslandLoss,
    attribute_accuracy,
    center_parameters,
    rescale_center_grads,
)
from training.model import PersonModel, build_model
from training.sampler import RandomIdentitySampler
from training.transforms import build_eval_transform, build_train_transform


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


def lr_factor(step: int, warmup_steps: int, total_steps: int, cfg: Any) -> float:
    """Linear warm-up from `warmup_factor`, then cosine down to `min_lr_factor` (or constant)."""
    if step < warmup_steps:
        return cfg.warmup_factor + (1.0 - cfg.warmup_factor) * step / max(1, warmup_steps)
    if not cfg.cosine:
        return 1.0
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return cfg.min_lr_factor + (1.0 - cfg.min_lr_factor) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def build_optimizer(model: PersonModel, cfg: Any) -> torch.optim.Optimizer:
    """Backbone at `lr`, the new layers (neck, classifier, heads, ARM) at `lr * head_lr_mult`;
    no weight decay on 1-d parameters (BatchNorm, biases, GeM's p), as usual."""
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = defaultdict(list)
    for name, param in model.named_parameters():
        if param.requires_grad:
            groups[(name.startswith("backbone."), param.ndim <= 1)].append(param)
    param_groups = [
        {
            "params": params,
            "lr": cfg.lr * (1.0 if is_backbone else cfg.head_lr_mult),
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
        self.attr_loss = AttributeLoss.from_targets(self.heads, targets, cfg.loss.attributes.balance,
                                                    cfg.loss.attributes.tau)

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


def plot_curves(history: list[dict[str, Any]], path: Path) -> None:
    """Four panels a person can read at a glance: task losses, task weights, mAP / rank-1, attribute mA."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    for ax, key, title in ((axes[0, 0], "losses", "training loss per task"), (axes[0, 1], "weights", "task weights")):
        for task in history[-1][key]:
            ax.plot(epochs, [h[key].get(task, float("nan")) for h in history], label=task)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.legend(fontsize=6, ncol=2)
    axes[0, 0].set_yscale("log")
    evals = [h for h in history if "eval" in h]
    ax = axes[1, 0]
    for key, label in (("mAP", "mAP"), ("rank1", "rank-1")):
        ax.plot([h["epoch"] for h in evals], [h["eval"]["reid"][key] for h in evals], marker="o", label=label)
        ax.plot(
            [h["epoch"] for h in evals],
            [h["eval"]["reid_centroid"][key] for h in evals],
            linestyle="--",
            marker="x",
            label=f"{label} (centroids)",
        )
    ax.set_ylim(0, 1)
    ax.set_title("re-id (query vs gallery)")
    ax.set_xlabel("epoch")
    ax.legend(fontsize=7)
    ax = axes[1, 1]
    ax.plot([h["epoch"] for h in evals], [h["eval"]["attributes"]["mA"] for h in evals], marker="o", label="mA")
    ax.plot(
        epochs,
        [float(np.nanmean(list(h["kpis"].values())[2:] or [np.nan])) for h in history],
        label="train batch attribute accuracy",
    )
    ax.set_ylim(0, 1)
    ax.set_title("attributes")
    ax.set_xlabel("epoch")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _mean(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(sum(finite) / len(finite)) if finite else float("nan")


def data_sources(cfg: TrainConfig) -> dict[str, Path]:
    """The optional `data.schema` / `data.attributes` paths, as load_dataset keyword arguments."""
    return {key: Path(value) for key in ("schema", "attributes") if (value := getattr(cfg.data, key))}


def train(cfg: TrainConfig, resume: bool = False) -> dict[str, Any]:
    """Run the whole training; returns the last epoch's record (as written to metrics.jsonl)."""
    ddp = setup_distributed("cuda" if cfg.device in ("cuda", "auto") and torch.cuda.is_available() else "cpu")
    device = resolve_device(cfg.device, ddp.local_rank)
    seed_everything(cfg.seed + ddp.rank)
    out_dir = Path(cfg.output)
    if ddp.main:
        out_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out_dir / "config.yaml")

    split = load_dataset(
        Path(cfg.data.path), kind=cfg.data.kind, on_bad_image=cfg.data.on_bad_image, **data_sources(cfg)
    )
    if split.schema is None:
        raise ValueError(f"{cfg.data.path}: the dataset has no attribute schema; the multi-task model needs one")
    pid_to_label = split.pid_to_label()
    num_classes = len(pid_to_label)
    d = cfg.data
    train_set = ReidDataset(
        split.train,
        build_train_transform(d.height, d.width, erase_p=d.random_erasing, mean=d.mean, std=d.std),
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

    model = build_model(cfg.model, num_classes, split.schema).to(device)
    criterion = Criterion(cfg, num_classes, model.embedding_dim, split).to(device)
    optimizer = build_optimizer(model, cfg.optim)
    centers = center_parameters([m for m, _ in criterion.center_modules()])
    center_lrs = [cfg.loss.center.lr] * (criterion.center is not None) + [cfg.loss.island.lr] * (
        criterion.island is not None
    )
    center_optimizer = (
        torch.optim.SGD([{"params": [p], "lr": lr} for p, lr in zip(centers, center_lrs, strict=True)])
        if centers
        else None
    )
    dtp = build_dtp(cfg, criterion.tasks)
    use_amp = cfg.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    steps_per_epoch = len(loader) if not cfg.max_steps_per_epoch else min(len(loader), cfg.max_steps_per_epoch)
    if steps_per_epoch == 0:
        raise ValueError(f"the training set gives no full batch of {d.identities_per_batch} x {d.images_per_identity}")
    total_steps = steps_per_epoch * cfg.epochs
    warmup_steps = int(cfg.optim.warmup_epochs * steps_per_epoch)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, warmup_steps, total_steps, cfg.optim)
    )

    start_epoch, best_map, history = 1, -1.0, []
    last_path, best_path = out_dir / "last.pt", out_dir / "best.pt"
    if resume:
        if not last_path.is_file():
            raise FileNotFoundError(f"--resume: {last_path} does not exist")
        state = load_training_state(last_path, model, map_location=device)
        ts = state["training_state"]
        optimizer.load_state_dict(ts["optimizer"])
        scheduler.load_state_dict(ts["scheduler"])
        criterion.load_state_dict(ts["criterion"])
        if center_optimizer is not None:
            center_optimizer.load_state_dict(ts["center_optimizer"])
        dtp.load_state_dict(ts["dtp"])
        scaler.load_state_dict(ts["scaler"])
        start_epoch, best_map, history = state["epoch"] + 1, ts["best_map"], ts["history"]

    net: nn.Module = model
    if ddp.world > 1:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    eval_transform = build_eval_transform(d.height, d.width, d.mean, d.std)
    record: dict[str, Any] = history[-1] if history else {}
    for epoch in range(start_epoch, cfg.epochs + 1):
        sampler.set_epoch(epoch)
        net.train()
        sums: dict[str, list[float]] = defaultdict(list)
        kpi_sums: dict[str, list[float]] = defaultdict(list)
        weight_sums: dict[str, list[float]] = defaultdict(list)
        started = time.time()
        bar = tqdm(total=steps_per_epoch, desc=f"epoch {epoch}/{cfg.epochs}", disable=not ddp.main, dynamic_ncols=True)
        for step, batch in enumerate(loader):
            if step >= steps_per_epoch:
                break
            images = batch["image"].to(device, non_blocking=True)
            labels = batch["pid"].to(device, non_blocking=True)
            attrs = batch["attrs"].to(device, non_blocking=True)
            with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
                out = net(images)
            losses, kpis = criterion(out, labels, attrs)
            dtp.update(kpis)
            weights = task_weights(dtp, cfg.dtp.tasks)
            total = torch.stack([weights[t] * losses[t] for t in dtp.tasks]).sum()
            if not torch.isfinite(total):
                raise FloatingPointError(f"epoch {epoch} step {step}: loss is {float(total)}; {losses}")
            optimizer.zero_grad(set_to_none=True)
            if center_optimizer is not None:
                center_optimizer.zero_grad(set_to_none=True)
            scaler.scale(total).backward()
            if cfg.optim.grad_clip > 0:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
            scaler.step(optimizer)
            if center_optimizer is not None:
                scaler.unscale_(center_optimizer)
                if ddp.world > 1:  # the centres live outside DDP's module: average their gradients by hand
                    for param in centers:
                        if param.grad is not None:
                            dist.all_reduce(param.grad)
                            param.grad.div_(ddp.world)
                for module, weight in criterion.center_modules():
                    rescale_center_grads(module, weight * weights["reid"])
                scaler.step(center_optimizer)
            scaler.update()
            scheduler.step()

            for task, value in losses.items():
                sums[task].append(float(value.detach()))
            for task, value in kpis.items():
                kpi_sums[task].append(value)
            for task, value in weights.items():
                weight_sums[task].append(value)
            bar.update(1)
            bar.set_postfix(
                loss=f"{float(total.detach()):.3f}",
                id=f"{float(losses['id'].detach()):.2f}",
                reid=f"{float(losses['reid'].detach()):.2f}",
                w_id=f"{weights['id']:.2f}",
                w_reid=f"{weights['reid']:.2f}",
                r1=f"{kpis['reid']:.2f}",
            )
        bar.close()

        record = {
            "epoch": epoch,
            "lr": optimizer.param_groups[0]["lr"],
            "seconds": round(time.time() - started, 1),
            "losses": {t: _mean(v) for t, v in sums.items()},
            "kpis": {t: _mean(kpi_sums[t]) for t in dtp.tasks},
            "weights": {t: _mean(weight_sums[t]) for t in dtp.tasks},
        }
        if ddp.main and (epoch % cfg.eval_every == 0 or epoch == cfg.epochs):
            record["eval"] = evaluate_model(
                model, split, eval_transform, device=device, batch_size=d.eval_batch_size, workers=d.workers
            )
            reid = record["eval"]["reid"]
            tqdm.write(
                f"epoch {epoch}: rank-1 {reid['rank1']:.4f} mAP {reid['mAP']:.4f} "
                f"mA {record['eval']['attributes']['mA']:.4f}"
            )
        history.append(record)
        if ddp.main:
            is_best = "eval" in record and record["eval"]["reid"]["mAP"] > best_map
            if is_best:
                best_map = record["eval"]["reid"]["mAP"]
            _write_epoch(
                cfg,
                out_dir,
                model,
                criterion,
                optimizer,
                scheduler,
                center_optimizer,
                dtp,
                scaler,
                split,
                num_classes,
                history,
                best_map,
            )
            if is_best:
                save_checkpoint(
                    best_path,
                    model,
                    config=cfg.to_dict(),
                    schema=split.schema,
                    num_classes=num_classes,
                    epoch=epoch,
                    metrics=record["eval"],
                    dataset=str(cfg.data.path),
                )
        if ddp.world > 1:
            dist.barrier()
    if ddp.world > 1:
        dist.destroy_process_group()
    return record


def _write_epoch(
    cfg: TrainConfig,
    out_dir: Path,
    model: PersonModel,
    criterion: Criterion,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    center_optimizer: torch.optim.Optimizer | None,
    dtp: DynamicTaskPrioritization,
    scaler: torch.amp.GradScaler,
    split: ReidSplit,
    num_classes: int,
    history: list[dict[str, Any]],
    best_map: float,
) -> None:
    record = history[-1]
    last_eval = next((h["eval"] for h in reversed(history) if "eval" in h), {})
    save_checkpoint(
        out_dir / "last.pt",
        model,
        config=cfg.to_dict(),
        schema=split.schema,
        num_classes=num_classes,
        epoch=record["epoch"],
        metrics=last_eval,
        dataset=str(cfg.data.path),
        training_state={
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "criterion": criterion.state_dict(),
            "center_optimizer": center_optimizer.state_dict() if center_optimizer is not None else None,
            "dtp": dtp.state_dict(),
            "scaler": scaler.state_dict(),
            "best_map": best_map,
            "history": history,
        },
    )
    with open(out_dir / "metrics.jsonl", "a") as fh:
        fh.write(json.dumps(record) + "\n")
    plot_curves(history, out_dir / "curves.png")
