"""Realism switches: all off is the classic generator byte for byte, each switch changes what is drawn, labels
stay exact, the held-out families are disjoint from the training ones and bad options are refused."""

from __future__ import annotations

import hashlib
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import synth
from synth import clutter, looks
from synth.cli import main
from synth.fabric import _tile
from synth.realism import ALL, FACTORS, OFF, Realism, realism_options
from synth.render import Job, render
from tests.synth.conftest import ARGS, files
from training.data.attributes_mat import read_attribute_mat

# sha256 of the tiny set (conftest ARGS, seed 0) as the generator wrote it before the realism switches existed.
CLASSIC_TINY_SHA256 = "4fbc966e693762573458ce110a6f47ad7e8320719d75cdbbaf643cae306b2eae"


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for name, data in files(root).items():
        h.update(name.encode())
        h.update(data)
    return h.hexdigest()


def _images(r: Realism, count: int = 12) -> list[np.ndarray]:
    jobs = [Job("x.jpg", i % 3 if i % 4 == 3 else 0, 5 + i, 1 + i % 2, i, 0, 128, 64, r) for i in range(count)]
    return [np.asarray(render(j)[0], dtype=np.int16) for j in jobs]


def test_all_off_is_the_classic_generator(tiny: tuple[Path, synth.SynthSummary], tmp_path: Path) -> None:
    root, _ = tiny
    assert _digest(root) == CLASSIC_TINY_SHA256
    for off in ({}, "none", OFF, False, {"bodies": False}):
        synth.generate(tmp_path / "off", seed=0, progress=False, realism=off, **ARGS)
        assert files(tmp_path / "off") == files(root)


@pytest.mark.parametrize("factor", FACTORS)
def test_each_switch_changes_the_images(factor: str) -> None:
    """On alone it changes the classic images; off it changes the all-on images (so each can be ablated)."""
    classic, alone = _images(OFF), _images(Realism(**{factor: True}))
    assert any(a.shape != b.shape or np.abs(a - b).mean() > 1 for a, b in zip(classic, alone, strict=True))
    full, without = _images(ALL), _images(replace(ALL, **{factor: False}))
    assert all(a.shape == (128, 64, 3) for a in alone + full)  # the requested size, whatever the native one
    assert any(np.abs(a - b).mean() > 1 for a, b in zip(full, without, strict=True))


def test_heldout_style_changes_the_images() -> None:
    train, heldout = _images(ALL, 6), _images(replace(ALL, heldout_style=True), 6)
    assert all(np.abs(a - b).mean() > 3 for a, b in zip(train, heldout, strict=True))


def test_labels_exact_and_workers_invariant(tiny: tuple[Path, synth.SynthSummary], tmp_path: Path) -> None:
    root, summary = tiny
    real = synth.generate(tmp_path / "w1", seed=0, progress=False, realism="all", **ARGS)
    synth.generate(tmp_path / "w2", seed=0, workers=2, progress=False, realism=ALL, **ARGS)
    assert files(tmp_path / "w1") == files(tmp_path / "w2")
    assert set(files(tmp_path / "w1")) == set(files(root))  # same names, folders, .mat and synth.json
    mat = read_attribute_mat(tmp_path / "w1" / "market_attribute.mat", "market_attribute")
    assert mat == read_attribute_mat(root / "market_attribute.mat", "market_attribute")
    assert {s: v.attributes for s, v in real.splits.items()} == {s: v.attributes for s, v in summary.splits.items()}
    assert real.arguments["realism"] == dict.fromkeys(FACTORS, True)


@pytest.mark.parametrize("heldout", [False, True])
def test_shades_are_the_labels_colours(heldout: bool) -> None:
    """With shades on, every identity's garment colour is a shade listed under its own label."""
    table = looks.HELDOUT_SHADES if heldout else looks.SHADES
    r = replace(ALL, heldout_style=heldout)
    for pid in range(1, 200):
        person, _ = looks.identity_looks(3, pid, r)
        for index, names, rgb in (
            (person.upper, synth.identity.UPPER_COLOURS, person.upper_rgb),
            (person.lower, synth.identity.LOWER_COLOURS, person.lower_rgb),
        ):
            if index < 0:
                continue
            nearest = min(
                (sum(abs(a - b) for a, b in zip(rgb, s, strict=True)), name)
                for name, shades in table.items()
                for s, _ in shades
                if name in names
            )
            assert nearest[1] == names[index], f"id {pid}: {rgb} looks {nearest[1]}, labelled {names[index]}"


def test_heldout_families_are_disjoint() -> None:
    for name, shades in looks.SHADES.items():
        assert not {s for s, _ in shades} & {s for s, _ in looks.HELDOUT_SHADES[name]}
    assert not set(looks.FABRICS) & set(looks.HELDOUT_FABRICS)
    assert not set(clutter.GROUNDS + clutter.WALLS) & set(clutter.HELDOUT_GROUNDS + clutter.HELDOUT_WALLS)
    for fabric in looks.FABRICS + looks.HELDOUT_FABRICS:
        assert math.isclose(float(_tile(fabric).mean()), 1.0, abs_tol=0.1)
    used = {looks.identity_looks(0, pid, ALL)[1].upper_fabric for pid in range(1, 300)}
    assert used <= set(looks.FABRICS)


def test_bad_options_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError, match="unknown realism switch"):
        realism_options({"bodys": True})
    with pytest.raises(ValueError, match="true/false"):
        realism_options({"light": "yes"})
    with pytest.raises(ValueError, match="heldout_style needs"):
        realism_options({"heldout_style": True})
    with pytest.raises(ValueError, match="realism must be"):
        realism_options(3)  # type: ignore[arg-type]
    assert realism_options("all,heldout_style") == replace(ALL, heldout_style=True)
    assert realism_options("light,camera") == Realism(light=True, camera=True)
    with pytest.raises(ValueError, match="unknown realism switch"):
        synth.generate(tmp_path / "bad", seed=0, progress=False, realism={"fog": True}, **ARGS)
    assert not (tmp_path / "bad").exists()  # refused before anything is written
    argv = ["--out", str(tmp_path / "cli"), "--identities", "6", "--no-progress"]
    assert main([*argv, "--realism", "all,fog"]) == 2
    assert "unknown realism switch" in capsys.readouterr().err


def test_cli_realism_flags(tmp_path: Path) -> None:
    argv = ["--out", str(tmp_path / "cli"), "--identities", "4", "--test-identities", "2", "--cameras", "2"]
    argv += ["--images-per-identity", "2", "--no-progress", "--realism", "all", "--without", "light,camera"]
    assert main([*argv, "--heldout-style"]) == 0
    recorded = (tmp_path / "cli" / "synth.json").read_text()
    expected = {**dict.fromkeys(set(FACTORS) - {"light", "camera"}, True), "heldout_style": True}
    assert (
        synth.generate(tmp_path / "api", 4, 2, 2, 2, progress=False, realism=expected).arguments["realism"] == expected
    )
    assert files(tmp_path / "api") == files(tmp_path / "cli") and '"heldout_style": true' in recorded
