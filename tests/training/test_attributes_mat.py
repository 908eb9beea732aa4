"""The attribute .mat reader/writer against files in the published nested-struct structure."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io

from training.data.attributes_mat import (
    DUKE_FIELDS,
    MARKET_FIELDS,
    AttributeFileError,
    read_attribute_mat,
    write_attribute_mat,
)


def _struct(columns: dict[str, list[int]], ids: list[str]) -> np.ndarray:
    """A 1 x 1 MATLAB struct as loadmat returns it: uint8 1 x N rows and a 1 x N cell of id strings."""
    names = [*columns, "image_index"]
    struct = np.empty((1, 1), dtype=[(n, object) for n in names])
    for name, values in columns.items():
        struct[0, 0][name] = np.array([values], dtype=np.uint8)
    cell = np.empty((1, len(ids)), dtype=object)
    for i, pid in enumerate(ids):
        cell[0, i] = np.array([pid])
    struct[0, 0]["image_index"] = cell
    return struct


def _handmade(path: Path, drop: str | None = None, short: str | None = None) -> None:
    train = {"age": [2, 3, 1], "gender": [1, 2, 2], "upred": [2, 1, 1], "hat": [1, 1, 2]}
    test = {"hat": [2, 1], "upred": [1, 1], "gender": [2, 1], "age": [4, 3]}  # other order, like the real file
    if drop:
        del test[drop]
    if short:
        train[short] = train[short][:-1]
    root = np.empty((1, 1), dtype=[("train", object), ("test", object)])
    root[0, 0]["train"] = _struct(train, ["0002", "0007", "1501"])
    root[0, 0]["test"] = _struct(test, ["0001", "0003"])
    scipy.io.savemat(str(path), {"market_attribute": root})


def test_reads_real_structure_by_name(tmp_path: Path) -> None:
    path = tmp_path / "market_attribute.mat"
    _handmade(path)
    labels = read_attribute_mat(path, required=("age", "gender"))
    assert labels["train"] == {
        "0002": {"age": 2, "gender": 1, "upred": 2, "hat": 1},
        "0007": {"age": 3, "gender": 2, "upred": 1, "hat": 1},
        "1501": {"age": 1, "gender": 2, "upred": 1, "hat": 2},
    }
    assert labels["test"] == {
        "0001": {"age": 4, "gender": 2, "upred": 1, "hat": 2},
        "0003": {"age": 3, "gender": 1, "upred": 1, "hat": 1},
    }
    assert read_attribute_mat(path, key="market_attribute") == labels


def _labels(fields: tuple[str, ...], ids: list[str], seed: int) -> dict[str, dict[str, int]]:
    rng = np.random.default_rng(seed)
    return {pid: {f: int(rng.integers(1, 5 if f == "age" else 3)) for f in fields} for pid in ids}


@pytest.mark.parametrize(("key", "fields"), [("market_attribute", MARKET_FIELDS), ("duke_attribute", DUKE_FIELDS)])
def test_round_trip_keeps_labels_and_real_layout(tmp_path: Path, key: str, fields: tuple[str, ...]) -> None:
    splits = {"train": _labels(fields, ["0002", "0010", "0777"], 1), "test": _labels(fields, ["0005", "1200"], 2)}
    path = tmp_path / f"{key}.mat"
    write_attribute_mat(path, key, splits)
    assert read_attribute_mat(path, required=fields) == splits
    raw = scipy.io.loadmat(str(path))[key][0, 0]
    train, test = raw["train"][0, 0], raw["test"][0, 0]
    assert set(train.dtype.names) == {*fields, "image_index"}
    assert train.dtype.names != test.dtype.names  # the real files order the test fields differently
    assert train[fields[0]].dtype == np.uint8 and train[fields[0]].shape == (1, 3)
    assert [str(c[0]) for c in train["image_index"][0]] == ["0002", "0010", "0777"]


def test_explicit_field_order_is_kept(tmp_path: Path) -> None:
    splits = {"train": {"0002": {"a": 1, "b": 2}}, "test": {"0003": {"a": 2, "b": 1}}}
    path = tmp_path / "x.mat"
    write_attribute_mat(path, "x_attribute", splits, field_order={"train": ["b", "a"], "test": ["a", "b"]})
    raw = scipy.io.loadmat(str(path))["x_attribute"][0, 0]
    assert raw["train"][0, 0].dtype.names == ("b", "a", "image_index")
    assert read_attribute_mat(path) == splits


def test_missing_required_field_is_named(tmp_path: Path) -> None:
    path = tmp_path / "market_attribute.mat"
    _handmade(path, drop="gender")
    with pytest.raises(AttributeFileError, match=r"market_attribute\.mat.*test.*missing fields \['gender'\]"):
        read_attribute_mat(path, required=("age", "gender"))
    assert "gender" not in read_attribute_mat(path)["test"]["0001"]


def test_length_mismatch_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "market_attribute.mat"
    _handmade(path, short="hat")
    with pytest.raises(AttributeFileError, match=r"train\.hat has 2 values but image_index has 3 ids"):
        read_attribute_mat(path)


def test_not_a_mat_file(tmp_path: Path) -> None:
    path = tmp_path / "market_attribute.mat"
    path.write_bytes(b"\x89PNG\r\n\x1a\n not a mat file at all")
    with pytest.raises(AttributeFileError, match="not a readable MATLAB"):
        read_attribute_mat(path)
    with pytest.raises(AttributeFileError, match="file not found"):
        read_attribute_mat(tmp_path / "absent.mat")


def test_wrong_key_and_missing_split(tmp_path: Path) -> None:
    path = tmp_path / "m.mat"
    _handmade(path)
    with pytest.raises(AttributeFileError, match="no struct 'duke_attribute'"):
        read_attribute_mat(path, key="duke_attribute")
    scipy.io.savemat(
        str(tmp_path / "half.mat"),
        {
            "duke_attribute": {
                "train": {"image_index": np.array([["0001"]], dtype=object), "hat": np.array([[1]], np.uint8)}
            }
        },
    )
    with pytest.raises(AttributeFileError, match="no 'test' struct"):
        read_attribute_mat(tmp_path / "half.mat")


def test_writer_rejects_bad_ids_and_ragged_rows(tmp_path: Path) -> None:
    with pytest.raises(AttributeFileError, match="not a 4-digit id"):
        write_attribute_mat(tmp_path / "a.mat", "market_attribute", {"train": {"12": {"hat": 1}}, "test": {}})
    ragged = {"train": {"0001": {"hat": 1, "bag": 2}, "0002": {"hat": 1}}, "test": {}}
    with pytest.raises(AttributeFileError, match=r"0002 lacks fields \['bag'\]"):
        write_attribute_mat(tmp_path / "b.mat", "market_attribute", ragged)
