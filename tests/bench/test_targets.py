"""The targets come out met / missed / not measured from the ratios alone (no benchmark run needed)."""

from __future__ import annotations

from bench.service import ENDPOINTS
from bench.targets import evaluate_targets


def test_targets_are_met_or_missed_from_the_ratios() -> None:
    def service_row(tag: str, endpoint: str, concurrency: int, rps: float, p99: float) -> dict:
        return {"batching": tag, "endpoint": endpoint, "concurrency": concurrency, "rps": rps, "p99_ms": p99}

    rows = [service_row("on", e, 16, 150.0, 300.0) for e in ENDPOINTS]
    rows += [service_row("off", e, 16, 100.0, 100.0) for e in ENDPOINTS]  # p99 3x worse with batching
    rows[0]["p99_ms"] = 150.0  # /v1/attributes: 1.5x req/s, p99 1.5x -> met
    results = {
        "model": {"rows": [{"backend": "ort fp32", "batch": 1, "vs_eager": 1.4}]},
        "service": {"rows": rows, "overhead": {"on": {"ratio": 1.2, "service_p50_ms": 12.0}},
                    "bare": {"ort_p50_ms": 10.0}},
        "gallery": {"rows": [{"backend": "embedded", "mode": "centroid", "points": 20_000, "p50_ms": 12.0}]},
    }  # fmt: skip
    statuses = [t["status"] for t in evaluate_targets(results)]
    assert statuses == ["missed", "met", "missed", "missed", "met", "met", "not measured"]
