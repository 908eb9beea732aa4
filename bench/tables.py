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
         "server mean ms", "mean batch", "model call mean ms", "server CPU ms/image"],
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
                _ms(r.get("server_cpu_ms_per_image"), 2),
            ]
            for r in service["rows"]
        ],
    )  # fmt: skip
    bare, batch = service["bare"], service["batch_request"]
    overhead = table(
        ["batching", "/v1/embeddings p50 ms (c=1)", "server mean ms", "bare upload endpoint p50 ms",
         "bare ORT batch 1 p50 ms", "decode + preprocess p50 ms", "rest ms", "service / (bare ORT + bare upload)"],
        [
            [
                tag,
                f"{o['service_p50_ms']:.2f}",
                _ms(o["server_ms"], 2),
                f"{o['upload_floor_ms']:.2f}",
                f"{bare['ort_p50_ms']:.2f}",
                f"{bare['preprocess_p50_ms']:.2f}",
                f"{o['rest_ms']:.2f}",
                f"{o['ratio']:.2f}x",
            ]
            for tag, o in service["overhead"].items()
        ],
    )  # fmt: skip
    batch_table = table(
        ["request", "images/request", "req/s", "images/s", "p50 ms", "mean batch"],
        [
            [f"`/v1/embeddings` {r['images_per_request']} crop(s), c=1", r["images_per_request"], f"{r['rps']:.1f}",
             f"{r['images_per_s']:.1f}", f"{r['p50_ms']:.1f}", _ms(r["mean_batch"], 2)]
            for r in [*(r for r in service["rows"] if r["batching"] == "on" and r["endpoint"] == "/v1/embeddings"
                        and r["concurrency"] == 1), batch]
        ],
    )  # fmt: skip
    before, after = service["load_average"]
    busy = (
        ": above the core count, other jobs took CPU from the run and the ratios below are noisy; the CPU per "
        "image is the steadier figure"
        if max(before, after) > service["threads"]
        else ""
    )
    cpu = bare["ort_cpu_ms_per_image"]
    return (
        f"Machine load average (1 min) when the section started and ended: {before:.1f} and {after:.1f}{busy}."
        f"\n\n{load}\n\n`server mean ms`: the server's own request duration (/metrics), without the client; "
        "`mean batch` and `model call mean ms`: images per model call and its duration, from the server's /metrics "
        "over the same span; `server CPU ms/image`: the server process's CPU time (all threads, /proc) per image "
        f"answered, against {cpu:.2f} ms for the bare ORT call at batch 1 (the figure other jobs on the machine "
        "disturb least: on a dedicated machine throughput is at most cores / CPU per image).\n\n"
        "Service overhead: the service at concurrency 1 against its floors: the bare model call "
        f"(batch 1, the service's own `Engine`, {service['threads']} threads, in the benchmark process; best of a run "
        f"before and after the load: {bare['ort_images_per_s']:.1f} images/s) and a bare FastAPI endpoint under the "
        "same uvicorn that only reads the same multipart upload (`bench.server.bare_upload_app`, c=1); "
        f"`rest` = service p50 - bare ORT - bare upload - preprocess.\n\n{overhead}\n\n"
        f"Batch request: {batch['images_per_request']} crops as `images` parts in one request against one-crop "
        f"requests, both at concurrency 1 (batching on). Its ceiling is the bare ORT call at batch "
        f"{batch['images_per_request']}: {bare['ort_batch_images_per_s']:.1f} images/s.\n\n{batch_table}"
    )


def gallery_table(gallery: dict[str, Any]) -> str:
    """Search rows (backend, size, mode, attribute filter), then one row per backend and size for the rest."""
    rows = gallery["rows"]
    search = table(
        ["backend", "points", "mode", "filter", "search p50 ms", "search p95 ms", "searches"],
        [
            [
                r["backend"],
                r["points"],
                r["mode"],
                r.get("filter", "none"),
                f"{r['p50_ms']:.2f}",
                f"{r['p95_ms']:.2f}",
                r["searches"],
            ]
            for r in rows
        ],
    )
    sizes = list({(r["backend"], r["points"]): r for r in rows}.values())
    build = table(
        [
            "backend",
            "points",
            "fill s (bulk)",
            "fill points/s",
            "index build s",
            "open s",
            "RSS MiB",
            "enroll 1 image p50 ms",
            "enroll 4 images p50 ms",
            "enroll images/s (4 per call)",
            "bulk enroll images/s (32 per call)",
        ],
        [
            [
                r["backend"],
                r["points"],
                f"{r['fill_s']:.1f}",
                f"{r['fill_points_per_s']:.0f}",
                f"{r['index_s']:.1f}" if "index_s" in r else "-",
                f"{r['open_s']:.2f}",
                f"{r['rss_mb']:.0f}" if "rss_mb" in r else "-",
                f"{r['enroll1_p50_ms']:.1f}" if "enroll1_p50_ms" in r else "-",
                f"{r['enroll_p50_ms']:.1f}",
                f"{r['enroll_images_per_s']:.1f}",
                f"{r['bulk_enroll_images_per_s']:.0f}" if "bulk_enroll_images_per_s" in r else "-",
            ]
            for r in sizes
        ],
    )
    return f"{search}\n\n{build}"
