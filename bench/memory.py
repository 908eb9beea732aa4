"""`python -m bench.memory`: peak memory of a real `personid serve` while many clients each POST a worst-case image.

A few KB of PNG can hold 25 megapixels, so the bytes a client sends say nothing about the memory its decode takes
(issue 13, finding 4). Each row is a fresh server: it answers one small request (the model warmed up), its peak
RSS is reset (`/proc/PID/clear_refs`), then `--clients` clients POST the same image to /v1/embeddings at once;
the row reports the peak RSS during that round (`VmHWM`), its growth over the idle server, and the RSS kept after.

Servers compared: `PERSONID_DECODE_PIXEL_BUDGET` effectively off (`--clients` x `max_image_pixels`: every decode
at once) and at its default; with `--before DIR`, also the service as it was in DIR (a tree of an older version,
e.g. `git archive COMMIT app personid | tar -x -C DIR`), run with its own defaults. Linux only (/proc).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shlex
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from app.settings import Settings
from bench.measure import BenchError
from bench.report import machine_info
from bench.server import HOST, ROOT, free_port, serve_command, served

SECTION_START, SECTION_END = "<!-- memory:start -->", "<!-- memory:end -->"
MIB = 1024**2
IMAGE_KINDS = ("png", "jpeg")


@dataclass(frozen=True)
class Variant:
    """A server to measure: its label, the model it serves, extra `personid serve` options, its source tree."""

    label: str
    onnx: Path
    options: tuple[str, ...] = ()
    source: Path = ROOT
    env: tuple[tuple[str, str], ...] = ()  # extra environment variables of the server process


@dataclass
class Row:
    variant: str
    image: str
    file_bytes: int
    idle_rss: int
    peak_rss: int
    after_rss: int
    seconds: float
    answers: Counter[int] = field(default_factory=Counter)


def worst_case_images(width: int, height: int, kinds: tuple[str, ...] = IMAGE_KINDS) -> dict[str, bytes]:
    """A flat bilevel PNG (a few KB: the most pixels per byte PNG allows) and a large, detailed JPEG."""
    images = {}
    if "png" in kinds:
        png = io.BytesIO()
        Image.new("1", (width, height), 1).save(png, format="PNG", optimize=True)
        images[f"PNG {width}x{height}"] = png.getvalue()
    if "jpeg" in kinds:
        images[f"JPEG {width}x{height}"] = detailed_jpeg(width, height)
    return images


def detailed_jpeg(width: int, height: int) -> bytes:
    """Gradients under noise at quality 90: megabytes at 25 MP, yet under the 10 MiB upload limit."""
    rng = np.random.default_rng(0)
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :]
    smooth = np.stack(np.broadcast_arrays((x + y) / 2, x, y), axis=-1)
    pixels = np.clip(smooth + rng.normal(0, 8, smooth.shape).astype(np.float32), 0, 255).astype(np.uint8)
    jpeg = io.BytesIO()
    Image.fromarray(pixels).save(jpeg, format="JPEG", quality=90)
    return jpeg.getvalue()


def small_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 128), (120, 60, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def status_kib(pid: int, field_name: str) -> int:
    """A `VmRSS` / `VmHWM` figure of /proc/PID/status, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field_name}:"):
            return int(line.split()[1]) * 1024
    raise BenchError(f"/proc/{pid}/status has no {field_name}: this benchmark needs Linux")


@contextlib.contextmanager
def server(variant: Variant, folder: Path, threads: int) -> Iterator[tuple[int, str]]:
    """`personid serve` from the variant's source tree on a free port; yields (pid, url)."""
    port = free_port()
    command = [*serve_command(variant.onnx, folder / "qdrant", port, threads, batching=True), *variant.options]
    # cwd first on sys.path: `python -m personid.cli` imports the service from the variant's source tree
    with served(command, f"http://{HOST}:{port}", folder / "server.log", variant.source, dict(variant.env)) as process:
        yield process.pid, f"http://{HOST}:{port}"


def round_of_requests(url: str, image: bytes, clients: int) -> tuple[float, Counter[int]]:
    """`clients` threads POST the image to /v1/embeddings at the same moment; (seconds, answers by status)."""
    answers: Counter[int] = Counter()
    lock = threading.Lock()
    start = threading.Barrier(clients + 1)

    def post() -> None:
        start.wait()
        try:
            status = httpx.post(f"{url}/v1/embeddings", files={"image": ("x", image)}, timeout=300).status_code
        except httpx.TransportError:
            status = 0  # the connection died: the server was killed (out of memory?)
        with lock:
            answers[status] += 1

    threads = [threading.Thread(target=post) for _ in range(clients)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    return time.perf_counter() - began, answers


def measure(variant: Variant, image_name: str, image: bytes, clients: int, threads: int) -> Row:
    """One row: a fresh server, warmed up, its peak RSS reset, then one round of concurrent requests."""
    with (
        tempfile.TemporaryDirectory(prefix="personid-memory-") as tmp,
        server(variant, Path(tmp), threads) as (pid, url),
    ):
        warm = httpx.post(f"{url}/v1/embeddings", files={"image": ("warm.png", small_png())}, timeout=60)
        if warm.status_code != 200:
            raise BenchError(f"{variant.label}: the warm-up request got {warm.status_code}: {warm.text}")
        idle = status_kib(pid, "VmRSS")
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS
        seconds, answers = round_of_requests(url, image, clients)
        peak, after = status_kib(pid, "VmHWM"), status_kib(pid, "VmRSS")
    return Row(variant.label, image_name, len(image), idle, peak, after, seconds, answers)


def render(rows: list[Row], command: str, clients: int) -> str:
    """The docs/benchmarks.md section, between its markers."""
    machine = machine_info(0)
    lines = [
        SECTION_START,
        "## Memory under hostile images",
        "",
        "Written by `python -m bench.memory` (`bench/memory.py`), not by `personid bench`; reproduce with:",
        "",
        "```",
        command,
        "```",
        "",
        f"{clients} clients each POST the same image to `/v1/embeddings` at once, against a fresh `personid serve` "
        "(embedded Qdrant, batching on) warmed up by one small request. Peak = the server's `VmHWM` during that "
        "round (reset just before it), over idle = peak minus the idle RSS, after = RSS once every answer is in. "
        f"Machine: {machine['nproc']} cores, {machine['memory']}, {machine['cpu']}.",
        "",
        "| server | image | file | peak RSS MiB | over idle MiB | RSS after MiB | round s | answers |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        answers = ", ".join(f"{count} x {status or 'no answer'}" for status, count in sorted(r.answers.items()))
        file_size = f"{r.file_bytes / 1024:.1f} KiB" if r.file_bytes < MIB else f"{r.file_bytes / MIB:.1f} MiB"
        lines.append(
            f"| {r.variant} | {r.image} | {file_size} | {r.peak_rss / MIB:.0f} | {(r.peak_rss - r.idle_rss) / MIB:.0f}"
            f" | {r.after_rss / MIB:.0f} | {r.seconds:.2f} | {answers} |"
        )
    return "\n".join([*lines, SECTION_END])


def write_section(path: Path, section: str) -> None:
    """Replace the section between its markers in `path`, or append it when the file has none yet."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    if SECTION_START in text and SECTION_END in text:
        head, rest = text.split(SECTION_START, 1)
        text = head + section + rest.split(SECTION_END, 1)[1]
    else:
        text = text.rstrip("\n") + ("\n\n" if text else "") + section + "\n"
    path.write_text(text, encoding="utf-8")


def _size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, got {text!r}") from None
    return width, height


def _env_item(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def _kinds(text: str) -> tuple[str, ...]:
    kinds = tuple(part.strip().lower() for part in text.split(",") if part.strip())
    if not kinds or set(kinds) - set(IMAGE_KINDS):
        raise argparse.ArgumentTypeError(f"expected some of {','.join(IMAGE_KINDS)}, got {text!r}")
    return kinds


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__.split("\n\n")[0])
    parser.add_argument("--onnx", type=Path, default=Path("models/default.onnx"), help="the model to serve")
    parser.add_argument("--clients", type=int, default=32, help="concurrent requests per round (default 32)")
    parser.add_argument("--size", type=_size, default=(5000, 4999), help="image WIDTHxHEIGHT (default 5000x4999)")
    parser.add_argument(
        "--images", type=_kinds, default=IMAGE_KINDS, help="comma-separated, from png,jpeg (default both)"
    )
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="server intra-op threads")
    parser.add_argument(
        "--before", type=Path, help="also measure the service of this source tree, serving DIR/<--onnx> if there"
    )
    parser.add_argument(
        "--env",
        type=_env_item,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="one more row: the default budget with this variable in the server's environment (repeatable; e.g. "
        "MALLOC_MMAP_THRESHOLD_=131072)",
    )
    parser.add_argument("--write", type=Path, help="put the section into this markdown file (docs/benchmarks.md)")
    return parser


def build_variants(args: argparse.Namespace) -> list[Variant]:
    """The servers to compare; with `--before DIR`, its model is DIR/<--onnx> when that exists (an older export
    whose manifest the older service reads)."""
    onnx = args.onnx.resolve()
    # the servers run without the caller's PERSONID_* variables: the defaults are theirs
    max_pixels = Settings.model_fields["max_image_pixels"].default
    default_budget = Settings.model_fields["decode_pixel_budget"].default
    variants = []
    if args.before:
        before_onnx = args.before / args.onnx if not args.onnx.is_absolute() else args.onnx
        before_onnx = before_onnx.resolve() if before_onnx.is_file() else onnx
        variants.append(Variant(f"{args.before.name} (before)", before_onnx, source=args.before.resolve()))
    off = str(args.clients * max_pixels)
    variants.append(Variant(f"budget off ({args.clients} x {max_pixels:,} px)", onnx, ("--decode-pixel-budget", off)))
    variants.append(Variant(f"budget default ({default_budget:,} px)", onnx))
    for name, value in args.env:
        variants.append(Variant(f"budget default, {name}={value}", onnx, env=((name, value),)))
    return variants


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.onnx.is_file():
        print(f"python -m bench.memory: --onnx {args.onnx}: file not found", file=sys.stderr)
        return 2
    variants = build_variants(args)
    width, height = args.size
    images = worst_case_images(width, height, args.images)
    rows = []
    try:
        for variant in variants:
            for name, image in images.items():
                rows.append(measure(variant, name, image, args.clients, args.threads))
                print(f"{variant.label}, {name}: peak {rows[-1].peak_rss / MIB:.0f} MiB", file=sys.stderr)
    except BenchError as error:
        print(f"python -m bench.memory: {error}", file=sys.stderr)
        return 1
    command = shlex.join(["python", "-m", "bench.memory", *(argv if argv is not None else sys.argv[1:])])
    section = render(rows, command, args.clients)
    print(section)
    if args.write:
        write_section(args.write, section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
