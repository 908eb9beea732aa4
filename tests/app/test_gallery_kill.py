"""SIGKILL of a real process building the embedded gallery's index: the folder opens again with every point,
the optimizer's leftovers are removed, the sweep runs, and the index can be built afterwards.

(A SIGKILL during concurrent enrolls, adds and deletes through the HTTP service is `test_crash.py`.)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from app.gallery import Gallery
from app.gallery_edge import IN_USE, edge_folder
from app.settings import Settings
from bench.gallery import BENCH_MODEL_ID, fill_gallery

DIM = 512
POINTS = 8_000  # past the engine's indexing threshold at this dimension: optimize builds an HNSW index


def test_kill_9_during_the_index_build_loses_nothing(tmp_path: Path) -> None:
    settings = Settings(qdrant_path=tmp_path, collection="persons")
    gallery = Gallery.open(settings, DIM, BENCH_MODEL_ID)
    try:
        fill_gallery(gallery, POINTS, DIM, seed=1)
        before = gallery.count()
        probe, _ = gallery.store.scroll("images", 5)
    finally:
        gallery.close()
    shard = edge_folder(tmp_path, "persons") / "images"
    command = [sys.executable, "-m", "personid.cli", "gallery", "optimize", "--qdrant-path", str(tmp_path)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=Path.cwd())
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline:
        if any((shard / "temp_segments").glob("*")):  # the optimizer is writing its new segment
            break
        time.sleep(0.05)
    killed_mid_build = process.poll() is None
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    print(f"killed during the build: {killed_mid_build}; temp_segments: {list((shard / 'temp_segments').glob('*'))}")

    assert (edge_folder(tmp_path, "persons") / IN_USE).exists(), "a killed process leaves its marker"
    reopened = Gallery.open(settings, DIM, BENCH_MODEL_ID)
    try:
        assert not any((shard / "temp_segments").glob("*")), "the optimizer's leftovers are removed at open"
        assert reopened.count() == before
        listed, _ = reopened.list_identities(10)
        assert len(listed) == 10
        for point in reopened.store.retrieve("images", [p.id for p in probe], vectors=True):
            owner = point.payload["identity_id"]
            assert reopened.search(np.asarray(point.vector), top_k=1)[0].identity_id == owner
        assert reopened.store.maintain() in {True, False}
        assert reopened.count() == before
    finally:
        reopened.close()
    assert not (edge_folder(tmp_path, "persons") / IN_USE).exists()


def test_a_crash_stays_marked_until_a_gallery_open_sweeps_it(tmp_path: Path) -> None:
    """Opening the engine without the gallery (as `personid gallery info|backup` does) must not clear the crash
    marker: only a Gallery open that swept lets a clean close drop it."""
    from app.gallery import open_store

    settings = Settings(qdrant_path=tmp_path, collection="persons")
    Gallery.open(settings, DIM, BENCH_MODEL_ID).close()
    marker = edge_folder(tmp_path, "persons") / IN_USE
    assert not marker.exists()
    marker.touch()  # what a killed process leaves behind
    store = open_store(settings)
    assert store.crashed
    store.close()
    assert marker.exists()
    gallery = Gallery.open(settings, DIM, BENCH_MODEL_ID)
    gallery.close()
    assert not marker.exists()
