"""Image loading and the train / eval transforms.

The eval path is the contract with the service (docs/architecture.md, "Preprocessing"): `to_rgb` then
`preprocess_array` are plain Pillow + numpy so that `app/preprocess.py` can do exactly the same, bit for bit.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
from PIL import Image, ImageOps
from torchvision import transforms as T

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I"}
WHITE = (255, 255, 255, 255)


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow image -> 8-bit RGB, upright.

    - EXIF orientation is applied (phones store portrait shots as rotated landscape + a tag).
    - Transparency (RGBA, LA, PA, P with a transparent colour) is composited on white with
      `Image.alpha_composite`: a plain `convert("RGB")` would expose whatever colour editors left under
      transparent pixels (often black), which is undefined; white is what viewers show.
    - 16-bit grey (I;16*, and I as 16-bit PNGs open in some Pillow versions) keeps its top 8 bits (value >> 8),
      where Pillow's own conversion would clip everything above 255 to white. F (float) is clipped to 0..255.
    - Everything else (L, 1, P, CMYK, YCbCr, ...) uses Pillow's `convert("RGB")`.
    """
    image = ImageOps.exif_transpose(image)
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in SIXTEEN_BIT_MODES:
        values = np.clip(np.asarray(image, dtype=np.int64), 0, 65535) >> 8
        return Image.fromarray(values.astype(np.uint8)).convert("RGB")
    if mode == "F":
        values = np.clip(np.asarray(image, dtype=np.float32), 0, 255).astype(np.uint8)
        return Image.fromarray(values).convert("RGB")
    if mode in {"RGBA", "LA", "PA", "La", "RGBa"} or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, WHITE), rgba).convert("RGB")
    return image.convert("RGB")


def load_rgb(source: str | Path | IO[bytes]) -> Image.Image:
    """Open and fully decode an image file (path or binary file object) as upright 8-bit RGB."""
    with Image.open(source) as image:
        image.load()
        return to_rgb(image)


def preprocess_array(
    image: Image.Image,
    height: int = 256,
    width: int = 128,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> np.ndarray:
    """RGB image -> float32 3 x H x W array: bilinear resize, / 255, (x - mean) / std, HWC -> CHW.

    The arithmetic is float32 throughout and in this order; the service must use the same order to match.
    """
    resized = image.resize((width, height), Image.BILINEAR)
    x = np.asarray(resized, dtype=np.float32) / np.float32(255.0)
    x = (x - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


class EvalTransform:
    """Deterministic eval / inference preprocessing (any Pillow image -> 3 x H x W float32 tensor)."""

    def __init__(
        self,
        height: int = 256,
        width: int = 128,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        self.height, self.width = height, width
        self.mean, self.std = tuple(mean), tuple(std)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return torch.from_numpy(preprocess_array(to_rgb(image), self.height, self.width, self.mean, self.std))

    def __repr__(self) -> str:
        return f"EvalTransform(height={self.height}, width={self.width}, mean={self.mean}, std={self.std})"


def build_eval_transform(
    height: int = 256,
    width: int = 128,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> EvalTransform:
    return EvalTransform(height, width, mean, std)


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


def preprocess_spec(
    height: int = 256,
    width: int = 128,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> dict[str, Any]:
    """The manifest's `input` block describing `build_eval_transform` to the service."""
    return {
        "name": "images",
        "layout": "NCHW",
        "height": int(height),
        "width": int(width),
        "color_order": "RGB",
        "resize": "bilinear",
        "scale": 255.0,
        "mean": [float(m) for m in mean],
        "std": [float(s) for s in std],
        "dtype": "float32",
    }
