"""`personid data stats DIR`: what a dataset holds, as JSON on stdout, plus a contact sheet PNG.

The JSON gives images / identities / images per camera for each split, how often each attribute label
occurs (over images and over identities), and the files that could not be read. The contact sheet shows
sample crops for every attribute value, the quickest way to see whether labels match the pictures.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from personid.imaging import load_rgb
from training.data.datasets import SPLITS, DatasetError, ReidSplit, detect_kind, load_dataset
from training.data.schema import SchemaError

THUMB_W, THUMB_H, LABEL_W, GAP = 48, 96, 190, 4


def dataset_stats(data: ReidSplit) -> dict[str, Any]:
    """Counts per split (distractors are not identities) and per attribute label; an identity counts once per
    label it carries."""
    splits: dict[str, Any] = {}
    attributes: dict[str, Any] = {}
    summary = data.summary()["splits"]
    for split in SPLITS:
        records = data.records(split)
        cameras = Counter("unknown" if r.camid < 0 else str(r.camid) for r in records)
        splits[split] = {**summary[split], "images_per_camera": dict(sorted(cameras.items()))}
        if data.schema is None:
            continue
        per_head: dict[str, Any] = {}
        for h, head in enumerate(data.schema.heads):
            images: Counter[str] = Counter()
            identities: dict[str, set[int]] = defaultdict(set)
            for r in records:
                if r.attrs is None:
                    continue
                label = data.schema.decode_label(head, r.attrs[h]) or "unknown"
                images[label] += 1
                identities[label].add(r.pid)
            order = [*head.labels, "unknown"]
            per_head[head.name] = {
                "images": {label: images[label] for label in order},
                "identities": {label: len(identities[label]) for label in order},
            }
        attributes[split] = per_head
    return {
        "dataset": data.name,
        "root": str(data.root),
        "schema": data.schema.name if data.schema else None,
        "num_train_ids": data.num_train_ids,
        "splits": splits,
        "attributes": attributes,
        "unreadable": [str(p) for p in data.skipped],
    }


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the bitmap font, fixed size
        return ImageFont.load_default()


def contact_sheet(data: ReidSplit, out: Path, per_row: int = 8, seed: int = 0) -> Path:
    """One row per attribute value (or per split without attributes): crops of distinct identities."""
    rng = random.Random(seed)
    rows: list[tuple[str, list[Path]]] = []
    labelled = [r for split in SPLITS for r in data.records(split) if r.attrs is not None]
    if data.schema is not None:
        for h, head in enumerate(data.schema.heads):
            for target, label in enumerate(head.labels):
                matching = [r for r in labelled if r.attrs is not None and r.attrs[h] == target]
                rng.shuffle(matching)
                picked: dict[int, Path] = {}
                for r in matching:
                    picked.setdefault(r.pid, r.path)
                    if len(picked) == per_row:
                        break
                rows.append((f"{head.name} = {label} ({len(matching)} img)", list(picked.values())))
    else:
        for split in SPLITS:
            records = list(data.records(split))
            rng.shuffle(records)
            rows.append((f"{split} ({len(records)} img)", [r.path for r in records[:per_row]]))
    width = LABEL_W + per_row * (THUMB_W + GAP) + GAP
    sheet = Image.new("RGB", (width, max(1, len(rows)) * (THUMB_H + GAP) + GAP), "white")
    draw = ImageDraw.Draw(sheet)
    font = _font(13)
    for i, (title, paths) in enumerate(rows):
        y = GAP + i * (THUMB_H + GAP)
        draw.text((GAP, y + THUMB_H // 2 - 7), title, fill="black", font=font)
        for j, path in enumerate(paths):
            try:
                thumb = load_rgb(path).resize((THUMB_W, THUMB_H), Image.BILINEAR)
            except Exception:  # unreadable files are listed in the JSON; leave a grey box here
                thumb = Image.new("RGB", (THUMB_W, THUMB_H), "gray")
            sheet.paste(thumb, (LABEL_W + GAP + j * (THUMB_W + GAP), y))
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="personid data", description="Dataset tools.")
    actions = parser.add_subparsers(dest="action", required=True)
    stats = actions.add_parser(
        "stats",
        help="counts, attribute frequencies, unreadable files, contact sheet",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    stats.add_argument("dir", type=Path, help="dataset folder (Market-1501 / DukeMTMC-reID layout) or CSV file")
    stats.add_argument("--kind", default="auto", choices=["auto", "market1501", "dukemtmc", "csv"])
    stats.add_argument("--attributes", type=Path, help="the attribute .mat file, if not beside the images")
    stats.add_argument("--schema", type=Path, help="attribute schema JSON (default: the dataset's built-in one)")
    stats.add_argument("--sheet", type=Path, help="contact sheet PNG (default: DIR/stats_contact_sheet.png)")
    stats.add_argument("--per-label", type=int, default=8, help="crops per attribute value on the sheet")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    kind = detect_kind(args.dir) if args.kind == "auto" else args.kind
    if kind == "csv" and args.attributes is not None:
        print("personid data stats: error: --attributes is for .mat datasets; a CSV holds its labels", file=sys.stderr)
        return 2
    kwargs: dict[str, Any] = {"on_bad_image": "skip"}
    if args.schema is not None:
        kwargs["schema"] = args.schema
    if args.attributes is not None:
        kwargs["attributes"] = args.attributes
    try:
        data = load_dataset(args.dir, kind, **kwargs)
    except (DatasetError, SchemaError) as exc:
        print(f"personid data stats: error: {exc}", file=sys.stderr)
        return 1
    folder = args.dir if args.dir.is_dir() else args.dir.parent
    sheet = args.sheet or folder / "stats_contact_sheet.png"
    report = dataset_stats(data)
    report["contact_sheet"] = str(contact_sheet(data, sheet, per_row=args.per_label))
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
