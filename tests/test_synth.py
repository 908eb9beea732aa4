"""`personid synth`: Market-1501 layout, attribute file, query/gallery protocol, determinism, visibility."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training import synth
from training.attributes_mat import MARKET_FIELDS, read_attribute_mat

ARGS = {"identities": 6, "test_identities": 3, "cameras": 2, "images_per_identity": 4}
FOLDERS = ("bounding_box_train", "bounding_box_test", "query")


def _files(root: Path) -> dict[str, bytes]:
    """Every file written, the .mat and synth.json included."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _parse(root: Path, folder: str) -> list[tuple[str, int, Path]]:
    out = []
    for path in sorted((root / folder).iterdir()):
        m = synth.NAME_RE.match(path.name)
        assert m, f"bad Market-1501 file name {path.name}"
        out.append((m.group(1), int(m.group(2)), path))
    return out


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, synth.SynthSummary]:
    out = tmp_path_factory.mktemp("synth") / "market"
    return out, synth.generate(out, seed=0, workers=1, progress=False, **ARGS)


def test_layout_names_and_split(tiny: tuple[Path, synth.SynthSummary]) -> None:
    root, summary = tiny
    assert {p.name for p in root.iterdir()} == {*FOLDERS, "market_attribute.mat", "synth.json"}
    train = _parse(root, "bounding_box_train")
    gallery = _parse(root, "bounding_box_test")
    query = _parse(root, "query")
    train_ids = {pid for pid, _, _ in train}
    test_ids = {pid for pid, _, _ in gallery + query} - {"0000", "-1"}
    assert train_ids == set(summary.splits["train"].identities) and len(train_ids) == 3
    assert test_ids == set(summary.splits["test"].identities) and len(test_ids) == 3
    assert not train_ids & test_ids
    assert all(1 <= int(pid) <= 1501 for pid in train_ids | test_ids)
    assert {cam for _, cam, _ in train + gallery + query} <= {1, 2}
    assert len(train) == summary.splits["train"].images == 3 * 4
    assert sum(pid in test_ids for pid, _, _ in gallery + query) == summary.splits["test"].images == 3 * 4
    assert sum(pid == "0000" for pid, _, _ in gallery) == summary.distractors >= 1
    assert sum(pid == "-1" for pid, _, _ in gallery) == summary.junk >= 1
    assert {f: len(list((root / f).iterdir())) for f in FOLDERS} == summary.folders
    recorded = json.loads((root / "synth.json").read_text())
    assert recorded["arguments"]["identities"] == 6 and recorded["splits"]["test"]["identities"] == sorted(test_ids)


def test_every_query_has_a_cross_camera_match(tiny: tuple[Path, synth.SynthSummary]) -> None:
    root, summary = tiny
    gallery_cams: dict[str, set[int]] = defaultdict(set)
    for pid, cam, _ in _parse(root, "bounding_box_test"):
        gallery_cams[pid].add(cam)
    query = _parse(root, "query")
    assert {pid for pid, _, _ in query} == set(summary.splits["test"].identities)
    for pid, cam, path in query:
        assert gallery_cams[pid] - {cam}, f"query {path.name} has no gallery image of its id in another camera"
    assert len({(pid, cam) for pid, cam, _ in query}) == len(query)  # at most one query per id and camera


def test_attribute_file_matches_summary(tiny: tuple[Path, synth.SynthSummary]) -> None:
    root, summary = tiny
    labels = read_attribute_mat(root / "market_attribute.mat", "market_attribute", required=MARKET_FIELDS)
    for split in ("train", "test"):
        assert labels[split] == summary.splits[split].attributes
        for row in labels[split].values():
            assert set(row) == set(MARKET_FIELDS)
            assert 1 <= row["age"] <= 4
            assert sum(row[f] == 2 for f in MARKET_FIELDS if f.startswith("up") and f != "up") <= 1
            assert sum(row[f] == 2 for f in MARKET_FIELDS if f.startswith("down") and f != "down") <= 1


def test_images_decode_at_requested_size(tmp_path: Path) -> None:
    summary = synth.generate(tmp_path, 4, 2, 2, 2, seed=3, height=96, width=40, progress=False)
    paths = list(tmp_path.rglob("*.jpg"))
    assert len(paths) == sum(summary.folders.values()) > 0
    for path in paths:
        with Image.open(path) as img:
            assert img.format == "JPEG" and img.size == (40, 96) and img.mode == "RGB"
            assert np.asarray(img).std() > 10  # a scene, not a blank frame


def test_same_seed_same_bytes_whatever_the_workers(tmp_path: Path, tiny: tuple[Path, synth.SynthSummary]) -> None:
    root, _ = tiny
    synth.generate(tmp_path / "w2", seed=0, workers=2, progress=False, **ARGS)
    assert _files(tmp_path / "w2") == _files(root)


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
    assert synth.main(argv) == 0
    assert "images/s" in capsys.readouterr().out
    assert _files(tmp_path / "cli") == _files(root)
    synth.generate(tmp_path / "s1", seed=1, progress=False, **ARGS)
    other = _files(tmp_path / "s1")
    assert set(other) != set(_files(root))  # other ids, other names
    assert synth.main(["--out", str(tmp_path / "bad"), "--identities", "6", "--cameras", "1"]) == 2
    assert "cameras must be" in capsys.readouterr().err


def test_contact_sheet(tmp_path: Path, tiny: tuple[Path, synth.SynthSummary]) -> None:
    root, _ = tiny
    png = synth.contact_sheet(root, tmp_path / "sheet.png", identities=4)
    with Image.open(png) as img:
        assert img.width > 4 * 64 and img.height > 128


def _draw(person: synth.Person, view: str) -> np.ndarray:
    img = Image.new("RGB", (128, 256), (128, 128, 128))
    synth.draw_person(img, person, view, 0.7, 64, 250, 230)
    return np.asarray(img).astype(int)


BINARY = ["hair_long", "sleeve_short", "lower_short", "dress", "hat", "backpack", "bag", "handbag"]


@pytest.mark.parametrize("attribute", [*BINARY, "gender", "age", "upper", "lower"])
def test_each_attribute_changes_every_view(attribute: str) -> None:
    """Flipping one attribute changes the drawing from every viewpoint: none is invisible to some camera."""
    base = replace(
        synth.sample_person(np.random.default_rng(5), 1),
        age=3,
        gender=1,
        upper=6,
        lower=5,
        upper_rgb=synth.PALETTE["blue"],
        lower_rgb=synth.PALETTE["gray"],
        cane=False,
        bald=False,
        **dict.fromkeys(BINARY, False),
    )
    if attribute in BINARY:
        changed = replace(base, **{attribute: True})
    elif attribute == "gender":
        changed = replace(base, gender=2)
    elif attribute == "age":
        changed = replace(base, age=1)
    else:
        changed = replace(base, **{attribute: 0, f"{attribute}_rgb": synth.PALETTE["black"]})
    for view in synth.VIEWS:
        diff = np.abs(_draw(base, view) - _draw(changed, view)).sum(axis=2) > 30
        assert diff.sum() > 80, f"{attribute} barely visible from the {view}: {diff.sum()} pixels"
