"""`personid serve --workers N`: refused with the embedded gallery (one writer per folder), several real worker
processes with a Qdrant server URL. No Qdrant server runs here: the workers start against an unreachable one
(the service starts and says so on /readyz), which is enough for the model endpoints they all serve."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from app.cli import main as serve_main
from tests.app.conftest import ROOT, free_port, image_file, person_image


def test_several_workers_on_the_embedded_gallery_are_refused(
    model_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    options = ["--workers", "2", "--model-path", str(model_path), "--qdrant-path", str(tmp_path / "q")]
    assert serve_main(options) == 2
    error = capsys.readouterr().err
    assert "--workers 2" in error and "--qdrant-url" in error and "one writer per folder" in error
    assert not (tmp_path / "q").exists(), "refused before anything was opened"


def _children(pid: int) -> set[int]:
    """Processes whose parent is `pid` (Linux /proc)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.add(int(entry.name))
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="counts worker processes through Linux /proc")
def test_several_workers_start_and_serve_with_a_qdrant_server_url(model_path: Path, tmp_path: Path) -> None:
    port, unreachable = free_port(), free_port()
    command = [sys.executable, "-m", "personid.cli", "serve", "--port", str(port), "--workers", "2"]
    command += ["--model-path", str(model_path), "--qdrant-url", f"http://127.0.0.1:{unreachable}"]
    command += ["--intra-op-threads", "1"]
    env = {key: value for key, value in os.environ.items() if not key.startswith("PERSONID_")}
    log = tmp_path / "serve.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, log.read_text()
            try:
                answered = httpx.post(f"{url}/v1/embeddings", files={"image": image_file(person_image(1))}, timeout=5)
                if answered.status_code == 200 and len(_workers(process.pid)) == 2:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"two workers never served:\n{log.read_text()}"
            time.sleep(0.3)
        workers = _workers(process.pid)
        for _ in range(20):
            response = httpx.post(f"{url}/v1/embeddings", files={"image": image_file(person_image(2))}, timeout=30)
            assert response.status_code == 200, response.text
        ready = httpx.get(f"{url}/readyz", timeout=30)
        assert ready.status_code == 503 and "gallery" in ready.json()["checks"], "the unreachable server is reported"
        assert _workers(process.pid) == workers, "no worker died serving"
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    assert "Started parent process" in log.read_text()


def _workers(parent: int) -> set[int]:
    """uvicorn's worker processes: the children of its parent that run python (not the resource tracker)."""
    return {pid for pid in _children(parent) if "multiprocessing.resource_tracker" not in _cmdline(pid)}


def _cmdline(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""
