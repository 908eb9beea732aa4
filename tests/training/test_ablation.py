"""`personid ablate` at configs/smoke.yaml scale: every row trained and scored in-domain and on a proxy set, the
table written as markdown, JSON and PNG, and a rerun skipping the finished rows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from training import ablation
from training.ablation import load_spec, main, row_config
from training.config import TrainConfig

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "configs" / "smoke.yaml"
TINY = {"identities": 8, "test_identities": 4, "cameras": 2, "images_per_identity": 4, "seed": 0}


def write_spec(tmp_path: Path) -> Path:
    spec = {
        "base": str(SMOKE),
        "scale": {"data.path": str(tmp_path / "data"), "data.synthesize": TINY, "epochs": 1, "max_steps_per_epoch": 1},
        "seeds": [0],
        "data_root": str(tmp_path / "variant-data"),
        "proxies": {"other-seed": {"path": str(tmp_path / "proxy"), "synthesize": {**TINY, "seed": 7}}},
        "variants": {
            "base": {},
            "pooled": {"model.embedding_dim": 0, "model.embedding_from": "feature"},
            "greyscale": {"data.augment.greyscale": 0.5},
        },
    }
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def test_ablation_writes_its_table_and_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    spec, out = write_spec(tmp_path), tmp_path / "out"
    assert main([str(spec), "--out", str(out), "--only", "base", "pooled"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["table"] == str(out / "ablation.md")
    report = json.loads((out / "ablation.json").read_text())
    rows = {row["variant"]: row for row in report["rows"]}
    assert list(rows) == ["base", "pooled", "greyscale"]  # the spec's order; greyscale not run yet
    assert rows["greyscale"]["seeds"] == [] and rows["greyscale"]["mean"] == {}
    for name in ("base", "pooled"):
        assert rows[name]["seeds"] == [0]
        for column in ("in-domain rank1", "in-domain mAP", "in-domain mA", "other-seed mAP", "other-seed head-bal-min"):
            assert 0.0 <= rows[name]["mean"][column] <= 1.0, (name, column)
        result = json.loads((out / "runs" / f"{name}-s0" / "result.json").read_text())
        assert result["epochs"] == 1 and set(result["proxies"]) == {"other-seed"}
        assert set(result["pooled"]) == {"in-domain", "other-seed"}
        assert 0.0 <= rows[name]["mean"]["other-seed pooled mAP"] <= 1.0
    assert yaml.safe_load((out / "runs" / "pooled-s0" / "config.yaml").read_text())["model"]["embedding_dim"] == 0
    table = (out / "ablation.md").read_text()
    assert '| pooled | `model.embedding_dim=0`, `model.embedding_from="feature"` | 0 |' in table
    assert (out / "ablation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    commands = (out / "commands.txt").read_text().splitlines()
    assert len(commands) == 2 and "--set 'model.embedding_dim=0'" in commands[1]

    # A rerun trains only the row that is missing; the finished ones are read back, not trained again.
    trained: list[str] = []
    real_run_row = ablation.run_row

    def counting_run_row(cfg: TrainConfig, proxies: dict[str, Path]) -> dict[str, Any]:
        trained.append(cfg.output)
        return real_run_row(cfg, proxies)

    monkeypatch.setattr(ablation, "run_row", counting_run_row)
    assert main([str(spec), "--out", str(out)]) == 0
    assert trained == [str(out / "runs" / "greyscale-s0")]
    rows = {row["variant"]: row for row in json.loads((out / "ablation.json").read_text())["rows"]}
    assert all(rows[name]["seeds"] == [0] for name in rows)
    assert main([str(spec), "--out", str(out)]) == 0
    assert len(trained) == 1

    # A run that fails is reported (exit 1) without losing the finished rows; a rerun retries only it.
    broken = yaml.safe_load(spec.read_text())
    broken["variants"]["broken"] = {"model.embedding_from": "nowhere"}
    spec.write_text(yaml.safe_dump(broken, sort_keys=False))
    assert main([str(spec), "--out", str(out)]) == 1
    assert "broken seed 0: ValueError: embedding_from must be" in capsys.readouterr().err
    rows = {row["variant"]: row for row in json.loads((out / "ablation.json").read_text())["rows"]}
    assert rows["broken"]["seeds"] == [] and rows["base"]["seeds"] == [0]
    assert trained[-1] == str(out / "runs" / "broken-s0")


def test_rows_that_change_the_generated_set_get_their_own_data(tmp_path: Path) -> None:
    spec = load_spec(write_spec(tmp_path))
    spec.variants["more-ids"] = {"data.synthesize.identities": 10}
    same, args = row_config(spec, "base", 1, tmp_path / "out")
    other, other_args = row_config(spec, "more-ids", 1, tmp_path / "out")
    assert same.data.path == str(tmp_path / "data") and same.seed == 1 and same.eval_every == same.epochs == 1
    assert other.data.path.startswith(str(tmp_path / "variant-data")) and other.data.synthesize["identities"] == 10
    assert f"data.path={json.dumps(other.data.path)}" in other_args and "seed=1" in args
    spec.scale.pop("data.path")  # the base's path holds the base's set: a row generating another set moves away
    moved, _ = row_config(spec, "base", 0, tmp_path / "out")
    assert moved.data.path.startswith(str(tmp_path / "variant-data")) and moved.data.path != other.data.path
    spec.scale.pop("data.synthesize")
    assert row_config(spec, "base", 0, tmp_path / "out")[0].data.path == "data/smoke"


def test_the_base_config_is_read_once(tmp_path: Path) -> None:
    base = tmp_path / "base.yaml"
    base.write_text(SMOKE.read_text())
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump({"base": str(base), "variants": {"a": {}}}))
    spec = load_spec(spec_path)
    base.write_text(SMOKE.read_text().replace("embedding_dim: 64", "embedding_dim: 0"))  # edited mid-ablation
    assert row_config(spec, "a", 0, tmp_path / "out")[0].model.embedding_dim == 64
    base.unlink()
    with pytest.raises(FileNotFoundError, match="base config"):
        load_spec(spec_path)


def test_bad_specs_are_clear_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"base": str(SMOKE), "variants": {}}))
    assert main([str(path)]) == 2
    assert "at least one row" in capsys.readouterr().err
    path.write_text(yaml.safe_dump({"base": str(SMOKE), "variants": {"a": {}}, "typo": 1}))
    assert main([str(path)]) == 2
    assert "unknown key(s) ['typo']" in capsys.readouterr().err
    path.write_text(yaml.safe_dump({"base": str(SMOKE), "variants": {"a": {}}}))
    assert main([str(path), "--out", str(tmp_path / "o"), "--only", "b"]) == 2
    assert "unknown variants ['b']" in capsys.readouterr().err
