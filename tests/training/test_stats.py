"""`personid data stats`: the JSON report against what synth wrote, the unreadable list, the contact sheet."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from personid.cli import main as personid
from synth import SynthSummary, generate
from training.data.schema import AttributeSchema
from training.data.stats import LABEL_W, THUMB_H

MARKET = AttributeSchema.builtin("market1501")


@pytest.fixture(scope="module")
def synth_set(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SynthSummary]:
    out = tmp_path_factory.mktemp("stats") / "market"
    summary = generate(out, identities=6, test_identities=3, cameras=3, images_per_identity=4, progress=False)
    return out, summary


def run_stats(argv: list[str], capsys: pytest.CaptureFixture[str]) -> dict:
    assert personid(["data", "stats", *argv]) == 0
    return json.loads(capsys.readouterr().out)


def test_stats_report_matches_what_was_written(synth_set, tmp_path: Path, capsys) -> None:
    source, summary = synth_set
    root = tmp_path / "market"
    shutil.copytree(source, root)
    broken = root / "bounding_box_train" / f"{summary.splits['train'].identities[0]}_c1s1_999999_01.jpg"
    broken.write_bytes(b"\xff\xd8\xff not a jpeg")
    report = run_stats([str(root)], capsys)
    assert report["dataset"] == "market1501" and report["schema"] == "market1501"
    assert report["unreadable"] == [str(broken)]
    splits = report["splits"]
    assert splits["train"]["images"] == summary.splits["train"].images
    assert splits["train"]["identities"] == report["num_train_ids"] == len(summary.splits["train"].identities)
    test_images = splits["query"]["images"] + splits["gallery"]["images"]
    assert test_images == summary.splits["test"].images + summary.distractors
    assert splits["gallery"]["distractors"] == summary.distractors
    assert splits["gallery"]["images"] - splits["gallery"]["with_attributes"] == summary.distractors
    assert splits["gallery"]["identities"] == len(summary.splits["test"].identities)
    assert set(splits["train"]["images_per_camera"]) <= {"1", "2", "3"}
    assert sum(splits["train"]["images_per_camera"].values()) == splits["train"]["images"]
    # identity-level label counts equal the labels written, encoded by the schema
    written = summary.splits["train"].attributes
    for h, head in enumerate(MARKET.heads):
        expected = Counter(MARKET.decode_label(head, MARKET.encode(raw)[h]) or "unknown" for raw in written.values())
        got = report["attributes"]["train"][head.name]["identities"]
        assert got == {label: expected.get(label, 0) for label in [*head.labels, "unknown"]}
        assert sum(report["attributes"]["train"][head.name]["images"].values()) == splits["train"]["images"]
    sheet = Path(report["contact_sheet"])
    assert sheet == root / "stats_contact_sheet.png"
    with Image.open(sheet) as image:
        image.verify()
    with Image.open(sheet) as image:
        rows = sum(len(h.labels) for h in MARKET.heads)
        assert image.format == "PNG" and image.height >= rows * THUMB_H and image.width > LABEL_W
        assert len(np.unique(np.asarray(image.convert("L")))) > 50  # crops were pasted, not an empty canvas


def test_stats_of_a_reid_only_csv(synth_set, tmp_path: Path, capsys) -> None:
    source, _ = synth_set
    images = sorted((source / "bounding_box_train").glob("*.jpg"))[:6]
    lines = ["path,person_id,camera_id,split"]
    lines += [f"{p},{i // 2},{'' if i == 0 else 1},{'train' if i < 4 else 'gallery'}" for i, p in enumerate(images)]
    (tmp_path / "d.csv").write_text("\n".join(lines) + "\n")
    report = run_stats([str(tmp_path / "d.csv"), "--sheet", str(tmp_path / "s.png")], capsys)
    assert report["dataset"] == "csv" and report["schema"] is None and report["attributes"] == {}
    assert report["splits"]["train"] == {
        "images": 4, "identities": 2, "cameras": 1, "unknown_camera": 1, "distractors": 0, "with_attributes": 0,
        "images_per_camera": {"1": 3, "unknown": 1},
    }  # fmt: skip
    assert report["splits"]["gallery"]["images"] == 2
    with Image.open(tmp_path / "s.png") as image:
        assert image.format == "PNG" and image.height >= 3 * THUMB_H


def test_stats_errors_are_reported(tmp_path: Path, capsys) -> None:
    assert personid(["data", "stats", str(tmp_path / "nowhere")]) == 1
    assert "nowhere: dataset folder not found" in capsys.readouterr().err
