"""A bounded HTTP load against a running server, driven by `hey` (a Go load generator, Debian package `hey`):
client-side latency beside the server's own /metrics figures.

`hey` rather than a Python client: a Python client on the same few cores spends about as much CPU per request as
the server, so it measured itself. Each run sends one prepared body (`multipart_body`) over and over and writes a
CSV line per request, from which the percentiles and requests/s are computed here.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.measure import BenchError, percentiles_ms

REQUEST_TIMEOUT_S = 60
BOUNDARY = "personid-bench-boundary-7Gq2"
INSTALL_HINT = "install it (Debian/Ubuntu: `apt-get install hey`; or `go install github.com/rakyll/hey@latest`)"


def find_hey() -> str:
    """The `hey` executable on PATH, or a BenchError that says how to get it."""
    path = shutil.which("hey")
    if path is None:
        raise BenchError(f"the service benchmark drives its load with `hey`, which is not on PATH: {INSTALL_HINT}")
    return path


def multipart_body(files: Sequence[tuple[str, bytes]], fields: dict[str, str] | None = None) -> tuple[bytes, str]:
    """A multipart/form-data body of JPEG parts `(field, bytes)` and text fields, and its Content-Type."""
    chunks: list[bytes] = []
    for name, value in (fields or {}).items():
        chunks.append(f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for index, (name, data) in enumerate(files):
        head = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"; filename="{index}.jpg"\r\n'
        chunks.append(head.encode() + b"Content-Type: image/jpeg\r\n\r\n" + data + b"\r\n")
    chunks.append(f"--{BOUNDARY}--\r\n".encode())
    return b"".join(chunks), f"multipart/form-data; boundary={BOUNDARY}"


def scrape(url: str) -> dict[str, float]:
    """The server's own counters (Prometheus text at /metrics): batch sizes, model-call and request durations;
    empty for a server without /metrics (the bare upload endpoint)."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    response = httpx.get(f"{url}/metrics", timeout=REQUEST_TIMEOUT_S)
    if response.status_code != 200:
        return {}
    figures: dict[str, float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name.endswith(("_sum", "_count")):
                key = sample.name + (f"|{sample.labels['route']}" if "route" in sample.labels else "")
                figures[key] = figures.get(key, 0.0) + float(sample.value)
    return figures


def _server_side(before: dict[str, float], after: dict[str, float], route: str) -> dict[str, float | None]:
    """Mean batch size, model-call ms and server-side request ms over a run, from /metrics deltas."""

    def delta(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    calls = delta("personid_inference_batch_size_count")
    handled = delta(f"personid_http_request_duration_seconds_count|{route}")
    return {
        "mean_batch": delta("personid_inference_batch_size_sum") / calls if calls else None,
        "model_call_ms": 1000 * delta("personid_inference_duration_seconds_sum") / calls if calls else None,
        "server_ms": 1000 * delta(f"personid_http_request_duration_seconds_sum|{route}") / handled if handled else None,
    }


def cpu_seconds(pid: int | None) -> float | None:
    """CPU time (user + system, all threads) the process `pid` has used so far, from Linux /proc; None elsewhere.
    On a machine shared with other jobs, CPU per request is the figure their load disturbs least."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def hey(
    url: str, requests: int, concurrency: int, body: bytes | None, content_type: str, max_seconds: float
) -> tuple[list[float], list[str], float]:
    """Run `hey` once: (seconds of each 2xx request, what went wrong with the others, wall seconds of the run)."""
    sent = -(-max(requests, concurrency) // concurrency) * concurrency  # hey sends n // c per connection
    command = [find_hey(), "-n", str(sent), "-c", str(concurrency), "-t", str(REQUEST_TIMEOUT_S)]
    command += ["-o", "csv", "-disable-compression"]
    with tempfile.NamedTemporaryFile(prefix="personid-bench-", suffix=".body") as body_file:
        if body is not None:
            body_file.write(body)
            body_file.flush()
            command += ["-m", "POST", "-T", content_type, "-D", body_file.name]
        try:
            done = subprocess.run(
                [*command, url], capture_output=True, text=True, timeout=max_seconds + REQUEST_TIMEOUT_S, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise BenchError(f"hey did not finish {requests} requests to {url} in {max_seconds:.0f} s") from exc
    if done.returncode != 0:
        raise BenchError(f"hey failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    latencies, errors, spans = [], [], []
    for row in csv.DictReader(io.StringIO(done.stdout)):
        seconds, offset, status = float(row["response-time"]), float(row["offset"]), row["status-code"]
        spans.append((offset, offset + seconds))
        if status.startswith("2"):
            latencies.append(seconds)
        else:
            errors.append(f"HTTP {status}")
    if not spans:
        raise BenchError(f"hey answered no requests to {url}: {done.stderr.strip()[-500:]}")
    errors += ["no answer (connection error or timeout)"] * (sent - len(spans))
    wall = max(end for _, end in spans) - min(start for start, _ in spans)
    return latencies, errors, wall


def load_test(
    url: str,
    endpoint: str,
    body: bytes | None,
    content_type: str,
    requests: int,
    concurrency: int,
    max_seconds: float,
    images: int = 1,
    pid: int | None = None,
) -> dict[str, Any]:
    """`requests` requests (POSTs carry `body`, `images` crops) from `concurrency` connections.

    `concurrency` untimed requests go first: they open the connections and warm the server's caches. Returns
    requests/s, images/s, client-side latency percentiles and the server's own figures for the same span (with
    the server's process id `pid`: its CPU milliseconds per image).
    """
    hey(url + endpoint, concurrency, concurrency, body, content_type, max_seconds)
    before, cpu_before = scrape(url), cpu_seconds(pid)
    latencies, errors, seconds = hey(url + endpoint, requests, concurrency, body, content_type, max_seconds)
    after, cpu_after = scrape(url), cpu_seconds(pid)
    if not latencies:
        raise BenchError(f"every request to {endpoint} failed; first error: {errors[0] if errors else 'none sent'}")
    rps = len(latencies) / seconds
    return {
        "endpoint": endpoint,
        "concurrency": concurrency,
        "images_per_request": images,
        "requests": len(latencies) + len(errors),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "seconds": seconds,
        "rps": rps,
        "images_per_s": rps * images,
        "server_cpu_ms_per_image": 1000 * (cpu_after - cpu_before) / (len(latencies) * images)
        if cpu_after is not None and cpu_before is not None
        else None,
        **percentiles_ms(latencies),
        **_server_side(before, after, endpoint),
    }
