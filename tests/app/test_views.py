"""What the operator page shows beyond the v1 basics: thumbnails of enrolled images and search by description."""

from __future__ import annotations

import io
import json
from collections.abc import Callable

from fastapi.testclient import TestClient
from PIL import Image

from app.main import create_app
from app.settings import Settings
from tests.app.conftest import assert_problem, image_file, person_image


def enroll(client: TestClient, identity_id: str, seeds: list[int]) -> dict:
    files = [("images", image_file(person_image(seed), f"{seed}.png")) for seed in seeds]
    response = client.post("/v1/identities", files=files, data={"identity_id": identity_id})
    assert response.status_code == 201, response.text
    return response.json()


def test_each_enrolled_image_has_a_small_jpeg_thumbnail(client: TestClient) -> None:
    person = enroll(client, "ann", [1, 2])
    for image_id in person["image_ids"]:
        response = client.get(f"/v1/identities/ann/images/{image_id}/thumbnail")
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "image/jpeg"
        assert len(response.content) < 8 * 1024
        with Image.open(io.BytesIO(response.content)) as thumbnail:
            assert thumbnail.format == "JPEG" and thumbnail.size == (64, 128)
    thumbnails = [client.get(f"/v1/identities/ann/images/{i}/thumbnail").content for i in person["image_ids"]]
    assert thumbnails[0] != thumbnails[1]  # each image its own


def test_thumbnail_of_what_is_not_there_is_404(client: TestClient) -> None:
    person = enroll(client, "bob", [3])
    other = enroll(client, "cid", [4])
    assert_problem(client.get(f"/v1/identities/bob/images/{other['image_ids'][0]}/thumbnail"), 404)
    assert_problem(client.get(f"/v1/identities/nobody/images/{person['image_ids'][0]}/thumbnail"), 404)
    assert_problem(client.get("/v1/identities/bob/images/not-a-uuid/thumbnail"), 422)
    assert client.delete("/v1/identities/bob").status_code == 204
    assert_problem(client.get(f"/v1/identities/bob/images/{person['image_ids'][0]}/thumbnail"), 404)


def test_thumbnails_can_be_turned_off(make_settings: Callable[..., Settings]) -> None:
    with TestClient(create_app(make_settings(store_thumbnails=False)), raise_server_exceptions=False) as client:
        person = enroll(client, "dee", [5])
        body = assert_problem(client.get(f"/v1/identities/dee/images/{person['image_ids'][0]}/thumbnail"), 404)
        assert "PERSONID_STORE_THUMBNAILS" in body["detail"]


def test_thumbnail_follows_read_protection(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(api_keys="k", protect_reads=True)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        files = [("images", image_file(person_image(6)))]
        person = client.post("/v1/identities", files=files, data={"identity_id": "eve"}, headers={"X-API-Key": "k"})
        url = f"/v1/identities/eve/images/{person.json()['image_ids'][0]}/thumbnail"
        assert_problem(client.get(url), 401)
        assert client.get(url, headers={"X-API-Key": "k"}).status_code == 200


def describe(client: TestClient, constraints: dict[str, str], **params: str) -> dict:
    response = client.get("/v1/search/attributes", params={"filter": json.dumps(constraints), **params})
    assert response.status_code == 200, response.text
    return response.json()


def test_search_by_description_finds_exactly_the_identities_with_those_labels(client: TestClient) -> None:
    people = {f"p{seed}": enroll(client, f"p{seed}", [seed]) for seed in range(50, 58)}
    genders = {pid: person["attributes"]["gender"]["label"] for pid, person in people.items()}
    assert len(set(genders.values())) == 2, "the test images should give both genders"
    for gender in ("male", "female"):
        found = describe(client, {"gender": gender}, limit="100")
        assert {m["identity_id"] for m in found["matches"]} == {pid for pid, g in genders.items() if g == gender}
        scores = [m["score"] for m in found["matches"]]
        assert scores == sorted(scores, reverse=True)
        assert all(m["score"] == people[m["identity_id"]]["attributes"]["gender"]["score"] for m in found["matches"])
        assert found["next_offset"] is None
    some = next(iter(people.values()))
    both = {"gender": some["attributes"]["gender"]["label"], "hat": some["attributes"]["hat"]["label"]}
    found = describe(client, both, limit="100")["matches"]
    expected = {
        pid for pid, p in people.items() if all(p["attributes"][head]["label"] == label for head, label in both.items())
    }
    assert {m["identity_id"] for m in found} == expected and some["identity_id"] in expected


def test_search_by_description_pages(client: TestClient) -> None:
    people = [enroll(client, f"q{seed}", [seed]) for seed in range(60, 66)]
    sleeve = people[0]["attributes"]["sleeve"]["label"]
    everyone = describe(client, {"sleeve": sleeve}, limit="100")["matches"]
    pages, offset = [], "0"
    while True:
        page = describe(client, {"sleeve": sleeve}, limit="2", offset=offset)
        pages += page["matches"]
        if page["next_offset"] is None:
            break
        offset = str(page["next_offset"])
    assert [m["identity_id"] for m in pages] == [m["identity_id"] for m in everyone] and len(everyone) >= 1


def test_search_by_description_refuses_what_it_cannot_answer(client: TestClient) -> None:
    assert_problem(client.get("/v1/search/attributes", params={"filter": "{}"}), 422)
    assert_problem(client.get("/v1/search/attributes", params={"filter": '{"beard": "yes"}'}), 422, "filter")
    assert_problem(client.get("/v1/search/attributes", params={"filter": '{"gender": "robot"}'}), 422, "filter")
    assert_problem(client.get("/v1/search/attributes"), 422, "filter")
    assert_problem(client.get("/v1/search/attributes", params={"filter": '{"gender": "male"}', "limit": "0"}), 422)
