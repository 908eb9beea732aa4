"""`personid bench --quick` end to end on a tiny exported model: tables, PNGs, markdown and JSON with sane figures;
and the input checks of `bench.cli`.

Real parts throughout: a PersonModel checkpoint exported by `training.export.exporter` (fp32 + int8), real uvicorn
servers in subprocesses, embedded Qdrant. No speed is asserted: only that every figure is there, positive and finite.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from bench.cli import main
from bench.service import ENDPOINTS
from training.config import TrainConfig
from training.data.schema import AttributeSchema
from training.engine.checkpoint import save_checkpoint
from training.export.exporter import export_checkpoint
from training.modeling.model import build_model


def tiny_checkpoint(path: Path) -> Path:
    """MobileNetV2 at 64 x 32, embedding dim 32; BatchNorm statistics from a few train-mode passes, as a trained
    model has (a freshly initialised one embeds a blank image as the zero vector, which the service refuses)."""
    config = TrainConfig()
    config.data.height, config.data.width = 64, 32
    config.model.embedding_dim, config.model.pretrained = 32, None
    schema = AttributeSchema.builtin("market1501")
    torch.manual_seed(0)
    model = build_model(config.model, 4, schema, pretrained=False).train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn(4, 3, 64, 32))
    save_checkpoint(path, model.eval(), config=config.to_dict(), schema=schema, num_classes=4, epoch=0, dataset="test")
    return path


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("bench-model")
    checkpoint = tiny_checkpoint(folder / "tiny.pt")
    onnx_path = folder / "tiny.onnx"
    # the legacy exporter: seconds instead of tens of seconds, same graph contract
    export_checkpoint(checkpoint, onnx_path, exporter="torchscript", opset=17, int8=True, calibration_images=4,
                      verify_images=2)  # fmt: skip
    return checkpoint, onnx_path


def positive(value: float) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


@pytest.mark.slow
@pytest.mark.skipif(
    shutil.which("hey") is None, reason="the service section drives load with `hey` (apt-get install hey)"
)
def test_quick_bench_writes_sane_tables_figures_and_markdown(tiny_model: tuple[Path, Path], tmp_path: Path) -> None:
    checkpoint, onnx_path = tiny_model
    out = tmp_path / "docs" / "benchmarks"
    argv = ["--quick", "--checkpoint", str(checkpoint), "--onnx", str(onnx_path), "--out", str(out),
            "--requests", "12", "--concurrency", "1,4", "--gallery-sizes", "100,400"]  # fmt: skip
    assert main(argv) == 0
    results = json.loads(out.with_suffix(".json").read_text())

    model = results["model"]["rows"]
    assert {(r["backend"], r["batch"]) for r in model} == {
        (b, n) for b in ("pytorch eager", "ort fp32", "ort int8") for n in (1, 8, 32)
    }
    for r in model:
        assert all(positive(r[k]) for k in ("images_per_s", "ms_per_image", "ms_per_batch", "min_ms_per_batch"))
        assert r["min_ms_per_batch"] <= r["ms_per_batch"]
        assert r["images_per_s"] == pytest.approx(r["batch"] * 1000 / r["ms_per_batch"])
        assert r["vs_eager"] == pytest.approx(1.0) if r["backend"] == "pytorch eager" else positive(r["vs_eager"])
    assert results["model"]["max_abs_diff_eager_vs_ort"] < 1e-3  # the checkpoint and its export agree

    service = results["service"]
    cells = {(r["batching"], r["endpoint"], r["concurrency"]) for r in service["rows"]}
    assert cells == {(t, e, c) for t in ("on", "off") for e in ENDPOINTS for c in (1, 4)}
    for r in service["rows"]:
        assert r["errors"] == 0, r["first_error"]
        assert r["requests"] == 12
        assert positive(r["rps"]) and 0 < r["p50_ms"] <= r["p95_ms"] <= r["p99_ms"]
        assert positive(r["server_ms"]) and positive(r["model_call_ms"]) and r["mean_batch"] >= 1
    assert {"on", "off"} == set(service["overhead"])
    assert all(positive(v) for v in service["bare"].values())
    assert service["upload_floor"]["errors"] == 0 and positive(service["upload_floor"]["p50_ms"])
    batch = service["batch_request"]
    assert batch["errors"] == 0 and batch["images_per_request"] == 32 and batch["mean_batch"] == 8, "max_batch_size"
    assert batch["images_per_s"] == pytest.approx(32 * batch["rps"])

    gallery = results["gallery"]["rows"]
    assert {(r["points"], r["mode"]) for r in gallery} == {(p, m) for p in (100, 400) for m in ("centroid", "groups")}
    for r in gallery:
        assert r["backend"] == "embedded"
        assert all(positive(r[k]) for k in ("p50_ms", "p95_ms", "fill_s", "enroll_images_per_s", "open_s"))

    statuses = {t["target"]: t["status"] for t in results["targets"]}
    assert set(statuses.values()) <= {"met", "missed", "not measured"}
    assert statuses["ORT fp32 vs PyTorch eager, batch 1"] in {"met", "missed"}
    # the gallery targets are judged at 100k points or more, not in these sizes
    assert statuses["gallery search p50 (embedded, largest size >= 100k points), centroid mode, no filter"] == (
        "not measured"
    )

    for section in ("model", "service", "gallery"):
        png = out.parent / f"benchmarks_{section}.png"
        with Image.open(png) as image:
            assert image.format == "PNG" and image.width > 300 and image.height > 200
    markdown = out.with_suffix(".md").read_text()
    assert "personid bench --quick" in markdown and f"| cores (`nproc`) | {results['machine']['nproc']} |" in markdown
    for heading in ("## Targets", "## 1. Model", "## 2. Service", "## 3. Gallery"):
        assert heading in markdown
    assert "](benchmarks_model.png)" in markdown and "| ort int8 | 32 |" in markdown


def test_missing_inputs_fail_with_a_clear_message(tiny_model: tuple[Path, Path], tmp_path: Path, capsys) -> None:
    assert main(["--onnx", str(tmp_path / "absent.onnx")]) == 1
    assert "absent.onnx: file not found" in capsys.readouterr().err
    _, onnx_path = tiny_model
    assert main(["--onnx", str(onnx_path), "--checkpoint", str(tmp_path / "absent.pt")]) == 1
    assert "--sections service,gallery" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--sections", "model,speed"])
    assert "unknown section" in capsys.readouterr().err
