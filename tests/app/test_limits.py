"""What a hostile or slow client can cost the service: the key is checked before the body is read, the body is
capped and timed out, connections are limited, and decoding shares one pixel budget.

The connection-level checks run against a real `personid serve` (uvicorn) on 127.0.0.1 with raw sockets, since a
test client never stalls, never holds a connection open and never stops half-way through a body.
"""

from __future__ import annotations

import io
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from pydantic import ValidationError

from app.main import create_app
from app.preprocess import (
    DRAFT_MARGIN,
    ImageLimits,
    PixelBudget,
    open_image,
    preprocess,
    read_header,
    reduce_jpeg,
)
from app.settings import Settings
from personid.imaging import to_array, to_rgb
from personid.manifest import InputSpec
from tests.app.conftest import ROOT, assert_problem, image_file, person_image, serving

KEY = "k-limits"
MAX_CONNECTIONS = 8
BODY_TIMEOUT_S = 1.0


@pytest.fixture(autouse=True)
def pillow_guard(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pillow's bomb guard is process-wide and `create_app` sets it: give it back as found after each test."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", LIMITS.max_pixels)


@pytest.fixture(scope="module")
def server(model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """One real server for the module: keys set, a 1 s body timeout, a few connections."""
    folder = tmp_path_factory.mktemp("limits")
    options = (
        "--model-path", str(model_path), "--qdrant-path", str(folder / "qdrant"), "--intra-op-threads", "1",
        "--api-keys", KEY, "--body-timeout-s", str(BODY_TIMEOUT_S), "--max-connections", str(MAX_CONNECTIONS),
    )  # fmt: skip
    with serving(*options, log=folder / "server.log") as url:
        yield "127.0.0.1", int(url.rsplit(":", 1)[1])


def exchange(address: tuple[str, int], data: bytes, wait: float, close_wait: float = 0) -> tuple[bytes, float, bool]:
    """Send `data` on a fresh connection and read one response for up to `wait` seconds: (the response, seconds
    until its first byte, whether the server closed the connection within `close_wait` seconds after it)."""
    with socket.create_connection(address, timeout=wait) as sock:
        sock.sendall(data)
        started, first, received = time.monotonic(), float("inf"), b""
        try:
            while not complete(received):
                chunk = sock.recv(65536)
                if not chunk:
                    return received, first, True
                first = min(first, time.monotonic() - started)
                received += chunk
            if close_wait <= 0:
                return received, first, False
            sock.settimeout(close_wait)
            return received, first, sock.recv(1) == b""
        except TimeoutError:
            return received, first, False


def complete(response: bytes) -> bool:
    head, separator, body = response.partition(b"\r\n\r\n")
    if not separator:
        return False
    lengths = [line.split(b":", 1)[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")]
    return len(body) >= int(lengths[0]) if lengths else False


def status_and_body(response: bytes) -> tuple[int, dict[str, str], str]:
    head, _, body = response.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value for name, value in (line.split(": ", 1) for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body.decode()


def request_head(method: str, path: str, length: int, extra: str = "") -> bytes:
    return (
        f"{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Type: multipart/form-data; boundary=XyZ\r\n"
        f"Content-Length: {length}\r\n{extra}\r\n"
    ).encode()


def test_unauthenticated_upload_is_refused_before_its_body_is_sent(server: tuple[str, int]) -> None:
    """The headers of a 9 MB enroll, no body: 401 at once (the key was checked before reading the body)."""
    for method, path in (("POST", "/v1/identities"), ("POST", "/v1/identities/x/images")):
        response, first_byte_s, _ = exchange(server, request_head(method, path, 9_000_000), wait=4)
        assert response, f"{path}: no answer while the body is unsent: the body is read before the key is checked"
        status, headers, body = status_and_body(response)
        assert status == 401 and first_byte_s < 2, (status, first_byte_s)
        assert headers["content-type"] == "application/problem+json" and "X-API-Key" in body
        assert headers["www-authenticate"] == 'APIKey header="X-API-Key"'


def test_stalled_body_gets_408_and_the_connection_closes(server: tuple[str, int]) -> None:
    partial = b'--XyZ\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n'
    head = request_head("POST", "/v1/embeddings", 10_000)
    response, first_byte_s, closed = exchange(server, head + partial, wait=10, close_wait=3)
    assert response, "a body that stalls is waited for for ever"
    status, headers, body = status_and_body(response)
    assert status == 408 and headers["content-type"] == "application/problem+json", response
    assert "urn:personid:problem:body-timeout" in body
    assert BODY_TIMEOUT_S / 2 < first_byte_s < BODY_TIMEOUT_S + 3  # timers start a little apart
    assert closed, "the connection of a stalled body must be closed"


def test_connections_over_the_limit_get_503(server: tuple[str, int]) -> None:
    """`--max-connections` reaches uvicorn: with the limit held by idle connections, a new request gets 503."""
    probe = b"GET /healthz HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    idle = [socket.create_connection(server) for _ in range(MAX_CONNECTIONS)]
    try:
        time.sleep(0.3)  # let the server accept them
        status, _, _ = status_and_body(exchange(server, probe, wait=5)[0])
        assert status == 503
    finally:
        for sock in idle:
            sock.close()
    time.sleep(0.3)
    assert status_and_body(exchange(server, probe, wait=5)[0])[0] == 200


def asgi_call(client: TestClient, method: str, path: str, headers: list[tuple[bytes, bytes]]) -> tuple[int, int]:
    """Call the app with a body that is never needed; returns (status, how many times the body was asked for)."""
    asked = 0
    messages: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal asked
        asked += 1
        return {"type": "http.request", "body": b"\0" * 65536, "more_body": True}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
        "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"",
        "headers": [(b"host", b"test"), (b"content-type", b"multipart/form-data; boundary=XyZ"), *headers],
        "client": ("127.0.0.1", 1), "server": ("test", 80),
    }  # fmt: skip
    client.portal.call(client.app, scope, receive, send)
    return next(m["status"] for m in messages if m["type"] == "http.response.start"), asked


def test_the_key_is_checked_without_reading_the_body(make_settings: Callable[..., Settings]) -> None:
    with TestClient(create_app(make_settings(api_keys=KEY, protect_reads=True))) as client:
        for method, path in (("POST", "/v1/identities"), ("DELETE", "/v1/identities/x"), ("POST", "/v1/search")):
            assert asgi_call(client, method, path, []) == (401, 0), path
            assert asgi_call(client, method, path, [(b"x-api-key", b"wrong")]) == (401, 0), path
    with TestClient(create_app(make_settings(api_keys=KEY))) as client:
        status, asked = asgi_call(client, "POST", "/v1/search", [])
        assert status != 401 and asked > 0, "reads stay open without protect_reads"


def test_request_body_is_capped_by_max_request_bytes(make_settings: Callable[..., Settings]) -> None:
    """`max_request_bytes` below the per-endpoint limit (4 images of 256 KiB) wins."""
    with TestClient(create_app(make_settings(max_request_bytes=100_000))) as client:
        big = person_image(1) + b"\0" * 150_000
        for path, field in (("/v1/identities", "images"), ("/v1/embeddings", "image")):
            body = assert_problem(client.post(path, files={field: image_file(big)}), 413)
            assert body["type"] == "urn:personid:problem:body-too-large"
            assert "100000 bytes" in body["detail"]
        assert client.post("/v1/embeddings", files={"image": image_file(person_image(1))}).status_code == 200


def test_decode_budget_must_hold_the_largest_image(make_settings: Callable[..., Settings]) -> None:
    with pytest.raises(ValidationError, match="max_image_pixels"):
        make_settings(max_image_pixels=1_000_000, decode_pixel_budget=999_999)


def test_pixel_budget_makes_decodes_wait_in_turn() -> None:
    budget = PixelBudget(10)
    inside, most, order = 0, 0, []
    lock = threading.Lock()

    def decode(name: str, pixels: int) -> None:
        nonlocal inside, most
        with budget.reserve(pixels):
            with lock:
                inside += pixels
                most = max(most, inside)
                order.append(name)
            time.sleep(0.05)
            with lock:
                inside -= pixels

    threads = [threading.Thread(target=decode, args=(f"d{i}", 6)) for i in range(6)]
    threads.append(threading.Thread(target=decode, args=("huge", 50)))  # over the whole budget: gets all of it
    for thread in threads:
        thread.start()
        time.sleep(0.005)
    for thread in threads:
        thread.join(timeout=10)
    assert sorted(order) == sorted(["huge", *(f"d{i}" for i in range(6))]), "every decode ran: they wait, not fail"
    assert most <= 50 and budget.peak <= 10 and budget.in_use == 0
    assert order.index("huge") == 6, "first come, first served"


def test_concurrent_requests_share_the_decode_budget(make_settings: Callable[..., Settings]) -> None:
    """Budget = the largest image: eight concurrent requests of that size decode one at a time, and all succeed."""
    pixels = 1000 * 1000
    settings = make_settings(max_image_pixels=pixels, decode_pixel_budget=pixels, max_upload_bytes=4_000_000)
    data = encode(noise_image(1000, 1000), "PNG")
    with TestClient(create_app(settings)) as client:
        budget = client.app.state.decode_budget
        statuses: list[int] = []

        def post() -> None:
            statuses.append(client.post("/v1/embeddings", files={"image": image_file(data)}).status_code)

        threads = [threading.Thread(target=post) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert statuses == [200] * 8
        assert budget.peak == pixels and budget.in_use == 0


FREED_BUFFERS = """
import threading
from PIL import Image
from app.preprocess import configure_decoding

def resident_mb():
    return next(int(line.split()[1]) // 1024 for line in open("/proc/self/status") if line.startswith("VmRSS"))

configure_decoding(25_000_000, 50_000_000)
two_at_a_time = threading.Semaphore(2)

def decode(extra):
    with two_at_a_time:
        Image.new("1", (2000 + extra, 2000)).convert("RGB").resize((128, 256), Image.Resampling.BILINEAR)

before = resident_mb()
threads = [threading.Thread(target=decode, args=(i,)) for i in range(24)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(resident_mb() - before)
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads resident memory from /proc")
def test_freed_image_buffers_go_back_to_the_system() -> None:
    """24 decodes of 4 megapixels (12 MB as RGB) in threads, two at a time: once they are done, the process holds
    no more than it did (glibc's own threshold left 60-200 MB of such buffers in per-thread arenas)."""
    result = subprocess.run(
        [sys.executable, "-c", FREED_BUFFERS], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True
    )
    assert int(result.stdout) < 32, f"{result.stdout.strip()} MB still resident after the decodes"


def noise_image(width: int, height: int, seed: int = 3) -> Image.Image:
    """Smooth structure plus noise: what a photo has at every scale, so decode sizes show in the result."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (height // 50 + 1, width // 50 + 1, 3), dtype=np.uint8)
    image = Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC)
    noisy = np.asarray(image, dtype=np.int16) + rng.integers(-20, 20, (height, width, 3), dtype=np.int16)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def encode(image: Image.Image, fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


SPEC = InputSpec(name="images", height=64, width=32)
LIMITS = ImageLimits(max_pixels=25_000_000, min_side=16)


def rotated(image: Image.Image) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated by 90 degrees
    return encode(image, "JPEG", exif=exif, quality=92)


@pytest.mark.parametrize(
    "data",
    # portrait; and wide once upright but stored tall, where reducing by the stored sides would keep too few rows
    [encode(noise_image(1200, 2400), "JPEG", quality=92), rotated(noise_image(600, 4800))],
    ids=["portrait", "EXIF-rotated wide"],
)
def test_large_jpeg_is_decoded_at_reduced_size_with_twice_the_input(data: bytes) -> None:
    image = read_header(data, LIMITS)
    full_pixels = image.width * image.height
    reduce_jpeg(image, SPEC)
    upright = to_rgb(open_image_loaded(image)).size
    assert upright[0] * upright[1] <= full_pixels / 4, f"decoded at {upright}: not reduced"
    assert upright[0] >= DRAFT_MARGIN * SPEC.width and upright[1] >= DRAFT_MARGIN * SPEC.height, upright
    reduced, full = preprocess(data, SPEC, LIMITS), preprocess_in_full(data)
    cosine = float(np.dot(reduced.ravel(), full.ravel()) / np.linalg.norm(reduced) / np.linalg.norm(full))
    assert cosine > 0.99, cosine


def open_image_loaded(image: Image.Image) -> Image.Image:
    image.load()
    return image


def preprocess_in_full(data: bytes) -> np.ndarray:
    return to_array(to_rgb(open_image(data, LIMITS)), SPEC)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_images_near_the_input_size_are_decoded_in_full(fmt: str) -> None:
    """Under 2 x DRAFT_MARGIN x the input in a side (and every non-JPEG) nothing changes: bit-for-bit training's
    preprocessing."""
    size = (2 * DRAFT_MARGIN * SPEC.width - 1, 2 * DRAFT_MARGIN * SPEC.height + 50)
    data = encode(noise_image(*size), fmt)
    image = read_header(data, LIMITS)
    reduce_jpeg(image, SPEC)
    image.load()
    assert image.size == size
    assert np.array_equal(preprocess(data, SPEC, LIMITS), preprocess_in_full(data))
