"""Checkpoints: everything needed to rebuild the model without the training data (config, schema, classes),
plus the optimiser / scheduler / DTP / scaler state for `--resume`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from training.config import config_from_dict
from training.data.schema import AttributeSchema
from training.modeling.model import PersonModel, build_model

FORMAT_VERSION = 1


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") else model


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    *,
    config: dict[str, Any],
    schema: AttributeSchema,
    num_classes: int,
    epoch: int,
    metrics: dict[str, Any] | None = None,
    dataset: str = "",
    training_state: dict[str, Any] | None = None,
) -> None:
    """Write atomically (tmp file + rename) so a crash mid-write never leaves a broken `last.pt`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format_version": FORMAT_VERSION,
        "model": _unwrap(model).state_dict(),
        "config": config,
        "schema": schema.to_dict(),
        "num_classes": num_classes,
        "epoch": epoch,
        "metrics": metrics or {},
        "dataset": dataset,
        "training_state": training_state or {},
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    payload = torch.load(path, map_location=map_location, weights_only=False)
    if not isinstance(payload, dict) or payload.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path} is not a personid checkpoint (format_version {FORMAT_VERSION})")
    return payload


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[PersonModel, dict[str, Any]]:
    """Rebuild the model in eval mode; the dict holds config, schema (dict), num_classes, epoch, metrics, dataset."""
    payload = read_checkpoint(path, map_location)
    config = config_from_dict(payload["config"])
    schema = AttributeSchema.from_dict(payload["schema"])
    model = build_model(config.model, payload["num_classes"], schema, pretrained=False)
    model.load_state_dict(payload["model"])
    model.to(map_location).eval()
    info = {key: payload[key] for key in ("config", "schema", "num_classes", "epoch", "metrics", "dataset")}
    return model, info


def load_training_state(path: str | Path, model: nn.Module, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load weights into `model` (in place) and return the checkpoint, whose `training_state` the engine restores."""
    payload = read_checkpoint(path, map_location)
    _unwrap(model).load_state_dict(payload["model"])
    return payload
