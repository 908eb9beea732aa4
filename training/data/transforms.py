"""The train / eval transforms.

The eval path is the contract with the service (docs/architecture.md, "Preprocessing"): it runs
`personid.imaging` (`to_rgb`, then `to_array` with the manifest's `InputSpec`), the very code the service runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image
from torchvision import transforms as T

from personid.imaging import to_array, to_rgb
from personid.manifest import IMAGENET_MEAN, IMAGENET_STD, InputSpec


class EvalTransform:
    """Deterministic eval / inference preprocessing (any Pillow image -> 3 x H x W float32 tensor)."""

    def __init__(self, spec: InputSpec) -> None:
        self.spec = spec

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return torch.from_numpy(to_array(to_rgb(image), self.spec))

    def __repr__(self) -> str:
        spec = self.spec
        return f"EvalTransform(height={spec.height}, width={spec.width}, mean={spec.mean}, std={spec.std})"


def build_eval_transform(
    height: int = 256,
    width: int = 128,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> EvalTransform:
    return EvalTransform(input_spec(height, width, mean, std))


def build_train_transform(
    height: int = 256,
    width: int = 128,
    pad: int = 10,
    flip_p: float = 0.5,
    erase_p: float = 0.5,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> T.Compose:
    """The usual re-id augmentation (Bag of Tricks): resize, flip, pad + random crop, random erasing.

    No colour jitter on purpose: upper/lower clothing colour are labels, and shifting hue or saturation
    would turn a labelled "red" shirt into something else. Erasing fills with 0 after normalisation,
    i.e. the mean colour.
    """
    steps: list[Any] = [to_rgb, T.Resize((height, width), interpolation=T.InterpolationMode.BILINEAR)]
    if flip_p > 0:
        steps.append(T.RandomHorizontalFlip(p=flip_p))
    if pad > 0:
        steps += [T.Pad(pad), T.RandomCrop((height, width))]
    steps += [T.ToTensor(), T.Normalize(mean=list(mean), std=list(std))]
    if erase_p > 0:
        steps.append(T.RandomErasing(p=erase_p, value=0))
    return T.Compose(steps)


def input_spec(
    height: int = 256,
    width: int = 128,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> InputSpec:
    """The manifest's `input` block describing `build_eval_transform` to the service."""
    return InputSpec(height=int(height), width=int(width), mean=tuple(mean), std=tuple(std))  # type: ignore[arg-type]
