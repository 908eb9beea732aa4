"""The markdown tables of docs/benchmarks.md, one per section, from the results JSON."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _ms(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def model_table(model: dict[str, Any]) -> str:
    """One row per backend and batch size."""
    return table(
        ["backend", "batch", "images/s", "ms/image", "ms/batch median", "ms/batch min", "vs eager", "timed runs"],
        [
            [
                r["backend"],
                r["batch"],
                f"{r['images_per_s']:.1f}",
                f"{r['ms_per_image']:.2f}",
                f"{r['ms_per_batch']:.2f}",
                f"{r['min_ms_per_batch']:.2f}",
                f"{r['vs_eager']:.2f}x",
                r["repeats"],
            ]
            for r in model["rows"]
        ],
    )


def service_tables(service: dict[str, Any]) -> str:
    """The load table (one row per batching x endpoint x concurrency), then the overhead table, each explained."""
    load = table(
        ["batching", "endpoint", "concurrency", "requests", "errors", "req/s", "p50 ms", "p95 ms", "p99 ms",
         "server mean ms", "mean batch", "model call mean ms"],
        [
            [
                r["batching"],
                f"`{r['endpoint']}`",
                r["concurrency"],
                r["requests"],
                r["errors"],
                f"{r['rps']:.1f}",
                f"{r['p50_ms']:.1f}",
                f"{r['p95_ms']:.1f}",
                f"{r['p99_ms']:.1f}",
                _ms(r["server_ms"]),
                _ms(r["mean_batch"], 2),
                _ms(r["model_call_ms"]),
            ]
            for r in service["rows"]
        ],
    )  # fmt: skip
    bare = service["bare"]
    overhead = table(
        ["batching", "/v1/embeddings p50 ms (c=1)", "server mean ms", "GET /healthz p50 ms", "bare ORT batch 1 p50 ms",
         "decode + preprocess p50 ms", "rest ms", "service / bare"],
        [
            [
                tag,
                f"{o['service_p50_ms']:.2f}",
                _ms(o["server_ms"], 2),
                f"{o['http_floor_ms']:.2f}",
                f"{bare['ort_p50_ms']:.2f}",
                f"{bare['preprocess_p50_ms']:.2f}",
                f"{o['rest_ms']:.2f}",
                f"{o['ratio']:.2f}x",
            ]
            for tag, o in service["overhead"].items()
        ],
    )  # fmt: skip
    return (
        f"{load}\n\n`server mean ms`: the server's own request duration (/metrics), without the client; `mean batch` "
        "and `model call mean ms`: images per model call and its duration, from the server's /metrics over the "
        "same span.\n\nService overhead: the service at concurrency 1 against the bare model call on the same image "
        "in the benchmark process with the same threads; `GET /healthz` is the HTTP round trip with no work; "
        f"`rest` = service p50 - bare ORT - preprocess.\n\n{overhead}"
    )


def gallery_table(gallery: dict[str, Any]) -> str:
    """One row per backend, gallery size and search mode."""
    return table(
        [
            "backend",
            "points",
            "mode",
            "search p50 ms",
            "search p95 ms",
            "searches",
            "fill s (bulk)",
            "fill points/s",
            "open s",
            "enroll images/s",
            "enroll p50 ms",
        ],
        [
            [
                r["backend"],
                r["points"],
                r["mode"],
                f"{r['p50_ms']:.2f}",
                f"{r['p95_ms']:.2f}",
                r["searches"],
                f"{r['fill_s']:.1f}",
                f"{r['fill_points_per_s']:.0f}",
                f"{r['open_s']:.2f}",
                f"{r['enroll_images_per_s']:.1f}",
                f"{r['enroll_p50_ms']:.1f}",
            ]
            for r in gallery["rows"]
        ],
    )
