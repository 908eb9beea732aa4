"""`personid export`: checkpoint -> `models/NAME.onnx` + `models/NAME.json` (the manifest), verified.

The ONNX graph is the model plus its output activations (docs/architecture.md "Model outputs"): input
`images`, outputs `embedding` (L2-normalised) and `attributes` (probabilities), so the service only slices
columns. Verification runs ONNX Runtime (CPU) against PyTorch on real-format images preprocessed by the eval
transform, and batch 1 against batch N; the figures go into the manifest and a miss fails the export.

Exporter: torch's default (dynamo, `torch.export`) at its native opset 18. Asked for opset 17 it tries a
version conversion that fails on ReduceL2/ReduceMean and leaves opset 18 anyway, so opset 17 needs
`--exporter torchscript` (the legacy exporter, deprecated in torch but still exact for this model).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import warnings
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from personid.imaging import load_rgb
from personid.manifest import (
    AttributesSpec,
    CalibrationSpec,
    EmbeddingSpec,
    HeadLike,
    InputSpec,
    Manifest,
    ManifestError,
    OutputsSpec,
    model_id,
    write_manifest,
)
from personid.session import open_session
from training.data.schema import AttributeSchema
from training.data.transforms import build_eval_transform, input_spec
from training.modeling.model import PersonModel, attribute_probabilities

EXPORTERS = ("dynamo", "torchscript")
DEFAULT_OPSET = 18
TOLERANCE = 1e-4  # ORT vs PyTorch, embeddings and probabilities
BATCH_TOLERANCE = 1e-5  # batch 1 vs batch N, same runtime
FP16_TOLERANCE = 2e-2  # fp16 vs fp32 ORT (CPU): measured 0.8e-2 to 1.1e-2 on MobileNetV2 with synth images
VARIANT_BATCH_TOLERANCE = 1e-4  # batch 1 vs batch N for fp16/int8 (other kernels per batch size)
INT8_MIN_COSINE = 0.95  # int8 vs fp32 ORT: a lower mean embedding cosine fails the export
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


class ExportError(RuntimeError):
    """The export cannot be trusted (verification outside tolerance, a broken graph); the message says why."""


class ExportWrapper(nn.Module):
    """PersonModel (eval) -> (embedding, attribute probabilities): the exact graph the service runs.

    `temperatures` (one divisor per attribute column, `calibration.column_temperatures`) folds calibration into
    the graph; without it the graph is exactly the uncalibrated model's.
    """

    def __init__(self, model: PersonModel, temperatures: np.ndarray | None = None) -> None:
        super().__init__()
        self.model = model
        self.schema: AttributeSchema = model.schema
        divisors = None if temperatures is None else torch.as_tensor(temperatures, dtype=torch.float32).reshape(1, -1)
        self.temperatures: torch.Tensor | None
        self.register_buffer("temperatures", divisors)
        self.eval()

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model(images)
        logits = out["attr_logits"] if self.temperatures is None else out["attr_logits"] / self.temperatures
        return out["embedding"], attribute_probabilities(logits, self.schema)


def export_onnx(
    model: PersonModel,
    path: str | Path,
    height: int,
    width: int,
    opset: int = DEFAULT_OPSET,
    exporter: str = "dynamo",
    temperatures: np.ndarray | None = None,
) -> None:
    """Write a single-file ONNX graph with a dynamic batch axis, checked by `onnx.checker` (full check)."""
    if exporter not in EXPORTERS:
        raise ValueError(f"unknown exporter {exporter!r}; choose one of {list(EXPORTERS)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wrapper = ExportWrapper(model, temperatures)
    example = torch.zeros(2, 3, height, width)  # batch 2: torch.export specialises sizes 0 and 1
    names = {"input_names": ["images"], "output_names": ["embedding", "attributes"], "opset_version": opset}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        if exporter == "dynamo":
            batch = torch.export.Dim("batch", min=1, max=4096)
            torch.onnx.export(
                wrapper,
                (example,),
                str(path),
                dynamo=True,
                dynamic_shapes={"images": {0: batch}},
                external_data=False,
                optimize=True,
                verbose=False,
                **names,
            )
        else:
            axes = {"images": {0: "batch"}, "embedding": {0: "batch"}, "attributes": {0: "batch"}}
            torch.onnx.export(
                wrapper, (example,), str(path), dynamo=False, dynamic_axes=axes, do_constant_folding=True, **names
            )
    written = graph_opset(path)
    if written != opset:
        raise ExportError(
            f"asked for opset {opset} but the {exporter} exporter wrote opset {written}; "
            f"use --opset {written}" + (" or --exporter torchscript" if exporter == "dynamo" else "")
        )
    onnx.checker.check_model(str(path), full_check=True)


def graph_opset(path: str | Path) -> int:
    model = onnx.load(str(path), load_external_data=False)
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def run_onnx(
    session: ort.InferenceSession, images: np.ndarray, batch_size: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(embedding, attributes) for `images`, all in one run or `batch_size` images per run."""
    step = batch_size or len(images)
    parts = [
        session.run(["embedding", "attributes"], {"images": images[i : i + step]}) for i in range(0, len(images), step)
    ]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def image_files(folder: str | Path) -> list[Path]:
    return sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def load_images(
    count: int,
    height: int,
    width: int,
    mean: list[float],
    std: list[float],
    folder: str | Path | None = None,
    seed: int = 0,
) -> np.ndarray:
    """`count` images preprocessed by the eval transform (count x 3 x H x W float32).

    From `folder` when given (real images make the best calibration set); otherwise generated by
    `synth` in Market-1501 format, so verification sees real-format JPEGs, not noise.
    """
    transform = build_eval_transform(height, width, mean, std)
    with tempfile.TemporaryDirectory() as tmp:
        if folder is None:
            from synth import sample_crops

            files = sample_crops(Path(tmp), count, seed)
        else:
            files = image_files(folder)
            if len(files) < count:
                raise ExportError(f"{folder}: {len(files)} images found, {count} needed")
        return np.stack([transform(load_rgb(f)).numpy() for f in files[:count]])


def max_abs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))


def verify_against_torch(
    wrapper: ExportWrapper,
    onnx_path: str | Path,
    images: np.ndarray,
    tolerance: float = TOLERANCE,
    batch_tolerance: float = BATCH_TOLERANCE,
) -> dict[str, Any]:
    """ORT vs PyTorch on `images` (all at once) and ORT batch 1 vs batch N; raise ExportError past tolerance."""
    with torch.no_grad():
        emb_t, attr_t = (t.numpy() for t in wrapper(torch.from_numpy(images)))
    session = open_session(onnx_path)
    emb, attr = run_onnx(session, images)
    emb1, attr1 = run_onnx(session, images, batch_size=1)
    figures = {
        "max_abs_diff_embedding": max_abs(emb, emb_t),
        "max_abs_diff_attributes": max_abs(attr, attr_t),
        "batch_consistency": max(max_abs(emb, emb1), max_abs(attr, attr1)),
        "images": len(images),
        "reference": "pytorch",
        "tolerance": tolerance,
        "batch_tolerance": batch_tolerance,
    }
    check_tolerances(figures, onnx_path)
    return figures


def verify_variant(
    variant_path: str | Path,
    reference: tuple[np.ndarray, np.ndarray],
    images: np.ndarray,
    heads: Sequence[HeadLike],
    tolerance: float | None,
    batch_tolerance: float,
    min_cosine: float | None = None,
) -> dict[str, Any]:
    """A fp16/int8 variant vs the fp32 ONNX outputs `reference` on the same images (ORT CPU)."""
    from training.export.quantize import agreement

    session = open_session(variant_path)
    emb, attr = run_onnx(session, images)
    emb1, attr1 = run_onnx(session, images, batch_size=1)
    figures: dict[str, Any] = {
        "max_abs_diff_embedding": max_abs(emb, reference[0]),
        "max_abs_diff_attributes": max_abs(attr, reference[1]),
        "batch_consistency": max(max_abs(emb, emb1), max_abs(attr, attr1)),
        "images": len(images),
        "reference": "onnx-fp32",
        "tolerance": tolerance,
        "batch_tolerance": batch_tolerance,
        "min_cosine": min_cosine,
        **agreement(reference, (emb, attr), heads),
    }
    check_tolerances(figures, variant_path)
    return figures


def check_tolerances(figures: dict[str, Any], path: str | Path) -> None:
    problems = []
    tol = figures["tolerance"]
    for key in ("max_abs_diff_embedding", "max_abs_diff_attributes"):
        if tol is not None and not figures[key] <= tol:
            problems.append(f"{key} = {figures[key]:.3g} > {tol:g} (vs {figures['reference']})")
    if not figures["batch_consistency"] <= figures["batch_tolerance"]:
        problems.append(
            f"batch 1 vs batch {figures['images']} differ by {figures['batch_consistency']:.3g} "
            f"> {figures['batch_tolerance']:g}"
        )
    if figures.get("min_cosine") is not None and not figures["embedding_cosine_mean"] >= figures["min_cosine"]:
        problems.append(
            f"mean embedding cosine to fp32 {figures['embedding_cosine_mean']:.4f} < {figures['min_cosine']}"
        )
    if problems:
        raise ExportError(f"verification of {path} failed: " + "; ".join(problems))


def build_manifest(
    onnx_path: str | Path,
    *,
    schema: AttributeSchema,
    embedding_dim: int,
    input_spec: InputSpec,
    backbone: str,
    exporter: str,
    training: dict[str, Any],
    metrics: dict[str, Any],
    verification: dict[str, Any] | None,
    precision: str = "fp32",
    calibration: dict[str, Any] | None = None,
) -> Manifest:
    """The manifest (docs/architecture.md "Manifest") for the ONNX file at `onnx_path`.

    Inside `verification`: `reference`, the tolerances and (variants) the agreement figures; it is null with
    `--no-verify`.
    """
    onnx_path = Path(onnx_path)
    outputs = OutputsSpec(embedding=EmbeddingSpec(dim=int(embedding_dim)), attributes=AttributesSpec.of(schema.heads))
    return Manifest(
        model_id=model_id(onnx_path, input_spec, outputs),
        name=onnx_path.stem,
        created=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        opset=graph_opset(onnx_path),
        exporter=exporter,
        precision=precision,  # type: ignore[arg-type]
        backbone=backbone,
        input=input_spec,
        outputs=outputs,
        groups={g: list(m) for g, m in schema.groups.items()},
        training=training,
        metrics=metrics,
        verification=verification,
        calibration=CalibrationSpec.model_validate(calibration) if calibration else None,
    )


def _read_metrics(path: str | Path) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ExportError(f"--metrics {path}: file not found") from None
    except json.JSONDecodeError as exc:
        raise ExportError(f"--metrics {path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ExportError(f"--metrics {path}: expected a JSON object as written by `personid eval`")
    return data


def export_checkpoint(
    checkpoint: str | Path,
    out: str | Path,
    *,
    opset: int = DEFAULT_OPSET,
    exporter: str = "dynamo",
    verify: bool = True,
    fp16: bool = False,
    int8: bool = False,
    calibration_images: int = 32,
    int8_fp32_convs: int = 4,
    fp16_tolerance: float = FP16_TOLERANCE,
    verify_images: int = 8,
    images_dir: str | Path | None = None,
    metrics_path: str | Path | None = None,
    calibrate_on: str | Path | None = None,
    calibrate_kind: str = "auto",
    reliability_png: str | Path | None = None,
) -> list[Path]:
    """Export `checkpoint` to `out` (+ variants); returns every file written (ONNX and manifest pairs).

    `calibrate_on`: a labelled dataset whose query + gallery (identities never trained on) fit per-head
    temperatures that go into the graph and the manifest (`calibrate`); `reliability_png` draws them.
    """
    from training.engine.checkpoint import load_model

    out = Path(out)
    if out.suffix != ".onnx":
        raise ExportError(f"--out must end in .onnx, got {out}")
    model, info = load_model(checkpoint, map_location="cpu")
    metrics = _read_metrics(metrics_path) if metrics_path else info["metrics"]
    data = info["config"]["data"]
    height, width, mean, std = data["height"], data["width"], data["mean"], data["std"]
    log(f"exporting {checkpoint} ({model.backbone_name}, {height}x{width}) with the {exporter} exporter, opset {opset}")
    calibration, temperatures = None, None
    if calibrate_on is not None:
        calibration, temperatures = calibrate(model, calibrate_on, calibrate_kind, (height, width, mean, std),
                                              reliability_png)  # fmt: skip
        log(f"calibrated: {json.dumps({k: calibration[k] for k in ('temperatures', 'ece_before', 'ece_after')})}")
    export_onnx(model, out, height, width, opset, exporter, temperatures)
    mtime = datetime.fromtimestamp(Path(checkpoint).stat().st_mtime, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    common: dict[str, Any] = {
        "schema": model.schema,
        "embedding_dim": model.embedding_dim,
        "input_spec": input_spec(height, width, mean, std),
        "backbone": model.backbone_name,
        "exporter": f"torch-{torch.__version__.split('+')[0]}/{exporter}",
        "training": {"dataset": info["dataset"], "config": info["config"], "date": mtime, "epochs": info["epoch"]},
        "metrics": metrics,
        "calibration": calibration,
    }
    need = max(verify_images if verify or fp16 or int8 else 0, calibration_images if int8 else 0)
    images = load_images(need, height, width, mean, std, images_dir) if need else None
    verification = None
    if verify:
        assert images is not None
        verification = verify_against_torch(ExportWrapper(model, temperatures), out, images[:verify_images])
        log(f"verified: {json.dumps(verification)}")
    written = [out, write_manifest(build_manifest(out, **common, verification=verification), out)]
    if not (fp16 or int8):
        return written
    from training.export.quantize import quantize_int8, to_fp16

    assert images is not None
    check = images[:verify_images]
    reference = run_onnx(open_session(out), check)
    heads = model.schema.heads
    if fp16:
        path = to_fp16(out, out.with_suffix(".fp16.onnx"))
        figures = verify_variant(path, reference, check, heads, fp16_tolerance, VARIANT_BATCH_TOLERANCE)
        log(f"fp16: {json.dumps(figures)}")
        written += [path, write_manifest(build_manifest(path, **common, verification=figures, precision="fp16"), path)]
    if int8:
        log(f"quantising to int8, calibrated on {calibration_images} images, first {int8_fp32_convs} convs in fp32")
        path = quantize_int8(
            out, out.with_suffix(".int8.onnx"), images[:calibration_images], fp32_convs=int8_fp32_convs
        )
        figures = verify_variant(path, reference, check, heads, None, VARIANT_BATCH_TOLERANCE, INT8_MIN_COSINE)
        figures |= {"calibration_images": calibration_images, "fp32_convs": int8_fp32_convs}
        log(f"int8: {json.dumps(figures)}")
        written += [path, write_manifest(build_manifest(path, **common, verification=figures, precision="int8"), path)]
    return written


def held_out_logits(
    model: PersonModel, data: str | Path, kind: str, preprocessing: tuple[int, int, list[float], list[float]]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Attribute logits, targets (model head order) and person ids of the labelled query + gallery images of
    `data`: its test identities, which training never sees."""
    from training.data.datasets import load_dataset
    from training.evaluation.evaluate import aligned_targets, extract

    split = load_dataset(Path(data), kind=kind)  # type: ignore[arg-type]  # the loader checks `kind`
    records = [r for r in split.query + split.gallery if r.attrs is not None]
    if split.schema is None or not records:
        raise ExportError(f"--calibrate-on {data}: no attribute-labelled query or gallery images")
    targets = aligned_targets(records, split.schema, model.schema.heads)
    transform = build_eval_transform(*preprocessing)
    model.eval()

    @torch.no_grad()
    def run(images: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        logits = model(images)["attr_logits"].float().numpy()
        return logits, logits

    _, logits = extract(run, records, transform, len(split.schema.heads), desc="calibration")
    return logits, targets, np.array([r.pid for r in records])


def calibrate(
    model: PersonModel,
    data: str | Path,
    kind: str,
    preprocessing: tuple[int, int, list[float], list[float]],
    reliability_png: str | Path | None = None,
) -> tuple[dict[str, Any], np.ndarray]:
    """Fit per-head temperatures on the even person ids of `data`'s labelled test images, measure ECE before and
    after on the odd ones (an honest held-out figure); returns the manifest's `calibration` block and the
    per-column divisors for the graph."""
    from training.export import calibration as cal

    heads = model.schema.heads
    logits, targets, pids = held_out_logits(model, data, kind, preprocessing)
    fit = pids % 2 == 0
    if fit.all() or not fit.any():
        raise ExportError(f"--calibrate-on {data}: needs test identities with both even and odd ids to fit and check")
    temperatures = cal.fit_temperatures(logits[fit], targets[fit], heads)
    before = cal.calibration_figures(logits[~fit], targets[~fit], heads, None)
    after = cal.calibration_figures(logits[~fit], targets[~fit], heads, temperatures)
    if reliability_png is not None:
        cal.reliability_diagram(logits[~fit], targets[~fit], heads, temperatures, reliability_png,
                                f"attribute reliability on held-out ids of {Path(data).name}")  # fmt: skip
    block = {
        "method": "temperature",
        "temperatures": temperatures,
        "fitted_on": f"{data} (query + gallery, even person ids)",
        "ece_before": before["ece"],
        "ece_after": after["ece"],
        "details": {
            "fit_images": int(fit.sum()),
            "check_images": int((~fit).sum()),
            "checked_on": "odd person ids",
            "bins": cal.BINS,
            "nll_before": before["nll"],
            "nll_after": after["nll"],
            "per_head": {
                name: {"ece_before": before["per_head"][name]["ece"], "ece_after": after["per_head"][name]["ece"]}
                for name in temperatures
            },
        },
    }
    return block, cal.column_temperatures(heads, temperatures)


def log(message: str) -> None:
    print(f"personid export: {message}", file=sys.stderr, flush=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="personid export", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="a checkpoint written by `personid train`")
    parser.add_argument("--out", required=True, help="models/NAME.onnx; the manifest goes to models/NAME.json")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET)
    parser.add_argument("--exporter", choices=EXPORTERS, default="dynamo")
    parser.add_argument("--no-verify", dest="verify", action="store_false", help="skip ORT vs PyTorch verification")
    parser.add_argument("--fp16", action="store_true", help="also write NAME.fp16.onnx (GPU serving)")
    parser.add_argument("--int8", action="store_true", help="also write NAME.int8.onnx (static QDQ, CPU serving)")
    parser.add_argument("--calibration-images", type=int, default=32, help="int8 calibration images")
    parser.add_argument("--fp16-tolerance", type=float, default=FP16_TOLERANCE, help="max abs diff fp16 vs fp32")
    parser.add_argument("--int8-fp32-convs", type=int, default=4, help="leading convolutions kept fp32 in int8")
    parser.add_argument("--verify-images", type=int, default=8, help="images for verification (batch N)")
    parser.add_argument("--images", help="folder of person crops for verification/calibration (default: synthetic)")
    parser.add_argument("--metrics", help="metrics JSON from `personid eval` (default: the checkpoint's)")
    parser.add_argument(
        "--calibrate-on", help="labelled dataset (not the training split) to fit per-head temperatures on"
    )
    parser.add_argument("--calibrate-kind", default="auto", help="auto | market1501 | dukemtmc | csv")
    parser.add_argument("--reliability-png", help="with --calibrate-on: write the reliability diagram here")
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.calibration_images < 1 or args.verify_images < 2:
        print("personid export: --calibration-images must be >= 1 and --verify-images >= 2", file=sys.stderr)
        return 2
    try:
        written = export_checkpoint(
            args.checkpoint,
            args.out,
            opset=args.opset,
            exporter=args.exporter,
            verify=args.verify,
            fp16=args.fp16,
            int8=args.int8,
            calibration_images=args.calibration_images,
            int8_fp32_convs=args.int8_fp32_convs,
            fp16_tolerance=args.fp16_tolerance,
            verify_images=args.verify_images,
            images_dir=args.images,
            metrics_path=args.metrics,
            calibrate_on=args.calibrate_on,
            calibrate_kind=args.calibrate_kind,
            reliability_png=args.reliability_png,
        )
    except (ExportError, ManifestError, FileNotFoundError, ValueError) as exc:
        print(f"personid export: error: {exc}", file=sys.stderr)
        return 1
    for path in written:
        print(f"{path}\t{path.stat().st_size / 1e6:.2f} MB")
    return 0
