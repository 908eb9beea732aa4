"""Section 1, model: PyTorch eager vs ONNX Runtime fp32 vs int8 on the same preprocessed images and threads."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from bench.inputs import load_engine, rows_for_batch
from bench.measure import Profile, time_calls

Runner = Callable[[np.ndarray], tuple[np.ndarray, ...]]


def eager_runner(checkpoint: Path, threads: int) -> Runner:
    """The checkpoint in PyTorch eager mode behind the export wrapper, so its outputs match the ONNX graph's."""
    import torch

    from training.engine.checkpoint import load_model
    from training.export.exporter import ExportWrapper

    torch.set_num_threads(threads)
    model, _ = load_model(checkpoint, map_location="cpu")
    wrapper = ExportWrapper(model)

    def eager(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.inference_mode():
            embedding, attributes = wrapper(torch.from_numpy(batch))
        return embedding.numpy(), attributes.numpy()

    return eager


def time_runner(run: Runner, name: str, x: np.ndarray, profile: Profile) -> dict[str, Any]:
    """One table row: the median (and fastest) time of `run` on batch `x`, as images/s and ms."""
    batch = len(x)
    times = time_calls(lambda: run(x), profile.warmup, profile.repeats, profile.budget_s)
    median = float(np.median(times))
    return {
        "backend": name,
        "batch": batch,
        "repeats": len(times),
        "ms_per_batch": median * 1000,
        "min_ms_per_batch": min(times) * 1000,
        "ms_per_image": median * 1000 / batch,
        "images_per_s": batch / median,
    }


def bench_model(
    checkpoint: Path, onnx_path: Path, int8_path: Path | None, rows: np.ndarray, threads: int, profile: Profile
) -> dict[str, Any]:
    """Images/s of PyTorch eager, ORT fp32 and ORT int8 at each batch size; ratios vs eager at the same batch."""
    eager = eager_runner(checkpoint, threads)
    runners: dict[str, Runner] = {"pytorch eager": eager}
    runners["ort fp32"] = load_engine(onnx_path, threads).embed_and_attributes
    if int8_path is not None:
        runners["ort int8"] = load_engine(int8_path, threads).embed_and_attributes
    check = rows_for_batch(rows, 8)
    agreement = float(np.max(np.abs(eager(check)[0] - runners["ort fp32"](check)[0])))
    results: list[dict[str, Any]] = []
    with tqdm(total=len(profile.batches) * len(runners), desc="bench model", unit="config") as bar:
        for batch in profile.batches:
            x = rows_for_batch(rows, batch)
            for name, run in runners.items():
                results.append(time_runner(run, name, x, profile))
                bar.update()
    eager_rate = {r["batch"]: r["images_per_s"] for r in results if r["backend"] == "pytorch eager"}
    for r in results:
        r["vs_eager"] = r["images_per_s"] / eager_rate[r["batch"]]
    return {"rows": results, "max_abs_diff_eager_vs_ort": agreement, "threads": threads}
