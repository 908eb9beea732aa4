"""The contact sheet: a grid of identities, one column per camera, captioned with their attributes.

It is how a person checks at a glance that the attributes are visible and the cameras differ.
"""

from __future__ import annotations

import math
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from synth.identity import LOWER_COLOURS, UPPER_COLOURS
from synth.layout import NAME_RE
from training.data.attributes_mat import read_attribute_mat

AGE_NAMES = ("young", "teenager", "adult", "old")


def _caption(labels: dict[str, int]) -> list[str]:
    """Four short lines naming an identity's attribute values."""
    up = next((c for c in UPPER_COLOURS if labels.get(f"up{c}") == 2), "other")
    down = next((c for c in LOWER_COLOURS if labels.get(f"down{c}") == 2), "other")
    carried = [k for k in ("hat", "backpack", "bag", "handbag") if labels.get(k) == 2]
    return [
        f"{'female' if labels['gender'] == 2 else 'male'} {AGE_NAMES[labels['age'] - 1]}, "
        f"{'long' if labels['hair'] == 2 else 'short'} hair",
        f"{up} {'short' if labels['up'] == 2 else 'long'} sleeve",
        f"{down} {'short' if labels['down'] == 2 else 'long'} {'dress' if labels['clothes'] == 1 else 'pants'}",
        ", ".join(carried) or "no hat/bags",
    ]


def _diverse(by_id: dict[str, dict[int, Path]], labels: dict[str, dict[str, int]], n: int) -> list[str]:
    """Identities seen by the most cameras, picked greedily to show as many attribute values as possible."""
    most = max(len(v) for v in by_id.values())
    pool = sorted(pid for pid, v in by_id.items() if len(v) == most)
    pool += sorted(pid for pid, v in by_id.items() if len(v) < most)
    chosen: list[str] = []
    seen: set[tuple[str, int]] = set()
    while pool and len(chosen) < n:
        best = max(pool, key=lambda pid: (len(by_id[pid]), len(set(labels.get(pid, {}).items()) - seen)))
        chosen.append(best)
        pool.remove(best)
        seen |= set(labels.get(best, {}).items())
    return chosen


def contact_sheet(directory: Path, out_png: Path, identities: int = 12) -> Path:
    """A grid of identities, one column per camera, captioned with their attributes: realism at a glance."""
    directory = Path(directory)
    labels = read_attribute_mat(directory / "market_attribute.mat", "market_attribute")
    by_id: dict[str, dict[int, Path]] = {}
    for folder in ("bounding_box_train", "query", "bounding_box_test"):
        for path in sorted((directory / folder).glob("*.jpg")):
            m = NAME_RE.match(path.name)
            if m and m.group(1) not in {"0000", "-1"}:
                by_id.setdefault(m.group(1), {}).setdefault(int(m.group(2)), path)
    if not by_id:
        raise FileNotFoundError(f"{directory}: no Market-1501 images found")
    cams = sorted({c for v in by_id.values() for c in v})
    all_labels = {**labels["train"], **labels["test"]}
    ranked = _diverse(by_id, all_labels, identities)
    first = Image.open(next(iter(by_id[ranked[0]].values())))
    tile_w, tile_h = first.width * 2, first.height * 2
    font = ImageFont.load_default(size=15)
    cols = 4 if len(ranked) > 6 else 2
    rows = math.ceil(len(ranked) / cols)
    cell_w, cell_h = len(cams) * (tile_w + 4) + 16, tile_h + 110
    sheet = Image.new("RGB", (cols * cell_w, rows * cell_h), (250, 250, 250))
    d = ImageDraw.Draw(sheet)
    for i, pid in enumerate(ranked):
        x0, y0 = (i % cols) * cell_w + 8, (i // cols) * cell_h + 8
        for j, cam in enumerate(cams):
            x = x0 + j * (tile_w + 4)
            if cam in by_id[pid]:
                sheet.paste(Image.open(by_id[pid][cam]).convert("RGB").resize((tile_w, tile_h), Image.NEAREST), (x, y0))
            d.text((x + 3, y0 + 2), f"c{cam}", fill=(255, 255, 0), font=font, stroke_width=2, stroke_fill=(0, 0, 0))
        lines = [f"id {pid}", *(_caption(all_labels[pid]) if pid in all_labels else [])]
        for k, line in enumerate(lines):
            d.text((x0, y0 + tile_h + 4 + k * 19), line, fill=(20, 20, 20), font=font)
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out_png)
    return out_png
