"""A real `personid serve` in a subprocess: the service is measured as deployed, uvicorn and HTTP included."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from fastapi import FastAPI, UploadFile

from bench.measure import BenchError

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
SERVER_START_TIMEOUT_S = 180.0


def free_port() -> int:
    """A port nobody listens on now, so side-by-side servers never collide."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, lines: int = 30) -> str:
    text = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


def serve_command(onnx_path: Path, qdrant_path: Path, port: int, threads: int, batching: bool) -> list[str]:
    """The `personid serve` command line: every setting given as an option, none left to the environment."""
    return [
        sys.executable,
        "-m",
        "personid.cli",
        "serve",
        "--host",
        HOST,
        "--port",
        str(port),
        "--model-path",
        str(onnx_path.resolve()),
        "--qdrant-path",
        str(qdrant_path),
        "--intra-op-threads",
        str(threads),
        "--log-level",
        "warning",
        "--batching" if batching else "--no-batching",
    ]


def wait_ready(process: subprocess.Popen, url: str, log_path: Path) -> None:
    """Poll /readyz until 200; the server's log tail in the error when it exits or never gets ready."""
    import httpx

    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while True:
        if process.poll() is not None:
            raise BenchError(f"the server exited with code {process.returncode}:\n{_tail(log_path)}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/readyz", timeout=2.0).status_code == 200:
                return
        if time.monotonic() > deadline:
            raise BenchError(f"the server was not ready after {SERVER_START_TIMEOUT_S:.0f} s:\n{_tail(log_path)}")
        time.sleep(0.2)


@contextlib.contextmanager
def served(
    command: list[str], url: str, log_path: Path, cwd: Path = ROOT, env: Mapping[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """Run a `personid serve` command without the caller's PERSONID_* variables (`env` adds some back): yields the
    process once /readyz at `url` answers 200, and stops it afterwards."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith("PERSONID_")}
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            command, cwd=cwd, env=environment | dict(env or {}), stdout=log_file, stderr=subprocess.STDOUT
        )
    try:
        wait_ready(process, url, log_path)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def running_server(onnx_path: Path, folder: Path, threads: int, batching: bool) -> Iterator[tuple[str, int]]:
    """A real `personid serve` in a subprocess on a free port (embedded Qdrant in `folder`); yields its URL and
    process id.

    The server's environment has no PERSONID_* variables: only the options given here configure it.
    """
    port = free_port()
    tag = "on" if batching else "off"
    command = serve_command(onnx_path, folder / f"qdrant-{tag}", port, threads, batching)
    url = f"http://{HOST}:{port}"
    with served(command, url, folder / f"server-batching-{tag}.log") as process:
        yield url, process.pid


def bare_upload_app() -> FastAPI:
    """The floor of the service's HTTP cost: a FastAPI endpoint that only reads one multipart upload (same
    uvicorn, same parser), with a /readyz for `served`. Run by `running_bare_upload` as a uvicorn factory."""
    app = FastAPI()

    @app.post("/upload")
    async def upload(image: UploadFile) -> dict[str, int]:
        return {"bytes": len(await image.read())}

    @app.get("/readyz")
    async def ready() -> dict[str, str]:
        return {"status": "ready"}

    return app


@contextlib.contextmanager
def running_bare_upload(folder: Path) -> Iterator[tuple[str, int]]:
    """`bare_upload_app` under uvicorn in a subprocess on a free port, as `personid serve` runs; yields its URL and
    process id."""
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "bench.server:bare_upload_app", "--factory"]
    command += ["--host", HOST, "--port", str(port), "--log-level", "warning"]
    url = f"http://{HOST}:{port}"
    with served(command, url, folder / "server-bare-upload.log") as process:
        yield url, process.pid
