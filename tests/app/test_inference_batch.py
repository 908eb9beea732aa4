"""Batch requests: several crops as repeated `images` parts, answered as `results` in upload order from one model
call; a bad crop is named by its index and nothing is answered for the others; one crop as `image` keeps its
shape."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.app.conftest import assert_problem, image_file, person_image


def images(*seeds: int) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("images", image_file(person_image(seed), f"{seed}.png")) for seed in seeds]


def model_calls(client: TestClient) -> tuple[float, float]:
    """(model calls, rows run) so far, from the service's own /metrics."""
    figures = {}
    for line in client.get("/metrics").text.splitlines():
        name, _, value = line.partition(" ")
        if name in ("personid_inference_batch_size_count", "personid_inference_batch_size_sum"):
            figures[name] = float(value)
    return figures["personid_inference_batch_size_count"], figures["personid_inference_batch_size_sum"]


def single(client: TestClient, endpoint: str, seed: int) -> dict:
    response = client.post(endpoint, files={"image": image_file(person_image(seed))})
    assert response.status_code == 200, response.text
    return response.json()


def test_batch_embeddings_are_the_single_ones_in_order_from_one_model_call(client: TestClient) -> None:
    calls, rows = model_calls(client)
    response = client.post("/v1/embeddings", files=images(1, 2, 3))
    assert response.status_code == 200, response.text
    assert model_calls(client) == (calls + 1, rows + 3), "three crops, one model call"
    body = response.json()
    assert set(body) == {"model_id", "dim", "results"} and len(body["results"]) == 3
    for seed, result in zip((1, 2, 3), body["results"], strict=True):
        assert len(result["embedding"]) == body["dim"]
        np.testing.assert_allclose(result["embedding"], single(client, "/v1/embeddings", seed)["embedding"], atol=1e-5)
    assert not np.allclose(body["results"][0]["embedding"], body["results"][1]["embedding"], atol=1e-3)


def test_batch_attributes_are_the_single_ones_in_order(client: TestClient) -> None:
    response = client.post("/v1/attributes", files=images(4, 5))
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    for seed, result in zip((4, 5), results, strict=True):
        expected = single(client, "/v1/attributes", seed)["attributes"]
        assert result["attributes"].keys() == expected.keys()
        for group, heads in expected.items():
            for head, value in heads.items():
                assert result["attributes"][group][head]["label"] == value["label"]
                assert result["attributes"][group][head]["score"] == pytest.approx(value["score"], abs=1e-5)


def test_batch_search_answers_each_crop_with_its_own_identity(client: TestClient) -> None:
    for identity, seed in (("alice", 11), ("bob", 12)):
        enrolled = client.post("/v1/identities", files=images(seed), data={"identity_id": identity})
        assert enrolled.status_code == 201, enrolled.text
    response = client.post("/v1/search", files=images(12, 11), data={"top_k": "1"})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["matches"][0]["identity_id"] for r in results] == ["bob", "alice"]
    assert all(r["matches"][0]["score"] == pytest.approx(1.0, abs=1e-4) for r in results)


def test_one_image_keeps_its_shape(client: TestClient) -> None:
    assert set(single(client, "/v1/embeddings", 6)) == {"embedding", "dim", "model_id"}
    assert set(single(client, "/v1/attributes", 6)) == {"model_id", "attributes"}


@pytest.mark.parametrize("endpoint", ["/v1/attributes", "/v1/embeddings", "/v1/search"])
def test_bad_crops_are_named_by_index_and_nothing_is_answered(client: TestClient, endpoint: str) -> None:
    calls = model_calls(client)
    bad = [("images", image_file(b"not an image", "x.png")), ("images", image_file(b"", "empty.png"))]
    files = [*images(1), bad[0], *images(2), bad[1]]
    body = assert_problem(client.post(endpoint, files=files), 422)
    assert [e["field"] for e in body["errors"]] == ["images[1]", "images[3]"]
    assert "images[1]" in body["detail"] and "images[3]" in body["detail"]
    assert model_calls(client) == calls, "no model call for a refused batch"
    assert client.post(endpoint, files=images(1, 2)).status_code == 200, "still serving"


def test_more_crops_than_the_setting_allows_are_refused(client: TestClient) -> None:
    limit = client.app.state.settings.max_images_per_request
    body = assert_problem(client.post("/v1/embeddings", files=images(*range(limit + 1))), 422, "images")
    assert f"at most {limit}" in body["detail"]
    assert len(client.post("/v1/embeddings", files=images(*range(limit))).json()["results"]) == limit


def test_image_and_images_together_or_neither_are_refused(client: TestClient) -> None:
    both = [("image", image_file(person_image(1))), *images(2)]
    assert_problem(client.post("/v1/embeddings", files=both), 422, "images")
    assert_problem(client.post("/v1/embeddings", data={"top_k": "1"}, files=[]), 422, "image")


def test_image_sent_twice_is_refused_with_the_way_to_send_several(client: TestClient) -> None:
    twice = [("image", image_file(person_image(1))), ("image", image_file(person_image(2)))]
    body = assert_problem(client.post("/v1/embeddings", files=twice), 422, "image")
    assert "`images`" in body["detail"]


def test_openapi_declares_both_shapes(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    operation = document["paths"]["/v1/embeddings"]["post"]
    schemas = operation["responses"]["200"]["content"]["application/json"]["schema"]["anyOf"]
    assert {s["$ref"].rsplit("/", 1)[-1] for s in schemas} == {"EmbeddingResponse", "EmbeddingBatchResponse"}
    encoding = operation["requestBody"]["content"]["multipart/form-data"]["encoding"]
    assert set(encoding) == {"image", "images"}
