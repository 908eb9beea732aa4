"""PersonModel, backbones (incl. the offline deep-sort MobileNetV2 weights), ARM, checkpoints and the config."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from training.config import load_config
from training.data.schema import AttributeSchema
from training.engine.checkpoint import load_model, save_checkpoint
from training.modeling.arm import AttributeReweighting
from training.modeling.backbones import (
    BackboneWeightsError,
    build_backbone,
    check_trained_batchnorm,
    deep_sort_weights_path,
    map_in_order,
)
from training.modeling.model import PersonModel, attribute_probabilities

SCHEMA = AttributeSchema.builtin("market1501")


@pytest.mark.parametrize("backbone", ["mobilenet_v2", "resnet18"])
def test_forward_shapes_train_and_eval(backbone: str) -> None:
    torch.manual_seed(0)
    model = PersonModel(7, SCHEMA, backbone=backbone, pretrained=None, embedding_dim=48)
    x = torch.randn(4, 3, 64, 32)
    out = model.train()(x)
    assert set(out) == {"pooled", "feature", "embedding", "id_logits", "attr_logits"}
    assert out["feature"].shape == out["embedding"].shape == (4, 48)
    assert out["id_logits"].shape == (4, 7)
    assert out["attr_logits"].shape == (4, SCHEMA.num_outputs) == (4, 30)
    out = model.eval()(x)
    assert set(out) == {"embedding", "attr_logits"}
    assert out["embedding"].shape == (4, 48)
    torch.testing.assert_close(out["embedding"].norm(dim=1), torch.ones(4))


def test_no_reduction_keeps_backbone_width_and_gem_pooling() -> None:
    model = PersonModel(3, SCHEMA, backbone="resnet18", embedding_dim=0, pooling="gem").eval()
    assert model.embedding_dim == 512
    assert model(torch.rand(2, 3, 64, 32))["embedding"].shape == (2, 512)


def test_attribute_stripes_and_frozen_stages() -> None:
    model = PersonModel(3, SCHEMA, backbone="mobilenet_v2", embedding_dim=16, attr_parts=3, freeze_stages=2)
    assert model.attr_head.in_features == 1280 * 4
    out = model.train()(torch.rand(2, 3, 96, 32))  # 3 rows of features, one per stripe
    assert out["attr_logits"].shape == (2, 30) and torch.isfinite(out["attr_logits"]).all()
    with pytest.raises(ValueError, match="attr_parts=3 needs a feature map"):
        model(torch.rand(2, 3, 32, 16))  # 1 row of features: no 3 stripes
    frozen = [model.backbone[0], model.backbone[1]]
    assert all(not p.requires_grad for stage in frozen for p in stage.parameters())
    assert all(not stage.training for stage in frozen) and model.backbone[2].training
    assert all(p.requires_grad for p in model.backbone[2].parameters())


def test_bnneck_bias_is_frozen() -> None:
    model = PersonModel(3, SCHEMA, backbone="resnet18", embedding_dim=32)
    assert not model.bnneck.bias.requires_grad
    assert model.classifier.bias is None


def test_attribute_probabilities_per_head() -> None:
    probs = attribute_probabilities(torch.randn(5, SCHEMA.num_outputs) * 3, SCHEMA)
    for head, columns in zip(SCHEMA.heads, SCHEMA.slices, strict=True):
        cols = probs[:, columns]
        if head.type == "softmax":
            torch.testing.assert_close(cols.sum(1), torch.ones(5))
        assert bool(((cols > 0) & (cols < 1)).all())


def test_arm_is_identity_at_init_and_learns() -> None:
    arm = AttributeReweighting(6)
    a_hat = torch.randn(3, 6, requires_grad=True)
    refined = arm(a_hat)
    torch.testing.assert_close(refined, a_hat)
    refined.pow(2).sum().backward()
    assert arm.gate.weight.grad is not None and arm.gate.weight.grad.abs().sum() > 0
    with torch.no_grad():
        arm.gate.weight[0, 1] = 5.0  # attribute 0 now depends on attribute 1
    out = arm(a_hat.detach())
    assert not torch.allclose(out[:, 0], a_hat.detach()[:, 0])
    torch.testing.assert_close(out[:, 2:], a_hat.detach()[:, 2:])


def test_arm_ablation_switch() -> None:
    with_arm = PersonModel(3, SCHEMA, backbone="resnet18", embedding_dim=16)
    without = PersonModel(3, SCHEMA, backbone="resnet18", embedding_dim=16, use_arm=False)
    assert isinstance(with_arm.arm, AttributeReweighting)
    assert isinstance(without.arm, torch.nn.Identity)
    assert sum(p.numel() for p in with_arm.parameters()) - sum(p.numel() for p in without.parameters()) == 30 * 31


def test_deep_sort_weights_map_onto_torchvision_mobilenet() -> None:
    body, channels = build_backbone("mobilenet_v2", "deep-sort-mobilenetv2")
    assert channels == 1280
    source = torch.load(deep_sort_weights_path(), map_location="cpu", weights_only=True)
    loaded = body.state_dict()
    assert len(source) == len(loaded)
    for (src_key, src), (dst_key, dst) in zip(source.items(), loaded.items(), strict=True):
        assert torch.equal(src, dst), (src_key, dst_key)
    # Trained network: BN statistics left their init, and an image gives a sparse, non-degenerate feature map.
    check_trained_batchnorm(body, "deep-sort")
    random_body, _ = build_backbone("mobilenet_v2", None)
    with pytest.raises(BackboneWeightsError, match="init statistics"):
        check_trained_batchnorm(random_body, "random")
    x = torch.linspace(-2, 2, 3 * 64 * 32).reshape(1, 3, 64, 32)
    features = body.eval()(x)
    assert torch.isfinite(features).all() and features.std() > 0


def test_wrong_shape_weights_fail_loudly(tmp_path: Path) -> None:
    source = torch.load(deep_sort_weights_path(), map_location="cpu", weights_only=True)
    key = next(k for k, v in source.items() if v.ndim == 4)
    broken = dict(source)
    broken[key] = torch.zeros(16, 3, 3, 3)
    body, _ = build_backbone("mobilenet_v2", None)
    with pytest.raises(BackboneWeightsError, match=r"features\.0\.0\.weight has shape \(16, 3, 3, 3\)"):
        map_in_order(broken, body, "broken")
    short = dict(list(source.items())[:-1])
    with pytest.raises(BackboneWeightsError, match="311 tensors"):
        map_in_order(short, body, "short")
    path = tmp_path / "resnet.pt"
    state = build_backbone("resnet18", None)[0].state_dict()
    state["0.weight"] = torch.zeros(64, 3, 5, 5)
    torch.save(state, path)
    with pytest.raises(BackboneWeightsError, match=r"0\.weight has shape"):
        build_backbone("resnet18", str(path))
    with pytest.raises(BackboneWeightsError, match="does not exist"):
        build_backbone("resnet18", str(tmp_path / "missing.pt"))
    with pytest.raises(ValueError, match="unknown backbone"):
        build_backbone("vgg0", None)


def test_local_weights_file_loads(tmp_path: Path) -> None:
    reference, _ = build_backbone("resnet18", None)
    path = tmp_path / "r18.pt"
    torch.save({"module." + k: v for k, v in reference.state_dict().items()}, path)
    body, _ = build_backbone("resnet18", str(path))
    for a, b in zip(reference.state_dict().values(), body.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    cfg = load_config(None, ["model.backbone=resnet18", "model.pretrained=null", "model.embedding_dim=32"])
    model = PersonModel(5, SCHEMA, backbone="resnet18", embedding_dim=32)
    model.train()(torch.randn(4, 3, 64, 32))  # move BN statistics away from init
    path = tmp_path / "ckpt.pt"
    save_checkpoint(
        path,
        model,
        config=cfg.to_dict(),
        schema=SCHEMA,
        num_classes=5,
        epoch=3,
        metrics={"reid": {"mAP": 0.5}},
        dataset="somewhere",
    )
    loaded, info = load_model(path)
    assert not loaded.training
    assert info["epoch"] == 3 and info["num_classes"] == 5 and info["dataset"] == "somewhere"
    assert AttributeSchema.from_dict(info["schema"]) == SCHEMA
    x = torch.randn(2, 3, 64, 32)
    model.eval()
    for key in ("embedding", "attr_logits"):
        torch.testing.assert_close(loaded(x)[key], model(x)[key])


def test_config_yaml_overrides_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("epochs: 3\noptim: {lr: 0.01}\nloss: {ctl: {margin: 0.3}}\n")
    cfg = load_config(path, ["optim.name=sgd", "data.height=64", "dtp.tasks=[id, reid]"])
    assert (cfg.epochs, cfg.optim.lr, cfg.optim.name, cfg.loss.ctl.margin) == (3, 0.01, "sgd", 0.3)
    assert cfg.data.height == 64 and cfg.dtp.tasks == ["id", "reid"]
    assert cfg.loss.center.weight == 0.0005  # untouched default
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['lr_typo'\]"):
        load_config(None, ["optim.lr_typo=1"])
    with pytest.raises(ValueError, match="key=value"):
        load_config(None, ["epochs"])
    with pytest.raises(FileNotFoundError):
        load_config(tmp_path / "none.yaml")
