"""The targets, fixed in advance and printed as met / missed beside the measured figures (never fitted to a machine)."""

from __future__ import annotations

from typing import Any

from bench.service import ENDPOINTS

TARGET_ORT_SPEEDUP = 1.5  # ORT fp32 images/s >= 1.5x PyTorch eager at batch 1
TARGET_BATCHING_RPS = 1.5  # batching on >= 1.5x requests/s of batching off at the highest concurrency
TARGET_BATCHING_P99 = 2.0  # ... with p99 no worse than 2x
TARGET_SERVICE_OVERHEAD = 1.5  # /v1/embeddings p50 at concurrency 1 within 1.5x of the bare ORT call
TARGET_SEARCH_MS = 50.0  # gallery p50 search at 20k points, embedded
TARGET_SEARCH_POINTS = 20_000


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
    """The service at concurrency 1 (batching on) against the bare model call."""
    overhead = service["overhead"].get("on") if service else None
    return _target(
        "/v1/embeddings p50 at concurrency 1 (batching on) vs bare ORT call",
        f"<= {TARGET_SERVICE_OVERHEAD}x",
        f"{overhead['ratio']:.2f}x ({overhead['service_p50_ms']:.1f} vs {service['bare']['ort_p50_ms']:.1f} ms)"
        if overhead
        else "-",
        overhead["ratio"] <= TARGET_SERVICE_OVERHEAD if overhead else None,
    )


def gallery_targets(gallery: dict[str, Any] | None) -> list[dict[str, str]]:
    """Search p50 at TARGET_SEARCH_POINTS on embedded Qdrant, per search mode."""
    targets = []
    for mode in ("centroid", "groups"):
        match = [
            r
            for r in (gallery["rows"] if gallery else [])
            if r["backend"] == "embedded" and r["mode"] == mode and r["points"] == TARGET_SEARCH_POINTS
        ]
        targets.append(
            _target(
                f"gallery search p50, {TARGET_SEARCH_POINTS // 1000}k points embedded, {mode} mode",
                f"<= {TARGET_SEARCH_MS:.0f} ms",
                f"{match[0]['p50_ms']:.1f} ms" if match else "-",
                match[0]["p50_ms"] <= TARGET_SEARCH_MS if match else None,
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
        *gallery_targets(results.get("gallery")),
    ]
