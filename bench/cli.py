"""`personid bench`: model, service and gallery benchmarks side by side -> docs/benchmarks.md (+ PNGs, JSON).

Options, input checks and the order of the sections; what each section measures lives in its own module.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.gallery import bench_gallery
from bench.inputs import load_engine, preprocess_rows, rows_for_batch, sample_jpegs
from bench.measure import FULL, QUICK, BenchError, Profile
from bench.model import bench_model
from bench.report import keep_other_sections, machine_info, write_outputs
from bench.service import bench_service
from bench.targets import evaluate_targets

SECTIONS = ("model", "service", "gallery")
BUSY_SPREAD = 1.5  # median / fastest run above this: the machine was busy


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _positive_int(text: str) -> int:
    value = _int_list(text)
    if len(value) != 1:
        raise argparse.ArgumentTypeError(f"expected one positive integer, got {text!r}")
    return value[0]


def _sections(text: str) -> tuple[str, ...]:
    chosen = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [s for s in chosen if s not in SECTIONS]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"unknown section(s) {unknown}; choose from {','.join(SECTIONS)}")
    return chosen


def build_parser() -> argparse.ArgumentParser:
    """The command's options; counts left unset fall back to the profile (full, or `--quick`)."""
    parser = argparse.ArgumentParser(prog="personid bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default="runs/default/best.pt", help="training checkpoint (PyTorch eager)")
    parser.add_argument("--onnx", default="models/default.onnx", help="the exported model (manifest beside it)")
    parser.add_argument("--int8", help="int8 model (default: NAME.int8.onnx beside --onnx when it exists)")
    parser.add_argument(
        "--out", default="docs/benchmarks", help="output prefix: PREFIX.md, PREFIX.json, PREFIX_<section>.png"
    )
    parser.add_argument("--sections", type=_sections, default=SECTIONS, help="comma-separated: model,service,gallery")
    parser.add_argument("--requests", type=_positive_int, help=f"requests per load-test row (default {FULL.requests})")
    parser.add_argument("--concurrency", type=_int_list, help="comma-separated concurrencies (default 1,16)")
    parser.add_argument(
        "--gallery-sizes", type=_int_list, help="comma-separated image points (default 1000,10000,20000,50000)"
    )
    parser.add_argument(
        "--threads", type=_positive_int, default=os.cpu_count() or 1, help="torch and ORT threads (default: cores)"
    )
    parser.add_argument("--quick", action="store_true", help="small counts and sizes (tests, smoke runs)")
    return parser


def resolve_inputs(args: argparse.Namespace) -> tuple[Path, Path | None, Path | None]:
    """(onnx, int8 or None, checkpoint or None); a clear error for anything asked for that is not there."""
    onnx_path = Path(args.onnx)
    if not onnx_path.is_file():
        raise BenchError(f"--onnx {onnx_path}: file not found; export one with `personid export`")
    if args.int8:
        int8_path: Path | None = Path(args.int8)
        if not int8_path.is_file():
            raise BenchError(f"--int8 {int8_path}: file not found")
    else:
        beside = onnx_path.with_suffix(".int8.onnx")
        int8_path = beside if beside.is_file() else None
    checkpoint = Path(args.checkpoint) if "model" in args.sections else None
    if checkpoint is not None and not checkpoint.is_file():
        raise BenchError(
            f"--checkpoint {checkpoint}: file not found (the model section needs the training checkpoint; "
            "leave it out with --sections service,gallery)"
        )
    return onnx_path, int8_path, checkpoint


def _profile(args: argparse.Namespace) -> Profile:
    profile = QUICK if args.quick else FULL
    return replace(
        profile,
        requests=args.requests or profile.requests,
        concurrency=args.concurrency or profile.concurrency,
        gallery_sizes=args.gallery_sizes or profile.gallery_sizes,
    )


def _model_notes(model: dict[str, Any], checkpoint: Path, onnx_path: Path) -> list[str]:
    """Warnings a reader needs before trusting the model figures: a mismatched checkpoint, a busy machine."""
    notes = []
    if model["max_abs_diff_eager_vs_ort"] > 1e-3:
        notes.append(
            f"PyTorch and ORT fp32 embeddings differ by up to {model['max_abs_diff_eager_vs_ort']:.3g}: "
            f"is {checkpoint} the checkpoint {onnx_path} was exported from?"
        )
    spread = max(r["ms_per_batch"] / r["min_ms_per_batch"] for r in model["rows"])
    if spread > BUSY_SPREAD:
        notes.append(
            f"Model timings spread widely (a median up to {spread:.1f}x its fastest run): the machine was busy "
            "or threads were oversubscribed; rerun on a quiet machine before trusting the ratios."
        )
    return notes


def _header(argv: list[str], args: argparse.Namespace, manifest: Any, inputs: tuple[Path, ...]) -> dict[str, Any]:
    """The results' opening keys: how they were produced, on what, for which model."""
    onnx_path, int8_path, checkpoint = inputs
    return {
        "command": shlex.join(["personid", "bench", *argv]),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_info(args.threads),
        "model_under_test": {
            "onnx": str(onnx_path),
            "model_id": manifest.model_id,
            "backbone": manifest.backbone or "unknown",
            "input": f"{manifest.input.height} x {manifest.input.width}",
            "embedding dim": manifest.outputs.embedding.dim,
            "int8": str(int8_path) if int8_path else "none",
            "checkpoint": str(checkpoint) if checkpoint else "not used",
        },
        "profile": "quick" if args.quick else "full",
        "notes": [],
    }


def run(argv: list[str]) -> dict[str, Any]:
    """Run the chosen sections and write PREFIX.md / .json / _<section>.png; returns the results."""
    args = build_parser().parse_args(argv)
    profile = _profile(args)
    onnx_path, int8_path, checkpoint = resolve_inputs(args)
    engine = load_engine(onnx_path, args.threads)
    manifest = engine.manifest
    jpegs = sample_jpegs(max(32, profile.queries))
    rows = preprocess_rows(jpegs, manifest.input)
    queries, _ = engine.embed_and_attributes(rows_for_batch(rows, profile.queries))
    del engine  # no idle session of this process beside the ones measured
    results = _header(argv, args, manifest, (onnx_path, int8_path, checkpoint))
    if "model" in args.sections:
        assert checkpoint is not None
        if int8_path is None:
            results["notes"].append(f"No int8 model beside {onnx_path} (export with --int8): ORT int8 not measured.")
        results["model"] = bench_model(checkpoint, onnx_path, int8_path, rows, args.threads, profile)
        results["notes"] += _model_notes(results["model"], checkpoint, onnx_path)
    if "service" in args.sections:
        results["service"] = bench_service(onnx_path, jpegs, args.threads, profile)
        failed = sum(r["errors"] for r in results["service"]["rows"])
        if failed:
            first = next(r["first_error"] for r in results["service"]["rows"] if r["errors"])
            results["notes"].append(f"{failed} service requests failed (not counted in req/s); first: {first}")
    if "gallery" in args.sections:
        results["gallery"] = bench_gallery(manifest.outputs.embedding.dim, queries, profile)
    keep_other_sections(results, Path(args.out), args.sections)
    results["targets"] = evaluate_targets(results)
    write_outputs(results, Path(args.out))
    return results


def main(argv: list[str]) -> int:
    """`personid bench ARGS`: 0 when written, 1 with a one-line error for inputs that cannot be used."""
    from app.engine import EngineError
    from personid.manifest import ManifestError

    try:
        run(argv)
    except (BenchError, EngineError, ManifestError) as exc:
        print(f"personid bench: error: {exc}", file=sys.stderr)
        return 1
    return 0
