"""Crash consistency: kill -9 a real `personid serve` during concurrent writes, restart it on the same embedded
Qdrant folder, and check that every acknowledged write is there and nothing half-written shows.

Each writer thread owns its identities (enroll 2 images, add 1, delete every third), so the acknowledged state
of every identity is known exactly; the one request per writer that had no answer when the server died may or may
not have happened, and is checked only for what must hold either way (all of it or none of it).
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
import numpy as np
import pytest

from app.gallery_edge import EdgeStore, edge_folder
from app.gallery_store import Kind, StoredPoint, scroll_all
from app.settings import Settings
from tests.app.conftest import image_file, person_image, serving, start_server

WRITERS = 6
WRITE_SECONDS = 3.0
KEY = "crash-key"
COLLECTION = str(Settings.model_fields["collection"].default)

pytestmark = pytest.mark.slow


@contextmanager
def killable_server(*options: str, log: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """`personid serve` on a free loopback port, yielded with its process so the test can SIGKILL it."""
    process, url = start_server(*options, log=log)
    try:
        yield process, url
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)


@dataclass
class Pending:
    """The write a writer sent last without getting an answer: it may or may not have happened."""

    kind: Literal["enroll", "add", "delete"]
    identity_id: str
    images: int


@dataclass
class Writer:
    """One client thread's writes and what the server acknowledged of them."""

    index: int
    url: str
    acked: dict[str, list[str]] = field(default_factory=dict)  # identity -> acknowledged image ids, in order
    seeds: dict[str, int] = field(default_factory=dict)  # acknowledged image id -> seed of its image
    deleted: set[str] = field(default_factory=set)
    attempted: set[str] = field(default_factory=set)
    pending: Pending | None = None
    unexpected: list[str] = field(default_factory=list)

    def run(self, stop: threading.Event) -> None:
        """Write until told to stop or until the server is gone (the first request that gets no answer)."""
        seed = self.index * 1_000_000
        with httpx.Client(base_url=self.url, headers={"X-API-Key": KEY}, timeout=30) as client:
            for n in range(1_000_000):
                if stop.is_set():
                    return
                identity_id = f"w{self.index}-{n}"
                seed += 3
                if not self._enroll(client, identity_id, [seed, seed + 1]):
                    return
                if not self._add(client, identity_id, seed + 2):
                    return
                if n % 3 == 2 and not self._delete(client, identity_id):
                    return

    def _send(self, pending: Pending, request: Callable[[], httpx.Response], expected: int) -> httpx.Response | None:
        self.attempted.add(pending.identity_id)
        self.pending = pending
        try:
            response = request()
        except httpx.TransportError:
            return None  # no answer: stays pending
        self.pending = None
        if response.status_code != expected:
            self.unexpected.append(f"{pending.kind} {pending.identity_id}: {response.status_code} {response.text}")
            return None
        return response

    def _enroll(self, client: httpx.Client, identity_id: str, seeds: list[int]) -> bool:
        files = [("images", image_file(person_image(s))) for s in seeds]
        pending = Pending("enroll", identity_id, len(seeds))
        response = self._send(
            pending, lambda: client.post("/v1/identities", files=files, data={"identity_id": identity_id}), 201
        )
        if response is None:
            return False
        image_ids = response.json()["image_ids"]
        self.acked[identity_id] = image_ids
        self.seeds.update(zip(image_ids, seeds, strict=True))
        return True

    def _add(self, client: httpx.Client, identity_id: str, seed: int) -> bool:
        files = [("images", image_file(person_image(seed)))]
        pending = Pending("add", identity_id, 1)
        response = self._send(pending, lambda: client.post(f"/v1/identities/{identity_id}/images", files=files), 201)
        if response is None:
            return False
        (image_id,) = response.json()["image_ids"]
        self.acked[identity_id].append(image_id)
        self.seeds[image_id] = seed
        return True

    def _delete(self, client: httpx.Client, identity_id: str) -> bool:
        pending = Pending("delete", identity_id, 0)
        if self._send(pending, lambda: client.delete(f"/v1/identities/{identity_id}"), 204) is None:
            return False
        self.deleted.add(identity_id)
        del self.acked[identity_id]
        return True


def write_then_kill(process: subprocess.Popen[bytes], url: str) -> list[Writer]:
    """WRITERS threads write for WRITE_SECONDS (and until each has an acknowledged enroll, however slow the
    machine), then the server gets SIGKILL while they are still writing."""
    writers = [Writer(index, url) for index in range(WRITERS)]
    stop = threading.Event()
    threads = [threading.Thread(target=w.run, args=(stop,), daemon=True) for w in writers]
    for thread in threads:
        thread.start()
    started = time.monotonic()
    while time.monotonic() - started < WRITE_SECONDS or not all(w.acked or w.deleted for w in writers):
        assert all(thread.is_alive() for thread in threads), [w.unexpected for w in writers]
        assert time.monotonic() - started < 30, "no acknowledged enroll from every writer after 30 s"
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    assert process.wait(timeout=30) == -signal.SIGKILL
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
        assert not thread.is_alive(), "a writer hung after the server died"
    return writers


def all_identities(client: httpx.Client) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 7}  # several pages: paging must also be consistent
    while True:
        page = client.get("/v1/identities", params=params)
        assert page.status_code == 200, page.text
        items += page.json()["items"]
        if page.json()["next_cursor"] is None:
            return items
        params["cursor"] = page.json()["next_cursor"]


def check_identity(writer: Writer, identity_id: str, stored: list[str] | None) -> None:
    """`stored`: the image ids the restarted server lists for the identity, None when it does not exist."""
    pending = writer.pending if writer.pending and writer.pending.identity_id == identity_id else None
    acked = writer.acked.get(identity_id)
    where = f"{identity_id} (acknowledged {acked}, pending {pending}): stored {stored}"
    if pending is None:
        assert stored == acked, where  # None for a deleted identity
    elif pending.kind == "enroll":
        assert stored is None or len(set(stored)) == len(stored) == pending.images, where
    elif pending.kind == "add":
        assert acked is not None and stored is not None and stored[: len(acked)] == acked, where
        assert len(stored) - len(acked) in (0, pending.images), where
    else:
        assert stored is None or stored == acked, where


def check_found(client: httpx.Client, identity_id: str, image_id: str, image: bytes) -> None:
    """Searching with an enrolled image finds that very image of its identity (groups mode ranks images)."""
    found = client.post("/v1/search", files={"image": image_file(image)}, data={"top_k": "3"})
    assert found.status_code == 200 and found.json()["matches"], found.text
    best = found.json()["matches"][0]
    assert (best["identity_id"], best["image_id"]) == (identity_id, image_id), (identity_id, image_id, best)
    assert best["score"] > 0.999, best


def check_through_the_api(url: str, writers: list[Writer]) -> dict[str, list[str]]:
    """Acknowledged writes are there, listings agree with GETs and counts, every acknowledged image is found."""
    with httpx.Client(base_url=url, timeout=30) as client:
        listed = {item["identity_id"]: item for item in all_identities(client)}
        assert len(listed) == len(all_identities(client)), "an identity listed twice"
        for writer in writers:
            for identity_id in writer.attempted:
                item = listed.get(identity_id)
                check_identity(writer, identity_id, None if item is None else item["image_ids"])
        attempted = set().union(*(w.attempted for w in writers))
        assert set(listed) <= attempted, f"identities nobody enrolled: {set(listed) - attempted}"
        for identity_id, item in listed.items():
            got = client.get(f"/v1/identities/{identity_id}")
            assert got.status_code == 200 and got.json() == item, (item, got.text)
        counts = client.get("/readyz").json()["gallery"]
        images = sum(len(item["image_ids"]) for item in listed.values())
        assert counts == {"identities": len(listed), "images": images}, "a stray or a lost image point"
        for writer in writers:
            for identity_id, image_ids in writer.acked.items():
                for image_id in image_ids if identity_id in listed else []:  # a cut delete may have happened
                    check_found(client, identity_id, image_id, person_image(writer.seeds[image_id]))
    return {identity_id: item["image_ids"] for identity_id, item in listed.items()}


def _scroll(store: EdgeStore, kind: Kind) -> dict[str, StoredPoint]:
    return {point.id: point for point in scroll_all(store, kind, vectors=True)}


def _unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)


def check_the_folder(folder: Path, listed: dict[str, list[str]]) -> None:
    """Read the stopped server's folder directly: records and image points agree, centroids follow their images."""
    store = EdgeStore(edge_folder(folder, COLLECTION))
    try:
        records = _scroll(store, "identities")
        points = _scroll(store, "images")
    finally:
        store.close()
    by_identity = {record.payload["identity_id"]: record for record in records.values()}
    assert {k: r.payload["image_ids"] for k, r in by_identity.items()} == listed
    owners = {point_id: point.payload["identity_id"] for point_id, point in points.items()}
    assert sorted(owners) == sorted(i for ids in listed.values() for i in ids), "stray or missing image points"
    for identity_id, record in by_identity.items():
        image_ids = record.payload["image_ids"]
        assert all(owners[i] == identity_id for i in image_ids), identity_id
        centroid = _unit(_unit(np.asarray([points[i].vector for i in image_ids], dtype=np.float64)).mean(axis=0))
        np.testing.assert_allclose(_unit(np.asarray(record.vector)), centroid, atol=1e-5, err_msg=identity_id)


def test_kill_9_during_concurrent_writes_loses_no_acknowledged_write(model_path: Path, tmp_path: Path) -> None:
    folder, log = tmp_path / "qdrant", tmp_path / "server.log"
    options = ("--model-path", str(model_path), "--qdrant-path", str(folder), "--api-keys", KEY,
               "--intra-op-threads", "1")  # fmt: skip
    with killable_server(*options, log=log) as (process, url):
        writers = write_then_kill(process, url)
    assert not [u for w in writers for u in w.unexpected], [u for w in writers for u in w.unexpected]
    # groups search ranks images: the search check then proves each acknowledged image's own point is there
    with serving(*options, "--search-mode", "groups", log=log) as url:
        listed = check_through_the_api(url, writers)
    check_the_folder(folder, listed)
    acked = sum(len(w.acked) + len(w.deleted) for w in writers)
    pending = [w.pending for w in writers if w.pending]
    print(f"{acked} enrolls acknowledged, {len(listed)} identities after restart, writes cut: {pending}")
