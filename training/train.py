"""`personid train`: train the multi-task model from a YAML config (flags and `--set key=value` override it).

If `data.path` does not exist and the config has `data.synthesize: {...}`, the synthetic set is generated
first (synth), so one command trains the default model from scratch.
Multi-GPU: `torchrun --nproc_per_node N -m personid.cli train ...` (or `python -m torch.distributed.run`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from training.config import TrainConfig, load_config


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="personid train", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, help="YAML config (configs/default.yaml); defaults if left out")
    parser.add_argument("--data", help="dataset root (overrides data.path)")
    parser.add_argument("--output", help="run folder (overrides output)")
    parser.add_argument("--epochs", type=int, help="overrides epochs")
    parser.add_argument("--device", help="cpu | cuda | auto (overrides device)")
    parser.add_argument("--resume", action="store_true", help="continue from OUTPUT/last.pt")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any config key, e.g. --set optim.lr=1e-3 (repeatable)",
    )
    return parser


def resolve_config(args: argparse.Namespace) -> TrainConfig:
    overrides = list(args.overrides)
    for key, value in (
        ("data.path", args.data),
        ("output", args.output),
        ("epochs", args.epochs),
        ("device", args.device),
    ):
        if value is not None:
            overrides.append(f"{key}={json.dumps(value) if isinstance(value, str) else value}")
    return load_config(args.config, overrides)


def ensure_data(cfg: TrainConfig) -> None:
    """Generate the synthetic dataset named by `data.synthesize` when `data.path` is missing."""
    path = Path(cfg.data.path)
    if path.exists():
        return
    if not cfg.data.synthesize:
        raise FileNotFoundError(f"dataset {path} does not exist (and the config has no data.synthesize block)")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise FileNotFoundError(f"dataset {path} does not exist: generate it before a multi-process run")
    import synth

    print(f"personid train: {path} missing, generating it with {cfg.data.synthesize}", file=sys.stderr)
    synth.generate(path, **cfg.data.synthesize)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = resolve_config(args)
        ensure_data(cfg)
        from training.engine import train

        record = train(cfg, resume=args.resume)
    except (FileNotFoundError, ValueError) as exc:  # bad config, data or paths (DatasetError is a ValueError)
        print(f"personid train: {exc}", file=sys.stderr)
        return 2
    summary = {"output": cfg.output, "epoch": record.get("epoch"), "eval": record.get("eval")}
    if "eval" in record:
        ev = record["eval"]
        summary["eval"] = {"reid": ev["reid"], "reid_centroid": ev["reid_centroid"], "mA": ev["attributes"]["mA"]}
    print(json.dumps(summary))
    return 0
