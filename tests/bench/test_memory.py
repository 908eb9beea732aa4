"""`python -m bench.memory` end to end on the stand-in model with tiny images: real servers, a table that has
every row and only 200s. No memory figure is asserted beyond being there and plausible (the benchmark is not a test).
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from PIL import Image

from app.settings import Settings
from bench.memory import SECTION_END, SECTION_START, main, worst_case_images, write_section


def test_memory_bench_prints_its_table(model_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "benchmarks.md"
    out.write_text("# Benchmarks\n\nwritten by personid bench\n")
    options = ["--onnx", str(model_path), "--size", "120x90", "--clients", "3", "--threads", "1", "--images", "png"]
    assert main([*options, "--env", "MALLOC_ARENA_MAX=2", "--write", str(out)]) == 0
    printed = capsys.readouterr().out
    rows = [line for line in printed.splitlines() if line.startswith("| budget")]
    assert [row.split(" | ")[1] for row in rows] == ["PNG 120x90"] * 3, printed
    assert [row.split(" | ")[0] for row in rows] == [
        "| budget off (3 x 25,000,000 px)",
        "| budget default (50,000,000 px)",
        "| budget default, MALLOC_ARENA_MAX=2",
    ]
    for row in rows:
        peak, over, after, seconds = (float(v) for v in row.split(" | ")[3:7])
        assert 20 < peak < 4096 and over <= peak and after > 0 and seconds > 0, row
        assert row.endswith("| 3 x 200 |"), row
    assert "python -m bench.memory --onnx" in printed
    text = out.read_text()
    assert text.startswith("# Benchmarks\n\nwritten by personid bench\n\n" + SECTION_START)
    assert text.count(SECTION_START) == 1 and text.rstrip().endswith(SECTION_END)


def test_write_section_replaces_only_its_own_block(tmp_path: Path) -> None:
    path = tmp_path / "doc.md"
    path.write_text(f"head\n{SECTION_START}\nold\n{SECTION_END}\ntail\n")
    write_section(path, f"{SECTION_START}\nnew\n{SECTION_END}")
    assert path.read_text() == f"head\n{SECTION_START}\nnew\n{SECTION_END}\ntail\n"
    fresh = tmp_path / "fresh.md"
    write_section(fresh, f"{SECTION_START}\nx\n{SECTION_END}")
    assert re.fullmatch(rf"{SECTION_START}\nx\n{SECTION_END}\n", fresh.read_text())


def test_worst_case_images_are_what_they_claim() -> None:
    images = worst_case_images(5000, 4999)
    png, jpeg = images["PNG 5000x4999"], images["JPEG 5000x4999"]
    assert len(png) < 16 * 1024, "a few KB of PNG for 25 megapixels"
    assert 1024**2 < len(jpeg) < Settings.model_fields["max_upload_bytes"].default, "large, yet accepted"
    for data, fmt in ((png, "PNG"), (jpeg, "JPEG")):
        with Image.open(io.BytesIO(data)) as image:
            assert (image.format, image.size) == (fmt, (5000, 4999))


def test_missing_model_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--onnx", str(tmp_path / "none.onnx")]) == 2
    assert "file not found" in capsys.readouterr().err
