"""`personid eval`: score a checkpoint (PyTorch) or an exported model (ONNX Runtime + its manifest) on a
dataset's query/gallery split. Prints ONE JSON object on stdout: `reid`, `reid_centroid`, `attributes`.

Attributes are scored on the labelled gallery images (Market's official attribute protocol); re-id follows
the Market protocol (training.evaluation.metrics).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from personid.manifest import HeadLike, Manifest, check_model, load_manifest
from personid.session import open_session
from training.data.datasets import ImageRecord, ReidDataset, ReidSplit, load_dataset
from training.data.schema import AttributeSchema
from training.data.transforms import EvalTransform, build_eval_transform
from training.evaluation.metrics import attribute_metrics, evaluate_centroids, reid_metrics
from training.modeling.model import PersonModel, attribute_probabilities

Runner = Callable[[torch.Tensor], tuple[np.ndarray, np.ndarray]]


def extract(
    run: Runner,
    records: Sequence[ImageRecord],
    transform: EvalTransform,
    num_heads: int,
    batch_size: int = 64,
    workers: int = 0,
    desc: str = "extract",
) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings (N x D) and attribute probabilities (N x M) of `records`, in order."""
    loader = DataLoader(
        ReidDataset(records, transform, None, num_heads=num_heads), batch_size=batch_size, num_workers=workers
    )
    embeddings, probs = [], []
    for batch in tqdm(loader, desc=desc, leave=False, file=sys.stderr):
        emb, prob = run(batch["image"])
        embeddings.append(emb)
        probs.append(prob)
    return np.concatenate(embeddings), np.concatenate(probs)


def torch_runner(model: PersonModel, device: torch.device | str) -> Runner:
    @torch.no_grad()
    def run(images: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        out = model(images.to(device))
        probs = attribute_probabilities(out["attr_logits"].float(), model.schema)
        return out["embedding"].float().cpu().numpy(), probs.cpu().numpy()

    return run


def aligned_targets(
    records: Sequence[ImageRecord], data_schema: AttributeSchema, heads: Sequence[HeadLike]
) -> np.ndarray:
    """Targets (N x H) in the MODEL's head order; the dataset must label every model head with the same labels."""
    index = {}
    for head in heads:
        try:
            data_head = data_schema.head(head.name)
        except KeyError:
            raise ValueError(f"the dataset's schema {data_schema.name!r} has no head {head.name!r}") from None
        if tuple(data_head.labels) != tuple(head.labels) or data_head.type != head.type:
            raise ValueError(f"head {head.name!r}: the model and the dataset disagree on its type or labels")
        index[head.name] = data_schema.heads.index(data_head)
    rows = [[r.attrs[index[h.name]] for h in heads] for r in records]
    return np.asarray(rows, dtype=np.int64).reshape(len(records), len(heads))


def score(
    split: ReidSplit, heads: Sequence[HeadLike], run: Runner, transform: EvalTransform, batch_size: int, workers: int
) -> dict[str, Any]:
    """Extract query and gallery, then the re-id (per image and per centroid) and attribute figures."""
    if not split.query or not split.gallery:
        raise ValueError(f"{split.root}: evaluation needs query and gallery images")
    num_heads = len(split.schema.heads) if split.schema is not None else 0
    q_emb, _ = extract(run, split.query, transform, num_heads, batch_size, workers, "query")
    g_emb, g_probs = extract(run, split.gallery, transform, num_heads, batch_size, workers, "gallery")
    q_pids = np.array([r.pid for r in split.query])
    g_pids = np.array([r.pid for r in split.gallery])
    q_cams = np.array([r.camid for r in split.query])
    g_cams = np.array([r.camid for r in split.gallery])
    result: dict[str, Any] = {
        "reid": reid_metrics(q_emb, g_emb, q_pids, g_pids, q_cams, g_cams),
        "reid_centroid": evaluate_centroids(q_emb, g_emb, q_pids, g_pids, q_cams, g_cams),
        "images": {"query": len(split.query), "gallery": len(split.gallery)},
    }
    labelled = [i for i, r in enumerate(split.gallery) if r.attrs is not None]
    if not heads:
        result["attributes"] = {"mA": None, "note": "the model has no attribute heads"}
    elif split.schema is not None and labelled:
        records = [split.gallery[i] for i in labelled]
        targets = aligned_targets(records, split.schema, heads)
        result["attributes"] = attribute_metrics(g_probs[labelled], targets, heads)
        result["images"]["attributes"] = len(labelled)
    else:
        result["attributes"] = {"mA": None, "note": "the dataset has no attribute labels on the gallery"}
    return result


def evaluate_model(
    model: PersonModel,
    split: ReidSplit,
    transform: EvalTransform,
    device: torch.device | str = "cpu",
    batch_size: int = 64,
    workers: int = 0,
) -> dict[str, Any]:
    """Evaluate a PyTorch model; restores its train/eval mode afterwards (the engine calls this mid-training)."""
    was_training = model.training
    model.eval()
    try:
        return score(split, model.schema.heads, torch_runner(model, device), transform, batch_size, workers)
    finally:
        model.train(was_training)


def onnx_runner(onnx_path: Path, manifest: Manifest) -> Runner:
    """Run the exported graph after the checks the service makes before it serves it."""
    import onnxruntime as ort

    session = open_session(onnx_path, ort.get_available_providers())
    check_model(manifest, onnx_path, session)
    input_name = manifest.input.name
    names = [manifest.outputs.embedding.name, manifest.outputs.attributes.name]

    def run(images: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        emb, probs = session.run(names, {input_name: images.numpy().astype(np.float32)})
        return emb, probs

    return run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="personid eval", description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", type=Path, help="a training checkpoint (.pt)")
    source.add_argument("--onnx", type=Path, help="an exported model; its manifest NAME.json must sit beside it")
    parser.add_argument("--data", type=Path, required=True, help="dataset root (Market/Duke layout or CSV)")
    parser.add_argument("--kind", default="auto", help="auto | market1501 | dukemtmc | csv")
    parser.add_argument("--device", default="auto", help="cpu | cuda | auto (checkpoints only)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        split = load_dataset(args.data, kind=args.kind)
        if args.checkpoint is not None:
            from training.engine.checkpoint import load_model

            device = "cuda" if args.device == "auto" and torch.cuda.is_available() else args.device
            device = "cpu" if device == "auto" else device
            model, info = load_model(args.checkpoint, map_location=device)
            data = info["config"]["data"]
            transform = build_eval_transform(data["height"], data["width"], data["mean"], data["std"])
            result = evaluate_model(model, split, transform, device, args.batch_size, args.workers)
            result["model"] = {"checkpoint": str(args.checkpoint), "epoch": info["epoch"]}
        else:
            manifest = load_manifest(args.onnx)
            transform = EvalTransform(manifest.input)
            heads = manifest.outputs.attributes.heads
            result = score(split, heads, onnx_runner(args.onnx, manifest), transform, args.batch_size, args.workers)
            result["model"] = {"onnx": str(args.onnx), "model_id": manifest.model_id}
    except (FileNotFoundError, ValueError, KeyError) as exc:
        print(f"personid eval: {exc}", file=sys.stderr)
        return 2
    result["data"] = str(args.data)
    print(json.dumps(result))
    return 0
