"""The service installs and imports without torch, as the Docker runtime image does.

The slow test builds exactly what the Dockerfile's build stage copies (pyproject.toml, README.md, app/,
personid/: no training/) into a fresh virtual environment with `pip install ".[serve]"`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICE_SOURCES = ("pyproject.toml", "README.md", "app", "personid")
HEAVY = ("torch", "torchvision", "training")

# Imports every module of app/ and reports which heavy packages ended up loaded.
IMPORT_ALL_OF_APP = """
import importlib, json, pkgutil, sys
import app
for module in pkgutil.iter_modules(app.__path__):
    importlib.import_module(f"app.{module.name}")
loaded = sorted({name.split(".")[0] for name in sys.modules} & set(json.loads(sys.argv[1])))
print(json.dumps(loaded))
"""


def _run(argv: list[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(argv)} failed:\n{result.stdout}\n{result.stderr}"
    return result


def test_app_modules_import_without_torch_or_training() -> None:
    """Even where torch is installed (this venv), the service never loads it."""
    result = _run([sys.executable, "-c", IMPORT_ALL_OF_APP, json.dumps(HEAVY)], cwd=ROOT)
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


@pytest.mark.slow
def test_serve_extra_installs_and_imports_without_torch(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    for name in SERVICE_SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(path, source / name)

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    started = time.perf_counter()
    _run([str(python), "-m", "pip", "install", "-q", f"{source}[serve]"], cwd=tmp_path, timeout=900)
    print(f"pip install .[serve] into a fresh venv: {time.perf_counter() - started:.0f} s")

    installed = json.loads(_run([str(python), "-m", "pip", "list", "--format=json"], cwd=tmp_path).stdout)
    names = {item["name"].lower() for item in installed}
    assert {"fastapi", "onnxruntime", "qdrant-client", "qdrant-edge-py", "uvicorn"} <= names
    assert not names & {"torch", "torchvision"}, "the serve extra pulled torch"

    # cwd=tmp_path: the installed package is imported, not the repository's folders.
    result = _run([str(python), "-c", IMPORT_ALL_OF_APP, json.dumps(HEAVY)], cwd=tmp_path)
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
    _run([str(python), "-c", "import app.main"], cwd=tmp_path)
    usage = _run([str(env_dir / "bin" / "personid"), "--help"], cwd=tmp_path).stdout
    assert "serve" in usage
