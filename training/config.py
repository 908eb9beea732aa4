"""The training configuration: dataclasses <-> YAML, with `key.sub=value` overrides from the command line.

Every field has a default, so a YAML file only names what it changes; unknown keys are an error (a typo
must not silently train something else). The full resolved config is saved with every checkpoint.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

import yaml


@dataclass
class AugmentConfig:
    """Photometric and camera augmentations (training only), each off at 0: they teach the model to ignore the
    style of the generated images (flat colours, sharp edges, full resolution) that real crops lack. Hue is never
    jittered: upper / lower colour are labels."""

    color_jitter: float = 0.0  # strength of brightness / contrast / saturation jitter (hue untouched)
    color_jitter_p: float = 0.8
    greyscale: float = 0.0  # probability per image; the colour heads' targets become unknown (-1) for it
    blur: float = 0.0  # probability of a Gaussian blur
    blur_sigma: list[float] = field(default_factory=lambda: [0.1, 1.5])
    jpeg: float = 0.0  # probability of a JPEG re-encoding
    jpeg_quality: list[int] = field(default_factory=lambda: [30, 95])
    low_res: float = 0.0  # probability of a downscale then upscale back (a small, soft person)
    low_res_scale: list[float] = field(default_factory=lambda: [0.3, 0.8])


@dataclass
class DataConfig:
    path: str = "data/synth"
    kind: str = "auto"
    height: int = 256
    width: int = 128
    identities_per_batch: int = 16  # P
    images_per_identity: int = 4  # K
    workers: int = 2
    on_bad_image: str = "fail"
    schema: str | None = None  # attribute schema JSON (CSV data with its own heads); None = the dataset's own
    attributes: str | None = None  # the .mat attribute file when it is not where the loader looks
    eval_batch_size: int = 64
    random_erasing: float = 0.5
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    mean: list[float] = field(default_factory=lambda: [0.485, 0.456, 0.406])
    std: list[float] = field(default_factory=lambda: [0.229, 0.224, 0.225])
    # Keyword arguments of synth.generate, used when `path` does not exist yet.
    synthesize: dict[str, Any] | None = None


@dataclass
class ModelConfig:
    backbone: str = "mobilenet_v2"
    pretrained: str | None = "deep-sort-mobilenetv2"
    pooling: str = "avg"
    gem_p: float = 3.0
    embedding_dim: int = 512
    last_stride: int = 1
    use_arm: bool = True
    attr_dropout: float = 0.0
    # Leading backbone stages (children of the feature extractor) kept frozen, BN statistics included:
    # saves their backward pass (the high-resolution, most expensive part on CPU) and keeps ImageNet edges.
    freeze_stages: int = 0
    # Horizontal stripes of the feature map pooled for the attribute head, besides the global vector (0 = none).
    attr_parts: int = 0
    # What the exported embedding is: "bnneck" (the BatchNorm'd feature, Bag of Tricks) or "feature" (before the
    # BNNeck: with embedding_dim 0 the pooled backbone feature, which transfers best to real crops, issue 12).
    embedding_from: str = "bnneck"
    # Scale of the attribute losses' gradient into the backbone (1 = plain multi-task, 0 = heads on a detached
    # feature): how hard the attribute tasks may pull the shared features.
    attr_backbone_grad: float = 1.0
    # MixStyle (Zhou et al., ICLR 2021) after these backbone children (indices into the feature extractor, e.g.
    # [3, 6]); training only, identity in eval and in the exported graph.
    mixstyle_after: list[int] = field(default_factory=list)
    mixstyle_p: float = 0.5
    mixstyle_alpha: float = 0.1


@dataclass
class IdLossConfig:
    weight: float = 1.0
    label_smoothing: float = 0.1


@dataclass
class CtlConfig:
    weight: float = 1.0
    margin: float = 0.5


@dataclass
class CenterConfig:
    weight: float = 0.0005
    lr: float = 0.5


@dataclass
class IslandConfig:
    weight: float = 0.0
    lambda1: float = 0.5
    lr: float = 0.5


@dataclass
class AttributeLossConfig:
    weight: float = 1.0
    balance: str = "deepmar"  # class imbalance: "deepmar" weights, "logit_adjust" offsets, or "none"
    tau: float = 1.0  # logit adjustment strength


@dataclass
class DistillConfig:
    """Feature distillation from the frozen pretrained (ImageNet) backbone: keeps what the student knows about real
    images while it learns generated people. Fixed weight, outside DTP."""

    weight: float = 0.0
    kind: str = "cosine"  # "cosine": 1 - cos(student, teacher) of the pooled features; "l2": mean squared error


@dataclass
class LossConfig:
    id: IdLossConfig = field(default_factory=IdLossConfig)
    ctl: CtlConfig = field(default_factory=CtlConfig)
    center: CenterConfig = field(default_factory=CenterConfig)
    island: IslandConfig = field(default_factory=IslandConfig)
    attributes: AttributeLossConfig = field(default_factory=AttributeLossConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)


@dataclass
class DtpConfig:
    enabled: bool = True
    gamma: float = 1.0
    alpha: float = 0.9
    clamp: list[float] = field(default_factory=lambda: [0.1, 0.99])
    normalize: bool = True
    balanced_kpi: bool = False  # attribute KPI = balanced accuracy (mean recall per class) instead of accuracy
    # Task names to weight dynamically: "id", "reid", and attribute head names; empty = all of them.
    tasks: list[str] = field(default_factory=list)


@dataclass
class OptimConfig:
    name: str = "adamw"
    lr: float = 3.5e-4
    weight_decay: float = 5e-4
    momentum: float = 0.9
    warmup_epochs: float = 1.0
    warmup_factor: float = 0.1
    cosine: bool = True
    min_lr_factor: float = 0.01
    head_lr_mult: float = 1.0
    backbone_lr_mult: float = 1.0  # < 1 keeps the pretrained backbone closer to its ImageNet weights
    grad_clip: float = 0.0


@dataclass
class TrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    dtp: DtpConfig = field(default_factory=DtpConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    epochs: int = 30
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    eval_every: int = 5
    output: str = "runs/default"
    max_steps_per_epoch: int = 0  # 0 = a full pass; >0 caps it (smoke runs)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _build(cls: type, values: dict[str, Any], where: str) -> Any:
    if not isinstance(values, dict):
        raise ValueError(f"config {where or 'root'}: expected a mapping, got {values!r}")
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"config {where or 'root'}: unknown key(s) {unknown}; known: {sorted(names)}")
    kwargs = {}
    for key, value in values.items():
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            kwargs[key] = _build(hint, value, f"{where}.{key}".lstrip("."))
        else:
            kwargs[key] = value
    return cls(**kwargs)


def config_from_dict(values: dict[str, Any]) -> TrainConfig:
    return _build(TrainConfig, values or {}, "")


def set_dotted(values: dict[str, Any], dotted: str, value: Any) -> None:
    """Set `values[a][b][c] = value` for `dotted` = "a.b.c", creating sections as needed (in place)."""
    keys = dotted.split(".")
    node = values
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ValueError(f"--set {dotted}: {key} is not a section")
    node[keys[-1]] = value


def _set(values: dict[str, Any], dotted: str, raw: str) -> None:
    set_dotted(values, dotted, yaml.safe_load(raw))


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> TrainConfig:
    """Read YAML (or start from defaults when `path` is None), then apply `key.sub=value` overrides."""
    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} does not exist")
        values = yaml.safe_load(path.read_text()) or {}
    for item in overrides or []:
        if "=" not in item:
            raise ValueError(f"--set expects key=value, got {item!r}")
        key, raw = item.split("=", 1)
        _set(values, key.strip(), raw)
    return config_from_dict(values)


def save_config(config: TrainConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
