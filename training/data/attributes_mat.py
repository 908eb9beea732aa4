"""Read and write `market_attribute.mat` / `duke_attribute.mat` in the structure of the real files.

The real files (vana77/Market-1501_Attribute, vana77/DukeMTMC-attribute) hold one top-level struct
(`market_attribute` or `duke_attribute`) with the fields `train` and `test`. Each split is a struct with one
1 x N uint8 array per attribute (values 1/2; Market's `age` 1-4) and `image_index`, a 1 x N cell of 4-digit
identity strings. The order of the attribute fields differs between `train` and `test` in the real files,
so everything here indexes by name. Labels are per identity, not per image.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.io

# Field order of the real Market file's `train` struct; its `test` struct uses MARKET_TEST_ORDER.
MARKET_FIELDS: tuple[str, ...] = (
    "age", "backpack", "bag", "handbag",
    "downblack", "downblue", "downbrown", "downgray", "downgreen", "downpink", "downpurple", "downwhite",
    "downyellow",
    "upblack", "upblue", "upgreen", "upgray", "uppurple", "upred", "upwhite", "upyellow",
    "clothes", "down", "up", "hair", "hat", "gender",
)  # fmt: skip
MARKET_TEST_ORDER: tuple[str, ...] = (
    "age", "backpack", "bag", "handbag", "clothes", "down", "up", "hair", "hat", "gender",
    "upblack", "upwhite", "upred", "uppurple", "upyellow", "upgray", "upblue", "upgreen",
    "downblack", "downwhite", "downpink", "downpurple", "downyellow", "downgray", "downblue", "downgreen",
    "downbrown",
)  # fmt: skip
DUKE_FIELDS: tuple[str, ...] = (
    "backpack", "bag", "handbag", "boots", "gender", "hat", "shoes", "top",
    "downblack", "downwhite", "downred", "downgray", "downblue", "downgreen", "downbrown",
    "upblack", "upwhite", "upred", "uppurple", "upgray", "upblue", "upgreen", "upbrown",
)  # fmt: skip
SPLITS: tuple[str, ...] = ("train", "test")
INDEX_FIELD = "image_index"
_HEADER = b"MATLAB 5.0 MAT-file, written by personid (training/data/attributes_mat.py)"
_HEADER_TEXT = 116  # the MAT 5 header's descriptive text field

Labels = dict[str, dict[str, dict[str, int]]]


class AttributeFileError(ValueError):
    """An attribute .mat file that cannot be used; the message names the file and what is wrong."""


def _default_order(fields: Sequence[str], split: str) -> list[str]:
    """Known fields in the real file's order for that split; a test order unlike train's for other fields."""
    if set(fields) <= set(MARKET_FIELDS):
        reference = MARKET_FIELDS if split == "train" else MARKET_TEST_ORDER
        return [f for f in reference if f in fields]
    ordered = [f for f in DUKE_FIELDS if f in fields] if set(fields) <= set(DUKE_FIELDS) else sorted(fields)
    return ordered if split == "train" else ordered[::-1]


def write_attribute_mat(
    path: Path,
    key: str,
    splits: Mapping[str, Mapping[str, Mapping[str, int]]],
    field_order: Mapping[str, list[str]] | None = None,
) -> None:
    """Write per-identity labels as `key.train` / `key.test` structs, like the published files."""
    path = Path(path)
    content: dict[str, Any] = {}
    for split in SPLITS:
        identities = splits.get(split, {})
        ids = sorted(identities)
        fields: list[str] = []
        for labels in identities.values():
            fields.extend(f for f in labels if f not in fields)
        for pid in ids:
            if len(pid) != 4 or not pid.isdigit():
                raise AttributeFileError(f"{path}: {split} identity {pid!r} is not a 4-digit id string")
            missing = [f for f in fields if f not in identities[pid]]
            if missing:
                raise AttributeFileError(f"{path}: {split} identity {pid} lacks fields {missing}")
        order = list((field_order or {}).get(split) or _default_order(fields, split))
        if sorted(order) != sorted(fields):
            raise AttributeFileError(
                f"{path}: field_order[{split!r}] {order} does not list exactly the fields {fields}"
            )
        struct: dict[str, Any] = {}
        for field in order:
            values = np.array([[identities[pid][field] for pid in ids]], dtype=np.int64)
            if values.size and (values.min() < 0 or values.max() > 255):
                raise AttributeFileError(f"{path}: {split} field {field!r} has values outside 0..255")
            struct[field] = values.astype(np.uint8).reshape(1, len(ids))
        index = np.empty((1, len(ids)), dtype=object)
        for i, pid in enumerate(ids):
            index[0, i] = pid
        struct[INDEX_FIELD] = index
        content[split] = struct
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, {key: content}, do_compression=True, oned_as="row")
    data = bytearray(buffer.getvalue())
    data[:_HEADER_TEXT] = _HEADER.ljust(_HEADER_TEXT)  # scipy stamps the time here: fixed text keeps runs identical
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(data))


def _as_list(value: Any) -> list[Any]:
    """`simplify_cells` squeezes 1 x 1 arrays to scalars and 1 x N to N; undo that for N == 1."""
    if isinstance(value, np.ndarray):
        return list(value.reshape(-1))
    if isinstance(value, list):
        return value
    return [value]


def _identity(path: Path, split: str, raw: Any) -> str:
    text = str(raw).strip() if not isinstance(raw, (int, np.integer)) else f"{int(raw):04d}"
    if isinstance(raw, (float, np.floating)) and float(raw).is_integer():
        text = f"{int(raw):04d}"
    if not text.isdigit():
        raise AttributeFileError(f"{path}: {split}.image_index holds {raw!r}, not an identity id")
    return text.zfill(4)


def read_attribute_mat(path: Path, key: str | None = None, required: Sequence[str] = ()) -> Labels:
    """Labels per split and identity: `{"train": {"0002": {"age": 2, ...}}, "test": {...}}`."""
    path = Path(path)
    try:
        mat = scipy.io.loadmat(str(path), simplify_cells=True)
    except FileNotFoundError as exc:
        raise AttributeFileError(f"{path}: file not found") from exc
    except Exception as exc:  # scipy raises ValueError, TypeError, MatReadError ... for non-.mat input
        raise AttributeFileError(f"{path}: not a readable MATLAB .mat file ({type(exc).__name__}: {exc})") from exc
    top = [k for k in mat if not k.startswith("__")]
    if key is None:
        if len(top) != 1:
            raise AttributeFileError(f"{path}: expected one top-level struct, found {top}; pass key=")
        key = top[0]
    if key not in mat:
        raise AttributeFileError(f"{path}: no struct {key!r} (found {top})")
    root = mat[key]
    if not isinstance(root, dict):
        raise AttributeFileError(f"{path}: {key!r} is not a struct")
    result: Labels = {}
    for split in SPLITS:
        if split not in root:
            raise AttributeFileError(f"{path}: {key} has no {split!r} struct (fields: {sorted(root)})")
        struct = root[split]
        if not isinstance(struct, dict):
            raise AttributeFileError(f"{path}: {key}.{split} is not a struct")
        missing = [f for f in (INDEX_FIELD, *required) if f not in struct]
        if missing:
            raise AttributeFileError(f"{path}: {key}.{split} is missing fields {missing}")
        ids = [_identity(path, split, raw) for raw in _as_list(struct[INDEX_FIELD])]
        if len(set(ids)) != len(ids):
            raise AttributeFileError(f"{path}: {key}.{split}.image_index has duplicate ids")
        columns: dict[str, list[int]] = {}
        for field, value in struct.items():
            if field == INDEX_FIELD:
                continue
            values = _as_list(value)
            if len(values) != len(ids):
                raise AttributeFileError(
                    f"{path}: {key}.{split}.{field} has {len(values)} values but image_index has {len(ids)} ids"
                )
            try:
                columns[field] = [int(v) for v in values]
            except (TypeError, ValueError) as exc:
                raise AttributeFileError(f"{path}: {key}.{split}.{field} is not an integer array") from exc
        result[split] = {pid: {f: col[i] for f, col in columns.items()} for i, pid in enumerate(ids)}
    return result
