"""The targets come out met / missed / not measured from the ratios alone (no benchmark run needed)."""

from __future__ import annotations

from bench.service import ENDPOINTS
from bench.targets import evaluate_targets


def service_row(tag: str, endpoint: str, concurrency: int, rps: float, p99: float) -> dict:
    return {"batching": tag, "endpoint": endpoint, "concurrency": concurrency, "rps": rps, "images_per_s": rps,
            "p99_ms": p99}  # fmt: skip


def test_targets_are_met_or_missed_from_the_ratios() -> None:
    rows = [service_row("on", e, 16, 150.0, 300.0) for e in ENDPOINTS]
    rows += [service_row("off", e, 16, 100.0, 100.0) for e in ENDPOINTS]  # p99 3x worse with batching
    rows[0]["p99_ms"] = 150.0  # /v1/attributes: 1.5x req/s, p99 1.5x -> met
    results = {
        "model": {"rows": [{"backend": "ort fp32", "batch": 1, "vs_eager": 1.4}]},
        "service": {"rows": rows, "overhead": {"on": {"ratio": 1.1, "service_p50_ms": 12.0, "upload_floor_ms": 1.0}},
                    "bare": {"ort_p50_ms": 10.0, "ort_images_per_s": 200.0}},
        "gallery": {"rows": [{"backend": "embedded", "mode": "centroid", "points": 100_000, "p50_ms": 12.0}]},
    }  # fmt: skip
    statuses = [t["status"] for t in evaluate_targets(results)]
    # model; batching x3; overhead 1.1x; c16 150 vs 200 images/s = 0.75x; c64 and batch request not run; gallery
    expected = ["missed", "met", "missed", "missed", "met", "missed", "not measured", "not measured"]
    # gallery: centroid unfiltered search at 100k met; groups, filtered, enroll and open rows not in the results
    assert statuses == [*expected, "met", *["not measured"] * 6]


def test_throughput_targets_compare_concurrencies_and_the_batch_request() -> None:
    rows = [service_row("on", "/v1/embeddings", c, rps, 100.0) for c, rps in ((1, 50.0), (16, 170.0), (64, 150.0))]
    service = {
        "rows": rows,
        "overhead": {"on": {"ratio": 1.3, "service_p50_ms": 13.0, "upload_floor_ms": 0.5}},
        "bare": {"ort_p50_ms": 5.0, "ort_images_per_s": 200.0},
        "batch_request": {"images_per_s": 160.0},
    }
    targets = {t["target"]: t for t in evaluate_targets({"service": service})}
    assert targets["/v1/embeddings images/s at concurrency 16 vs bare ORT call at batch 1"]["status"] == "met"
    c64 = targets["/v1/embeddings req/s at concurrency 64 vs the best concurrency"]
    assert c64["status"] == "missed" and c64["measured"].startswith("0.88x")
    batch = targets["one request of 32 crops vs one-crop requests, images/s at concurrency 1"]
    assert batch["status"] == "met" and batch["measured"].startswith("3.20x")
    overhead = targets["/v1/embeddings p50 at concurrency 1 (batching on) vs bare ORT call + bare upload endpoint"]
    assert overhead["status"] == "missed" and "5.0 + 0.5" in overhead["measured"]
