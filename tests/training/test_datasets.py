"""Dataset loading and the attribute schema, on small hand-made Market / Duke / CSV sets written here."""

from __future__ import annotations

import csv
import json
import logging
import random
import re
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from training.data.attributes_mat import MARKET_FIELDS, write_attribute_mat
from training.data.datasets import (
    BadImageError,
    DatasetError,
    ImageRecord,
    ReidDataset,
    detect_kind,
    load_csv,
    load_dataset,
    load_dukemtmc,
    load_market1501,
)
from training.data.schema import AttributeSchema, SchemaError
from training.data.transforms import build_eval_transform

MARKET = AttributeSchema.builtin("market1501")
DUKE = AttributeSchema.builtin("dukemtmc")
FOLDERS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}


def write_jpeg(path: Path, seed: int, size: tuple[int, int] = (16, 32)) -> None:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path, quality=90)


def random_market_labels(rng: random.Random) -> dict[str, int]:
    """Raw .mat values of one identity: valid values, at most one colour yes (sometimes none)."""
    raw = {f: rng.choice([1, 2]) for f in MARKET_FIELDS}
    raw["age"] = rng.randint(1, 4)
    for prefix in ("up", "down"):
        colours = [f for f in MARKET_FIELDS if f.startswith(prefix) and f not in ("up", "down")]
        for f in colours:
            raw[f] = 1
        if rng.random() < 0.8:
            raw[rng.choice(colours)] = 2
    return raw


def make_market(
    root: Path, train_ids: list[int], test_ids: list[int], cameras: int = 3, per_id: int = 2, seed: int = 0
) -> dict:
    """A Market-1501 layout with market_attribute.mat; returns what was written."""
    rng = random.Random(seed)
    expected: dict = {"train": [], "query": [], "gallery": [], "labels": {"train": {}, "test": {}}}
    n = 0
    for pid in train_ids:
        expected["labels"]["train"][f"{pid:04d}"] = random_market_labels(rng)
        for i in range(per_id):
            cam = 1 + (i % cameras)
            name = f"{pid:04d}_c{cam}s1_{n:06d}_01.jpg"
            write_jpeg(root / FOLDERS["train"] / name, n)
            expected["train"].append((name, pid, cam))
            n += 1
    for pid in test_ids:
        expected["labels"]["test"][f"{pid:04d}"] = random_market_labels(rng)
        query_cam = 1
        name = f"{pid:04d}_c{query_cam}s1_{n:06d}_00.jpg"
        write_jpeg(root / "query" / name, n)
        expected["query"].append((name, pid, query_cam))
        n += 1
        for i in range(per_id):
            cam = 1 + ((i + 1) % cameras)
            name = f"{pid:04d}_c{cam}s2_{n:06d}_01.jpg"
            write_jpeg(root / FOLDERS["gallery"] / name, n)
            expected["gallery"].append((name, pid, cam))
            n += 1
    for i, pid in enumerate([0, 0, -1]):  # two distractors, one junk image in the gallery
        name = f"{pid:04d}_c{1 + i}s3_{n:06d}_00.jpg" if pid == 0 else f"-1_c{1 + i}s3_{n:06d}_00.jpg"
        write_jpeg(root / FOLDERS["gallery"] / name, n)
        if pid == 0:
            expected["gallery"].append((name, 0, 1 + i))
        n += 1
    (root / FOLDERS["train"] / "Thumbs.db").write_bytes(b"not an image")  # the real download has these
    write_attribute_mat(root / "market_attribute.mat", "market_attribute", expected["labels"])
    return expected


def triples(records: list[ImageRecord]) -> list[tuple[str, int, int]]:
    return [(r.path.name, r.pid, r.camid) for r in records]


@pytest.fixture
def market(tmp_path: Path) -> tuple[Path, dict]:
    root = tmp_path / "Market-1501"
    return root, make_market(root, [2, 7, 10], [3, 5])


# ---- schema ---------------------------------------------------------------------------------------------


def test_builtin_schemas_have_the_documented_layout() -> None:
    assert len(MARKET.heads) == 12 and MARKET.num_outputs == 30
    assert [c.start for c in MARKET.slices[:3]] == [0, 4, 5] and MARKET.slices[-1] == slice(30 - 9, 30)
    assert set(MARKET.fields) == set(MARKET_FIELDS)
    assert [h.name for h in DUKE.heads if h.type == "softmax"] == ["upper_color", "lower_color"]
    assert DUKE.num_outputs == 8 + 8 + 7 and len(DUKE.fields) == 23
    for schema in (MARKET, DUKE):
        assert AttributeSchema.from_dict(json.loads(json.dumps(schema.to_dict()))) == schema
        assert schema.slices[-1].stop == schema.num_outputs


def test_schema_encoding() -> None:
    raw = {f: 1 for f in MARKET_FIELDS} | {"age": 4, "gender": 2, "upred": 2}
    targets = dict(zip([h.name for h in MARKET.heads], MARKET.encode(raw), strict=True))
    assert targets["age"] == 3 and targets["gender"] == 1 and targets["hair"] == 0
    assert targets["upper_color"] == 2 and targets["lower_color"] == -1  # no colour yes -> unknown
    assert MARKET.decode_label("upper_color", 2) == "red" and MARKET.decode_label("lower_color", -1) is None
    two_yes = raw | {"upblue": 2}
    assert MARKET.encode(two_yes)[MARKET.heads.index(MARKET.head("upper_color"))] == -1
    assert MARKET.ambiguous_heads(two_yes) == ["upper_color"]
    with pytest.raises(ValueError, match=r"'age' has value 5, expected one of \[1, 2, 3, 4\]"):
        MARKET.encode(raw | {"age": 5})
    with pytest.raises(ValueError, match="missing fields"):
        MARKET.encode({"age": 1})
    assert MARKET.encode_labels({"age": "old", "gender": ""})[:2] == (3, -1)
    with pytest.raises(ValueError, match="unknown label 'ancient'"):
        MARKET.encode_labels({"age": "ancient"})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["heads"][0].update(type="multiclass"), "unknown type 'multiclass'"),
        (lambda d: d["heads"][0].update(labels=[]), "empty labels"),
        (lambda d: d["groups"].update(extra=["nose"]), "group 'extra' names unknown heads \\['nose'\\]"),
        (lambda d: d["heads"][1]["source"].update(values=[1, 2, 3]), "one value per label"),
        (lambda d: d["heads"][1].update(labels=["a", "b", "c"]), "exactly 2 labels"),
        (lambda d: d["heads"].append(d["heads"][0]), "duplicate head names \\['age'\\]"),
    ],
)
def test_schema_validation_messages(change, message: str, tmp_path: Path) -> None:
    data = MARKET.to_dict()
    change(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(SchemaError, match=message) as info:
        AttributeSchema.load(path)
    assert str(path) in str(info.value)


# ---- Market-1501 ----------------------------------------------------------------------------------------


def test_market_records_match_what_was_written(market: tuple[Path, dict]) -> None:
    root, expected = market
    data = load_market1501(root)
    assert data.name == "market1501" and data.schema == MARKET
    for split in ("train", "query", "gallery"):
        assert sorted(triples(data.records(split))) == sorted(expected[split])
    assert all(r.pid != -1 for r in data.gallery)  # junk dropped
    for split, struct in (("train", "train"), ("query", "test"), ("gallery", "test")):
        for r in data.records(split):
            if r.pid == 0:
                assert r.attrs is None
            else:
                assert r.attrs == MARKET.encode(expected["labels"][struct][f"{r.pid:04d}"])
    summary = data.summary()
    assert summary["num_train_ids"] == 3 and data.pid_to_label() == {2: 0, 7: 1, 10: 2}
    assert summary["splits"]["gallery"]["distractors"] == 2
    assert summary["splits"]["gallery"]["identities"] == 2 and summary["splits"]["train"]["cameras"] == 2
    assert summary["splits"]["query"]["images"] == 2 and summary["skipped_images"] == 0


@pytest.mark.parametrize("where", ["attribute/market_attribute.mat", "../Market-1501_Attribute/market_attribute.mat"])
def test_market_finds_the_attribute_file_where_the_real_one_lives(market: tuple[Path, dict], where: str) -> None:
    root, _ = market
    target = (root / where).resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    (root / "market_attribute.mat").rename(target)
    data = load_market1501(root)
    assert data.schema is not None and all(r.attrs is not None for r in data.train)


def test_market_without_attributes_loads_reid_only(market: tuple[Path, dict], caplog) -> None:
    root, expected = market
    (root / "market_attribute.mat").unlink()
    with caplog.at_level(logging.WARNING):
        data = load_market1501(root)
    assert data.schema is None and all(r.attrs is None for r in data.train + data.query + data.gallery)
    assert sorted(triples(data.train)) == sorted(expected["train"])
    assert "market_attribute.mat" in caplog.text and "re-id labels only" in caplog.text


def test_handmade_mat_in_the_real_structure(tmp_path: Path) -> None:
    """savemat directly: struct market_attribute.{train,test}, 1 x N uint8 rows, image_index a cell of strings,
    field order different in train and test (the reader must index by name)."""
    root = tmp_path / "m"
    write_jpeg(root / FOLDERS["train"] / "0002_c1s1_000001_01.jpg", 1)
    write_jpeg(root / FOLDERS["train"] / "0004_c2s1_000002_01.jpg", 2)
    write_jpeg(root / "query" / "0006_c1s1_000003_01.jpg", 3)
    write_jpeg(root / FOLDERS["gallery"] / "0006_c3s1_000004_01.jpg", 4)

    def struct(ids: list[str], values: dict[str, list[int]], order: list[str]) -> dict:
        cell = np.empty((1, len(ids)), dtype=object)
        cell[0, :] = ids
        out = {f: np.array([values.get(f, [1] * len(ids))], dtype=np.uint8) for f in order}
        out["image_index"] = cell
        return out

    train = struct(["0002", "0004"], {"age": [4, 2], "gender": [2, 1], "upgreen": [2, 1], "downpink": [1, 2]},
                   list(MARKET_FIELDS))  # fmt: skip
    test = struct(["0006"], {"age": [1], "hair": [2], "downbrown": [2]}, list(reversed(MARKET_FIELDS)))
    scipy.io.savemat(root / "market_attribute.mat", {"market_attribute": {"train": train, "test": test}})
    data = load_market1501(root)
    targets = {r.pid: dict(zip([h.name for h in MARKET.heads], r.attrs, strict=True)) for r in data.train}
    assert targets[2]["age"] == 3 and targets[2]["gender"] == 1 and targets[2]["upper_color"] == 7
    assert targets[2]["lower_color"] == -1
    assert targets[4]["age"] == 1 and targets[4]["gender"] == 0 and targets[4]["lower_color"] == 2
    query = dict(zip([h.name for h in MARKET.heads], data.query[0].attrs, strict=True))
    assert query["age"] == 0 and query["hair"] == 1 and query["lower_color"] == 8 and query["upper_color"] == -1


def test_mat_missing_fields_is_named(market: tuple[Path, dict]) -> None:
    root, expected = market
    for struct in expected["labels"].values():
        for raw in struct.values():
            del raw["hair"]
    write_attribute_mat(root / "market_attribute.mat", "market_attribute", expected["labels"])
    with pytest.raises(DatasetError, match="missing fields") as info:
        load_market1501(root)
    assert "hair" in str(info.value) and "market_attribute.mat" in str(info.value)


def test_image_ids_absent_from_mat_are_named(market: tuple[Path, dict]) -> None:
    root, _ = market
    write_jpeg(root / FOLDERS["gallery"] / "0099_c2s1_000999_01.jpg", 99)
    with pytest.raises(DatasetError, match=r"not in its 'test' struct: 0099") as info:
        load_market1501(root)
    assert "market_attribute.mat" in str(info.value) and "bounding_box_test" in str(info.value)


def test_mat_value_outside_values_names_identity(market: tuple[Path, dict]) -> None:
    root, expected = market
    expected["labels"]["train"]["0007"]["age"] = 9
    write_attribute_mat(root / "market_attribute.mat", "market_attribute", expected["labels"])
    with pytest.raises(DatasetError, match=r"train identity 0007: head 'age': field 'age' has value 9"):
        load_market1501(root)


def test_badly_named_image_is_named(market: tuple[Path, dict]) -> None:
    root, _ = market
    write_jpeg(root / "query" / "person.jpg", 5)
    with pytest.raises(DatasetError, match=r"person\.jpg"):
        load_market1501(root)


def corrupt_and_truncate(root: Path) -> tuple[Path, Path]:
    corrupt = root / FOLDERS["train"] / "0002_c3s1_900000_01.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG")
    truncated = root / FOLDERS["gallery"] / "0003_c3s1_900001_01.jpg"
    write_jpeg(truncated, 7, size=(64, 128))
    data = truncated.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    return corrupt, truncated


def test_corrupt_and_truncated_images_fail_with_their_paths(market: tuple[Path, dict]) -> None:
    root, _ = market
    corrupt, truncated = corrupt_and_truncate(root)
    with pytest.raises(BadImageError) as info:
        load_market1501(root)
    message = str(info.value)
    assert "2 unreadable image(s)" in message and str(corrupt) in message and str(truncated) in message
    assert "truncated" in message and "on_bad_image='skip'" in message
    assert sorted(info.value.paths) == sorted([corrupt, truncated])


def test_bad_images_can_be_skipped_and_are_counted(market: tuple[Path, dict], caplog) -> None:
    root, expected = market
    corrupt, truncated = corrupt_and_truncate(root)
    with caplog.at_level(logging.WARNING):
        data = load_market1501(root, on_bad_image="skip")
    assert sorted(data.skipped) == sorted([corrupt, truncated]) and data.summary()["skipped_images"] == 2
    assert sorted(triples(data.train)) == sorted(expected["train"])
    assert "skipped 2 unreadable image(s)" in caplog.text
    unchecked = load_market1501(root, check_images=False)
    assert len(unchecked.train) == len(data.train) + 1


# ---- DukeMTMC-reID --------------------------------------------------------------------------------------


def test_duke_layout_names_and_attributes(tmp_path: Path) -> None:
    root = tmp_path / "DukeMTMC-reID"
    rng = random.Random(1)
    labels: dict = {"train": {}, "test": {}}
    names = {"train": [], "query": [], "gallery": []}
    for split, pids in (("train", [1, 5]), ("query", [8]), ("gallery", [8, 9])):
        for pid in pids:
            raw = {f: rng.choice([1, 2]) for f in DUKE.fields if not f.startswith(("up", "down"))}
            raw |= {f: 1 for f in DUKE.fields if f.startswith(("up", "down"))} | {"upbrown": 2, "downred": 2}
            labels["train" if split == "train" else "test"][f"{pid:04d}"] = raw
            cam = 8 if pid == 9 else 2
            name = f"{pid:04d}_c{cam}_f{pid * 1000:07d}.jpg"  # Duke's naming: no sequence part
            write_jpeg(root / FOLDERS[split] / name, pid)
            names[split].append((name, pid, cam))
    write_attribute_mat(root / "duke_attribute.mat", "duke_attribute", labels)
    assert detect_kind(root) == "dukemtmc"
    data = load_dataset(root)
    assert data.name == "dukemtmc" and data.schema == DUKE
    for split in ("train", "query", "gallery"):
        assert sorted(triples(data.records(split))) == sorted(names[split])
    first = dict(zip([h.name for h in DUKE.heads], data.train[0].attrs, strict=True))
    assert first["upper_color"] == 7 and first["lower_color"] == 2
    assert first["gender"] == labels["train"]["0001"]["gender"] - 1
    assert load_dukemtmc(root).summary() == data.summary()


# ---- CSV ------------------------------------------------------------------------------------------------


def write_csv(path: Path, rows: list[dict], columns: list[str]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def market_as_csv(root: Path, csv_path: Path) -> None:
    data = load_market1501(root)
    columns = ["path", "person_id", "camera_id", "split", *[h.name for h in MARKET.heads]]
    rows = []
    for split in ("train", "query", "gallery"):
        for r in data.records(split):
            row = {"path": str(r.path.relative_to(csv_path.parent)), "person_id": r.pid, "camera_id": r.camid,
                   "split": split}  # fmt: skip
            for h, head in enumerate(MARKET.heads):
                row[head.name] = MARKET.decode_label(head, r.attrs[h]) or "" if r.attrs else ""
            rows.append(row)
    write_csv(csv_path, rows, columns)


def test_csv_gives_the_same_records(market: tuple[Path, dict]) -> None:
    root, _ = market
    csv_path = root.parent / "data.csv"
    market_as_csv(root, csv_path)
    from_folders = load_market1501(root)
    from_csv = load_dataset(csv_path)
    assert from_csv.name == "csv" and from_csv.schema == MARKET
    unknown = (-1,) * len(MARKET.heads)
    for split in ("train", "query", "gallery"):
        expected = [(r.path, r.pid, r.camid, r.attrs or unknown) for r in from_folders.records(split)]
        got = [(r.path, r.pid, r.camid, r.attrs) for r in from_csv.records(split)]
        assert got == expected


def test_csv_unknown_camera_and_reid_only(tmp_path: Path, caplog) -> None:
    write_jpeg(tmp_path / "img" / "a.png", 1)
    write_jpeg(tmp_path / "img" / "b.png", 2)
    rows = [
        {"path": "img/a.png", "person_id": 42, "camera_id": "", "split": "train"},
        {"path": str(tmp_path / "img" / "b.png"), "person_id": 42, "camera_id": 3, "split": "gallery"},
    ]
    write_csv(tmp_path / "d.csv", rows, ["path", "person_id", "camera_id", "split"])
    with caplog.at_level(logging.WARNING):
        data = load_csv(tmp_path / "d.csv")
    assert data.schema is None and "no attribute columns" in caplog.text
    assert data.train == [ImageRecord(tmp_path / "img" / "a.png", 42, -1, None)]
    assert data.gallery[0].camid == 3 and data.summary()["splits"]["train"]["unknown_camera"] == 1


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"split": "val"}, r"line 3: column 'split': 'val' is not one of"),
        ({"person_id": "bob"}, r"line 3: column 'person_id': 'bob' is not an integer"),
        ({"camera_id": "-4"}, r"line 3: column 'camera_id': -4 is below 0"),
        ({"age": "ancient"}, r"line 3, column 'age': head 'age': unknown label 'ancient'"),
        ({"path": ""}, r"line 3: column 'path' is empty"),
    ],
)
def test_csv_errors_name_line_and_column(tmp_path: Path, row: dict, message: str) -> None:
    write_jpeg(tmp_path / "a.jpg", 1)
    columns = ["path", "person_id", "camera_id", "split", *[h.name for h in MARKET.heads]]
    good = {"path": "a.jpg", "person_id": 1, "camera_id": 1, "split": "train", "age": "adult", "gender": "female"}
    write_csv(tmp_path / "d.csv", [good, good | row], columns)
    with pytest.raises(DatasetError, match=message) as info:
        load_csv(tmp_path / "d.csv")
    assert str(tmp_path / "d.csv") in str(info.value)


def test_csv_header_problems_and_missing_images(tmp_path: Path) -> None:
    write_jpeg(tmp_path / "a.jpg", 1)
    base = {"path": "a.jpg", "person_id": 1, "camera_id": 1, "split": "train"}
    write_csv(tmp_path / "d.csv", [base | {"colour": "red"}], [*base, "colour"])
    with pytest.raises(DatasetError, match=r"columns \['colour'\] are not heads of schema 'market1501'"):
        load_csv(tmp_path / "d.csv")
    write_csv(tmp_path / "d.csv", [base | {"age": "old"}], [*base, "age"])
    with pytest.raises(DatasetError, match=r"no column for heads \['gender'"):
        load_csv(tmp_path / "d.csv")
    write_csv(tmp_path / "d.csv", [{"path": "a.jpg", "split": "train"}], ["path", "split"])
    with pytest.raises(DatasetError, match=r"missing columns \['person_id', 'camera_id'\]"):
        load_csv(tmp_path / "d.csv")
    write_csv(tmp_path / "d.csv", [base, base | {"path": "gone.jpg"}], list(base))
    with pytest.raises(BadImageError, match=r"gone\.jpg: file not found"):
        load_csv(tmp_path / "d.csv")
    assert [r.path.name for r in load_csv(tmp_path / "d.csv", on_bad_image="skip").train] == ["a.jpg"]


def test_csv_with_a_custom_schema(tmp_path: Path) -> None:
    schema = {"name": "mine", "heads": [{"name": "vest", "type": "binary", "labels": ["no", "yes"]}],
              "groups": {"safety": ["vest"]}}  # fmt: skip
    (tmp_path / "schema.json").write_text(json.dumps(schema))
    write_jpeg(tmp_path / "a.jpg", 1)
    rows = [{"path": "a.jpg", "person_id": 1, "camera_id": 0, "split": "train", "vest": "yes"}]
    write_csv(tmp_path / "d.csv", rows, ["path", "person_id", "camera_id", "split", "vest"])
    data = load_dataset(tmp_path / "d.csv", schema=tmp_path / "schema.json")
    assert data.schema is not None and data.schema.name == "mine" and data.train[0].attrs == (1,)


# ---- torch Dataset --------------------------------------------------------------------------------------


def test_reid_dataset_items(market: tuple[Path, dict]) -> None:
    root, _ = market
    data = load_market1501(root)
    dataset = ReidDataset(data.gallery, build_eval_transform(32, 16), num_heads=len(MARKET.heads))
    items = [dataset[i] for i in range(len(dataset))]
    assert items[0]["image"].shape == (3, 32, 16) and items[0]["image"].dtype == torch.float32
    distractor = next(item for item in items if item["pid"] == 0)
    assert distractor["attrs"].tolist() == [-1] * 12 and distractor["attrs"].dtype == torch.long
    labelled = next(i for i, r in enumerate(data.gallery) if r.attrs is not None)
    assert items[labelled]["attrs"].tolist() == list(data.gallery[labelled].attrs)
    assert items[labelled]["index"] == labelled and items[labelled]["camid"] == data.gallery[labelled].camid
    train = ReidDataset(data.train, build_eval_transform(32, 16), data.pid_to_label())
    assert sorted({train[i]["pid"] for i in range(len(train))}) == [0, 1, 2] and train.pids == [2, 2, 7, 7, 10, 10]
    batch = next(iter(torch.utils.data.DataLoader(train, batch_size=4)))
    assert batch["image"].shape == (4, 3, 32, 16) and batch["attrs"].shape == (4, 12)


def test_reid_dataset_names_an_unreadable_image(tmp_path: Path) -> None:
    bad = tmp_path / "0001_c1s1_000001_01.jpg"
    bad.write_bytes(b"garbage")
    dataset = ReidDataset([ImageRecord(bad, 1, 1, None)], build_eval_transform(32, 16))
    with pytest.raises(BadImageError, match=re.escape(str(bad))):
        dataset[0]


def test_synth_set_loads_as_written(tmp_path: Path) -> None:
    from synth import generate

    summary = generate(tmp_path / "synth", identities=6, test_identities=3, cameras=3, images_per_identity=4,
                       progress=False)  # fmt: skip
    data = load_dataset(tmp_path / "synth")
    assert data.name == "market1501" and data.schema == MARKET
    assert sorted({f"{r.pid:04d}" for r in data.train}) == summary.splits["train"].identities
    assert len(data.train) == summary.splits["train"].images
    test = [r for r in data.query + data.gallery if r.pid != 0]
    assert sorted({f"{r.pid:04d}" for r in test}) == summary.splits["test"].identities
    assert len(test) == summary.splits["test"].images
    assert sum(r.pid == 0 for r in data.gallery) == summary.distractors
    assert len(data.gallery) + len(data.query) == len(test) + summary.distractors  # junk dropped
    assert {r.camid for r in data.train + data.query + data.gallery} <= {1, 2, 3}
    for records, struct in ((data.train, "train"), (test, "test")):
        for r in records:
            assert r.attrs == MARKET.encode(summary.splits[struct].attributes[f"{r.pid:04d}"])
