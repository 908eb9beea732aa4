"""The domain-generalisation levers of issue 12, each switched on alone: MixStyle, the pre-BNNeck embedding, the
attribute gradient scale, feature distillation, the backbone learning rate, and the camera augmentations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from personid.manifest import IMAGENET_MEAN, IMAGENET_STD
from training.config import AugmentConfig, load_config
from training.data.schema import AttributeSchema
from training.data.transforms import RandomLowResolution, build_train_transform, colour_heads, greyscale_batch
from training.engine.trainer import build_optimizer, build_teacher
from training.modeling.losses import feature_distillation
from training.modeling.mixstyle import MixStyle
from training.modeling.model import PersonModel, build_model

SCHEMA = AttributeSchema.builtin("market1501")


def small_model(**kwargs: object) -> PersonModel:
    return PersonModel(4, SCHEMA, backbone="mobilenet_v2", pretrained=None, embedding_dim=16, **kwargs)  # type: ignore[arg-type]


def test_mixstyle_mixes_statistics_in_training_only() -> None:
    torch.manual_seed(0)
    x = torch.randn(6, 8, 5, 4) * torch.arange(1, 7).view(6, 1, 1, 1) + torch.arange(6).view(6, 1, 1, 1)
    layer = MixStyle(p=1.0, alpha=0.1)
    mixed = layer.train()(x)
    assert mixed.shape == x.shape and not torch.allclose(mixed, x)

    # Content is kept: each sample's normalised map is unchanged, only its mean / std move.
    def normalised(t: torch.Tensor) -> torch.Tensor:
        return (t - t.mean((2, 3), keepdim=True)) / t.std((2, 3), keepdim=True)

    torch.testing.assert_close(normalised(mixed), normalised(x), atol=1e-3, rtol=1e-3)
    assert torch.equal(layer.eval()(x), x)
    assert torch.equal(MixStyle(p=0.0).train()(x), x)
    torch.manual_seed(1)
    first = MixStyle(p=1.0).train()(x)
    torch.manual_seed(1)
    assert torch.equal(MixStyle(p=1.0).train()(x), first)  # seeded by torch's generator


def test_mixstyle_in_the_model_changes_training_features_only() -> None:
    torch.manual_seed(0)
    plain = small_model().eval()
    mixed = small_model(mixstyle_after=[3, 6], mixstyle_p=1.0)
    mixed.load_state_dict(plain.state_dict())  # no parameters of its own: the same state dict fits
    x = torch.randn(4, 3, 64, 32)
    torch.testing.assert_close(mixed.eval()(x)["embedding"], plain(x)["embedding"])
    mixed.train()
    plain.train()
    assert not torch.allclose(mixed.features(x), plain.features(x))
    with pytest.raises(ValueError, match="mixstyle_after"):
        small_model(mixstyle_after=[18])  # after the last child there is nothing left to train on the mix


def test_embedding_from_feature_skips_the_bnneck() -> None:
    torch.manual_seed(0)
    model = PersonModel(4, SCHEMA, backbone="mobilenet_v2", pretrained=None, embedding_dim=0, embedding_from="feature")
    model.train()(torch.randn(8, 3, 64, 32))  # move the BNNeck statistics away from the identity
    model.eval()
    x = torch.randn(2, 3, 64, 32)
    pooled = model.pool(model.backbone(x))
    out = model(x)["embedding"]
    assert out.shape == (2, 1280)
    torch.testing.assert_close(out, torch.nn.functional.normalize(pooled, dim=1))
    bnneck = PersonModel(4, SCHEMA, backbone="mobilenet_v2", pretrained=None, embedding_dim=0)
    bnneck.load_state_dict(model.state_dict())
    assert not torch.allclose(bnneck.eval()(x)["embedding"], out)
    with pytest.raises(ValueError, match="embedding_from"):
        small_model(embedding_from="pooled")


def test_attribute_gradient_scale_reaches_the_backbone_scaled() -> None:
    x = torch.randn(4, 3, 64, 32)

    def backbone_grad(scale: float) -> torch.Tensor:
        torch.manual_seed(0)
        model = small_model(attr_backbone_grad=scale, use_arm=False).train()
        model(x)["attr_logits"].sum().backward()
        return model.backbone[18][0].weight.grad.clone()

    full, half, none = backbone_grad(1.0), backbone_grad(0.5), backbone_grad(0.0)
    torch.testing.assert_close(half, 0.5 * full)
    assert full.abs().sum() > 0 and none.abs().sum() == 0


def test_distillation_is_zero_when_student_equals_teacher_and_pulls_back_otherwise() -> None:
    torch.manual_seed(0)
    model = small_model().eval()
    teacher = build_teacher(model)
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    x = torch.randn(4, 3, 64, 32)
    with torch.no_grad():
        target = model.pool(teacher(x))
    student = model.pool(model.backbone(x))
    for kind in ("cosine", "l2"):
        assert float(feature_distillation(student, target, kind).detach()) == pytest.approx(0.0, abs=1e-6)
    with torch.no_grad():
        model.backbone[18][0].weight.mul_(-1.5)  # the student drifts; the copy does not follow
    drifted = model.pool(model.backbone(x))
    loss = feature_distillation(drifted, target, "cosine")
    assert float(loss.detach()) > 0.01
    loss.backward()
    assert model.backbone[18][0].weight.grad is not None
    assert float(feature_distillation(drifted, target, "l2").detach()) > 0
    with pytest.raises(ValueError, match="unknown distillation"):
        feature_distillation(drifted, target, "kl")


def test_lr_groups_carry_the_backbone_and_head_multipliers() -> None:
    cfg = load_config(None, ["optim.lr=0.001", "optim.backbone_lr_mult=0.1", "optim.head_lr_mult=10"])
    model = build_model(cfg.model, 4, SCHEMA, pretrained=False)
    optimizer = build_optimizer(model, cfg.optim)
    backbone_ids = {id(p) for p in model.backbone.parameters()}
    for group in optimizer.param_groups:
        in_backbone = {id(p) in backbone_ids for p in group["params"]}
        assert len(in_backbone) == 1  # a group is all backbone or all new layers
        assert group["lr"] == pytest.approx(1e-4 if in_backbone.pop() else 1e-2)
    assert {id(p) for g in optimizer.param_groups for p in g["params"]} >= backbone_ids


def _person() -> Image.Image:
    rng = np.random.default_rng(0)
    pixels = np.zeros((128, 64, 3), dtype=np.uint8)
    pixels[:64] = (200, 30, 40)  # red top
    pixels[64:] = (30, 40, 160)  # blue bottom
    pixels = np.clip(pixels + rng.integers(0, 30, pixels.shape), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels)


AUGMENT = AugmentConfig(color_jitter=0.3, color_jitter_p=1.0, blur=1.0, jpeg=1.0, low_res=1.0)


def test_camera_augmentations_keep_shape_dtype_and_are_seeded() -> None:
    transform = build_train_transform(64, 32, augment=AUGMENT)
    names = " ".join(repr(t) for t in transform.transforms)
    for name in ("RandomLowResolution", "GaussianBlur", "ColorJitter", "JPEG"):
        assert name in names
    assert "hue=None" in names  # clothing colour is a label
    image = _person()
    torch.manual_seed(3)
    first = transform(image)
    torch.manual_seed(3)
    again = transform(image)
    torch.manual_seed(4)
    other = transform(image)
    assert first.shape == (3, 64, 32) and first.dtype == torch.float32
    assert torch.equal(first, again) and not torch.equal(first, other)
    plain = build_train_transform(64, 32, pad=0, flip_p=0.0, erase_p=0.0)
    camera = build_train_transform(64, 32, pad=0, flip_p=0.0, erase_p=0.0, augment=AUGMENT)
    torch.manual_seed(0)

    # Softer: blur + low resolution lower the high-frequency energy (the noise of the synthetic image).
    def detail(t: torch.Tensor) -> float:
        return float((t[:, 1:] - t[:, :-1]).abs().mean())

    assert detail(camera(image)) < 0.7 * detail(plain(image))
    off = build_train_transform(64, 32, augment=AugmentConfig())  # all at 0: today's pipeline, step for step
    assert [type(t) for t in off.transforms] == [type(t) for t in build_train_transform(64, 32).transforms]


def test_colour_jitter_keeps_the_colour_name() -> None:
    torch.manual_seed(0)
    image = Image.new("RGB", (64, 128), (200, 30, 40))
    jitter = AugmentConfig(color_jitter=0.3, color_jitter_p=1.0)
    transform = build_train_transform(64, 32, pad=0, flip_p=0.0, erase_p=0.0, augment=jitter)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    for _ in range(10):
        rgb = (transform(image) * std + mean).mean(dim=(1, 2))
        assert rgb[0] > rgb[1] and rgb[0] > rgb[2]  # still red: no hue shift


def test_low_resolution_is_softer_and_keeps_size() -> None:
    image = _person()
    torch.manual_seed(0)
    out = RandomLowResolution((0.3, 0.3))(image)
    assert out.size == image.size and out.mode == "RGB"

    def detail(im: Image.Image) -> float:
        return float(np.abs(np.diff(np.asarray(im, float), axis=0)).mean())

    assert detail(out) < detail(image)
    with pytest.raises(ValueError, match="low_res_scale"):
        RandomLowResolution((0.0, 0.5))


def test_greyscale_batch_drops_colour_targets_of_grey_images_only() -> None:
    heads = colour_heads(SCHEMA.heads)
    assert [SCHEMA.heads[i].name for i in heads] == ["upper_color", "lower_color"]
    torch.manual_seed(0)
    images = torch.randn(16, 3, 8, 4)
    attrs = torch.randint(0, 2, (16, len(SCHEMA.heads)))
    torch.manual_seed(5)
    grey, targets = greyscale_batch(images, attrs, 0.5, heads)
    torch.manual_seed(5)
    grey2, targets2 = greyscale_batch(images, attrs, 0.5, heads)
    assert torch.equal(grey, grey2) and torch.equal(targets, targets2)
    assert grey.shape == images.shape and grey.dtype == images.dtype
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    rgb = grey * std + mean
    is_grey = torch.isclose(rgb[:, 0], rgb[:, 1], atol=1e-5).all(dim=(1, 2)) & torch.isclose(
        rgb[:, 1], rgb[:, 2], atol=1e-5
    ).all(dim=(1, 2))
    assert 0 < int(is_grey.sum()) < 16
    dropped = (targets[:, heads] == -1).all(dim=1)
    assert torch.equal(dropped, is_grey)
    others = [i for i in range(len(SCHEMA.heads)) if i not in heads]
    assert torch.equal(targets[:, others], attrs[:, others])
    assert torch.equal(grey[~is_grey], images[~is_grey])
    same, kept = greyscale_batch(images, attrs, 0.0, heads)
    assert same is images and kept is attrs
