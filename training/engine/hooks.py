"""The trainer's side effects as hooks (fast-reid's `HookBase`): progress bar, periodic evaluation, `last.pt` /
`best.pt`, `metrics.jsonl` and `curves.png`. They run on rank 0 only, in the order `default_hooks` lists them:
the evaluation first, then the files in the order the loop always wrote them (`last.pt`, `metrics.jsonl`,
`curves.png`, `best.pt`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from training.data.transforms import EvalTransform, build_eval_transform
from training.engine.checkpoint import save_checkpoint
from training.evaluation.evaluate import evaluate_model

if TYPE_CHECKING:
    from training.engine.trainer import Trainer


class HookBase:
    """No-op callbacks the trainer calls around training, each epoch and each step; a hook overrides the ones
    it needs. The trainer is an argument rather than an attribute, so hooks hold no reference back to it."""

    def before_train(self, trainer: Trainer) -> None:
        """Before the first epoch (after `--resume` restored the state)."""

    def after_train(self, trainer: Trainer) -> None:
        """After the last epoch."""

    def before_epoch(self, trainer: Trainer) -> None:
        """Before the epoch's first step; `trainer.state.epoch` is the new epoch."""

    def after_epoch(self, trainer: Trainer) -> None:
        """After the epoch; its record is `trainer.state.record` (already in `state.history`)."""

    def before_step(self, trainer: Trainer) -> None:
        """Before `run_step`; `trainer.state.step` is the step within the epoch."""

    def after_step(self, trainer: Trainer) -> None:
        """After `run_step`; its losses, KPIs and weights are `trainer.state.step_output`."""


class ProgressHook(HookBase):
    """One tqdm bar per epoch, with the total loss, the id / reid losses and weights and the batch rank-1."""

    def __init__(self) -> None:
        self.bar: tqdm | None = None

    def before_epoch(self, trainer: Trainer) -> None:
        self.bar = tqdm(
            total=trainer.steps_per_epoch, desc=f"epoch {trainer.state.epoch}/{trainer.cfg.epochs}", dynamic_ncols=True
        )

    def after_step(self, trainer: Trainer) -> None:
        out = trainer.state.step_output
        assert self.bar is not None and out is not None
        self.bar.update(1)
        self.bar.set_postfix(
            loss=f"{float(out.total.detach()):.3f}",
            id=f"{float(out.losses['id'].detach()):.2f}",
            reid=f"{float(out.losses['reid'].detach()):.2f}",
            w_id=f"{out.weights['id']:.2f}",
            w_reid=f"{out.weights['reid']:.2f}",
            r1=f"{out.kpis['reid']:.2f}",
        )

    def after_epoch(self, trainer: Trainer) -> None:
        assert self.bar is not None
        self.bar.close()
        self.bar = None


class EvalHook(HookBase):
    """Evaluates every `eval_every` epochs and after the last one, adds it to the record as "eval" and keeps the
    best mAP (`state.best_map`, `state.is_best`) for the checkpoint hooks."""

    def __init__(self) -> None:
        self.transform: EvalTransform | None = None

    def before_train(self, trainer: Trainer) -> None:
        d = trainer.cfg.data
        self.transform = build_eval_transform(d.height, d.width, d.mean, d.std)

    def after_epoch(self, trainer: Trainer) -> None:
        cfg, state = trainer.cfg, trainer.state
        record = state.record
        if state.epoch % cfg.eval_every == 0 or state.epoch == cfg.epochs:
            assert self.transform is not None
            record["eval"] = evaluate_model(
                trainer.model,
                trainer.split,
                self.transform,
                device=trainer.device,
                batch_size=cfg.data.eval_batch_size,
                workers=cfg.data.workers,
            )
            reid = record["eval"]["reid"]
            tqdm.write(
                f"epoch {state.epoch}: rank-1 {reid['rank1']:.4f} mAP {reid['mAP']:.4f} "
                f"mA {record['eval']['attributes']['mA']:.4f}"
            )
        state.is_best = "eval" in record and record["eval"]["reid"]["mAP"] > state.best_map
        if state.is_best:
            state.best_map = record["eval"]["reid"]["mAP"]


def _save(trainer: Trainer, path: Path, metrics: dict[str, Any], training_state: dict[str, Any] | None = None) -> None:
    """A checkpoint of the current epoch with what rebuilds the model without the training data."""
    save_checkpoint(
        path,
        trainer.model,
        config=trainer.cfg.to_dict(),
        schema=trainer.split.schema,
        num_classes=trainer.num_classes,
        epoch=trainer.state.epoch,
        metrics=metrics,
        dataset=str(trainer.cfg.data.path),
        training_state=training_state,
    )


class LastCheckpointHook(HookBase):
    """`last.pt` every epoch, with the latest evaluation and the training state `--resume` restores."""

    def after_epoch(self, trainer: Trainer) -> None:
        last_eval = next((h["eval"] for h in reversed(trainer.state.history) if "eval" in h), {})
        _save(trainer, trainer.out_dir / "last.pt", last_eval, trainer.training_state())


class MetricsHook(HookBase):
    """Appends the epoch's record to `metrics.jsonl`, one JSON object a line."""

    def after_epoch(self, trainer: Trainer) -> None:
        with open(trainer.out_dir / "metrics.jsonl", "a") as fh:
            fh.write(json.dumps(trainer.state.record) + "\n")


class CurvesHook(HookBase):
    """Redraws `curves.png` from the whole history every epoch."""

    def after_epoch(self, trainer: Trainer) -> None:
        plot_curves(trainer.state.history, trainer.out_dir / "curves.png")


class BestCheckpointHook(HookBase):
    """`best.pt` (weights and evaluation, no training state) when the epoch's mAP beats the best so far."""

    def after_epoch(self, trainer: Trainer) -> None:
        if trainer.state.is_best:
            _save(trainer, trainer.out_dir / "best.pt", trainer.state.record["eval"])


def default_hooks() -> list[HookBase]:
    """The hooks of `train`; the evaluation comes before the files that record it."""
    return [ProgressHook(), EvalHook(), LastCheckpointHook(), MetricsHook(), CurvesHook(), BestCheckpointHook()]


def plot_curves(history: list[dict[str, Any]], path: Path) -> None:
    """Four panels a person can read at a glance: task losses, task weights, mAP / rank-1, attribute mA."""
    from matplotlib.figure import Figure  # not pyplot: the caller's backend (a notebook's) stays as it is

    epochs = [h["epoch"] for h in history]
    fig = Figure(figsize=(12, 8))
    axes = fig.subplots(2, 2)
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
