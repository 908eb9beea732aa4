"""The contact sheet of a written set."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

import synth


def test_contact_sheet(tmp_path: Path, tiny: tuple[Path, synth.SynthSummary]) -> None:
    root, _ = tiny
    png = synth.contact_sheet(root, tmp_path / "sheet.png", identities=4)
    with Image.open(png) as img:
        assert img.width > 4 * 64 and img.height > 128
