"""The PNG figures beside docs/benchmarks.md, one per section (matplotlib imported only when plotting)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.targets import TARGET_SEARCH_MS


def _save(fig: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_model(model: dict[str, Any], path: Path) -> None:
    """Images/s per backend and batch size, each bar labelled with its ratio to PyTorch eager."""
    import matplotlib.pyplot as plt

    backends = list(dict.fromkeys(r["backend"] for r in model["rows"]))
    batches = sorted({r["batch"] for r in model["rows"]})
    fig, ax = plt.subplots(figsize=(8, 4.5))
    width = 0.8 / len(backends)
    for i, backend in enumerate(backends):
        rows = {r["batch"]: r for r in model["rows"] if r["backend"] == backend}
        xs = [j + i * width for j in range(len(batches))]
        bars = ax.bar(xs, [rows[b]["images_per_s"] for b in batches], width, label=backend)
        ax.bar_label(bars, labels=[f"{rows[b]['vs_eager']:.2f}x" for b in batches], fontsize=8)
    ax.set_xticks([j + width * (len(backends) - 1) / 2 for j in range(len(batches))], [f"batch {b}" for b in batches])
    ax.set_ylabel("images / s (higher is better)")
    ax.set_title(f"Model throughput, {model['threads']} threads (label: ratio vs PyTorch eager)")
    ax.legend()
    _save(fig, path)


def plot_service(service: dict[str, Any], path: Path) -> None:
    """Requests/s and p99 per endpoint and concurrency, batching on beside off."""
    import matplotlib.pyplot as plt

    cells = list(dict.fromkeys((r["endpoint"], r["concurrency"]) for r in service["rows"]))
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    width = 0.4
    for i, tag in enumerate(("on", "off")):
        rows = {(r["endpoint"], r["concurrency"]): r for r in service["rows"] if r["batching"] == tag}
        xs = [j + i * width for j in range(len(cells))]
        left.bar(xs, [rows[c]["rps"] if c in rows else 0 for c in cells], width, label=f"batching {tag}")
        right.bar(xs, [rows[c]["p99_ms"] if c in rows else 0 for c in cells], width, label=f"batching {tag}")
    bare = service["bare"]["ort_images_per_s"]
    left.axhline(bare, color="grey", ls=":", label=f"bare ORT batch 1: {bare:.0f} images/s")
    left.axhline(0.8 * bare, color="grey", ls="--", lw=0.8, label="0.8x bare ORT (target at c=16)")
    labels = [f"{endpoint.removeprefix('/v1/')}\nc={c}" for endpoint, c in cells]
    for ax, ylabel in ((left, "requests / s (higher is better)"), (right, "p99 latency ms (lower is better)")):
        ax.set_xticks([j + width / 2 for j in range(len(cells))], labels, fontsize=8)
        ax.set_ylabel(ylabel)
        ax.legend()
    fig.suptitle("Service under load (real uvicorn server, embedded Qdrant)")
    _save(fig, path)


def _plot_search_latency(ax: Any, rows: list[dict[str, Any]]) -> None:
    for key in dict.fromkeys((r["backend"], r["mode"], r.get("filter", "none")) for r in rows):
        series = sorted(
            (r for r in rows if (r["backend"], r["mode"], r.get("filter", "none")) == key), key=lambda r: r["points"]
        )
        backend, mode, condition = key
        label = f"{backend} {mode}" + ("" if condition == "none" else " filtered")
        xs = [r["points"] for r in series]
        line = ax.plot(xs, [r["p50_ms"] for r in series], marker="o", label=f"{label} p50")[0]
        ax.plot(
            xs,
            [r["p95_ms"] for r in series],
            marker="x",
            ls="--",
            color=line.get_color(),
            label=f"{label} p95",
        )
    ax.axhline(TARGET_SEARCH_MS, color="grey", ls=":", label=f"target p50 {TARGET_SEARCH_MS:.0f} ms")
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="gallery image points",
        ylabel="search latency ms",
        title="Search latency vs gallery size",
    )
    ax.legend(fontsize=7)


def _plot_fill_rates(ax: Any, rows: list[dict[str, Any]]) -> None:
    for backend in dict.fromkeys(r["backend"] for r in rows):
        series = sorted(
            (
                r
                for r in rows
                if r["backend"] == backend and r["mode"] == "centroid" and r.get("filter", "none") == "none"
            ),
            key=lambda r: r["points"],
        )
        xs = [r["points"] for r in series]
        ax.plot(xs, [r["enroll_images_per_s"] for r in series], marker="o", label=f"{backend} enroll images/s")
        if all("bulk_enroll_images_per_s" in r for r in series):
            ax.plot(
                xs,
                [r["bulk_enroll_images_per_s"] for r in series],
                marker="^",
                label=f"{backend} enroll images/s, 32 per call",
            )
        ax.plot(
            xs, [r["fill_points_per_s"] for r in series], marker="s", ls="--", label=f"{backend} bulk fill points/s"
        )
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="gallery image points",
        ylabel="per second",
        title="Enroll (Gallery.enroll) and bulk fill rate",
    )
    ax.legend(fontsize=7)


def plot_gallery(gallery: dict[str, Any], path: Path) -> None:
    """Search latency (p50, p95, the target) and enroll / bulk fill rates against gallery size."""
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    _plot_search_latency(left, gallery["rows"])
    _plot_fill_rates(right, gallery["rows"])
    _save(fig, path)
