"""The operator's page (app/static/, served by app/web.py) in a real headless Chromium against the real service.

Each test works as an operator would: it picks files with the page's file inputs, types into its fields, clicks
its buttons, and reads what the page shows; the API client (`api`) only sets up identities and checks the
service behind the page's back. Reads are protected, so every request the page makes needs its key.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("selenium", reason="selenium is not installed (dev extra)")

from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select

from tests.browser.conftest import API_KEY, DESKTOP, PHONE, enter_key, screenshot, set_viewport, wait

pytestmark = pytest.mark.slow


# ---------------------------------------------------------------- helpers


def css(driver: Any, selector: str) -> Any:
    return driver.find_element(By.CSS_SELECTOR, selector)


def css_all(driver: Any, selector: str) -> list[Any]:
    return list(driver.find_elements(By.CSS_SELECTOR, selector))


def open_view(driver: Any, view: str) -> None:
    """Click the view's tab, as an operator does."""
    css(driver, f'.tabs a[data-view="{view}"]').click()
    wait(driver, lambda d: css(d, f"#view-{view}").is_displayed(), message=f"view {view} not shown")


def error_text(driver: Any, slot: str) -> str | None:
    notices = css_all(driver, f"{slot} .notice.error")
    return notices[0].text if notices else None


def outcome(driver: Any, success: str, slot: str) -> Any:
    """Wait for `success` to appear or for an error notice in `slot` (then fail with the page's message)."""

    def check(d: Any) -> Any:
        message = error_text(d, slot)
        if message:
            raise AssertionError(f"the page shows an error:\n{message}")
        found = css_all(d, success)
        return found or False

    return wait(driver, check, message=f"no {success} and no error in {slot}")


def upload(driver: Any, input_id: str, files: list[Path]) -> None:
    driver.find_element(By.ID, input_id).send_keys("\n".join(str(path) for path in files))


def enroll_with_api(api: httpx.Client, files: list[Path], identity_id: str, name: str, **form: str) -> dict[str, Any]:
    response = api.post(
        "/v1/identities",
        data={"identity_id": identity_id, "name": name, **form},
        files=[("images", (path.name, path.read_bytes(), "image/jpeg")) for path in files],
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def enroll_in_page(driver: Any, files: list[Path], identity_id: str, name: str, metadata: str = "") -> None:
    open_view(driver, "enroll")
    css(driver, 'input[name="mode"][value="new"]').click()
    upload(driver, "enroll-files", files)
    wait(driver, lambda d: len(css_all(d, "#enroll-previews li")) == len(files), message="previews not shown")
    driver.find_element(By.ID, "enroll-id").send_keys(identity_id)
    driver.find_element(By.ID, "enroll-name").send_keys(name)
    if metadata:
        driver.find_element(By.ID, "enroll-metadata").send_keys(metadata)
    driver.find_element(By.ID, "enroll-submit").click()
    outcome(driver, f'#enroll-result [data-identity="{identity_id}"]', "#enroll-notice")


def no_horizontal_scroll(driver: Any) -> bool:
    return bool(driver.execute_script("return document.scrollingElement.scrollWidth <= window.innerWidth"))


def scroll_width(driver: Any) -> tuple[int, int]:
    width, inner = driver.execute_script("return [document.scrollingElement.scrollWidth, window.innerWidth]")
    return int(width), int(inner)


def thumbnail_loaded(driver: Any, card: Any) -> bool:
    image = card.find_element(By.CSS_SELECTOR, "img.thumb")
    return bool(
        driver.execute_script(
            "const i = arguments[0]; return i.dataset.state === 'loaded' && i.src.startsWith('blob:')"
            " && i.complete && i.naturalWidth > 0",
            image,
        )
    )


# ---------------------------------------------------------------- tests


def test_analyse_shows_the_attributes_of_an_uploaded_crop(
    page: Any, people: list[list[Path]], api: httpx.Client
) -> None:
    crop = people[6][0]
    upload(page, "analyse-file", [crop])
    outcome(page, "#analyse-result .groups", "#analyse-notice")

    expected = api.post("/v1/attributes", files={"image": (crop.name, crop.read_bytes(), "image/jpeg")}).json()
    shown_groups = [group.get_attribute("data-group") for group in css_all(page, "#analyse-result .group")]
    assert shown_groups == list(expected["attributes"]), "groups as the API groups them"
    for group, heads in expected["attributes"].items():
        for head, result in heads.items():
            box = css(page, f'.group[data-group="{group}"] .head[data-head="{head}"]')
            assert box.find_element(By.CSS_SELECTOR, ".head-label").text == result["label"]
            rows = box.find_elements(By.CSS_SELECTOR, ".scores li")
            assert [row.find_element(By.CSS_SELECTOR, ".lbl").text for row in rows] == list(result["scores"])
            assert len(box.find_elements(By.CSS_SELECTOR, ".scores li.top")) == 1
            percent = box.find_element(By.CSS_SELECTOR, ".scores li.top .num").text
            assert percent == f"{round(result['score'] * 100)}%"
    assert css(page, "#analyse-result figure img").get_attribute("src").startswith("blob:")
    screenshot(page, "analyse")


def test_enrolling_three_then_searching_shows_the_person_first_with_a_thumbnail(
    page: Any, people: list[list[Path]], api: httpx.Client
) -> None:
    walkers = [("walker-a", "Walker A"), ("walker-b", "Walker B"), ("walker-c", "Walker C")]

    # a metadata that is not a JSON object is refused by the page itself, before any upload
    open_view(page, "enroll")
    upload(page, "enroll-files", people[0][:3])
    page.find_element(By.ID, "enroll-metadata").send_keys("[1, 2]")
    page.find_element(By.ID, "enroll-submit").click()
    wait(page, lambda d: d.find_element(By.ID, "enroll-metadata-error").is_displayed())
    assert "JSON object" in page.find_element(By.ID, "enroll-metadata-error").text
    assert page.find_element(By.ID, "enroll-metadata").get_attribute("aria-invalid") == "true"
    assert "metadata" in (error_text(page, "#enroll-notice") or "")
    page.find_element(By.ID, "enroll-id").send_keys("walker-a")
    page.find_element(By.ID, "enroll-name").send_keys("Walker A")
    screenshot(page, "enroll")
    page.find_element(By.ID, "enroll-reset").click()

    for (identity_id, name), crops in zip(walkers, people[:3], strict=True):
        enroll_in_page(page, crops[:3], identity_id, name, metadata=json.dumps({"badge": identity_id[-1]}))
    assert api.get("/v1/identities/walker-b").json()["metadata"] == {"badge": "b"}
    screenshot(page, "enrolled")

    open_view(page, "search")
    query = people[1][3]  # a fourth crop of walker-b, never enrolled
    upload(page, "search-file", [query])
    wait(page, lambda d: d.find_element(By.ID, "search-preview").is_displayed())
    top_k = page.find_element(By.ID, "search-topk")
    top_k.clear()
    top_k.send_keys("3")
    page.find_element(By.ID, "search-image-button").click()
    outcome(page, "#search-results .card", "#search-notice")

    cards = css_all(page, "#search-results .card")
    assert len(cards) == 3
    first = cards[0]
    assert first.get_attribute("data-identity") == "walker-b"
    assert first.find_element(By.CSS_SELECTOR, "h3").text == "Walker B"
    scores = [float(card.find_element(By.CSS_SELECTOR, ".score .num").text) for card in cards]
    assert scores == sorted(scores, reverse=True) and scores[0] > 0.5, scores
    assert first.find_elements(By.CSS_SELECTOR, ".score .bar > span")
    assert first.find_elements(By.CSS_SELECTOR, ".chips li"), "the match's attributes"
    screenshot(page, "search")

    # the thumbnail: GET /v1/identities/{id}/images/{image_id}/thumbnail, fetched with the key (reads are protected)
    wait(page, lambda d: thumbnail_loaded(d, first), timeout=15, message="the first match shows no thumbnail")


def test_search_by_description_alone(page: Any, people: list[list[Path]], api: httpx.Client) -> None:
    identity = enroll_with_api(api, people[4][:3], "described-e", "Described E")
    # two of its most confident attributes make the description
    chosen = sorted(identity["attributes"].items(), key=lambda item: -item[1]["score"])[:2]

    open_view(page, "search")
    wait(page, lambda d: css_all(d, "#search-filter select"), message="the attribute filter was not built")
    heads = api.get("/v1/model").json()["manifest"]["outputs"]["attributes"]["heads"]
    for head in heads:  # one control per head, offering "any" and every label of the model
        options = Select(page.find_element(By.ID, f"filter-{head['name']}")).options
        assert [option.get_attribute("value") for option in options] == ["", *head["labels"]]
    for head, value in chosen:
        Select(page.find_element(By.ID, f"filter-{head}")).select_by_value(value["label"])
    page.find_element(By.ID, "search-text-button").click()
    outcome(page, '#search-results .card[data-identity="described-e"]', "#search-notice")
    summary = css(page, "#search-results .results-head p").text
    assert all(f"{head}={value['label']}" in summary for head, value in chosen), summary
    screenshot(page, "search-description")


def test_gallery_shows_an_identity_and_delete_removes_it(
    page: Any, people: list[list[Path]], api: httpx.Client
) -> None:
    enroll_with_api(api, people[3][:3], "leaving-d", "Leaving D", metadata=json.dumps({"note": "visitor", "badge": 7}))

    open_view(page, "gallery")
    card = outcome(page, '#gallery-items .card[data-identity="leaving-d"]', "#gallery-notice")[0]
    assert "3 images" in card.text
    screenshot(page, "gallery")

    card.find_element(By.CSS_SELECTOR, "h3 a").click()
    wait(page, lambda d: d.find_element(By.ID, "identity-title").text == "Leaving D", message="identity page")
    assert page.current_url.endswith("#/gallery/leaving-d")
    assert len(css_all(page, "#identity-detail .images li img.thumb")) == 3
    assert json.loads(css(page, "#identity-detail pre.json").text) == {"note": "visitor", "badge": 7}
    assert css_all(page, "#identity-detail table.attrs tr[data-head]"), "aggregated attributes"
    screenshot(page, "identity")

    # "Add images" opens Enroll for this identity; one more crop is added to it
    css(page, '#identity-detail a[href="#/enroll/leaving-d"]').click()
    wait(page, lambda d: d.find_element(By.ID, "enroll-submit").text == "Add images")
    assert page.find_element(By.ID, "enroll-id").get_attribute("value") == "leaving-d"
    assert not page.find_element(By.ID, "enroll-name").is_displayed(), "no name or metadata for added images"
    upload(page, "enroll-files", [people[3][3]])
    page.find_element(By.ID, "enroll-submit").click()
    done = outcome(page, '#enroll-result [data-identity="leaving-d"]', "#enroll-notice")[0]
    assert "Added 1 image; it has 4 images now." in done.text
    done.find_element(By.LINK_TEXT, "Open its page").click()
    wait(page, lambda d: len(css_all(d, "#identity-detail .images li")) == 4, message="the added image is not listed")

    # Escape cancels the confirmation: nothing is deleted
    page.find_element(By.ID, "identity-delete").click()
    dialog = page.find_element(By.ID, "confirm-dialog")
    wait(page, lambda d: dialog.get_attribute("open") is not None, message="no confirmation dialog")
    assert "Leaving D" in dialog.text and "4 images" in dialog.text
    screenshot(page, "delete-dialog", full_page=False)
    page.switch_to.active_element.send_keys(Keys.ESCAPE)
    wait(page, lambda d: dialog.get_attribute("open") is None)
    assert api.get("/v1/identities/leaving-d").status_code == 200

    page.find_element(By.ID, "identity-delete").click()
    wait(page, lambda d: dialog.get_attribute("open") is not None)
    page.find_element(By.ID, "confirm-ok").click()
    wait(page, lambda d: d.current_url.endswith("#/gallery"), message="back to the gallery after the delete")
    wait(page, lambda d: not css_all(d, '#gallery-items .card[data-identity="leaving-d"]'), message="still listed")
    assert "Deleted" in page.find_element(By.ID, "toast").get_attribute("textContent")
    assert api.get("/v1/identities/leaving-d").status_code == 404


def test_paste_and_drop_pick_images(page: Any) -> None:
    """A crop pasted from the clipboard is analysed; crops dropped on Enroll are queued with previews."""
    make_files = """
        async function makeFiles(count) {  // a DataTransfer holding `count` small PNG "people"
          const data = new DataTransfer();
          for (let i = 0; i < count; i++) {
            const canvas = document.createElement('canvas');
            canvas.width = 48; canvas.height = 112;
            const g = canvas.getContext('2d');
            g.fillStyle = ['#c0392b', '#2c3e50', '#27ae60'][i % 3]; g.fillRect(0, 0, 48, 56);
            g.fillStyle = '#34495e'; g.fillRect(0, 56, 48, 56);
            const blob = await new Promise((resolve) => canvas.toBlob(resolve, 'image/png'));
            data.items.add(new File([blob], `crop-${i}.png`, {type: 'image/png'}));
          }
          return data;
        }
    """
    page.execute_script(
        make_files + "makeFiles(1).then((data) =>"
        " document.dispatchEvent(new ClipboardEvent('paste', {clipboardData: data, bubbles: true})));"
    )
    outcome(page, "#analyse-result .groups", "#analyse-notice")
    assert "crop-0.png" in css(page, "#analyse-result figcaption").text

    open_view(page, "enroll")
    page.execute_script(
        make_files + "makeFiles(2).then((data) => {"
        " const zone = document.getElementById('enroll-drop');"
        " for (const type of ['dragenter', 'dragover', 'drop'])"
        "   zone.dispatchEvent(new DragEvent(type, {dataTransfer: data, bubbles: true, cancelable: true})); });"
    )
    wait(page, lambda d: len(css_all(d, "#enroll-previews li")) == 2, message="dropped files not queued")
    assert page.find_element(By.ID, "enroll-count").text == "2 images to upload."
    css_all(page, "#enroll-previews li button")[0].click()
    wait(page, lambda d: len(css_all(d, "#enroll-previews li")) == 1)


def test_a_wrong_key_shows_the_services_message(page: Any, people: list[list[Path]]) -> None:
    enter_key(page, "not-the-key")
    upload(page, "analyse-file", [people[6][1]])
    wait(page, lambda d: error_text(d, "#analyse-notice"), message="no error shown")
    message = error_text(page, "#analyse-notice") or ""
    assert "Unauthorized (401)" in message and "invalid API key" in message, message

    page.find_element(By.ID, "api-key-clear").click()
    wait(page, lambda d: d.find_element(By.ID, "api-key-state").text == "No key")
    open_view(page, "gallery")
    wait(page, lambda d: error_text(d, "#gallery-notice"), message="no error shown")
    message = error_text(page, "#gallery-notice") or ""
    assert "missing X-API-Key header" in message and "Enter an API key" in message, message

    enter_key(page, API_KEY)  # the page recovers with the right key, without a reload
    wait(page, lambda d: not error_text(d, "#gallery-notice") and css_all(d, "#gallery-items li"))


def test_status_shows_the_model_and_readiness(page: Any, api: httpx.Client) -> None:
    open_view(page, "status")
    wait(page, lambda d: css_all(d, '#status-ready .badge[data-ready="true"]'), message="not shown as ready")
    model = api.get("/v1/model").json()
    ready = api.get("/readyz").json()
    wait(page, lambda d: css_all(d, "#status-heads tbody tr"))
    assert page.find_element(By.ID, "count-identities").text == str(ready["gallery"]["identities"])
    assert page.find_element(By.ID, "count-images").text == str(ready["gallery"]["images"])
    facts = page.find_element(By.ID, "status-model").text
    assert model["model_id"] in facts and model["manifest"]["backbone"] in facts
    assert all(provider in facts for provider in model["providers"])
    heads = model["manifest"]["outputs"]["attributes"]["heads"]
    assert len(css_all(page, "#status-heads tbody tr")) == len(heads)
    screenshot(page, "status")


def test_every_control_is_labelled_and_reachable_by_keyboard(page: Any) -> None:
    for view in ("analyse", "search", "enroll", "gallery", "status"):
        open_view(page, view)
        unlabelled = page.execute_script(
            """
            const visible = (el) => el.getClientRects().length > 0 && getComputedStyle(el).visibility !== 'hidden';
            const bad = [];
            for (const el of document.querySelectorAll('input, select, textarea, button, a[href]')) {
              if (!visible(el) || el.closest('[hidden]') || el.getAttribute('aria-hidden') === 'true') continue;
              const named = (el.labels && el.labels.length) || el.getAttribute('aria-label')
                || el.getAttribute('aria-labelledby') || (el.textContent || '').trim();
              if (!named) bad.push(el.outerHTML.slice(0, 120));
              if (el.tabIndex < 0) bad.push('not focusable: ' + el.outerHTML.slice(0, 120));
            }
            return bad;
            """
        )
        assert not unlabelled, f"{view}: {unlabelled}"
    # the tabs are reachable with Tab and followed with Enter
    page.find_element(By.ID, "api-key").click()
    for _ in range(20):
        active = page.switch_to.active_element
        if active.get_attribute("data-view") == "analyse" and active.tag_name == "a":
            break
        active.send_keys(Keys.SHIFT, Keys.TAB)
    else:
        pytest.fail("the Analyse tab is not reachable with the keyboard")
    active.send_keys(Keys.ENTER)
    wait(page, lambda d: d.find_element(By.ID, "view-analyse").is_displayed())
    page.switch_to.active_element.send_keys(Keys.TAB)
    focused = page.switch_to.active_element
    assert focused.get_attribute("data-pick") == "analyse-file", focused.get_attribute("outerHTML")
    outline = page.execute_script("return getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none", "a focused control shows where the focus is"


def test_the_layout_holds_at_390_px(page: Any, people: list[list[Path]], api: httpx.Client) -> None:
    enroll_with_api(
        api,
        people[5][:3],
        "a-rather-long-identity-id-that-has-to-wrap-on-a-phone-0123456789",
        "Phone F, with a name long enough to wrap on a narrow screen",
        metadata=json.dumps({"site": "north gate", "note": "x" * 120}),
    )
    set_viewport(page, *PHONE)
    try:
        assert page.execute_script("return window.innerWidth") == PHONE[0]

        def check(view: str) -> None:
            width, inner = scroll_width(page)
            assert width <= inner, f"{view}: the page scrolls sideways at {inner} px ({width} px wide)"
            screenshot(page, f"phone-{view}")

        open_view(page, "analyse")
        upload(page, "analyse-file", [people[5][3]])
        outcome(page, "#analyse-result .groups", "#analyse-notice")
        check("analyse")

        open_view(page, "search")
        wait(page, lambda d: css_all(d, "#search-filter select"))
        upload(page, "search-file", [people[5][3]])
        page.find_element(By.ID, "search-image-button").click()
        outcome(page, "#search-results .card", "#search-notice")
        check("search")

        open_view(page, "enroll")
        upload(page, "enroll-files", people[6][:3])
        wait(page, lambda d: len(css_all(d, "#enroll-previews li")) == 3)
        check("enroll")
        page.find_element(By.ID, "enroll-reset").click()

        open_view(page, "gallery")
        outcome(page, "#gallery-items .card", "#gallery-notice")
        check("gallery")

        page.get(
            page.current_url.split("#")[0]
            + "#/gallery/a-rather-long-identity-id-that-has-to-wrap-on-a-phone-0123456789"
        )
        wait(page, lambda d: d.find_element(By.ID, "identity-title").text.startswith("Phone F"))
        check("identity")

        open_view(page, "status")
        wait(page, lambda d: css_all(d, "#status-heads tbody tr"))
        check("status")
    finally:
        set_viewport(page, *DESKTOP)


def test_the_page_is_served_outside_the_api_schema(server: str) -> None:
    page = httpx.get(f"{server}/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for asset, kind in (("app.js", "javascript"), ("style.css", "text/css"), ("placeholder.svg", "image/svg+xml")):
        response = httpx.get(f"{server}/static/{asset}")
        assert response.status_code == 200 and kind in response.headers["content-type"], asset
    missing = httpx.get(f"{server}/static/nope.js")
    assert missing.status_code == 404 and missing.headers["content-type"].startswith("application/problem+json")
    paths = httpx.get(f"{server}/openapi.json", headers={"X-API-Key": API_KEY}).json()["paths"]
    assert "/" not in paths and not any(path.startswith("/static") for path in paths)
