"""Fixtures and helpers of the service tests: a started app behind a test client, synthetic person images,
problem+json checks, and `personid serve` in a real subprocess.

The model and its settings (`model_path`, `make_settings`) come from `tests/standin.py` through `tests/conftest.py`.
"""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.main import create_app
from app.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def client(make_settings: Callable[..., Settings]) -> Iterator[TestClient]:
    """A started app (lifespan run: model loaded, gallery open) behind a real ASGI HTTP client."""
    with TestClient(create_app(make_settings()), raise_server_exceptions=False) as test_client:
        yield test_client


def person_image(seed: int, size: tuple[int, int] = (48, 96), fmt: str = "PNG", mode: str = "RGB") -> bytes:
    """A distinct synthetic 'person' (blocks of colour per seed) encoded as `fmt`."""
    rng = np.random.default_rng(seed)
    width, height = size
    pixels = np.zeros((height, width, 3), np.uint8)
    top, bottom = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    pixels[: height // 2] = top
    pixels[height // 2 :] = bottom
    pixels = np.clip(pixels.astype(int) + rng.integers(-40, 40, pixels.shape), 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def image_file(data: bytes, name: str = "person.png", content_type: str = "image/png") -> tuple[str, bytes, str]:
    return (name, data, content_type)


def assert_problem(response: Any, status: int, field: str | None = None) -> dict[str, Any]:
    """The response is RFC 9457 problem+json with `status`; returns the body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    body = response.json()
    assert body["status"] == status
    assert {"type", "title", "detail"} <= set(body)
    assert isinstance(body["detail"], str) and body["detail"]
    if field is not None:
        assert any(error["field"] == field for error in body["errors"]), body
    return body


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(*options: str, log: Path, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """`personid serve` in a subprocess on a free local port, without the caller's PERSONID_* variables (`env` adds
    some back); returns the process and its base URL once /readyz answers 200. Its output is appended to `log`."""
    port = free_port()
    inherited = {key: value for key, value in os.environ.items() if not key.startswith("PERSONID_")}
    command = [sys.executable, "-m", "personid.cli", "serve", "--host", "127.0.0.1", "--port", str(port), *options]
    with log.open("a") as sink:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env={**inherited, "PYTHONUNBUFFERED": "1", **(env or {})},
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        if process.poll() is not None:
            raise AssertionError(f"server exited with {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            process.wait()
            raise AssertionError(f"server not ready after 90 s:\n{log.read_text()}")
        time.sleep(0.2)


def stop_server(process: subprocess.Popen[bytes], log: Path) -> None:
    """SIGTERM, as a service manager stops it; a server that ignores it for 30 s is killed and the test fails."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise AssertionError(f"server ignored SIGTERM for 30 s:\n{log.read_text()}") from None


@contextmanager
def serving(*options: str, log: Path) -> Iterator[str]:
    """`start_server`, yielding the base URL; then stops it with SIGTERM and checks it shut down cleanly. A
    restart appends to the same `log`, keeping the first run's lines."""
    start = log.stat().st_size if log.exists() else 0
    process, url = start_server(*options, log=log)
    try:
        yield url
    finally:
        stop_server(process, log)
    # uvicorn shuts down, then re-raises the signal it caught: -SIGTERM is its normal exit code
    this_run = log.read_text()[start:]
    assert process.returncode in (0, -signal.SIGTERM), f"server exited with {process.returncode}:\n{this_run}"
    assert "Application shutdown complete" in this_run, f"no clean shutdown on SIGTERM:\n{this_run}"
