"""Training: `train(config)` runs a `Trainer` (training.engine.trainer) with its hooks (training.engine.hooks)."""

from training.engine.trainer import Criterion, lr_factor, task_weights, train

__all__ = ["Criterion", "lr_factor", "task_weights", "train"]
