"""The JSON form fields (`metadata`, `filter`) and identity ids: anything that cannot be stored and answered as
JSON is a 422 naming the field, before anything is written; a record stored badly by an older version still
reads.

Issue 13 findings 1, 2, 10 and 11 (NaN / 1e400 metadata came back as null), against the real app, a real
embedded Qdrant and a real `personid serve` on a keep-alive connection.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.forms import attribute_filter, json_object, metadata_object
from app.gallery import unit
from app.main import create_app
from app.problems import Problem
from app.settings import Settings
from personid.manifest import load_manifest
from tests.app.conftest import assert_problem, image_file, person_image, serving
from tests.app.local_mode import write_local_mode_gallery

DEEP_OBJECT_400 = '{"a":' * 400 + "1" + "}" * 400
DEEP_ARRAY_100K = "[" * 100_000 + "]" * 100_000
HUGE_INTEGER = '{"n": ' + "9" * 5000 + "}"

# (case, metadata text, words of the detail): each one was stored, or answered 500, before.
BAD_METADATA = [
    ("lone surrogate", '{"x": "\\ud800"}', "Unicode"),
    ("lone surrogate in a key", '{"\\udfff": 1}', "Unicode"),
    ("400 levels deep", DEEP_OBJECT_400, "deeper than 16"),
    ("100,000 levels deep", DEEP_ARRAY_100K, "deeper than 16"),
    ("5,000-digit integer", HUGE_INTEGER, "64-bit"),
    ("integer past int64", '{"n": 9223372036854775808}', "64-bit"),
    ("NaN", '{"x": NaN}', "NaN"),
    ("Infinity", '{"x": [Infinity]}', "Infinity"),
    ("-Infinity", '{"x": -Infinity}', "-Infinity"),
    ("float overflow", '{"x": 1e400}', "64-bit float"),
    ("over 16 KiB", json.dumps({"blob": "x" * 16_400}), "at most 16384"),
]

BAD_FILTERS = [
    ("1,000 levels deep", "[" * 1000 + "]" * 1000, "deeper than 16"),
    ("100,000 levels deep", DEEP_ARRAY_100K, "deeper than 16"),
    ("5,000-digit integer", HUGE_INTEGER, "64-bit"),
    ("NaN", '{"gender": NaN}', "NaN"),
    ("float overflow", '{"gender": 1e400}', "64-bit float"),
    ("label not a string", '{"gender": {"a": [1]}}', "no label a dict"),
]


def _enroll(client: TestClient | httpx.Client, **data: str) -> Any:
    return client.post("/v1/identities", files=[("images", image_file(person_image(1)))], data=data)


@pytest.mark.parametrize(("case", "text", "words"), BAD_METADATA, ids=[case for case, _, _ in BAD_METADATA])
def test_refused_metadata_stores_nothing_and_reads_keep_working(
    client: TestClient, case: str, text: str, words: str
) -> None:
    for data in ({"identity_id": "bad", "metadata": text}, {"metadata": text}):  # generated ids too
        body = assert_problem(_enroll(client, **data), 422)
        assert "metadata" in body["detail"] and words in body["detail"], body
    assert client.get("/readyz").json()["gallery"] == {"identities": 0, "images": 0}
    assert assert_problem(client.get("/v1/identities/bad"), 404)
    listed = client.get("/v1/identities")
    assert listed.status_code == 200 and listed.json()["items"] == []
    assert _enroll(client, identity_id="good", metadata='{"ok": [1, 2.5, true, null]}').status_code == 201
    assert client.get("/v1/identities").status_code == 200


@pytest.mark.parametrize(("case", "text", "words"), BAD_FILTERS, ids=[case for case, _, _ in BAD_FILTERS])
def test_hostile_filter_is_a_named_422(client: TestClient, case: str, text: str, words: str) -> None:
    response = client.post("/v1/search", files={"image": image_file(person_image(2))}, data={"filter": text})
    body = assert_problem(response, 422, field="filter")
    assert words in body["detail"], body


def test_metadata_keeps_json_numbers_and_unicode_exactly(client: TestClient) -> None:
    metadata = {"int64": [-(2**63), 2**63 - 1], "float": 1e308, "tiny": 1e-400, "text": "Zoë 北京 \U0001f600"}
    created = _enroll(client, identity_id="exact", metadata=json.dumps(metadata, ensure_ascii=False))
    assert created.status_code == 201, created.text
    assert client.get("/v1/identities/exact").json()["metadata"] == {**metadata, "tiny": 0.0}


def test_metadata_limits_follow_the_settings() -> None:
    settings = Settings(max_metadata_bytes=20, max_json_depth=3)
    assert metadata_object('{"a": {"b": [1]}}', settings) == {"a": {"b": [1]}}
    assert metadata_object(None, settings) == {}
    for text, words in [
        ('{"a": {"b": [[1]]}}', "deeper than 3 levels"),
        ('{"note": "ééééééééé"}', "is 29 bytes as compact UTF-8 JSON; at most 20"),  # bytes, not characters
        ('{"x": "\\ud800"}', "not valid Unicode"),
    ]:
        with pytest.raises(Problem) as refused:
            metadata_object(text, settings)
        assert refused.value.status == 422 and words in refused.value.detail
        assert refused.value.errors == [{"field": "metadata", "message": refused.value.detail[len("metadata: ") :]}]
    with pytest.raises(Problem, match="deeper than 2 levels"):
        json_object('{"a": {"b": [1]}}', "filter", max_depth=2)


def test_filter_depth_follows_the_limit(client: TestClient) -> None:
    engine = client.app.state.runtime.engine  # type: ignore[attr-defined]
    assert attribute_filter('{"gender": "female"}', engine, max_depth=1) == {"gender": "female"}
    with pytest.raises(Problem, match="deeper than 1 levels"):
        attribute_filter('{"gender": ["female"]}', engine, max_depth=1)


@pytest.mark.parametrize("identity_id", [".", ".."])
def test_dot_segment_identity_ids_are_refused(client: TestClient, identity_id: str) -> None:
    assert_problem(_enroll(client, identity_id=identity_id), 422, field="identity_id")
    assert client.get("/readyz").json()["gallery"]["identities"] == 0


@pytest.mark.parametrize("identity_id", ["...", ".a", "..b", "a.b", "-", "x" * 64])
def test_ids_with_dots_that_paths_keep_are_accepted(client: TestClient, identity_id: str) -> None:
    assert _enroll(client, identity_id=identity_id).status_code == 201
    assert client.get(f"/v1/identities/{identity_id}").json()["identity_id"] == identity_id


BAD_STORED = [
    ("lone surrogate", {"x": "\ud800"}),
    ("400 levels deep", json.loads(DEEP_OBJECT_400)),
    ("NaN", {"x": float("nan")}),
    ("not an object", ["a", "list"]),
]


@pytest.mark.parametrize(("case", "metadata"), BAD_STORED, ids=[case for case, _ in BAD_STORED])
def test_metadata_stored_badly_by_an_older_version_still_reads(
    make_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture, case: str, metadata: Any
) -> None:
    """Written as an older version stored it (qdrant-client's local mode, migrated at the first open): list and
    get answer 200 for everyone (that identity's metadata as {}, named in the log), and it can still be deleted."""
    settings = make_settings()
    manifest = load_manifest(settings.model_path)
    rng = np.random.default_rng(0)
    vectors = {key: unit(rng.normal(size=(2, manifest.outputs.embedding.dim))) for key in ("old", "other")}
    metadata_of = {"old": metadata, "other": {"fine": 2}}
    write_local_mode_gallery(settings.qdrant_path, settings.collection, manifest.model_id, vectors, metadata_of)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client, caplog.at_level(logging.WARNING):
        listed = client.get("/v1/identities")
        assert listed.status_code == 200, listed.text
        assert {item["identity_id"]: item["metadata"] for item in listed.json()["items"]} == {
            "old": {},
            "other": {"fine": 2},
        }
        assert client.get("/v1/identities/old").json()["metadata"] == {}
        assert (
            client.post("/v1/identities/old/images", files=[("images", image_file(person_image(5)))]).status_code == 201
        )
        assert client.delete("/v1/identities/old").status_code == 204
        assert client.get("/v1/identities").json()["items"][0]["identity_id"] == "other"
    assert any("'old'" in record.getMessage() and "metadata" in record.getMessage() for record in caplog.records)


def test_hostile_json_keeps_a_real_server_and_its_connection(model_path: Path, tmp_path: Path) -> None:
    """Before, these raised inside the app: uvicorn answered 500 and dropped the keep-alive connection."""
    options = ("--model-path", str(model_path), "--qdrant-path", str(tmp_path / "qdrant"), "--intra-op-threads", "1")
    with serving(*options, log=tmp_path / "server.log") as url, httpx.Client(base_url=url, timeout=60) as client:
        first = client.get("/healthz")
        local = first.extensions["network_stream"].get_extra_info("client_addr")
        for text in (DEEP_ARRAY_100K, HUGE_INTEGER, '{"x": "\\ud800"}'):
            assert_problem(_enroll(client, identity_id="bad", metadata=text), 422)
            search = client.post("/v1/search", files={"image": image_file(person_image(2))}, data={"filter": text})
            assert_problem(search, 422)
        last = client.get("/v1/identities")
        assert last.status_code == 200 and last.json()["items"] == []
        assert last.extensions["network_stream"].get_extra_info("client_addr") == local, "the connection was dropped"
