"""Loading Market-1501, DukeMTMC-reID and CSV datasets into records with re-id ids and attribute targets.

Folder layout (both datasets): `bounding_box_train/` (train), `query/`, `bounding_box_test/` (gallery), file
names starting `PPPP_cC` (Market `0002_c1s1_000451_03.jpg`, Duke `0005_c2_f0046985.jpg`): person id
(-1 = junk, 0000 = distractor), camera C. `camid` keeps the camera number of the name; -1 = unknown (CSV).

Attributes are per identity (`market_attribute.mat` / `duke_attribute.mat`): the `train` struct labels the
`bounding_box_train` ids, the `test` struct the query/gallery ids. Junk images are dropped everywhere (the
protocol ignores them); distractors stay in the gallery with `attrs=None` (they have no labels).
"""

from __future__ import annotations

import csv
import logging
import os
import re
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from PIL import Image
from torch.utils.data import Dataset
from tqdm import tqdm

from personid.imaging import load_rgb
from training.data.attributes_mat import AttributeFileError, read_attribute_mat
from training.data.schema import AttributeSchema, AttributeValueError

log = logging.getLogger(__name__)

SPLITS = ("train", "query", "gallery")
FOLDERS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}
NAME_RE = re.compile(r"^(-?\d+)_c(\d+)")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}
JUNK, DISTRACTOR = -1, 0
CSV_COLUMNS = ("path", "person_id", "camera_id", "split")
MAX_LISTED = 10  # paths / ids named in one error message before "and N more"

OnBadImage = Literal["fail", "skip"]


class DatasetError(ValueError):
    """A dataset that cannot be loaded as it is; the message names the file, row or ids at fault."""


class BadImageError(DatasetError):
    """Missing, corrupt or truncated image files; `paths` lists them."""

    def __init__(self, message: str, paths: Sequence[Path] = ()) -> None:
        super().__init__(message)
        self.paths = list(paths)


@dataclass(frozen=True)
class ImageRecord:
    path: Path
    pid: int
    camid: int
    attrs: tuple[int, ...] | None  # one target per schema head, -1 unknown; None = no labels (distractors)


@dataclass
class ReidSplit:
    name: str
    root: Path
    schema: AttributeSchema | None  # None when the set has no attribute labels (re-id only)
    train: list[ImageRecord]
    query: list[ImageRecord]
    gallery: list[ImageRecord]
    skipped: list[Path] = field(default_factory=list)  # unreadable images left out (on_bad_image="skip")

    def records(self, split: str) -> list[ImageRecord]:
        if split not in SPLITS:
            raise KeyError(f"unknown split {split!r}; expected one of {SPLITS}")
        return getattr(self, split)

    @property
    def num_train_ids(self) -> int:
        return len({r.pid for r in self.train})

    def pid_to_label(self) -> dict[int, int]:
        """Train identity -> classifier index 0..num_train_ids-1 (sorted by id, so stable across runs)."""
        return {pid: i for i, pid in enumerate(sorted({r.pid for r in self.train}))}

    def summary(self) -> dict[str, Any]:
        splits = {}
        has_distractors = self.name != "csv"  # id 0 is Market/Duke's distractor, an ordinary id in a CSV
        for split in SPLITS:
            records = self.records(split)
            distractors = sum(r.pid == DISTRACTOR for r in records) if has_distractors else 0
            splits[split] = {
                "images": len(records),
                "identities": len({r.pid for r in records if not (has_distractors and r.pid == DISTRACTOR)}),
                "cameras": len({r.camid for r in records if r.camid >= 0}),
                "unknown_camera": sum(r.camid < 0 for r in records),
                "distractors": distractors,
                "with_attributes": sum(r.attrs is not None for r in records),
            }
        return {
            "name": self.name,
            "root": str(self.root),
            "schema": self.schema.name if self.schema else None,
            "num_train_ids": self.num_train_ids,
            "splits": splits,
            "skipped_images": len(self.skipped),
        }


# ---- image checking -------------------------------------------------------------------------------------


def _image_problem(path: Path) -> str | None:
    """Why an image cannot be used, or None. `load()` reads the whole stream, so truncated files raise
    (as long as nobody set Pillow's LOAD_TRUNCATED_IMAGES). JPEGs decode at 1/8 scale (`draft`): every
    byte is still entropy-decoded, the inverse DCT work shrinks (about 1.5-2x faster on Market crops)."""
    try:
        with Image.open(path) as image:
            image.draft(image.mode, (max(1, image.width // 8), max(1, image.height // 8)))
            image.load()
    except FileNotFoundError:
        return "file not found"
    except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError, DecompressionBombError...
        return f"{type(exc).__name__}: {exc}"
    return None


def find_bad_images(paths: Sequence[Path], workers: int | None = None) -> list[tuple[Path, str]]:
    """(path, reason) for each unreadable image, decoding all of them in a thread pool with progress."""
    workers = workers or min(8, (os.cpu_count() or 1) + 2)
    with ThreadPoolExecutor(workers) as pool:
        problems = list(
            tqdm(
                pool.map(_image_problem, paths),
                total=len(paths),
                desc="checking images",
                unit="img",
                disable=len(paths) < 1000,
                leave=False,
            )
        )
    return [(p, why) for p, why in zip(paths, problems, strict=True) if why]


def _listing(items: Sequence[Any]) -> str:
    shown = ", ".join(str(i) for i in items[:MAX_LISTED])
    return shown + (f" and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else "")


def _drop_bad_images(records: dict[str, list[ImageRecord]], on_bad_image: OnBadImage, check_images: bool) -> list[Path]:
    """Checks every image; raises BadImageError or removes the bad ones (returned) as asked."""
    if on_bad_image not in ("fail", "skip"):
        raise ValueError(f"on_bad_image must be 'fail' or 'skip', got {on_bad_image!r}")
    if not check_images:
        return []
    paths = [r.path for split in SPLITS for r in records[split]]
    bad = find_bad_images(paths)
    if not bad:
        return []
    if on_bad_image == "fail":
        lines = "\n".join(f"  {p}: {why}" for p, why in bad[:MAX_LISTED])
        more = f"\n  ... and {len(bad) - MAX_LISTED} more" if len(bad) > MAX_LISTED else ""
        raise BadImageError(
            f"{len(bad)} unreadable image(s):\n{lines}{more}\n"
            "Fix or remove them, or load with on_bad_image='skip' to leave them out.",
            [p for p, _ in bad],
        )
    bad_paths = {p for p, _ in bad}
    for split in SPLITS:
        records[split] = [r for r in records[split] if r.path not in bad_paths]
    log.warning("skipped %d unreadable image(s), e.g. %s", len(bad), _listing([f"{p} ({w})" for p, w in bad]))
    return [p for p, _ in bad]


# ---- Market-1501 / DukeMTMC-reID folders ----------------------------------------------------------------


def _parse_folder(folder: Path) -> list[tuple[Path, int, int]]:
    """(path, pid, camid) of each image in a folder, junk dropped, sorted by name."""
    if not folder.is_dir():
        raise DatasetError(f"{folder}: folder not found (expected bounding_box_train/, query/, bounding_box_test/)")
    found, unnamed = [], []
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            continue  # the real Market-1501 ships Thumbs.db files
        match = NAME_RE.match(path.name)
        if not match:
            unnamed.append(path.name)
            continue
        pid, camid = int(match.group(1)), int(match.group(2))
        if pid != JUNK:
            found.append((path, pid, camid))
    if unnamed:
        raise DatasetError(
            f"{folder}: {len(unnamed)} image name(s) do not start with PERSONID_cCAMERA: {_listing(unnamed)}"
        )
    return found


def _find_attribute_file(root: Path, filename: str, sibling: str) -> Path | None:
    for candidate in (root / filename, root / "attribute" / filename, root.parent / sibling / filename):
        if candidate.is_file():
            return candidate
    return None


def _encode_identities(
    mat_path: Path, labels: dict[str, dict[str, dict[str, int]]], schema: AttributeSchema
) -> dict[str, dict[int, tuple[int, ...]]]:
    encoded: dict[str, dict[int, tuple[int, ...]]] = {}
    for struct, identities in labels.items():
        encoded[struct] = {}
        ambiguous: list[str] = []
        for pid, raw in identities.items():
            try:
                encoded[struct][int(pid)] = schema.encode(raw)
            except AttributeValueError as exc:
                raise DatasetError(f"{mat_path}: {struct} identity {pid}: {exc}") from None
            ambiguous += [f"{pid}:{h}" for h in schema.ambiguous_heads(raw)]
        if ambiguous:
            log.warning(
                "%s: %s: %d identity colour(s) with several 'yes' taken as unknown: %s",
                mat_path,
                struct,
                len(ambiguous),
                _listing(ambiguous),
            )
    return encoded


def _load_folders(
    root: Path,
    name: str,
    mat_name: str,
    sibling: str,
    attributes: Path | None,
    schema: AttributeSchema | Path | None,
    on_bad_image: OnBadImage,
    check_images: bool,
) -> ReidSplit:
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset folder not found")
    parsed = {split: _parse_folder(root / FOLDERS[split]) for split in SPLITS}
    if attributes is not None and not Path(attributes).is_file():
        raise DatasetError(f"{attributes}: attribute file not found")
    mat_path = Path(attributes) if attributes is not None else _find_attribute_file(root, mat_name, sibling)
    resolved = _resolve_schema(schema, name)
    by_struct: dict[str, dict[int, tuple[int, ...]]] | None = None
    if mat_path is None:
        log.warning(
            "%s: no %s (looked in the root, root/attribute, ../%s): loading re-id labels only", root, mat_name, sibling
        )
        resolved = None
    else:
        try:
            labels = read_attribute_mat(mat_path, required=resolved.fields)
        except AttributeFileError as exc:
            raise DatasetError(str(exc)) from None
        by_struct = _encode_identities(mat_path, labels, resolved)
    records: dict[str, list[ImageRecord]] = {}
    for split in SPLITS:
        struct = "train" if split == "train" else "test"
        rows, absent = [], set()
        for path, pid, camid in parsed[split]:
            if split != "gallery" and pid == DISTRACTOR:
                continue  # distractors only make sense in the gallery
            attrs = None
            if by_struct is not None and pid != DISTRACTOR:
                attrs = by_struct[struct].get(pid)
                if attrs is None:
                    absent.add(pid)
            rows.append(ImageRecord(path, pid, camid, attrs))
        if absent:
            ids = [f"{p:04d}" for p in sorted(absent)]
            raise DatasetError(
                f"{mat_path}: {len(ids)} identities of {root / FOLDERS[split]} are not in its '{struct}' struct: "
                f"{_listing(ids)}"
            )
        records[split] = rows
    skipped = _drop_bad_images(records, on_bad_image, check_images)
    return ReidSplit(name, root, resolved, records["train"], records["query"], records["gallery"], skipped)


def _resolve_schema(schema: AttributeSchema | Path | str | None, builtin: str) -> AttributeSchema:
    if schema is None:
        return AttributeSchema.builtin(builtin)
    if isinstance(schema, AttributeSchema):
        return schema
    return AttributeSchema.load(Path(schema))


def load_market1501(
    root: Path,
    attributes: Path | None = None,
    on_bad_image: OnBadImage = "fail",
    check_images: bool = True,
    schema: AttributeSchema | Path | None = None,
) -> ReidSplit:
    """Market-1501 (+ Market-1501_Attribute's market_attribute.mat, found beside or given)."""
    return _load_folders(
        root,
        "market1501",
        "market_attribute.mat",
        "Market-1501_Attribute",
        attributes,
        schema,
        on_bad_image,
        check_images,
    )


def load_dukemtmc(
    root: Path,
    attributes: Path | None = None,
    on_bad_image: OnBadImage = "fail",
    check_images: bool = True,
    schema: AttributeSchema | Path | None = None,
) -> ReidSplit:
    """DukeMTMC-reID (+ DukeMTMC-attribute's duke_attribute.mat, found beside or given)."""
    return _load_folders(
        root, "dukemtmc", "duke_attribute.mat", "DukeMTMC-attribute", attributes, schema, on_bad_image, check_images
    )


# ---- CSV ------------------------------------------------------------------------------------------------


def _parse_int(text: str, column: str, minimum: int) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise ValueError(f"column {column!r}: {text!r} is not an integer") from None
    if value < minimum:
        raise ValueError(f"column {column!r}: {value} is below {minimum}")
    return value


def _csv_head_columns(csv_path: Path, header: list[str], schema: AttributeSchema) -> list[str]:
    """The attribute columns of a CSV header, checked against the schema (all heads or none)."""
    missing = [c for c in CSV_COLUMNS if c not in header]
    if missing:
        raise DatasetError(f"{csv_path}: line 1: missing columns {missing} (header: {header})")
    dupes = sorted({c for c in header if header.count(c) > 1})
    if dupes:
        raise DatasetError(f"{csv_path}: line 1: duplicate columns {dupes}")
    head_columns = [c for c in header if c not in CSV_COLUMNS]
    head_names = [h.name for h in schema.heads]
    unknown = [c for c in head_columns if c not in head_names]
    if unknown:
        raise DatasetError(
            f"{csv_path}: line 1: columns {unknown} are not heads of schema {schema.name!r} ({head_names})"
        )
    absent = [h for h in head_names if h not in head_columns]
    if head_columns and absent:
        raise DatasetError(
            f"{csv_path}: line 1: no column for heads {absent} of schema {schema.name!r} "
            "(add them; leave cells empty where unknown)"
        )
    return head_columns


def _csv_record(row: dict[str, str], csv_path: Path, schema: AttributeSchema | None) -> tuple[str, ImageRecord]:
    """One CSV row -> (split, record); `ValueError` (or `AttributeValueError` naming its column) if it is bad."""
    if not row["path"].strip():
        raise ValueError("column 'path' is empty")
    path = Path(row["path"].strip())
    path = path if path.is_absolute() else csv_path.parent / path
    pid = _parse_int(row["person_id"], "person_id", JUNK)
    camid = -1 if not row["camera_id"].strip() else _parse_int(row["camera_id"], "camera_id", 0)
    split = row["split"].strip()
    if split not in SPLITS:
        raise ValueError(f"column 'split': {split!r} is not one of {list(SPLITS)}")
    attrs = None
    if schema is not None:
        targets = []
        for head in schema.heads:
            try:
                targets.append(head.index(row[head.name].strip()))
            except AttributeValueError as exc:
                raise AttributeValueError(f"column {head.name!r}: {exc}") from None
        attrs = tuple(targets)
    return split, ImageRecord(path, pid, camid, attrs)


def load_csv(
    csv_path: Path,
    schema: AttributeSchema | Path | None = None,
    on_bad_image: OnBadImage = "fail",
    check_images: bool = True,
) -> ReidSplit:
    """A custom dataset described by a CSV file (format in docs/custom_data.md)."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise DatasetError(f"{csv_path}: CSV file not found")
    resolved = _resolve_schema(schema, "market1501")
    records: dict[str, list[ImageRecord]] = {split: [] for split in SPLITS}
    errors: list[str] = []
    junk = 0
    with csv_path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        header = [c.strip() for c in reader.fieldnames or []]
        reader.fieldnames = header
        with_attrs = bool(_csv_head_columns(csv_path, header, resolved))
        if not with_attrs:
            log.warning("%s: no attribute columns: loading re-id labels only", csv_path)
        for row in reader:
            where = f"line {reader.line_num}"
            if None in row or any(v is None for v in row.values()):
                errors.append(f"{where}: {len(header)} columns expected")
                continue
            try:
                split, record = _csv_record(row, csv_path, resolved if with_attrs else None)
            except AttributeValueError as exc:
                errors.append(f"{where}, {exc}")
                continue
            except ValueError as exc:
                errors.append(f"{where}: {exc}")
                continue
            if record.pid == JUNK:
                junk += 1
                continue
            records[split].append(record)
    if errors:
        more = f"\n  ... and {len(errors) - MAX_LISTED} more" if len(errors) > MAX_LISTED else ""
        raise DatasetError(f"{csv_path}: {len(errors)} bad row(s):\n  " + "\n  ".join(errors[:MAX_LISTED]) + more)
    if junk:
        log.info("%s: dropped %d junk row(s) (person_id -1)", csv_path, junk)
    if not any(records.values()):
        raise DatasetError(f"{csv_path}: no rows")
    skipped = _drop_bad_images(records, on_bad_image, check_images)
    return ReidSplit(
        "csv",
        csv_path,
        resolved if with_attrs else None,
        records["train"],
        records["query"],
        records["gallery"],
        skipped,
    )


# ---- dispatch and torch Dataset -------------------------------------------------------------------------


def detect_kind(path: Path) -> Literal["market1501", "dukemtmc", "csv"]:
    """A .csv file -> csv; a folder with duke_attribute.mat (or "duke" in its name) -> dukemtmc; else market1501."""
    path = Path(path)
    if path.is_file() and path.suffix.lower() == ".csv":
        return "csv"
    if _find_attribute_file(path, "duke_attribute.mat", "DukeMTMC-attribute") or "duke" in path.name.lower():
        return "dukemtmc"
    return "market1501"


LOADERS: dict[str, Callable[..., ReidSplit]] = {
    "market1501": load_market1501,
    "dukemtmc": load_dukemtmc,
    "csv": load_csv,
}


def load_dataset(path: Path, kind: Literal["auto", "market1501", "dukemtmc", "csv"] = "auto", **kw: Any) -> ReidSplit:
    """Load any supported dataset; `kw` goes to the loader (attributes=, schema=, on_bad_image=, check_images=)."""
    kind = detect_kind(path) if kind == "auto" else kind
    if kind not in LOADERS:
        raise DatasetError(f"unknown dataset kind {kind!r}; expected auto or one of {sorted(LOADERS)}")
    return LOADERS[kind](Path(path), **kw)


class ReidDataset(Dataset):
    """Records -> {"image", "pid", "camid", "attrs", "index"} samples for a DataLoader."""

    def __init__(
        self,
        records: Iterable[ImageRecord],
        transform: Callable[[Image.Image], torch.Tensor],
        pid_to_label: dict[int, int] | None = None,
        num_heads: int | None = None,
    ) -> None:
        self.records = list(records)
        self.transform = transform
        self.pid_to_label = pid_to_label
        if num_heads is None:
            num_heads = next((len(r.attrs) for r in self.records if r.attrs is not None), 0)
        self.num_heads = num_heads
        if pid_to_label is not None:
            unknown = sorted({r.pid for r in self.records} - set(pid_to_label))
            if unknown:
                raise DatasetError(f"pid_to_label lacks identities {_listing(unknown)}")

    @property
    def pids(self) -> list[int]:
        """Identity of each sample (for RandomIdentitySampler)."""
        return [r.pid for r in self.records]

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        record = self.records[index]
        try:
            image = load_rgb(record.path)
        except Exception as exc:  # decoding errors of any kind: name the file
            raise BadImageError(
                f"{record.path}: cannot read image ({type(exc).__name__}: {exc})", [record.path]
            ) from exc
        attrs = record.attrs if record.attrs is not None else (-1,) * self.num_heads
        return {
            "image": self.transform(image),
            "pid": self.pid_to_label[record.pid] if self.pid_to_label is not None else record.pid,
            "camid": record.camid,
            "attrs": torch.tensor(attrs, dtype=torch.long),
            "index": index,
        }
