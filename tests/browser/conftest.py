"""Fixtures of the browser tests: the real service with its page on 127.0.0.1, generated person crops, and a
headless Chromium driven by Selenium.

The service serves `models/default.onnx`, the shipped model: these tests search for people, and the stand-in
model of the other service tests is a real graph but no re-identification model (it ranks a new crop of a person
below others about half the time). Reads are protected (`PERSONID_PROTECT_READS`), the hardest case for the page:
every request, thumbnails included, must carry the key.

Chromium is Debian's (`apt-get install chromium chromium-driver`); without /usr/bin/chromium every test is
skipped with that reason. `PERSONID_WRITE_DOCS=1` also saves a screenshot of each view to docs/screenshots/.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.app.conftest import start_server, stop_server

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "models" / "default.onnx"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SCREENSHOTS = ROOT / "docs" / "screenshots"
API_KEY = "browser-test-key"
DESKTOP = (1280, 900)
PHONE = (390, 844)
CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-extensions",
    "--disable-default-apps",
    "--lang=en-US",
    "--force-device-scale-factor=1",
    "--hide-scrollbars",
]


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The service with the page, on a free local port; yields its base URL once /readyz answers 200."""
    if not MODEL.exists():
        pytest.skip(f"{MODEL} is absent: the browser tests search with the shipped model")
    folder = tmp_path_factory.mktemp("browser-server")
    log = folder / "server.log"
    env = {
        "PERSONID_MODEL_PATH": str(MODEL),
        "PERSONID_QDRANT_PATH": str(folder / "qdrant"),
        "PERSONID_API_KEYS": API_KEY,
        "PERSONID_PROTECT_READS": "true",
        "PERSONID_INTRA_OP_THREADS": "2",
        "PERSONID_LOG_LEVEL": "warning",
    }
    process, url = start_server(log=log, env=env)
    try:
        yield url
    finally:
        stop_server(process, log)


@pytest.fixture(scope="session")
def api(server: str) -> Iterator[httpx.Client]:
    """An HTTP client of the same service with the key, for setting up and checking behind the page's back."""
    with httpx.Client(base_url=server, headers={"X-API-Key": API_KEY}, timeout=60) as client:
        yield client


@pytest.fixture(scope="session")
def people(tmp_path_factory: pytest.TempPathFactory) -> list[list[Path]]:
    """Seven generated people (personid synth, Market-1501 layout), four crops each over two cameras."""
    from synth import generate

    out = tmp_path_factory.mktemp("crops")
    generate(out, identities=8, test_identities=1, cameras=2, images_per_identity=4, seed=1, progress=False)
    by_person: dict[str, list[Path]] = defaultdict(list)
    for path in sorted((out / "bounding_box_train").glob("*.jpg")):
        by_person[path.name.split("_")[0]].append(path)
    crops = [paths for _, paths in sorted(by_person.items()) if len(paths) >= 4]
    assert len(crops) >= 7, f"synth wrote {len(crops)} people with 4 crops"
    return crops


@pytest.fixture(scope="session")
def chrome(tmp_path_factory: pytest.TempPathFactory, server: str) -> Iterator[Any]:
    """Headless Chromium with a fresh profile; skips every browser test when Debian's Chromium is absent."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent: apt-get install chromium chromium-driver")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (dev extra)")
    if not CHROMEDRIVER.exists():
        pytest.skip(f"{CHROMEDRIVER} is absent: apt-get install chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.add_argument(f"--window-size={DESKTOP[0]},{DESKTOP[1]}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=str(CHROMEDRIVER)))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def set_viewport(driver: Any, width: int, height: int) -> None:
    """Lay the page out `width` CSS pixels wide (a phone with `PHONE`), whatever the window allows."""
    mobile = width < 600
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile},
    )
    driver.execute_cdp_cmd("Emulation.setTouchEmulationEnabled", {"enabled": mobile})


@pytest.fixture
def page(chrome: Any, server: str) -> Iterator[Any]:
    """The page at 1280 x 900, freshly loaded with the right API key entered; fails on an uncaught script error."""
    set_viewport(chrome, *DESKTOP)
    chrome.get("about:blank")  # a new document: nothing kept from the previous test but sessionStorage
    chrome.get(f"{server}/#/analyse")
    chrome.execute_script("sessionStorage.clear()")
    chrome.refresh()
    enter_key(chrome, API_KEY)
    chrome.get_log("browser")  # drop what earlier tests left
    yield chrome
    uncaught = [
        entry["message"]
        for entry in chrome.get_log("browser")
        if entry["level"] == "SEVERE" and "Failed to load resource" not in entry["message"]
    ]
    assert not uncaught, "script errors in the page:\n" + "\n".join(uncaught)


def enter_key(driver: Any, key: str) -> None:
    """Type `key` into the page's API-key field and press Use."""
    from selenium.webdriver.common.by import By

    field = driver.find_element(By.ID, "api-key")
    field.clear()
    field.send_keys(key)
    driver.find_element(By.CSS_SELECTOR, "#apikey-form button[type=submit]").click()
    wait(driver, lambda d: d.execute_script("return sessionStorage.getItem('personid.apiKey')") == (key or None))


def wait(driver: Any, condition: Callable[[Any], Any], timeout: float = 30, message: str = "") -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(condition, message)


def screenshot(driver: Any, name: str, full_page: bool = True) -> None:
    """Save the page (all of it, or what the window shows) to docs/screenshots/NAME.png, only when
    PERSONID_WRITE_DOCS=1."""
    if os.environ.get("PERSONID_WRITE_DOCS") != "1":
        return
    import base64

    driver.execute_script(
        "document.activeElement && document.activeElement.blur();"
        "document.getElementById('toast')?.classList.remove('show')"
    )
    time.sleep(0.3)  # let transitions (toast, focus rings) settle
    metrics = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
    size = metrics.get("cssContentSize") or metrics["contentSize"]
    width, height = driver.execute_script("return [window.innerWidth, window.innerHeight]")
    clip = {"x": 0, "y": 0, "width": width, "height": size["height"] if full_page else height, "scale": 1}
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip}
    )
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    (SCREENSHOTS / f"{name}.png").write_bytes(base64.b64decode(shot["data"]))
