"""`personid serve`: options from Settings, no torch, and a real uvicorn process on a free local port."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from app.cli import build_parser, main, settings_from_args
from app.settings import Settings
from personid.manifest import manifest_path, model_id, parse_manifest
from tests.app.conftest import ROOT, free_port, image_file, person_image, serving


def test_service_modules_never_import_torch() -> None:
    code = "import app.main, app.cli, app.routes, sys; assert 'torch' not in sys.modules, 'torch was imported'"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_every_setting_is_an_option() -> None:
    options = {action.dest for action in build_parser()._actions}
    assert set(Settings.model_fields) <= options


def test_options_override_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERSONID_MAX_BATCH_SIZE", "7")
    monkeypatch.setenv("PERSONID_COLLECTION", "from-env")
    settings, env = settings_from_args(["--max-batch-size", "3", "--no-batching", "--api-keys", "a,b"])
    assert settings.max_batch_size == 3 and settings.batching is False
    assert [key.get_secret_value() for key in settings.api_keys] == ["a", "b"]
    assert settings.collection == "from-env"
    assert env == {"PERSONID_MAX_BATCH_SIZE": "3", "PERSONID_BATCHING": "false", "PERSONID_API_KEYS": "a,b"}
    assert os.environ["PERSONID_MAX_BATCH_SIZE"] == "7", "parsing must not leak into this process's environment"


def test_bad_option_value_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--port", "0"]) == 2
    assert "--port" in capsys.readouterr().err


def test_real_server_serves_and_keeps_identities_across_restarts(model_path: Path, tmp_path: Path) -> None:
    options = (
        "--model-path", str(model_path), "--qdrant-path", str(tmp_path / "qdrant"), "--intra-op-threads", "1",
        "--max-upload-bytes", "100000", "--api-keys", "k1",
    )  # fmt: skip
    log = tmp_path / "server.log"
    with serving(*options, log=log) as url:
        assert httpx.get(f"{url}/readyz").status_code == 200
        files = [("images", image_file(person_image(1)))]
        enrolled = httpx.post(
            f"{url}/v1/identities", files=files, data={"identity_id": "dana"}, headers={"X-API-Key": "k1"}
        )
        assert enrolled.status_code == 201, enrolled.text
        too_big = httpx.post(f"{url}/v1/embeddings", files={"image": image_file(b"\0" * 300_000)})
        assert too_big.status_code == 413
        assert too_big.headers["content-type"] == "application/problem+json"
        assert httpx.get(f"{url}/healthz").status_code == 200

    with serving(*options, log=log) as url:
        assert httpx.get(f"{url}/v1/identities/dana").json()["image_ids"] == enrolled.json()["image_ids"]
        found = httpx.post(f"{url}/v1/search", files={"image": image_file(person_image(1))}).json()["matches"]
        assert found[0]["identity_id"] == "dana" and found[0]["score"] > 0.999
        assert "personid_http_requests_total" in httpx.get(f"{url}/metrics").text


def test_real_server_refuses_to_start_on_a_manifest_mismatch(model_path: Path, tmp_path: Path) -> None:
    onnx_copy = tmp_path / "m.onnx"
    shutil.copy(model_path, onnx_copy)
    manifest = json.loads(manifest_path(model_path).read_text())
    manifest["outputs"]["embedding"]["dim"] = 999
    edited = parse_manifest(manifest)  # a consistent id, so that the graph check is what refuses it
    manifest["model_id"] = model_id(onnx_copy, edited.input, edited.outputs)
    manifest_path(onnx_copy).write_text(json.dumps(manifest))
    port = str(free_port())
    command = [sys.executable, "-m", "personid.cli", "serve", "--port", port, "--model-path", str(onnx_copy),
               "--qdrant-path", str(tmp_path / "q")]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "N x 999" in result.stdout + result.stderr
