"""The stand-in ONNX model every side that serves a model tests with (app, personid, deploy), and its settings.

`service_model_path` is the ONE place that picks the model those tests run: `PERSONID_TEST_MODEL` (e.g. the
shipped `models/default.onnx`) when set, otherwise a small stand-in graph built here with `onnx.helper`. The
stand-in is there for speed (the suite must stay under two minutes on two shared cores), not to fake anything:
it is a real ONNX graph run by a real ONNX Runtime session, with the same input and outputs as
`training/export.py` writes (`images` N x 3 x H x W -> `embedding` L2-normalised, `attributes` per-head softmax /
sigmoid probabilities) and a manifest in the documented format, using the Market heads.

Imports neither the service nor torch, so a conftest can take the fixtures from here (`from tests.standin import
make_settings, model_path`) in an environment without them; `make_settings` imports the service when used.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from personid.manifest import (
    AttributesSpec,
    EmbeddingSpec,
    InputSpec,
    Manifest,
    OutputsSpec,
    head_size,
    model_id,
    write_manifest,
)

if TYPE_CHECKING:
    from app.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
MARKET_SCHEMA = ROOT / "training" / "data" / "schemas" / "market.json"
STANDIN_HEIGHT, STANDIN_WIDTH, STANDIN_DIM = 64, 32, 32


def market_attributes() -> tuple[AttributesSpec, dict[str, list[str]]]:
    """The Market attribute heads with their output columns, and the display groups."""
    schema = json.loads(MARKET_SCHEMA.read_text())
    heads = [
        SimpleNamespace(name=h["name"], type=h["type"], labels=h["labels"], size=head_size(h["type"], h["labels"]))
        for h in schema["heads"]
    ]
    return AttributesSpec.of(heads), schema["groups"]


def standin_manifest(onnx_path: Path, attributes: AttributesSpec, groups: dict[str, list[str]]) -> Manifest:
    """A manifest like an export's, with a training config the service must never show (`/v1/model` drops it)."""
    input_spec = InputSpec(height=STANDIN_HEIGHT, width=STANDIN_WIDTH)
    outputs = OutputsSpec(embedding=EmbeddingSpec(dim=STANDIN_DIM), attributes=attributes)
    return Manifest(
        model_id=model_id(onnx_path, input_spec, outputs),
        name=onnx_path.stem,
        created="2026-11-25T12:00:00Z",
        opset=17,
        backbone="standin-conv",
        input=input_spec,
        outputs=outputs,
        groups=groups,
        training={"dataset": "none (stand-in test model)", "config": {"secret_path": "/x"}, "epochs": 0},
        metrics={},
    )


def build_standin_model(folder: Path, name: str = "standin", seed: int = 0) -> Path:
    """conv(3->8, stride 2) -> ReLU -> 8x8 average pool -> flatten -> [Gemm -> L2 norm | Gemm -> per-head act]."""
    attributes, groups = market_attributes()
    rng = np.random.default_rng(seed)
    pooled = 8 * (STANDIN_HEIGHT // 16) * (STANDIN_WIDTH // 16)
    columns = attributes.size
    weights = {
        "conv_w": rng.normal(0, 0.5, (8, 3, 3, 3)),
        "conv_b": rng.uniform(0.05, 0.2, 8),
        "emb_w": rng.normal(0, 1, (pooled, STANDIN_DIM)),
        "emb_b": rng.normal(0, 0.1, STANDIN_DIM),
        "attr_w": rng.normal(0, 1, (pooled, columns)),
        "attr_b": rng.normal(0, 0.5, columns),
    }
    initializers = [numpy_helper.from_array(v.astype(np.float32), k) for k, v in weights.items()]
    nodes = [
        helper.make_node("Conv", ["images", "conv_w", "conv_b"], ["conv"], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv"], ["relu"]),
        helper.make_node("AveragePool", ["relu"], ["pool"], kernel_shape=[8, 8], strides=[8, 8]),
        helper.make_node("Flatten", ["pool"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "emb_w", "emb_b"], ["emb_raw"]),
        helper.make_node("LpNormalization", ["emb_raw"], ["embedding"], axis=1, p=2),
        helper.make_node("Gemm", ["flat", "attr_w", "attr_b"], ["logits"]),
    ]
    head_outputs = []
    for head in attributes.heads:
        start, end = head.offset, head.offset + head.size
        bounds = [f"{head.name}_start", f"{head.name}_end", "axis_one"]
        initializers += [
            numpy_helper.from_array(np.array([start], np.int64), bounds[0]),
            numpy_helper.from_array(np.array([end], np.int64), bounds[1]),
        ]
        nodes.append(helper.make_node("Slice", ["logits", *bounds], [f"{head.name}_logits"]))
        op = "Sigmoid" if head.type == "binary" else "Softmax"
        extra = {} if op == "Sigmoid" else {"axis": 1}
        nodes.append(helper.make_node(op, [f"{head.name}_logits"], [f"{head.name}_p"], **extra))
        head_outputs.append(f"{head.name}_p")
    initializers.append(numpy_helper.from_array(np.array([1], np.int64), "axis_one"))
    nodes.append(helper.make_node("Concat", head_outputs, ["attributes"], axis=1))
    graph = helper.make_graph(
        nodes,
        "personid-standin",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, STANDIN_HEIGHT, STANDIN_WIDTH])],
        [
            helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", STANDIN_DIM]),
            helper.make_tensor_value_info("attributes", TensorProto.FLOAT, ["N", columns]),
        ],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.onnx"
    path.write_bytes(model.SerializeToString())
    write_manifest(standin_manifest(path, attributes, groups), path)
    return path


def service_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The model every service test runs (see the module docstring)."""
    chosen = os.environ.get("PERSONID_TEST_MODEL")
    if chosen:
        return Path(chosen)
    return build_standin_model(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="session")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Built once per session: every test that serves a model shares it."""
    return service_model_path(tmp_path_factory)


@pytest.fixture
def make_settings(model_path: Path, tmp_path: Path) -> Callable[..., Settings]:
    """Settings for a test: the test model, embedded Qdrant in a fresh folder, small limits, 1 ORT thread."""
    from app.settings import Settings  # here: collecting tests that never serve must not need the service

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "model_path": model_path,
            "qdrant_path": tmp_path / "qdrant",
            "intra_op_threads": 1,
            "max_upload_bytes": 256 * 1024,
            "max_images_per_request": 4,
        }
        values.update(overrides)
        return Settings(**values)

    return make
