"""The v1 API through the real ASGI app: real ONNX Runtime session, real embedded Qdrant, real HTTP requests."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings
from tests.app.conftest import assert_problem, image_file, person_image


def enroll(client: TestClient, seeds: list[int], headers: dict[str, str] | None = None, **fields: str) -> dict:
    files = [("images", image_file(person_image(seed), f"{seed}.png")) for seed in seeds]
    response = client.post("/v1/identities", files=files, data=fields, headers=headers or {})
    assert response.status_code == 201, response.text
    return response.json()


def search(client: TestClient, seed: int, **fields: str) -> list[dict]:
    response = client.post("/v1/search", files={"image": image_file(person_image(seed))}, data=fields)
    assert response.status_code == 200, response.text
    return response.json()["matches"]


def test_attributes_are_grouped_with_label_score_and_all_class_scores(client: TestClient) -> None:
    response = client.post("/v1/attributes", files={"image": image_file(person_image(1))})
    assert response.status_code == 200, response.text
    body = response.json()
    manifest = client.get("/v1/model").json()["manifest"]
    assert body["model_id"] == manifest["model_id"]
    assert set(body["attributes"]) == set(manifest["groups"])
    heads = {head["name"]: head for head in manifest["outputs"]["attributes"]["heads"]}
    seen = set()
    for group, members in manifest["groups"].items():
        assert list(body["attributes"][group]) == members
        for name in members:
            result = body["attributes"][group][name]
            assert list(result["scores"]) == heads[name]["labels"]
            assert sum(result["scores"].values()) == pytest.approx(1.0, abs=1e-5)
            assert result["label"] == max(result["scores"], key=result["scores"].get)
            assert result["score"] == pytest.approx(max(result["scores"].values()))
            seen.add(name)
    assert seen == set(heads)


def test_embedding_is_unit_length_and_deterministic(client: TestClient) -> None:
    first = client.post("/v1/embeddings", files={"image": image_file(person_image(3))}).json()
    again = client.post("/v1/embeddings", files={"image": image_file(person_image(3))}).json()
    other = client.post("/v1/embeddings", files={"image": image_file(person_image(4))}).json()
    vector = np.asarray(first["embedding"])
    assert first["dim"] == len(vector) == client.get("/v1/model").json()["manifest"]["outputs"]["embedding"]["dim"]
    assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-4)
    assert np.allclose(vector, again["embedding"], atol=1e-6)
    assert float(vector @ np.asarray(other["embedding"])) < 0.999


def test_identity_lifecycle_enroll_get_list_search_delete(client: TestClient) -> None:
    alice = enroll(client, [10, 11], identity_id="alice", name="Alice", metadata=json.dumps({"badge": 7}))
    assert alice["identity_id"] == "alice" and alice["name"] == "Alice" and alice["metadata"] == {"badge": 7}
    assert len(alice["image_ids"]) == 2
    assert set(alice["attributes"]) == {h["name"] for h in client.get("/v1/model").json()["manifest"]["outputs"][
        "attributes"]["heads"]}  # fmt: skip
    bob = enroll(client, [20])
    assert bob["identity_id"] and bob["identity_id"] != "alice"
    for seed in range(30, 33):
        enroll(client, [seed], identity_id=f"extra-{seed}")

    got = client.get("/v1/identities/alice")
    assert got.status_code == 200 and got.json()["image_ids"] == alice["image_ids"]

    pages, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get("/v1/identities", params=params).json()
        assert len(page["items"]) <= 2
        pages.append(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    listed = [item["identity_id"] for items in pages for item in items]
    assert sorted(listed) == sorted(["alice", bob["identity_id"], "extra-30", "extra-31", "extra-32"])
    assert len(pages) >= 3

    matches = search(client, 10)
    assert matches[0]["identity_id"] == "alice"
    assert matches[0]["image_id"] == alice["image_ids"][0]
    assert matches[0]["score"] > matches[1]["score"]
    same = search(client, 20)[0]  # bob has one image: the same image scores ~1
    assert same["identity_id"] == bob["identity_id"] and same["score"] > 0.999
    assert [m["score"] for m in matches] == sorted((m["score"] for m in matches), reverse=True)
    assert len(search(client, 10, top_k="2")) == 2
    assert [m["identity_id"] for m in search(client, 20, min_score="0.999")] == [bob["identity_id"]]

    added = client.post("/v1/identities/alice/images", files=[("images", image_file(person_image(12)))])
    assert added.status_code == 201 and len(added.json()["image_ids"]) == 1
    assert len(client.get("/v1/identities/alice").json()["image_ids"]) == 3

    assert client.delete("/v1/identities/alice").status_code == 204
    assert_problem(client.get("/v1/identities/alice"), 404)
    assert_problem(client.delete("/v1/identities/alice"), 404)
    assert "alice" not in [m["identity_id"] for m in search(client, 10, top_k="100")]
    assert client.app.state.runtime.gallery.count_points("alice") == 0


def test_enrolling_an_existing_id_is_a_conflict(client: TestClient) -> None:
    enroll(client, [40], identity_id="carol")
    files = [("images", image_file(person_image(41)))]
    assert_problem(client.post("/v1/identities", files=files, data={"identity_id": "carol"}), 409)
    assert_problem(client.post("/v1/identities/nobody/images", files=files), 404)


def test_attribute_filter_keeps_only_matching_identities(client: TestClient) -> None:
    people = {f"p{seed}": enroll(client, [seed], identity_id=f"p{seed}") for seed in range(50, 58)}
    genders = {pid: person["attributes"]["gender"]["label"] for pid, person in people.items()}
    assert len(set(genders.values())) == 2, "the test images should give both genders"
    for gender in ("male", "female"):
        found = search(client, 50, top_k="100", filter=json.dumps({"gender": gender}))
        assert {m["identity_id"] for m in found} == {pid for pid, g in genders.items() if g == gender}
        assert all(m["attributes"]["gender"]["label"] == gender for m in found)


def test_model_and_readiness_report_provider_and_public_manifest(client: TestClient) -> None:
    model = client.get("/v1/model").json()
    assert model["providers"] == ["CPUExecutionProvider"]
    assert "config" not in (model["manifest"]["training"] or {})
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["providers"] == ["CPUExecutionProvider"] and ready.json()["model_id"] == model["model_id"]
    assert client.get("/healthz").json() == {"status": "alive"}


def test_metrics_count_requests_per_route_batches_and_gallery(client: TestClient) -> None:
    enroll(client, [60], identity_id="m1")
    client.get("/v1/identities/m1")
    client.get("/v1/identities/does-not-exist")
    text = client.get("/metrics").text
    assert 'personid_http_requests_total{method="GET",route="/v1/identities/{identity_id}",status="200"} 1.0' in text
    assert 'personid_http_requests_total{method="GET",route="/v1/identities/{identity_id}",status="404"} 1.0' in text
    assert "does-not-exist" not in text
    assert "personid_inference_batch_size_count 1.0" in text
    assert "personid_gallery_identities 1.0" in text


def test_openapi_declares_every_endpoint_with_schemas(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    paths = schema["paths"]
    expected = {
        ("/v1/attributes", "post"), ("/v1/embeddings", "post"), ("/v1/identities", "post"),
        ("/v1/identities", "get"), ("/v1/identities/{identity_id}", "get"),
        ("/v1/identities/{identity_id}", "delete"), ("/v1/identities/{identity_id}/images", "post"),
        ("/v1/search", "post"), ("/v1/model", "get"), ("/healthz", "get"), ("/readyz", "get"), ("/metrics", "get"),
    }  # fmt: skip
    assert expected <= {(path, method) for path, methods in paths.items() for method in methods}
    for name in ("AttributesResponse", "EmbeddingResponse", "IdentityResponse", "IdentityPage", "SearchResponse"):
        assert name in schema["components"]["schemas"]
    assert "multipart/form-data" in paths["/v1/identities"]["post"]["requestBody"]["content"]


WRITES = {("/v1/identities", "post"), ("/v1/identities/{identity_id}/images", "post"),
          ("/v1/identities/{identity_id}", "delete")}  # fmt: skip
PROBES = {"/healthz", "/readyz", "/metrics"}


def test_openapi_says_which_key_each_operation_needs_and_lists_its_401(client: TestClient) -> None:
    """Writes require the key, reads take it optionally (required only with protect_reads), probes are open;
    every operation that can answer 401 lists it."""
    key = [{"APIKeyHeader": []}]
    for path, methods in client.get("/openapi.json").json()["paths"].items():
        for method, operation in methods.items():
            security = operation.get("security")
            if path in PROBES:
                assert security is None and "401" not in operation["responses"], (path, method)
            elif (path, method) in WRITES:
                assert security == key and "401" in operation["responses"], (path, method)
            else:
                assert sorted(map(str, security)) == sorted(map(str, [*key, {}])), (path, method, security)
                assert "401" in operation["responses"], (path, method)


def test_openapi_refuses_what_the_code_refuses(client: TestClient) -> None:
    """An empty file and an empty cursor are refused by the code, so the schema must not call them valid."""
    schema = client.get("/openapi.json").json()
    bodies = schema["components"]["schemas"]
    assert bodies["Body_embeddings_v1_embeddings_post"]["properties"]["image"]["minLength"] == 1
    images = bodies["Body_enroll_v1_identities_post"]["properties"]["images"]
    assert images["minItems"] == 1 and images["items"]["minLength"] == 1
    cursor = next(p for p in schema["paths"]["/v1/identities"]["get"]["parameters"] if p["name"] == "cursor")
    assert not re.search(cursor["schema"]["anyOf"][0]["pattern"], ""), "the schema allows an empty cursor"
    for bad in ("", "not-a-cursor"):
        assert_problem(client.get("/v1/identities", params={"cursor": bad}), 422, field="cursor")
    assert_problem(client.post("/v1/embeddings", files={"image": image_file(b"")}), 422, field="image")
    for operation in (schema["paths"]["/v1/search"]["post"], schema["paths"]["/v1/identities"]["post"]):
        body = operation["requestBody"]["content"]["multipart/form-data"]
        assert "image/jpeg" in json.dumps(body["encoding"]), "the image parts' media types are declared"
        assert {"400", "408", "413", "415"} <= set(operation["responses"])


def test_problem_titles_are_the_ones_docs_show(client: TestClient) -> None:
    """docs/api.md's example problem is what the service sends (RFC 9110 titles on every Python version)."""
    docs = (Path(__file__).resolve().parents[2] / "docs" / "api.md").read_text()
    blocks = [json.loads(block) for block in re.findall(r"```json\n(.*?)```", docs, re.DOTALL)]
    example = next(block for block in blocks if block.get("status") == 422)
    response = client.post("/v1/search", files={"image": image_file(person_image(1))}, data={"top_k": "101"})
    assert assert_problem(response, 422) == example
    too_large = client.post("/v1/embeddings", files={"image": image_file(b"\0" * 400_000)})
    assert assert_problem(too_large, 413)["title"] == "Content Too Large"
    for kind in ("malformed-body", "body-timeout", "body-too-large", "unauthorized"):
        assert f"`{kind}`" in docs, f"problem type {kind} is not in docs/api.md's table"


def test_api_keys_guard_writes_and_leave_reads_open(make_settings: Callable[..., Settings]) -> None:
    with TestClient(create_app(make_settings(api_keys="k-one,k-two"))) as client:
        files = [("images", image_file(person_image(70)))]
        body = assert_problem(client.post("/v1/identities", files=files, data={"identity_id": "x"}), 401)
        assert "X-API-Key" in body["detail"]
        assert_problem(
            client.post("/v1/identities", files=files, data={"identity_id": "x"}, headers={"X-API-Key": "nope"}), 401
        )
        enroll(client, [70], headers={"X-API-Key": "k-two"}, identity_id="x")
        assert client.get("/v1/identities/x").status_code == 200
        assert client.post("/v1/search", files={"image": image_file(person_image(70))}).status_code == 200
        assert_problem(client.delete("/v1/identities/x"), 401)
        assert_problem(client.post("/v1/identities/x/images", files=files), 401)
        assert client.delete("/v1/identities/x", headers={"X-API-Key": "k-one"}).status_code == 204


def test_protect_reads_guards_reads_but_not_probes(make_settings: Callable[..., Settings]) -> None:
    with TestClient(create_app(make_settings(api_keys="secret", protect_reads=True))) as client:
        assert_problem(client.get("/v1/identities"), 401)
        assert_problem(client.post("/v1/embeddings", files={"image": image_file(person_image(1))}), 401)
        assert client.get("/v1/identities", headers={"X-API-Key": "secret"}).status_code == 200
        assert client.get("/healthz").status_code == 200 and client.get("/readyz").status_code == 200


def test_cors_is_off_by_default_and_on_when_configured(make_settings: Callable[..., Settings]) -> None:
    preflight = {"Origin": "https://ui.example", "Access-Control-Request-Method": "POST"}
    with TestClient(create_app(make_settings())) as client:
        assert "access-control-allow-origin" not in client.options("/v1/search", headers=preflight).headers
    with TestClient(create_app(make_settings(cors_origins="https://ui.example"))) as client:
        response = client.options("/v1/search", headers=preflight)
        assert response.headers["access-control-allow-origin"] == "https://ui.example"


def test_unexpected_errors_are_500_problems_without_internals(client: TestClient) -> None:
    runtime = client.app.state.runtime

    def broken(*args: object) -> None:
        raise RuntimeError("/secret/internal/path exploded")

    original = runtime.gallery.search
    runtime.gallery.search = broken  # fault injection: the real gallery, one method made to fail
    try:
        body = assert_problem(client.post("/v1/search", files={"image": image_file(person_image(1))}), 500)
        assert "secret" not in json.dumps(body) and "Traceback" not in json.dumps(body)
    finally:
        runtime.gallery.search = original
    assert client.post("/v1/search", files={"image": image_file(person_image(1))}).status_code == 200


def test_batching_off_gives_the_same_answers(make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    unbatched = make_settings(batching=False, qdrant_path=tmp_path / "other")
    with TestClient(create_app(make_settings())) as on, TestClient(create_app(unbatched)) as off:
        for seed in (1, 2):
            a = on.post("/v1/embeddings", files={"image": image_file(person_image(seed))}).json()["embedding"]
            b = off.post("/v1/embeddings", files={"image": image_file(person_image(seed))}).json()["embedding"]
            assert np.allclose(a, b, atol=1e-6)
