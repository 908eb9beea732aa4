"""One small synthetic set shared by the synth tests, and helpers to read what it wrote."""

from __future__ import annotations

from pathlib import Path

import pytest

import synth
from synth.layout import NAME_RE

ARGS = {"identities": 6, "test_identities": 3, "cameras": 2, "images_per_identity": 4}
FOLDERS = ("bounding_box_train", "bounding_box_test", "query")


def files(root: Path) -> dict[str, bytes]:
    """Every file written, the .mat and synth.json included."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def parse(root: Path, folder: str) -> list[tuple[str, int, Path]]:
    """(id, camera, path) of every image in `folder`, failing on a name outside Market's pattern."""
    out = []
    for path in sorted((root / folder).iterdir()):
        m = NAME_RE.match(path.name)
        assert m, f"bad Market-1501 file name {path.name}"
        out.append((m.group(1), int(m.group(2)), path))
    return out


@pytest.fixture(scope="package")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, synth.SynthSummary]:
    out = tmp_path_factory.mktemp("synth") / "market"
    return out, synth.generate(out, seed=0, workers=1, progress=False, **ARGS)
