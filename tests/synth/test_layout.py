"""Market-1501's layout: folders, file names, the train/test split and the query/gallery protocol."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import synth
from tests.synth.conftest import FOLDERS, parse


def test_layout_names_and_split(tiny: tuple[Path, synth.SynthSummary]) -> None:
    root, summary = tiny
    assert {p.name for p in root.iterdir()} == {*FOLDERS, "market_attribute.mat", "synth.json"}
    train = parse(root, "bounding_box_train")
    gallery = parse(root, "bounding_box_test")
    query = parse(root, "query")
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
    for pid, cam, _ in parse(root, "bounding_box_test"):
        gallery_cams[pid].add(cam)
    query = parse(root, "query")
    assert {pid for pid, _, _ in query} == set(summary.splits["test"].identities)
    for pid, cam, path in query:
        assert gallery_cams[pid] - {cam}, f"query {path.name} has no gallery image of its id in another camera"
    assert len({(pid, cam) for pid, cam, _ in query}) == len(query)  # at most one query per id and camera
