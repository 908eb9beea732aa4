"""`personid synth`: the command writes what `generate` writes, another seed writes another set, bad input is 2."""

from __future__ import annotations

from pathlib import Path

import synth
from synth.cli import main
from tests.synth.conftest import ARGS, files


def test_cli_entry_and_other_seed(tmp_path: Path, tiny: tuple[Path, synth.SynthSummary], capsys) -> None:
    root, _ = tiny
    argv = [
        "--out",
        str(tmp_path / "cli"),
        "--identities",
        "6",
        "--test-identities",
        "3",
        "--cameras",
        "2",
        "--images-per-identity",
        "4",
        "--seed",
        "0",
        "--no-progress",
    ]
    assert main(argv) == 0
    assert "images/s" in capsys.readouterr().out
    assert files(tmp_path / "cli") == files(root)
    synth.generate(tmp_path / "s1", seed=1, progress=False, **ARGS)
    other = files(tmp_path / "s1")
    assert set(other) != set(files(root))  # other ids, other names
    assert main(["--out", str(tmp_path / "bad"), "--identities", "6", "--cameras", "1"]) == 2
    assert "cameras must be" in capsys.readouterr().err
