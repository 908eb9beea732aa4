"""Shared fixtures of the service tests: a real ONNX model with its manifest, settings, images, a live app.

`service_model_path` is the ONE place that picks the model the service tests run: `PERSONID_TEST_MODEL`
(e.g. the shipped `models/default.onnx`) when set, otherwise a small stand-in graph built here with
`onnx.helper`. The stand-in is there for speed (the suite must stay under two minutes on two shared cores),
not to fake anything: it is a real ONNX graph run by a real ONNX Runtime session, with the same input and
outputs as `training/export.py` writes (`images` N x 3 x H x W -> `embedding` L2-normalised, `attributes`
per-head softmax / sigmoid probabilities) and a manifest in the documented format, using the Market heads.
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnx
import pytest
from fastapi.testclient import TestClient
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from app.main import create_app
from app.manifest import model_id_of
from app.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
MARKET_SCHEMA = ROOT / "training" / "schemas" / "market.json"
STANDIN_HEIGHT, STANDIN_WIDTH, STANDIN_DIM = 64, 32, 32
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def market_heads() -> tuple[list[dict[str, Any]], dict[str, list[str]]]:
    """The Market attribute heads with their output columns, and the display groups."""
    schema = json.loads(MARKET_SCHEMA.read_text())
    heads, offset = [], 0
    for head in schema["heads"]:
        size = 1 if head["type"] == "binary" else len(head["labels"])
        heads.append(
            {"name": head["name"], "type": head["type"], "labels": head["labels"], "offset": offset, "size": size}
        )
        offset += size
    return heads, schema["groups"]


def standin_manifest(onnx_path: Path, heads: list[dict[str, Any]], groups: dict[str, list[str]]) -> dict[str, Any]:
    return {
        "format_version": 1,
        "model_id": model_id_of(onnx_path.read_bytes()),
        "name": onnx_path.stem,
        "created": "2026-11-25T12:00:00Z",
        "opset": 17,
        "backbone": "standin-conv",
        "input": {
            "name": "images",
            "layout": "NCHW",
            "height": STANDIN_HEIGHT,
            "width": STANDIN_WIDTH,
            "color_order": "RGB",
            "resize": "bilinear",
            "scale": 255.0,
            "mean": IMAGENET_MEAN,
            "std": IMAGENET_STD,
            "dtype": "float32",
        },
        "outputs": {
            "embedding": {"name": "embedding", "dim": STANDIN_DIM, "normalized": True},
            "attributes": {"name": "attributes", "size": sum(h["size"] for h in heads), "heads": heads},
        },
        "groups": groups,
        "training": {"dataset": "none (stand-in test model)", "config": {"secret_path": "/x"}, "epochs": 0},
        "metrics": {},
        "verification": None,
    }


def build_standin_model(folder: Path, name: str = "standin", seed: int = 0) -> Path:
    """conv(3->8, stride 2) -> ReLU -> 8x8 average pool -> flatten -> [Gemm -> L2 norm | Gemm -> per-head act]."""
    heads, groups = market_heads()
    rng = np.random.default_rng(seed)
    pooled = 8 * (STANDIN_HEIGHT // 16) * (STANDIN_WIDTH // 16)
    columns = sum(h["size"] for h in heads)
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
    for head in heads:
        start, end = head["offset"], head["offset"] + head["size"]
        bounds = [f"{head['name']}_start", f"{head['name']}_end", "axis_one"]
        initializers += [
            numpy_helper.from_array(np.array([start], np.int64), bounds[0]),
            numpy_helper.from_array(np.array([end], np.int64), bounds[1]),
        ]
        nodes.append(helper.make_node("Slice", ["logits", *bounds], [f"{head['name']}_logits"]))
        op = "Sigmoid" if head["type"] == "binary" else "Softmax"
        extra = {} if op == "Sigmoid" else {"axis": 1}
        nodes.append(helper.make_node(op, [f"{head['name']}_logits"], [f"{head['name']}_p"], **extra))
        head_outputs.append(f"{head['name']}_p")
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
    path.with_suffix(".json").write_text(json.dumps(standin_manifest(path, heads, groups), indent=2))
    return path


def service_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The model every service test runs (see the module docstring)."""
    chosen = os.environ.get("PERSONID_TEST_MODEL")
    if chosen:
        return Path(chosen)
    return build_standin_model(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="session")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return service_model_path(tmp_path_factory)


@pytest.fixture
def make_settings(model_path: Path, tmp_path: Path) -> Callable[..., Settings]:
    """Settings for a test: the test model, embedded Qdrant in a fresh folder, small limits, 1 ORT thread."""

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


@pytest.fixture
def client(make_settings: Callable[..., Settings]) -> Iterator[TestClient]:
    """A started app (lifespan run: model loaded, gallery open) behind a real ASGI HTTP client."""
    with TestClient(create_app(make_settings()), raise_server_exceptions=False) as test_client:
        yield test_client


def person_image(seed: int, size: tuple[int, int] = (48, 96), fmt: str = "PNG", mode: str = "RGB") -> bytes:
    """A distinct synthetic 'person' (blocks of colour per seed) encoded as `fmt`."""
    rng = np.random.default_rng(seed)
    width, height = size
    pixels = np.zeros((height, width, 3), np.uint8)
    top, bottom = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    pixels[: height // 2] = top
    pixels[height // 2 :] = bottom
    pixels = np.clip(pixels.astype(int) + rng.integers(-40, 40, pixels.shape), 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def image_file(data: bytes, name: str = "person.png", content_type: str = "image/png") -> tuple[str, bytes, str]:
    return (name, data, content_type)


def assert_problem(response: Any, status: int, field: str | None = None) -> dict[str, Any]:
    """The response is RFC 9457 problem+json with `status`; returns the body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    body = response.json()
    assert body["status"] == status
    assert {"type", "title", "detail"} <= set(body)
    assert isinstance(body["detail"], str) and body["detail"]
    if field is not None:
        assert any(error["field"] == field for error in body["errors"]), body
    return body


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serving(*options: str, log: Path) -> Iterator[str]:
    """`personid serve` in a subprocess on a free local port, without the caller's PERSONID_* variables.

    Yields the base URL once /readyz answers 200; then stops the server with SIGTERM and checks it shut down
    cleanly. Its output is appended to `log`, so a restart keeps the first run's lines.
    """
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("PERSONID_")}
    command = [sys.executable, "-m", "personid.cli", "serve", "--host", "127.0.0.1", "--port", str(port), *options]
    start = log.stat().st_size if log.exists() else 0
    with log.open("a") as sink:
        process = subprocess.Popen(
            command, cwd=ROOT, env={**env, "PYTHONUNBUFFERED": "1"}, stdout=sink, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert process.poll() is None, f"server exited with {process.returncode}:\n{log.read_text()}"
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"server not ready after 90 s:\n{log.read_text()}"
            time.sleep(0.2)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise AssertionError(f"server ignored SIGTERM for 30 s:\n{log.read_text()}") from None
    # uvicorn shuts down, then re-raises the signal it caught: -SIGTERM is its normal exit code
    this_run = log.read_text()[start:]
    assert process.returncode in (0, -signal.SIGTERM), f"server exited with {process.returncode}:\n{this_run}"
    assert "Application shutdown complete" in this_run, f"no clean shutdown on SIGTERM:\n{this_run}"
