"""The manifest's optional `calibration` block: older manifests stay valid, a calibrated one round-trips, and
temperatures that could not have been applied are refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from personid.manifest import ManifestError, load_manifest, parse_manifest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def shipped() -> dict[str, Any]:
    return json.loads((ROOT / "models" / "default.json").read_text())


def calibrated(raw: dict[str, Any], temperatures: dict[str, float]) -> dict[str, Any]:
    block = {
        "method": "temperature",
        "temperatures": temperatures,
        "fitted_on": "data/proxy (query + gallery, even person ids)",
        "ece_before": 0.12,
        "ece_after": 0.03,
        "details": {"fit_images": 400, "check_images": 380},
    }
    return {**raw, "calibration": block}


def test_shipped_manifest_is_calibrated() -> None:
    manifest = load_manifest(ROOT / "models" / "default.onnx")
    assert manifest.calibration is not None
    assert manifest.calibration.ece_after < manifest.calibration.ece_before
    assert manifest.public()["calibration"]["temperatures"] == manifest.calibration.temperatures


def test_manifest_without_calibration_still_loads(shipped: dict[str, Any]) -> None:
    """Manifests written before the block existed have no `calibration` key at all."""
    manifest = parse_manifest({key: value for key, value in shipped.items() if key != "calibration"})
    assert manifest.calibration is None
    assert manifest.public()["calibration"] is None


def test_calibration_block_round_trips(shipped: dict[str, Any]) -> None:
    temperatures = {"gender": 1.7, "hair": 2.2, "upper_color": 0.8}
    manifest = parse_manifest(calibrated(shipped, temperatures))
    assert manifest.calibration is not None
    assert manifest.calibration.temperatures == temperatures
    assert manifest.calibration.ece_after == 0.03
    again = parse_manifest(json.loads(json.dumps(manifest.model_dump(mode="json"))))
    assert again == manifest
    assert manifest.public()["calibration"]["temperatures"] == temperatures


@pytest.mark.parametrize(
    ("temperatures", "message"),
    [({"gender": 0.0}, "temperatures must be positive"), ({"beard": 1.5}, "calibration names heads")],
)
def test_bad_calibration_is_refused(shipped: dict[str, Any], temperatures: dict[str, float], message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        parse_manifest(calibrated(shipped, temperatures))
