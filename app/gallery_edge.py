"""The embedded gallery on Qdrant's own engine in-process (qdrant-edge-py): no server, one process per folder.

Layout of `<qdrant_path>/edge/<collection>/`: one shard per collection kind (`images/`, `identities/`, each with
its write-ahead log and segments), a stamp file per shard (`images.json`: model id and dimension; a shard has
no metadata of its own), and `in-use` while a process has it open (left behind by a crash, it makes the next
open sweep points no record lists).

What the engine leaves to its user, and how it is done here:
- Every call holds the GIL and `optimize()` (the HNSW build) runs for minutes at 100k points, so it runs only
  in `maintain()` (`personid gallery optimize`, restore), never at open (a service killed by its supervisor
  while building at start-up would build again at every start) nor in a request. Until then new points sit in
  a plain segment that is scanned exactly; past `app.gallery.REINDEX_AT` of them the open logs that a build
  is due.
- `update()` writes the log without fsync: a killed process loses nothing; the first write `FLUSH_EVERY_S`
  after the last sync syncs again, so a power cut may lose the writes since then.
- A process killed during `optimize()` leaves files in `temp_segments/`; they are removed at the next open.
- No grouped query: `query_groups` over-fetches and widens until the groups are exact.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from pathlib import Path
from typing import Any

import qdrant_edge as edge

from app.gallery_store import (
    INDEXED_KEYS,
    KINDS,
    Conditions,
    GalleryUnavailable,
    Kind,
    PayloadSelection,
    Stamp,
    StoredPoint,
)

FLUSH_EVERY_S = 5.0
GROUP_OVERFETCH = 4
IN_USE = "in-use"
LOCK = "lock"

log = logging.getLogger(__name__)


def edge_folder(qdrant_path: Path, collection: str) -> Path:
    """Where the embedded gallery of `collection` lives under the storage folder."""
    return qdrant_path / "edge" / collection


def _filter(match: Conditions | None) -> edge.Filter | None:
    if not match:
        return None
    return edge.Filter(must=[edge.FieldCondition(key=key, match=edge.MatchValue(value)) for key, value in match])


def _ids(ids: list[str]) -> list[Any]:
    """Point ids as the engine's signature types them (its id union is invariant in a list)."""
    return list(ids)


@contextmanager
def _translated() -> Iterator[None]:
    """A closed shard answers 'not initialized': the service says 503, not 500."""
    try:
        yield
    except GalleryUnavailable:
        raise
    except Exception as error:
        if "not initialized" in str(error):
            raise GalleryUnavailable("The gallery is closed.") from error
        raise


def _write_json(path: Path, value: dict[str, Any]) -> None:
    """Replace `path` atomically (a crash leaves the old file or the new one)."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(value))
    os.replace(partial, path)


class EdgeStore:
    """`Store` on two edge shards in one folder; not thread-safe, so the gallery serialises every call."""

    server_mode = False

    def __init__(self, folder: Path, location: str | None = None) -> None:
        self.location = location or str(folder)
        self.folder = folder
        self.crashed = False  # the previous process did not close the folder: points may need a sweep
        self._shards: dict[Kind, edge.EdgeShard] = {}
        self._marked = False
        self._last_flush = time.monotonic()
        folder.mkdir(parents=True, exist_ok=True)
        # the folder's own lock, taken before anything is read or removed (the engine locks each shard's log
        # only once the shard exists); the kernel drops it when the process dies
        self._lock = (folder / LOCK).open("w")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as error:
            self._lock.close()
            raise self._in_use() from error
        try:
            for kind in KINDS:
                if (folder / kind).is_dir():
                    self._shards[kind] = self._load(folder / kind)
        except BaseException:
            self.close()
            raise
        for kind in KINDS:  # a shard whose creation was cut short (never stamped): the lock says it is nobody's
            shutil.rmtree(folder / f"{kind}.new", ignore_errors=True)
        marker = folder / IN_USE
        self.crashed = marker.exists()
        marker.write_text(str(os.getpid()))
        self._marked = True

    def _load(self, path: Path) -> edge.EdgeShard:
        try:
            shard = edge.EdgeShard.load(str(path))
        except Exception as error:
            if "WouldBlock" in str(error) or "lock" in str(error).lower():
                raise self._in_use() from error
            raise
        # this process holds the shard's lock now: what an optimizer killed mid-run left behind is nobody's
        temp = path / "temp_segments"
        if temp.is_dir():
            for leftover in temp.iterdir():
                log.warning("removing %s, left by an index build that was killed", leftover)
                shutil.rmtree(leftover, ignore_errors=True) if leftover.is_dir() else leftover.unlink()
        return shard

    def _in_use(self) -> GalleryUnavailable:
        return GalleryUnavailable(
            f"The embedded Qdrant folder {self.location} is in use by another process (embedded Qdrant allows one "
            "process: run one worker, stop the other process, or use a Qdrant server with PERSONID_QDRANT_URL)."
        )

    def _shard(self, kind: Kind) -> edge.EdgeShard:
        shard = self._shards.get(kind)
        if shard is None:
            raise GalleryUnavailable("The gallery is closed.")
        return shard

    def errors(self) -> AbstractContextManager[None]:
        return _translated()

    def stamp(self, kind: Kind) -> Stamp | None:
        if kind not in self._shards:
            return None
        stored = json.loads((self.folder / f"{kind}.json").read_text())
        return Stamp(model_id=stored["model_id"], dim=int(stored["dim"]), format=int(stored["personid_format"]))

    def create(self, kind: Kind, stamp: Stamp) -> None:
        """A new shard with its payload indexes, made aside and renamed into place once stamped."""
        staging = self.folder / f"{kind}.new"
        shutil.rmtree(staging, ignore_errors=True)
        config = edge.EdgeConfig(vectors=edge.EdgeVectorParams(size=stamp.dim, distance=edge.Distance.Cosine))
        shard = edge.EdgeShard.create(str(staging), config)
        for key in INDEXED_KEYS:
            shard.update(edge.UpdateOperation.create_field_index(key, edge.PayloadSchemaType.Keyword))
        shard.flush()
        shard.close()
        self._write_stamp(kind, stamp)
        os.replace(staging, self.folder / kind)
        self._shards[kind] = self._load(self.folder / kind)

    def restamp(self, kind: Kind, stamp: Stamp) -> None:
        self._write_stamp(kind, stamp)

    def _write_stamp(self, kind: Kind, stamp: Stamp) -> None:
        value = {"personid_format": stamp.format, "model_id": stamp.model_id, "dim": stamp.dim}
        _write_json(self.folder / f"{kind}.json", value)

    def _written(self) -> None:
        """Sync the log to disk at most every FLUSH_EVERY_S seconds (about 15 ms at 100k points)."""
        if time.monotonic() - self._last_flush >= FLUSH_EVERY_S:
            self.flush()

    def flush(self) -> None:
        for shard in self._shards.values():
            shard.flush()
        self._last_flush = time.monotonic()

    def upsert(self, kind: Kind, points: list[StoredPoint]) -> None:
        structs = [edge.Point(p.id, p.vector or [], p.payload) for p in points]
        self._shard(kind).update(edge.UpdateOperation.upsert_points(structs))
        self._written()

    def delete_ids(self, kind: Kind, ids: list[str]) -> None:
        if ids:
            self._shard(kind).update(edge.UpdateOperation.delete_points(_ids(ids)))
            self._written()

    def delete_where(self, kind: Kind, match: Conditions) -> None:
        condition = _filter(match)
        assert condition is not None, "delete_where needs a condition"
        self._shard(kind).update(edge.UpdateOperation.delete_points_by_filter(condition))
        self._written()

    def retrieve(
        self, kind: Kind, ids: list[str], payload: PayloadSelection = True, vectors: bool = False
    ) -> list[StoredPoint]:
        if not ids:
            return []
        records = self._shard(kind).retrieve(_ids(ids), with_payload=payload, with_vector=vectors)
        return [StoredPoint.read(record) for record in records]

    def scroll(
        self,
        kind: Kind,
        limit: int,
        offset: str | None = None,
        match: Conditions | None = None,
        payload: PayloadSelection = True,
        vectors: bool = False,
    ) -> tuple[list[StoredPoint], str | None]:
        request = edge.ScrollRequest(
            offset=offset, limit=limit, filter=_filter(match), with_payload=payload, with_vector=vectors
        )
        records, next_offset = self._shard(kind).scroll(request)
        return [StoredPoint.read(record) for record in records], None if next_offset is None else str(next_offset)

    def count(self, kind: Kind, match: Conditions | None = None) -> int:
        return self._shard(kind).count(edge.CountRequest(exact=True, filter=_filter(match)))

    def query(
        self,
        kind: Kind,
        vector: list[float],
        limit: int,
        min_score: float | None = None,
        match: Conditions | None = None,
        payload: PayloadSelection = True,
    ) -> list[StoredPoint]:
        request = edge.QueryRequest(
            limit=limit,
            query=edge.Query.Nearest(vector),
            filter=_filter(match),
            score_threshold=min_score,
            with_payload=payload,
        )
        return [StoredPoint.read(hit) for hit in self._shard(kind).query(request)]

    def query_groups(
        self,
        kind: Kind,
        vector: list[float],
        group_by: str,
        limit: int,
        min_score: float | None = None,
        match: Conditions | None = None,
        payload: PayloadSelection = True,
    ) -> list[StoredPoint]:
        """Nearest points, widened by GROUP_OVERFETCH until `limit` groups are found or the points run out."""
        selection = payload if payload is True or payload is False else [*payload, group_by]
        fetch = limit * GROUP_OVERFETCH
        while True:
            hits = self.query(
                kind, vector, fetch, min_score, match, selection if selection is not False else [group_by]
            )
            best: dict[Any, StoredPoint] = {}
            for hit in hits:
                best.setdefault(hit.payload[group_by], hit)
            if len(best) >= limit or len(hits) < fetch:
                return list(best.values())[:limit]
            fetch *= GROUP_OVERFETCH

    def unindexed(self) -> int:
        return sum(info.points_count - info.indexed_vectors_count for info in (s.info() for s in self._shards.values()))

    def maintain(self) -> bool:
        """Build the HNSW index of the shards that have unindexed points (the engine leaves segments below its
        indexing threshold plain); returns whether anything was built. Holds the GIL for its whole run."""
        built = False
        for kind, shard in self._shards.items():
            info = shard.info()
            unindexed = info.points_count - info.indexed_vectors_count
            if unindexed:
                log.info("building the index of %s (%d unindexed points); this takes a while", kind, unindexed)
                start = time.perf_counter()
                built |= shard.optimize()
                log.info("index of %s built in %.1f s", kind, time.perf_counter() - start)
        if built:
            self.flush()
        return built

    def close(self) -> None:
        """Flush and release the shards and the folder lock, each even if another fails. The in-use marker goes
        only on a clean close of a swept folder: a crash left unswept (an open that stopped early, a `personid
        gallery` command) must still be swept by the next open."""
        shards, self._shards = self._shards, {}
        with ExitStack() as stack:
            stack.callback(self._lock.close)
            for shard in shards.values():
                stack.callback(shard.close)
            for shard in shards.values():
                shard.flush()
            if self._marked and not self.crashed:
                (self.folder / IN_USE).unlink(missing_ok=True)
                self._marked = False
