"""notebooks/walkthrough.ipynb, executed top to bottom by a real Jupyter kernel (nbclient), as a newcomer runs it.

The kernel is this interpreter: a kernelspec written into a temporary JUPYTER_PATH names `sys.executable`, so
no kernel has to be registered beforehand (`pip install -e ".[serve,train,dev]"` is all it needs) and no
`python3` kernel of another environment (say, a user-level one in ~/.local/share/jupyter) can be picked up
instead; Jupyter's runtime files and IPython's profile go to the temporary folder too. The notebook writes
everything under PERSONID_WALKTHROUGH_DIR, including `walkthrough.json` with what it found, which this test
checks.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
from pathlib import Path

import nbformat
import pytest
from ipykernel.kernelspec import write_kernel_spec
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "walkthrough.ipynb"
KERNEL = "personid-walkthrough"
CELL_TIMEOUT_S = 600


def _stop_leftover_server(pid_file: Path) -> None:
    """Should the notebook fail before its last cell (and its kernel not stop the service), stop that process:
    only the one the notebook started, found by the pid it wrote, and only if it is still `personid serve`."""
    if not pid_file.is_file():
        return
    pid = int(pid_file.read_text())
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return
    if b"personid.cli" in cmdline and b"serve" in cmdline:
        os.kill(pid, signal.SIGTERM)


def test_stored_without_outputs() -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, "clear the notebook's outputs before committing"


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_walkthrough_runs_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    jupyter_path = tmp_path / "jupyter"
    write_kernel_spec(jupyter_path / "kernels" / KERNEL, overrides={"display_name": f"personid ({sys.executable})"})
    monkeypatch.setenv("JUPYTER_PATH", str(jupyter_path))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))  # connection files
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))  # the kernel's profile
    work = tmp_path / "work"
    monkeypatch.setenv("PERSONID_WALKTHROUGH_DIR", str(work))

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        notebook,
        kernel_name=KERNEL,
        timeout=CELL_TIMEOUT_S,
        startup_timeout=120,
        resources={"metadata": {"path": str(tmp_path)}},  # the kernel's working folder
    )
    try:
        client.execute()
    finally:
        nbformat.write(notebook, tmp_path / "walkthrough.executed.ipynb")  # to read when something failed
        _stop_leftover_server(work / "server.pid")

    results = json.loads((work / "walkthrough.json").read_text())

    for name, value in results["eval"].items():
        assert type(value) in (int, float) and math.isfinite(value) and 0.0 <= value <= 1.0, (name, value)
    manifest = json.loads((work / "models" / "walkthrough.json").read_text())
    assert results["model_id"] == manifest["model_id"], "the service serves the model the notebook exported"
    assert manifest["metrics"]["reid"]["mAP"] == pytest.approx(results["eval"]["mAP"])
    assert (work / "contact_sheet.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    attributes = results["attributes"]
    assert attributes["heads"] == len(manifest["outputs"]["attributes"]["heads"]) == 12
    labels = {head["name"]: head["labels"] for head in manifest["outputs"]["attributes"]["heads"]}
    assert all(label in labels[head] for head, label in attributes["labels"].items())

    searches = results["searches"]
    assert len(searches) == 4
    for search in searches:
        scores = [match["score"] for match in search["matches"]]
        assert len(scores) == 3 and all(-1.0 <= s <= 1.0 for s in scores) and scores == sorted(scores, reverse=True)
        assert {match["identity_id"] for match in search["matches"]} <= {s["expected"] for s in searches}
    first = searches[0]
    assert first["matches"][0]["identity_id"] == first["expected"], first

    assert results["server"] == {"returncode": results["server"]["returncode"], "stopped": True}
