"""A gallery as one file, the same for both engines: back up from embedded or a server, restore into either.

The file is an uncompressed tar (the vectors do not compress and the thumbnails are JPEG already):
- `manifest.json`: format, version, the collection's stamp (model id, dimension), counts, time of the backup;
- per kind (`images`, `identities`): `<kind>.jsonl`, one `{"id": ..., "payload": ...}` per line, and
  `<kind>.f32`, the vectors in the same order as little-endian float32 rows of `dim` numbers.

Records are read before images, and only listed images are kept, so a backup taken while a server takes
writes is still consistent (an image whose record was not yet written is left out, as a sweep would).
Qdrant's own snapshots are not used: they exist on the server only and hold one engine's files, while this
file moves a gallery between machines and between embedded and server mode.
"""

from __future__ import annotations

import json
import logging
import tarfile
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import numpy as np

from app.gallery_store import KINDS, GalleryError, Kind, Stamp, Store, StoredPoint, scroll_all

BACKUP_FORMAT = "personid-gallery-backup"
BACKUP_VERSION = 1
PAGE = 1000

log = logging.getLogger(__name__)


class BackupError(GalleryError):
    """A file that is not a gallery backup, or a target that already holds a gallery."""


def _write_kind(points: Iterator[StoredPoint], folder: Path, kind: Kind, dim: int, keep: set[str] | None) -> int:
    """Stream one kind's points into `<kind>.jsonl` and `<kind>.f32`; returns how many were written."""
    written = 0
    with (folder / f"{kind}.jsonl").open("w", encoding="utf-8") as lines, (folder / f"{kind}.f32").open("wb") as rows:
        for point in points:
            if keep is not None and point.id not in keep:
                continue
            vector = np.asarray(point.vector, dtype="<f4")
            if vector.shape != (dim,):
                raise BackupError(f"{kind} point {point.id} has a vector of shape {vector.shape}, expected ({dim},)")
            lines.write(json.dumps({"id": point.id, "payload": point.payload}, ensure_ascii=False) + "\n")
            rows.write(vector.tobytes())
            written += 1
    return written


def backup(store: Store, out: Path) -> dict[str, Any]:
    """Write the gallery in `store` to the file `out` (replaced only once complete); returns its manifest."""
    stamp = store.stamp("images")
    if stamp is None or store.stamp("identities") is None:
        raise BackupError(f"No gallery to back up at {store.location}.")
    counts: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix=".backup-", dir=out.parent) as tmp:
        folder = Path(tmp)
        listed: set[str] = set()

        def records() -> Iterator[StoredPoint]:
            for record in scroll_all(store, "identities", vectors=True, page=PAGE):
                listed.update(record.payload["image_ids"])
                yield record

        counts["identities"] = _write_kind(records(), folder, "identities", stamp.dim, None)
        images = scroll_all(store, "images", vectors=True, page=PAGE)
        counts["images"] = _write_kind(images, folder, "images", stamp.dim, listed)
        manifest = {
            "format": BACKUP_FORMAT,
            "version": BACKUP_VERSION,
            "stamp": {"model_id": stamp.model_id, "dim": stamp.dim, "personid_format": stamp.format},
            "counts": counts,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "source": store.location,
        }
        (folder / "manifest.json").write_text(json.dumps(manifest, indent=1))
        partial = out.with_name(out.name + ".partial")
        with tarfile.open(partial, "w") as archive:
            for name in ("manifest.json", *(f"{kind}.{ext}" for kind in KINDS for ext in ("jsonl", "f32"))):
                archive.add(folder / name, arcname=name)
        partial.replace(out)
    return manifest


def _open_backup(source: Path) -> tarfile.TarFile:
    """The backup file opened for reading; a missing or non-tar file is a BackupError, not a traceback."""
    try:
        return tarfile.open(source, "r")
    except (OSError, tarfile.TarError) as error:
        raise BackupError(f"Cannot read {source} as a gallery backup: {error}") from None


def _stamp_of(manifest: dict[str, Any]) -> Stamp:
    try:
        stamp = manifest["stamp"]
        return Stamp(model_id=str(stamp["model_id"]), dim=int(stamp["dim"]), format=int(stamp["personid_format"]))
    except (KeyError, TypeError, ValueError) as error:
        raise BackupError(f"Not a gallery backup: its manifest has no valid stamp ({error!r}).") from None


def read_manifest(archive: tarfile.TarFile) -> dict[str, Any]:
    member = archive.extractfile("manifest.json") if "manifest.json" in archive.getnames() else None
    if member is None:
        raise BackupError("Not a gallery backup: no manifest.json in the file.")
    try:
        manifest: dict[str, Any] = json.load(member)
    except ValueError as error:
        raise BackupError(f"Not a gallery backup: manifest.json is not JSON ({error}).") from None
    if not isinstance(manifest, dict):
        raise BackupError("Not a gallery backup: manifest.json is not an object.")
    if manifest.get("format") != BACKUP_FORMAT or manifest.get("version") != BACKUP_VERSION:
        raise BackupError(
            f"Not a gallery backup of version {BACKUP_VERSION}: format {manifest.get('format')!r}, "
            f"version {manifest.get('version')!r}."
        )
    return manifest


def _read_kind(archive: tarfile.TarFile, kind: Kind, dim: int) -> Iterator[list[StoredPoint]]:
    """One kind's points in pages of PAGE, vectors and payloads paired by position."""
    lines = archive.extractfile(f"{kind}.jsonl")
    rows = archive.extractfile(f"{kind}.f32")
    if lines is None or rows is None:
        raise BackupError(f"The backup has no {kind}.")
    page: list[StoredPoint] = []
    for line in lines:
        entry = json.loads(line)
        vector = _read_row(rows, dim)
        page.append(StoredPoint(id=entry["id"], vector=vector, payload=entry["payload"]))
        if len(page) == PAGE:
            yield page
            page = []
    if page:
        yield page


def _read_row(rows: IO[bytes], dim: int) -> list[float]:
    data = rows.read(4 * dim)
    if len(data) != 4 * dim:
        raise BackupError("The backup is cut short: fewer vectors than points.")
    row: list[float] = np.frombuffer(data, dtype="<f4").astype(np.float64).tolist()
    return row


def restore(store: Store, source: Path) -> dict[str, Any]:
    """Write the backup `source` into `store`, which must hold no gallery of that collection yet (an empty one
    of the same model is accepted); returns the backup's manifest once the counts are checked."""
    with _open_backup(source) as archive:
        manifest = read_manifest(archive)
        stamp = _stamp_of(manifest)
        for kind in KINDS:
            existing = store.stamp(kind)
            if existing is None:
                store.create(kind, stamp)
            elif store.count(kind) or (existing.model_id, existing.dim) != (stamp.model_id, stamp.dim):
                raise BackupError(
                    f"{store.location} already holds a gallery ({kind}: {store.count(kind)} points, model "
                    f"{existing.model_id!r}); restore into a new folder or collection (PERSONID_COLLECTION)."
                )
        for kind in ("images", "identities"):  # images first: a record never lists a missing image
            for page in _read_kind(archive, kind, stamp.dim):
                store.upsert(kind, page)
            restored = store.count(kind)
            if restored != manifest["counts"][kind]:
                raise BackupError(f"Restored {restored} {kind}, the backup holds {manifest['counts'][kind]}.")
    store.maintain()
    return manifest
