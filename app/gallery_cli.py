"""`personid gallery backup|restore|optimize|info`: the gallery without the service (no model, no torch).

The gallery is the one the service would open: PERSONID_QDRANT_PATH / PERSONID_QDRANT_URL /
PERSONID_COLLECTION, or the options below. Embedded mode allows one process per folder, so stop the service
first (the command says so when the folder is in use); a server can be backed up while it serves.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from app.gallery import open_store
from app.gallery_backup import backup, restore
from app.gallery_store import KINDS, GalleryError, Store
from app.settings import Settings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="personid gallery", description=__doc__.split("\n\n")[0])
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument("--qdrant-path", type=Path, help="embedded storage folder [env PERSONID_QDRANT_PATH]")
    where.add_argument("--qdrant-url", help="Qdrant server URL [env PERSONID_QDRANT_URL]")
    where.add_argument("--collection", help="collection name [env PERSONID_COLLECTION]")
    commands = parser.add_subparsers(dest="command", required=True)
    out = commands.add_parser("backup", parents=[where], help="write the gallery to one file")
    out.add_argument("--out", type=Path, required=True, help="the backup file to write (a tar)")
    back = commands.add_parser("restore", parents=[where], help="read a backup into an empty gallery")
    back.add_argument("file", type=Path, help="a file written by `personid gallery backup`")
    commands.add_parser(
        "optimize", parents=[where], help="build the search index now (embedded; minutes at 100k points)"
    )
    commands.add_parser("info", parents=[where], help="stamp and counts as JSON")
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    given = {key: getattr(args, key) for key in ("qdrant_path", "qdrant_url", "collection") if getattr(args, key)}
    return Settings(**given)


def _info(store: Store) -> dict[str, object]:
    stamps = {kind: store.stamp(kind) for kind in KINDS}
    return {
        "location": store.location,
        "server_mode": store.server_mode,
        "stamp": {kind: None if s is None else {"model_id": s.model_id, "dim": s.dim} for kind, s in stamps.items()},
        "counts": {kind: store.count(kind) if stamps[kind] else 0 for kind in KINDS},
    }


def main(argv: list[str]) -> int:
    """0 when done; 1 with a one-line reason (gallery in use, unreachable, not a backup, target not empty)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        store = open_store(_settings(args))
    except GalleryError as error:
        print(f"personid gallery: error: {error}", file=sys.stderr)
        return 1
    start = time.perf_counter()
    try:
        with store.errors():
            if args.command == "backup":
                manifest = backup(store, args.out)
                print(f"wrote {args.out}: {json.dumps(manifest['counts'])}, model {manifest['stamp']['model_id']}")
            elif args.command == "restore":
                manifest = restore(store, args.file)
                print(f"restored {args.file} into {store.location}: {json.dumps(manifest['counts'])}")
            elif args.command == "optimize":
                built = store.maintain()
                print("index built" if built else "index already complete")
            else:
                print(json.dumps(_info(store), indent=1))
    except GalleryError as error:
        print(f"personid gallery: error: {error}", file=sys.stderr)
        return 1
    finally:
        store.close()
    print(f"({time.perf_counter() - start:.1f} s)", file=sys.stderr)
    return 0
