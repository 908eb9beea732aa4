"""The targets, fixed in advance and printed as met / missed beside the measured figures (never fitted to a machine)."""

from __future__ import annotations

from typing import Any

from bench.service import ENDPOINTS

TARGET_ORT_SPEEDUP = 1.5  # ORT fp32 images/s >= 1.5x PyTorch eager at batch 1
TARGET_BATCHING_RPS = 1.5  # batching on >= 1.5x requests/s of batching off at the highest concurrency
TARGET_BATCHING_P99 = 2.0  # ... with p99 no worse than 2x
TARGET_SERVICE_OVERHEAD = 1.2  # /v1/embeddings p50 at c=1 within 1.2x of bare ORT + the bare upload endpoint
TARGET_SERVICE_VS_MODEL = 0.8  # /v1/embeddings images/s at c=16 >= 0.8x the bare ORT call's at batch 1
TARGET_HIGH_CONCURRENCY = 0.9  # /v1/embeddings req/s at c=64 within 10% of the best concurrency's
TARGET_BATCH_REQUEST = 3.0  # one request of 32 crops >= 3x the images/s of one-crop requests, both at c=1
# embedded gallery (issue 14), judged at the largest size measured of at least TARGET_GALLERY_POINTS image points
TARGET_GALLERY_POINTS = 100_000
TARGET_SEARCH_MS = 20.0  # search p50, each mode, with and without an attribute filter
TARGET_BULK_ENROLL = 1000.0  # images/s, enrolls of 32 images
TARGET_OPEN_S = 10.0
TARGET_ENROLL1_MS = 20.0  # one-image enroll p50


def _target(name: str, goal: str, measured: str, met: bool | None) -> dict[str, str]:
    status = "not measured" if met is None else ("met" if met else "missed")
    return {"target": name, "goal": goal, "measured": measured, "status": status}


def model_target(model: dict[str, Any] | None) -> dict[str, str]:
    """ORT fp32 against PyTorch eager at batch 1."""
    rows = [r for r in model["rows"] if r["backend"] == "ort fp32" and r["batch"] == 1] if model else []
    return _target(
        "ORT fp32 vs PyTorch eager, batch 1",
        f">= {TARGET_ORT_SPEEDUP}x images/s",
        f"{rows[0]['vs_eager']:.2f}x" if rows else "-",
        rows[0]["vs_eager"] >= TARGET_ORT_SPEEDUP if rows else None,
    )


def batching_targets(service: dict[str, Any] | None) -> list[dict[str, str]]:
    """Per endpoint, batching on vs off at the highest concurrency run (not measured when that is 1)."""
    top = max(service["rows"], key=lambda r: r["concurrency"])["concurrency"] if service else 0
    targets = []
    for endpoint in ENDPOINTS:
        pair = (
            {r["batching"]: r for r in service["rows"] if r["endpoint"] == endpoint and r["concurrency"] == top}
            if (service and top > 1)
            else {}
        )
        name = f"batching on vs off, {endpoint}, concurrency {top or '16'}"
        goal = f">= {TARGET_BATCHING_RPS}x req/s, p99 <= {TARGET_BATCHING_P99}x"
        if len(pair) == 2:
            rps, p99 = pair["on"]["rps"] / pair["off"]["rps"], pair["on"]["p99_ms"] / pair["off"]["p99_ms"]
            met = rps >= TARGET_BATCHING_RPS and p99 <= TARGET_BATCHING_P99
            targets.append(_target(name, goal, f"{rps:.2f}x req/s, p99 {p99:.2f}x", met))
        else:
            targets.append(_target(name, goal, "-", None))
    return targets


def overhead_target(service: dict[str, Any] | None) -> dict[str, str]:
    """The service at concurrency 1 (batching on) against the bare model call plus the bare upload endpoint."""
    overhead = service["overhead"].get("on") if service else None
    floor = f"{service['bare']['ort_p50_ms']:.1f} + {overhead['upload_floor_ms']:.1f}" if service and overhead else ""
    return _target(
        "/v1/embeddings p50 at concurrency 1 (batching on) vs bare ORT call + bare upload endpoint",
        f"<= {TARGET_SERVICE_OVERHEAD}x",
        f"{overhead['ratio']:.2f}x ({overhead['service_p50_ms']:.1f} vs {floor} ms)" if overhead else "-",
        overhead["ratio"] <= TARGET_SERVICE_OVERHEAD if overhead else None,
    )


def _embeddings_on(service: dict[str, Any] | None) -> dict[int, dict[str, Any]]:
    rows = service["rows"] if service else []
    return {r["concurrency"]: r for r in rows if r["batching"] == "on" and r["endpoint"] == "/v1/embeddings"}


def throughput_targets(service: dict[str, Any] | None) -> list[dict[str, str]]:
    """/v1/embeddings (batching on): c=16 against the bare model, c=64 against the best, a batch of 32 crops."""
    cells = _embeddings_on(service)
    bare = service["bare"]["ort_images_per_s"] if service else 0.0
    c16 = cells.get(16)
    vs_model = c16["images_per_s"] / bare if c16 and bare else None
    best = max(cells.values(), key=lambda r: r["rps"]) if cells else None
    c64 = cells.get(64)
    vs_best = c64["rps"] / best["rps"] if c64 and best else None
    batch = service.get("batch_request") if service else None
    one = cells.get(1)
    vs_single = batch["images_per_s"] / one["images_per_s"] if batch and one else None
    return [
        _target(
            "/v1/embeddings images/s at concurrency 16 vs bare ORT call at batch 1",
            f">= {TARGET_SERVICE_VS_MODEL}x",
            f"{vs_model:.2f}x ({c16['images_per_s']:.1f} vs {bare:.1f})" if vs_model is not None and c16 else "-",
            vs_model >= TARGET_SERVICE_VS_MODEL if vs_model is not None else None,
        ),
        _target(
            "/v1/embeddings req/s at concurrency 64 vs the best concurrency",
            f">= {TARGET_HIGH_CONCURRENCY}x",
            f"{vs_best:.2f}x ({c64['rps']:.1f} vs {best['rps']:.1f} at c={best['concurrency']})"
            if vs_best is not None and c64 and best
            else "-",
            vs_best >= TARGET_HIGH_CONCURRENCY if vs_best is not None else None,
        ),
        _target(
            "one request of 32 crops vs one-crop requests, images/s at concurrency 1",
            f">= {TARGET_BATCH_REQUEST}x",
            f"{vs_single:.2f}x ({batch['images_per_s']:.1f} vs {one['images_per_s']:.1f})"
            if vs_single is not None and batch and one
            else "-",
            vs_single >= TARGET_BATCH_REQUEST if vs_single is not None else None,
        ),
    ]


def gallery_targets(gallery: dict[str, Any] | None) -> list[dict[str, str]]:
    """Embedded gallery at its largest measured size >= TARGET_GALLERY_POINTS: search p50 per mode and filter,
    bulk enroll rate, open time, one-image enroll p50."""
    rows = [r for r in (gallery["rows"] if gallery else []) if r["backend"] == "embedded"]
    large = [r for r in rows if r["points"] >= TARGET_GALLERY_POINTS]
    size = max((r["points"] for r in large), default=None)
    at = [r for r in large if r["points"] == size]
    where = f"embedded, largest size >= {TARGET_GALLERY_POINTS // 1000}k points"
    suffix = f" at {size // 1000}k" if size else ""
    targets = []
    for condition, label in (("none", "no filter"), ("filtered", "attribute filter")):
        for mode in ("centroid", "groups"):
            match = [
                r for r in at if r["mode"] == mode and (r.get("filter", "none") == "none") == (condition == "none")
            ]
            targets.append(
                _target(
                    f"gallery search p50 ({where}), {mode} mode, {label}",
                    f"<= {TARGET_SEARCH_MS:.0f} ms",
                    f"{match[0]['p50_ms']:.1f} ms{suffix}" if match else "-",
                    match[0]["p50_ms"] <= TARGET_SEARCH_MS if match else None,
                )
            )
    first = at[0] if at else {}
    for name, key, goal, unit, higher in (
        ("gallery bulk enroll, 32 images per call", "bulk_enroll_images_per_s", TARGET_BULK_ENROLL, "images/s", True),
        ("gallery open", "open_s", TARGET_OPEN_S, "s", False),
        ("gallery one-image enroll p50", "enroll1_p50_ms", TARGET_ENROLL1_MS, "ms", False),
    ):
        value = first.get(key)
        targets.append(
            _target(
                f"{name} ({where})",
                f"{'>=' if higher else '<='} {goal:g} {unit}",
                f"{value:.1f} {unit}{suffix}" if value is not None else "-",
                (value >= goal if higher else value <= goal) if value is not None else None,
            )
        )
    return targets


def evaluate_targets(results: dict[str, Any]) -> list[dict[str, str]]:
    """Each target beside its measured figure; `not measured` where the run did not include it."""
    service = results.get("service")
    return [
        model_target(results.get("model")),
        *batching_targets(service),
        overhead_target(service),
        *throughput_targets(service),
        *gallery_targets(results.get("gallery")),
    ]
