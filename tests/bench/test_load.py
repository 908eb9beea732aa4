"""`bench.load` drives a real uvicorn server with the real `hey`, and `bench.report` keeps the sections a rerun
did not measure."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bench.load import find_hey, load_test, multipart_body
from bench.measure import BenchError
from bench.report import keep_other_sections
from bench.server import running_bare_upload

needs_hey = pytest.mark.skipif(shutil.which("hey") is None, reason="needs `hey` (apt-get install hey)")


@needs_hey
def test_hey_load_on_the_bare_upload_endpoint_counts_every_request(tmp_path: Path) -> None:
    body, content_type = multipart_body([("image", b"\xff\xd8 not really a jpeg" * 100)], {"top_k": "5"})
    with running_bare_upload(tmp_path) as (url, pid):
        result = load_test(url, "/upload", body, content_type, requests=10, concurrency=4, max_seconds=60, pid=pid)
    assert result["requests"] == 12, "hey sends n // c per connection: 10 at c=4 is rounded up to 12"
    assert result["errors"] == 0 and result["rps"] > 0 and 0 < result["p50_ms"] <= result["p99_ms"]
    assert result["mean_batch"] is None, "a server without /metrics has no server-side figures"
    assert result["server_cpu_ms_per_image"] is not None, "the server's CPU time, from /proc"


@needs_hey
def test_failed_requests_are_counted_not_hidden(tmp_path: Path) -> None:
    body, content_type = multipart_body([("wrong_field", b"x")])
    with running_bare_upload(tmp_path) as (url, _), pytest.raises(BenchError, match="every request to /upload failed"):
        load_test(url, "/upload", body, content_type, requests=4, concurrency=2, max_seconds=60)


def test_a_missing_hey_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(BenchError, match="apt-get install hey"):
        find_hey()


def test_a_rerun_of_some_sections_keeps_the_others(tmp_path: Path) -> None:
    previous = {
        "date": "2026-12-01 10:00 UTC",
        "command": "personid bench",
        "model": {"rows": [{"backend": "ort fp32"}]},
        "service": {"rows": [], "old": "format"},  # no batch_request: written by an older bench, not kept
        "gallery": {"rows": [{"points": 1000}]},
        "notes": ["the machine was busy"],
    }
    (tmp_path / "benchmarks.json").write_text(json.dumps(previous))
    results = {"date": "2026-12-02 07:00 UTC", "command": "personid bench --sections gallery", "notes": [],
               "gallery": {"rows": [{"points": 5000}]}}  # fmt: skip
    kept = keep_other_sections(results, tmp_path / "benchmarks", ("gallery",))
    assert kept == ["model"]
    assert results["model"] == previous["model"] and results["gallery"]["rows"] == [{"points": 5000}]
    assert "service" not in results
    assert results["measured"]["model"] == {"date": previous["date"], "command": "personid bench"}
    assert results["measured"]["gallery"]["date"] == results["date"]
    assert results["notes"] == ["From an earlier run (2026-12-01 10:00 UTC): the machine was busy"]
    assert keep_other_sections({"date": "d", "command": "c", "notes": []}, tmp_path / "absent", ("model",)) == []
