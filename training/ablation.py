"""`personid ablate`: train a base config with named overrides (several seeds), evaluate each run in-domain and on
proxy sets, and write the table (markdown + JSON) and a PNG.

The spec is YAML (configs/ablation.yaml):

    base: configs/default.yaml          # the config every row starts from
    scale: {epochs: 8}                  # overrides for every row: the reduced scale of the ablation
    seeds: [0, 1]
    data_root: data/ablation            # where a row's data goes when its data.synthesize differs from base's
    proxies:                            # held-out sets, generated when missing (`synthesize`: synth.generate kwargs)
      classic: {path: data/proxy-classic, synthesize: {identities: 150, test_identities: 100, seed: 7}}
    variants:                           # name -> {dotted.key: value}; the first row is the reference
      baseline: {}
      no-reduction: {model.embedding_dim: 0, model.embedding_from: feature}

Each run lives in OUT/runs/NAME-sSEED; its `result.json` marks it finished, so a rerun skips it (an interrupted
run resumes from its `last.pt`). Rows whose `data.synthesize` differs from the base config's train on their own set
under `data_root` (named by a hash of the block), generated once. The model scored is the last epoch's (no
selection on the test split).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from tqdm import tqdm

from training.config import TrainConfig, config_from_dict, set_dotted
from training.evaluation.proxy import summary as proxy_summary

METRICS = (("reid", "rank1"), ("reid", "mAP"), ("attributes", "mA"))


class RunFailures(RuntimeError):
    """Some runs failed (listed); the others finished and are in the table, and a rerun retries the failed."""


@dataclass
class AblationSpec:
    base: Path
    variants: dict[str, dict[str, Any]]
    # The base config's YAML as read once at the start: editing the file mid-ablation must not change later rows.
    base_values: dict[str, Any] = field(default_factory=dict)
    scale: dict[str, Any] = field(default_factory=dict)
    seeds: list[int] = field(default_factory=lambda: [0])
    data_root: Path = Path("data/ablation")
    proxies: dict[str, dict[str, Any]] = field(default_factory=dict)


def load_spec(path: Path) -> AblationSpec:
    """Read and check the spec; relative `base` paths are taken from the working directory, as `personid train`."""
    raw = yaml.safe_load(Path(path).read_text()) or {}
    known = {"base", "variants", "scale", "seeds", "data_root", "proxies"}
    if unknown := sorted(set(raw) - known):
        raise ValueError(f"{path}: unknown key(s) {unknown}; known: {sorted(known)}")
    if not raw.get("variants"):
        raise ValueError(f"{path}: `variants` must name at least one row")
    for name, overrides in raw["variants"].items():
        if not isinstance(overrides, dict | None) or "/" in str(name):
            raise ValueError(f"{path}: variant {name!r} must be a mapping of dotted keys (and a name without '/')")
    for name, proxy in (raw.get("proxies") or {}).items():
        if not isinstance(proxy, dict) or "path" not in proxy:
            raise ValueError(f"{path}: proxy {name!r} needs a `path`")
    base = Path(raw.get("base", "configs/default.yaml"))
    if not base.is_file():
        raise FileNotFoundError(f"{path}: base config {base} does not exist")
    return AblationSpec(
        base=base,
        base_values=yaml.safe_load(base.read_text()) or {},
        variants={str(k): dict(v or {}) for k, v in raw["variants"].items()},
        scale=dict(raw.get("scale") or {}),
        seeds=[int(s) for s in raw.get("seeds", [0])],
        data_root=Path(raw.get("data_root", "data/ablation")),
        proxies={str(k): dict(v) for k, v in (raw.get("proxies") or {}).items()},
    )


def synth_key(synthesize: dict[str, Any] | None) -> str:
    return hashlib.sha1(json.dumps(synthesize, sort_keys=True).encode()).hexdigest()[:10]


def _synthesize_of(base_values: dict[str, Any], overrides: dict[str, Any]) -> Any:
    values = copy.deepcopy(base_values)
    for key, value in overrides.items():
        set_dotted(values, key, copy.deepcopy(value))
    return values.get("data", {}).get("synthesize")


def row_config(spec: AblationSpec, variant: str, seed: int, out: Path) -> tuple[TrainConfig, list[str]]:
    """The resolved config of one run and the `--set` overrides that reproduce it with `personid train`."""
    base_values = spec.base_values
    values = copy.deepcopy(base_values)
    overrides = {
        **spec.scale,
        **spec.variants[variant],
        "seed": seed,
        "output": str(out / "runs" / f"{variant}-s{seed}"),
    }
    for key, value in overrides.items():
        set_dotted(values, key, copy.deepcopy(value))  # a later dotted key must not edit the spec's own dicts
    if "eval_every" not in overrides:  # evaluate once, after the last epoch: mid-run evaluations only cost time
        overrides["eval_every"] = values.get("epochs", TrainConfig.epochs)
        values["eval_every"] = overrides["eval_every"]
    synthesize = values.get("data", {}).get("synthesize")
    # A set generated with other arguments than the one at the base's path gets its own folder, unless the
    # spec names the path itself (in `scale` for every row, or in the variant).
    named = "data.path" in spec.variants[variant] or (
        "data.path" in spec.scale and synthesize == _synthesize_of(base_values, spec.scale)
    )
    if synthesize and not named and synthesize != _synthesize_of(base_values, {}):
        overrides["data.path"] = str(spec.data_root / synth_key(synthesize))
        set_dotted(values, "data.path", overrides["data.path"])
    args = [f"{key}={json.dumps(value)}" for key, value in overrides.items()]
    return config_from_dict(values), args


def ensure_proxy(name: str, proxy: dict[str, Any]) -> Path:
    path = Path(proxy["path"])
    if not path.exists():
        if not proxy.get("synthesize"):
            raise FileNotFoundError(f"proxy {name!r}: {path} does not exist and has no `synthesize` block")
        import synth

        tqdm.write(f"ablate: generating proxy {name!r} at {path}")
        synth.generate(path, **proxy["synthesize"], progress=False)
    return path


def evaluate_run(
    run_dir: Path, in_domain: Path, proxies: dict[str, Path], workers: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Score the run's last checkpoint on each proxy with `personid eval`'s figures, and its re-id on every set
    (in-domain too) with the plain pooled backbone feature instead of the exported embedding: a diagnostic that
    shows whether the neck on top of the backbone (reduction, BNNeck) helps or hurts on each set."""
    import torch
    import torch.nn.functional as F

    from training.data.datasets import load_dataset
    from training.data.transforms import build_eval_transform
    from training.engine.checkpoint import load_model
    from training.evaluation.evaluate import evaluate_model, score

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model, info = load_model(run_dir / "last.pt", map_location=device)
    d = info["config"]["data"]
    transform = build_eval_transform(d["height"], d["width"], d["mean"], d["std"])

    @torch.no_grad()
    def pooled(images: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        feature = F.normalize(model.pool(model.backbone(images.to(device))), dim=1)
        return feature.float().cpu().numpy(), np.zeros((len(images), model.schema.num_outputs), np.float32)

    scores, pooled_reid = {}, {}
    for name, path in {"in-domain": in_domain, **proxies}.items():
        split, batch = load_dataset(path), d["eval_batch_size"]
        if name != "in-domain":  # the trainer scored the in-domain split after the last epoch already
            scores[name] = evaluate_model(model, split, transform, device, batch, workers)
        pooled_reid[name] = score(split, model.schema.heads, pooled, transform, batch, workers)["reid"]
    return scores, pooled_reid


def run_row(cfg: TrainConfig, proxies: dict[str, Path]) -> dict[str, Any]:
    """Train (resuming an interrupted run), evaluate, and write `result.json` last: it marks the run finished."""
    from training.engine import train
    from training.train import ensure_data

    run_dir = Path(cfg.output)
    started = time.time()
    ensure_data(cfg)
    record = train(cfg, resume=(run_dir / "last.pt").is_file())
    scores, pooled_reid = evaluate_run(run_dir, Path(cfg.data.path), proxies, cfg.data.workers)
    result = {
        "in_domain": record.get("eval") or {},
        "proxies": scores,
        "pooled": pooled_reid,
        "epochs": record.get("epoch"),
        "minutes": round((time.time() - started) / 60, 2),
        "data": cfg.data.path,
    }
    (run_dir / "result.json").write_text(json.dumps(result, indent=1))
    return result


def _pick(result: dict[str, Any], section: str, metric: str) -> float:
    value = (result.get(section) or {}).get(metric)
    return float(value) if value is not None else math.nan


def summarise(spec: AblationSpec, results: dict[str, dict[int, dict[str, Any]]]) -> list[dict[str, Any]]:
    """One row per variant: mean and standard deviation over its finished seeds of every column."""
    rows = []
    for variant, overrides in spec.variants.items():
        runs = results.get(variant, {})
        columns: dict[str, list[float]] = {}
        for result in runs.values():
            sets = {"in-domain": result["in_domain"], **result["proxies"]}
            for set_name, figures in sets.items():
                for section, metric in METRICS:
                    columns.setdefault(f"{set_name} {metric}", []).append(_pick(figures, section, metric))
                if (figures.get("attributes") or {}).get("per_head_balanced_accuracy"):
                    heads = proxy_summary(figures)  # the heads issue 12 sets targets for
                    for key, column in (("balanced_mean", "head-bal-mean"), ("balanced_min", "head-bal-min")):
                        value = heads[key]
                        columns.setdefault(f"{set_name} {column}", []).append(math.nan if value is None else value)
            for set_name, reid in result.get("pooled", {}).items():
                columns.setdefault(f"{set_name} pooled mAP", []).append(float(reid["mAP"]))
        rows.append(
            {
                "variant": variant,
                "overrides": overrides,
                "seeds": sorted(runs),
                "minutes": round(sum(r["minutes"] for r in runs.values()), 1),
                "mean": {k: float(np.nanmean(v)) if not np.isnan(v).all() else None for k, v in columns.items()},
                "std": {k: float(np.nanstd(v)) if len(v) > 1 else None for k, v in columns.items()},
            }
        )
    return rows


def markdown_table(rows: list[dict[str, Any]]) -> str:
    columns = list(dict.fromkeys(k for row in rows for k in row["mean"]))
    lines = [
        "| variant | overrides | seeds | " + " | ".join(columns) + " | minutes |",
        "|---|---|---|" + "---|" * len(columns) + "---|",
    ]
    for row in rows:
        cells = []
        for column in columns:
            mean, std = row["mean"].get(column), row["std"].get(column)
            cells.append("-" if mean is None else f"{mean:.3f}" + (f" ± {std:.3f}" if std is not None else ""))
        overrides = ", ".join(f"`{k}={json.dumps(v)}`" for k, v in row["overrides"].items()) or "(base)"
        seeds = ",".join(map(str, row["seeds"])) or "-"
        lines.append(f"| {row['variant']} | {overrides} | {seeds} | " + " | ".join(cells) + f" | {row['minutes']} |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """One panel per metric: a bar per variant and set, the error bar the spread over seeds."""
    from matplotlib.figure import Figure

    sets = list(dict.fromkeys(k.rsplit(" ", 1)[0] for row in rows for k in row["mean"]))
    metrics = [*(metric for _, metric in METRICS), "head-bal-mean"]
    fig = Figure(figsize=(max(10.0, 1.1 * len(rows) * 2), 8))
    axes = fig.subplots(2, 2).flatten()
    x = np.arange(len(rows))
    width = 0.8 / max(1, len(sets))
    for ax, metric in zip(axes, metrics, strict=True):
        for j, set_name in enumerate(sets):
            key = f"{set_name} {metric}"
            means = [row["mean"].get(key) for row in rows]
            stds = [row["std"].get(key) or 0.0 for row in rows]
            ax.bar(
                x + (j - (len(sets) - 1) / 2) * width,
                [math.nan if m is None else m for m in means],
                width,
                yerr=stds,
                capsize=2,
                label=set_name,
            )
        ax.set_xticks(x, [row["variant"] for row in rows], rotation=35, ha="right", fontsize=7)
        ax.set_ylim(0, 1)
        ax.set_title(metric)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def write_report(spec: AblationSpec, results: dict[str, dict[int, dict[str, Any]]], out: Path) -> None:
    rows = summarise(spec, results)
    (out / "ablation.json").write_text(
        json.dumps({"base": str(spec.base), "scale": spec.scale, "rows": rows, "runs": results}, indent=1)
    )
    (out / "ablation.md").write_text(markdown_table(rows))
    plot(rows, out / "ablation.png")


def run_ablation(spec: AblationSpec, out: Path, only: list[str] | None = None) -> dict[str, dict[int, dict[str, Any]]]:
    """Every (variant, seed) not finished yet, then the table; returns the results by variant and seed."""
    out.mkdir(parents=True, exist_ok=True)
    if unknown := sorted(set(only or []) - set(spec.variants)):
        raise ValueError(f"--only names unknown variants {unknown}; the spec has {list(spec.variants)}")
    proxies = {name: ensure_proxy(name, proxy) for name, proxy in spec.proxies.items()}
    jobs = [(v, s) for v in spec.variants for s in spec.seeds if not only or v in only]
    results: dict[str, dict[int, dict[str, Any]]] = {}
    failures: list[str] = []
    for variant in spec.variants:  # finished runs, also of the variants --only leaves out
        for seed in spec.seeds:
            done = out / "runs" / f"{variant}-s{seed}" / "result.json"
            if done.is_file():
                results.setdefault(variant, {})[seed] = json.loads(done.read_text())
    with open(out / "commands.txt", "w") as commands:
        for variant, seed in jobs:
            _, args = row_config(spec, variant, seed, out)
            sets = " ".join(f"--set '{a}'" for a in args)
            commands.write(f"personid train --config {spec.base} {sets}\n")
    for variant, seed in tqdm(jobs, desc="ablation", unit="run", file=sys.stderr):
        if seed in results.get(variant, {}):
            continue
        cfg, _ = row_config(spec, variant, seed, out)
        tqdm.write(f"ablate: {variant} seed {seed} -> {cfg.output}")
        try:
            results.setdefault(variant, {})[seed] = run_row(cfg, proxies)
        except (FloatingPointError, RuntimeError, ValueError) as exc:  # one diverging row must not stop the rest
            failures.append(f"{variant} seed {seed}: {type(exc).__name__}: {exc}")
            tqdm.write(f"ablate: {failures[-1]}")
            continue
        write_report(spec, results, out)  # a table after every run: partial results are readable
    write_report(spec, results, out)
    if failures:
        raise RunFailures("; ".join(failures))
    return results


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="personid ablate", description=__doc__.splitlines()[0])
    parser.add_argument("spec", type=Path, help="ablation spec YAML (configs/ablation.yaml)")
    parser.add_argument("--out", type=Path, default=Path("runs/ablation"), help="runs, table and figure go here")
    parser.add_argument("--seeds", type=int, nargs="+", help="override the spec's seeds")
    parser.add_argument("--only", nargs="+", help="run only these variants (the table still lists all)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="add to the spec's `scale` (every row), e.g. --set epochs=3 (repeatable)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        spec = load_spec(args.spec)
        if args.seeds:
            spec.seeds = args.seeds
        for item in args.overrides:
            if "=" not in item:
                raise ValueError(f"--set expects key=value, got {item!r}")
            key, raw = item.split("=", 1)
            spec.scale[key.strip()] = yaml.safe_load(raw)
        run_ablation(spec, args.out, args.only)
    except (FileNotFoundError, ValueError) as exc:
        print(f"personid ablate: {exc}", file=sys.stderr)
        return 2
    except RunFailures as exc:
        print(f"personid ablate: failed runs (the table has the others): {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"table": str(args.out / "ablation.md"), "json": str(args.out / "ablation.json")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
