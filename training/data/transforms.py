"""The train / eval transforms.

The eval path is the contract with the service (docs/architecture.md, "Preprocessing"): it runs
`personid.imaging` (`to_rgb`, then `to_array` with the manifest's `InputSpec`), the very code the service runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms import v2

from personid.imaging import to_array, to_rgb
from personid.manifest import IMAGENET_MEAN, IMAGENET_STD, InputSpec

if TYPE_CHECKING:
    from training.config import AugmentConfig


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


class RandomLowResolution:
    """Downscale by a random factor, then back up (bilinear): the small, soft person of a real CCTV crop."""

    def __init__(self, scale: Sequence[float] = (0.3, 0.8)) -> None:
        self.low, self.high = float(scale[0]), float(scale[1])
        if not 0 < self.low <= self.high <= 1:
            raise ValueError(f"low_res_scale must be 0 < a <= b <= 1, got {list(scale)}")

    def __call__(self, image: Image.Image) -> Image.Image:
        factor = self.low + (self.high - self.low) * float(torch.rand(()))  # torch's generator: seeded per worker
        small = (max(1, round(image.width * factor)), max(1, round(image.height * factor)))
        return image.resize(small, Image.BILINEAR).resize(image.size, Image.BILINEAR)

    def __repr__(self) -> str:
        return f"RandomLowResolution(scale=({self.low}, {self.high}))"


def camera_augmentations(augment: AugmentConfig | None) -> list[Any]:
    """The photometric / camera steps of `augment` (on PIL images, before the resize), each in a RandomApply."""
    if augment is None:
        return []
    steps: list[Any] = []
    if augment.low_res > 0:
        steps.append(T.RandomApply([RandomLowResolution(augment.low_res_scale)], p=augment.low_res))
    if augment.blur > 0:
        sigma = (float(augment.blur_sigma[0]), float(augment.blur_sigma[1]))
        steps.append(T.RandomApply([v2.GaussianBlur(kernel_size=5, sigma=sigma)], p=augment.blur))
    if augment.color_jitter > 0:
        c = augment.color_jitter  # no hue: clothing colour is a label
        steps.append(T.RandomApply([T.ColorJitter(brightness=c, contrast=c, saturation=c)], p=augment.color_jitter_p))
    if augment.jpeg > 0:
        quality = (int(augment.jpeg_quality[0]), int(augment.jpeg_quality[1]))
        steps.append(T.RandomApply([v2.JPEG(quality=quality)], p=augment.jpeg))
    return steps


def build_train_transform(
    height: int = 256,
    width: int = 128,
    pad: int = 10,
    flip_p: float = 0.5,
    erase_p: float = 0.5,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    augment: AugmentConfig | None = None,
) -> T.Compose:
    """The usual re-id augmentation (Bag of Tricks): resize, flip, pad + random crop, random erasing, plus the
    optional camera / photometric steps of `augment` (low resolution, blur, colour jitter, JPEG) first.

    Never a hue shift: upper/lower clothing colour are labels, and shifting hue would turn a labelled "red"
    shirt into something else (brightness / contrast / saturation jitter keeps the colour name). Greyscale is
    applied per batch (`greyscale_batch`), where the colour targets can be dropped with it. Erasing fills with 0
    after normalisation, i.e. the mean colour. Randomness comes from torch's generator (seeded per DataLoader worker).
    """
    steps: list[Any] = [to_rgb, *camera_augmentations(augment)]
    steps.append(T.Resize((height, width), interpolation=T.InterpolationMode.BILINEAR))
    if flip_p > 0:
        steps.append(T.RandomHorizontalFlip(p=flip_p))
    if pad > 0:
        steps += [T.Pad(pad), T.RandomCrop((height, width))]
    steps += [T.ToTensor(), T.Normalize(mean=list(mean), std=list(std))]
    if erase_p > 0:
        steps.append(T.RandomErasing(p=erase_p, value=0))
    return T.Compose(steps)


def colour_heads(heads: Sequence[Any]) -> list[int]:
    """Indices of the heads that name a colour (`upper_color`, ...): the targets greyscale makes unknowable."""
    return [i for i, head in enumerate(heads) if "color" in head.name or "colour" in head.name]


def greyscale_batch(
    images: torch.Tensor,
    attrs: torch.Tensor,
    p: float,
    colour_heads: Sequence[int],
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Turn each normalised image grey with probability `p` (ITU-R 601 luma, as torchvision's `Grayscale`) and
    mark its colour heads' targets unknown (-1): a grey shirt with the label "red" would teach a wrong colour.
    Returns new tensors; the inputs are left as they were."""
    if p <= 0 or images.shape[0] == 0:
        return images, attrs
    chosen = torch.rand(images.shape[0]) < p  # drawn on the CPU generator: the same draws on any device
    if not chosen.any():
        return images, attrs
    chosen = chosen.to(images.device)
    m = torch.tensor(list(mean), dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    s = torch.tensor(list(std), dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    weights = torch.tensor([0.299, 0.587, 0.114], dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    rgb = images[chosen] * s + m
    grey = (rgb * weights).sum(dim=1, keepdim=True).expand(-1, 3, -1, -1)
    images, attrs = images.clone(), attrs.clone()
    images[chosen] = (grey - m) / s
    rows = chosen.nonzero().flatten().to(attrs.device)
    for head in colour_heads:
        attrs[rows, head] = -1
    return images, attrs


def input_spec(
    height: int = 256,
    width: int = 128,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> InputSpec:
    """The manifest's `input` block describing `build_eval_transform` to the service."""
    return InputSpec(height=int(height), width=int(width), mean=tuple(mean), std=tuple(std))  # type: ignore[arg-type]
