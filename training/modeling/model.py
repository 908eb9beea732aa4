"""`PersonModel`: one shared backbone for re-identification embeddings and attribute recognition.

backbone -> pooling (avg | GeM) -> pooled feature
  -> [optional Linear reduction to embedding_dim] -> `feature` (CTL / center / island see it)
  -> BatchNorm1d with frozen bias (BNNeck, Bag of Tricks) -> `embedding` (L2-normalised in eval mode)
  -> identity classifier without bias (training only)
pooled feature [+ `attr_parts` horizontal stripes, average-pooled] -> one Linear with M columns (all heads,
  schema order) -> ARM -> `attr_logits`. Stripes give the attribute head localised evidence (hat at the top,
  shoes at the bottom) instead of a global vector that id training has made identity-specific.

Domain-generalisation levers (issue 12): MixStyle after chosen backbone children (training only), the eval
embedding taken before the BNNeck (`embedding_from="feature"`), and a scaled attribute gradient into the backbone.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from training.modeling.arm import AttributeReweighting
from training.modeling.backbones import build_backbone
from training.modeling.mixstyle import MixStyle

if TYPE_CHECKING:
    from training.data.schema import AttributeSchema


class GeM(nn.Module):
    """Generalised-mean pooling (Radenović et al.) with a learnable exponent; p=1 is average pooling."""

    def __init__(self, p: float = 3.0, eps: float = 1e-6) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.tensor(float(p)))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(min=self.eps).pow(self.p).mean(dim=(2, 3)).pow(1.0 / self.p)


class AvgPool(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


def build_pooling(name: str, gem_p: float = 3.0) -> nn.Module:
    if name == "avg":
        return AvgPool()
    if name == "gem":
        return GeM(gem_p)
    raise ValueError(f"unknown pooling {name!r}; choose avg or gem")


class PersonModel(nn.Module):
    """See the module docstring; `forward` returns the dict described in docs/architecture.md "Model outputs"."""

    def __init__(
        self,
        num_classes: int,
        schema: AttributeSchema,
        backbone: str = "mobilenet_v2",
        pretrained: str | None = None,
        pooling: str = "avg",
        embedding_dim: int = 512,
        use_arm: bool = True,
        last_stride: int = 1,
        gem_p: float = 3.0,
        attr_dropout: float = 0.0,
        freeze_stages: int = 0,
        attr_parts: int = 0,
        embedding_from: str = "bnneck",
        attr_backbone_grad: float = 1.0,
        mixstyle_after: tuple[int, ...] | list[int] = (),
        mixstyle_p: float = 0.5,
        mixstyle_alpha: float = 0.1,
    ) -> None:
        super().__init__()
        if embedding_from not in ("bnneck", "feature"):
            raise ValueError(f"embedding_from must be 'bnneck' or 'feature', got {embedding_from!r}")
        self.embedding_from = embedding_from
        self.attr_backbone_grad = float(attr_backbone_grad)
        self.schema = schema
        self.backbone_name = backbone
        self.backbone, channels = build_backbone(backbone, pretrained, last_stride=last_stride)
        self.frozen = list(self.backbone.children())[:freeze_stages]
        for stage in self.frozen:
            stage.requires_grad_(False)
        stages = len(list(self.backbone.children()))
        if mixstyle_after and not (
            isinstance(self.backbone, nn.Sequential) and all(0 <= i < stages - 1 for i in mixstyle_after)
        ):
            raise ValueError(
                f"mixstyle_after={list(mixstyle_after)} needs a sequential backbone and indices in 0..{stages - 2}"
            )
        # No parameters, so checkpoints and the exported graph are the same with or without it.
        self.mixstyle = nn.ModuleDict({str(i): MixStyle(mixstyle_p, mixstyle_alpha) for i in sorted(mixstyle_after)})
        self.pool = build_pooling(pooling, gem_p)
        if embedding_dim and embedding_dim != channels:
            self.reduce: nn.Module = nn.Linear(channels, embedding_dim, bias=False)
            nn.init.kaiming_normal_(self.reduce.weight, mode="fan_out")
            self.embedding_dim = embedding_dim
        else:
            self.reduce = nn.Identity()
            self.embedding_dim = channels
        self.bnneck = nn.BatchNorm1d(self.embedding_dim)
        self.bnneck.bias.requires_grad_(False)
        self.classifier = nn.Linear(self.embedding_dim, num_classes, bias=False)
        nn.init.normal_(self.classifier.weight, std=0.001)
        self.attr_dropout = nn.Dropout(attr_dropout)
        self.attr_parts = attr_parts
        self.attr_head = nn.Linear(channels * (1 + attr_parts), schema.num_outputs)
        nn.init.normal_(self.attr_head.weight, std=0.01)
        nn.init.zeros_(self.attr_head.bias)
        self.arm: nn.Module = AttributeReweighting(schema.num_outputs) if use_arm else nn.Identity()

    def train(self, mode: bool = True) -> PersonModel:
        """Frozen leading stages stay in eval mode: their BatchNorm keeps the pretrained statistics."""
        super().train(mode)
        for stage in self.frozen:
            stage.eval()
        return self

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The backbone's feature map, with MixStyle between the chosen children (a no-op outside training)."""
        if not self.mixstyle or not self.training:
            return self.backbone(x)
        for index, stage in enumerate(self.backbone.children()):
            x = stage(x)
            if str(index) in self.mixstyle:
                x = self.mixstyle[str(index)](x)
        return x

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        fmap = self.features(x)
        pooled = self.pool(fmap)
        feature = self.reduce(pooled)
        embedding = self.bnneck(feature)
        attr_in = pooled
        if self.attr_parts:
            if fmap.shape[2] < self.attr_parts:
                raise ValueError(
                    f"attr_parts={self.attr_parts} needs a feature map at least that high, got {fmap.shape[2]} rows"
                    f" (input height {x.shape[2]}); use larger images or fewer parts"
                )
            bounds = [round(i * fmap.shape[2] / self.attr_parts) for i in range(self.attr_parts + 1)]
            stripes = [fmap[:, :, a:b].mean(dim=(2, 3)) for a, b in itertools.pairwise(bounds)]
            attr_in = torch.cat([pooled, *stripes], dim=1)
        if self.training and self.attr_backbone_grad != 1.0:  # same value, gradient scaled by attr_backbone_grad
            attr_in = self.attr_backbone_grad * attr_in + (1.0 - self.attr_backbone_grad) * attr_in.detach()
        attr_logits = self.arm(self.attr_head(self.attr_dropout(attr_in)))
        if not self.training:
            exported = feature if self.embedding_from == "feature" else embedding
            return {"embedding": F.normalize(exported, dim=1), "attr_logits": attr_logits}
        return {
            "pooled": pooled,
            "feature": feature,
            "embedding": embedding,
            "id_logits": self.classifier(embedding),
            "attr_logits": attr_logits,
        }


def attribute_probabilities(attr_logits: torch.Tensor, schema: AttributeSchema) -> torch.Tensor:
    """Logits -> probabilities as the service reads them: softmax inside softmax heads, sigmoid on binary columns."""
    parts = []
    for head, columns in zip(schema.heads, schema.slices, strict=True):
        cols = attr_logits[:, columns]
        parts.append(torch.softmax(cols, dim=1) if head.type == "softmax" else torch.sigmoid(cols))
    return torch.cat(parts, dim=1)


def build_model(model_config: Any, num_classes: int, schema: AttributeSchema, pretrained: bool = True) -> PersonModel:
    """Build from a `ModelConfig`; `pretrained=False` when the weights come from a checkpoint anyway."""
    return PersonModel(
        num_classes=num_classes,
        schema=schema,
        backbone=model_config.backbone,
        pretrained=model_config.pretrained if pretrained else None,
        pooling=model_config.pooling,
        embedding_dim=model_config.embedding_dim,
        use_arm=model_config.use_arm,
        last_stride=model_config.last_stride,
        gem_p=model_config.gem_p,
        attr_dropout=model_config.attr_dropout,
        freeze_stages=model_config.freeze_stages,
        attr_parts=model_config.attr_parts,
        embedding_from=model_config.embedding_from,
        attr_backbone_grad=model_config.attr_backbone_grad,
        mixstyle_after=model_config.mixstyle_after,
        mixstyle_p=model_config.mixstyle_p,
        mixstyle_alpha=model_config.mixstyle_alpha,
    )
