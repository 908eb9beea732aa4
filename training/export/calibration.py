"""Per-head temperature scaling of the attribute heads (Guo et al. 2017), fitted on held-out labelled images.

One temperature T per head divides that head's logits before its softmax (or sigmoid): the argmax and a binary
head's 0.5 threshold do not move, so accuracy and mA are unchanged; only the confidence does, until a score of
0.8 is right about 80% of the time. `personid export --calibrate-on DATASET` fits T on one half of the dataset's
labelled test identities, reports ECE on the other half, folds T into the ONNX graph (the service reads
calibrated probabilities unchanged) and records both in the manifest's `calibration` block.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import expit, log_softmax

from personid.manifest import HeadLike, head_slices

BINS = 15  # ECE bins over the confidence (Guo et al.)
LOG_T_BOUNDS = (float(np.log(0.1)), float(np.log(20.0)))


def head_probabilities(logits: np.ndarray, head_type: str, temperature: float = 1.0) -> np.ndarray:
    """One head's probabilities from its logit columns, as the graph computes them (sigmoid or softmax)."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    return np.asarray(expit(z) if head_type == "binary" else np.exp(log_softmax(z, axis=1)))


def head_nll(logits: np.ndarray, targets: np.ndarray, head_type: str, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the known targets (>= 0) of one head at `temperature`."""
    known = targets >= 0
    z = np.asarray(logits, dtype=np.float64)[known] / temperature
    t = targets[known]
    if head_type == "binary":
        z = z[:, 0]
        return float(np.mean(np.logaddexp(0.0, z) - t * z))  # -log sigmoid(z) for t=1, -log(1-sigmoid) for t=0
    return float(-log_softmax(z, axis=1)[np.arange(len(t)), t].mean())


def fit_temperatures(logits: np.ndarray, targets: np.ndarray, heads: Sequence[HeadLike]) -> dict[str, float]:
    """The NLL-minimising temperature of each head, in [0.1, 20].

    A head without known targets, or one that makes no mistake on them, keeps T = 1: its NLL falls without end as
    T goes to 0, so the data says nothing about its temperature and sharpening it would only overstate it.
    """
    temperatures = {}
    for j, (head, columns) in enumerate(zip(heads, head_slices(heads), strict=True)):
        t = targets[:, j]
        known = t >= 0
        cols = logits[:, columns]
        predicted = (cols[:, 0] > 0).astype(np.int64) if head.type == "binary" else cols.argmax(1)
        if not known.any() or (predicted[known] == t[known]).all():
            temperatures[head.name] = 1.0
            continue
        fit = minimize_scalar(
            lambda log_t, c=cols, y=t, kind=head.type: head_nll(c, y, kind, float(np.exp(log_t))),
            bounds=LOG_T_BOUNDS,
            method="bounded",
        )
        temperatures[head.name] = float(np.exp(fit.x))
    return temperatures


def column_temperatures(heads: Sequence[HeadLike], temperatures: dict[str, float]) -> np.ndarray:
    """Per-column divisors (M,) of the concatenated attribute logits, each head's T over its columns."""
    out = np.ones(sum(int(h.size) for h in heads), dtype=np.float32)
    for head, columns in zip(heads, head_slices(heads), strict=True):
        out[columns] = temperatures.get(head.name, 1.0)
    return out


def probabilities(
    logits: np.ndarray, heads: Sequence[HeadLike], temperatures: dict[str, float] | None = None
) -> np.ndarray:
    """All heads' probabilities (N x M) at the given temperatures (none: the uncalibrated model)."""
    temperatures = temperatures or {}
    parts = [
        head_probabilities(logits[:, columns], head.type, temperatures.get(head.name, 1.0))
        for head, columns in zip(heads, head_slices(heads), strict=True)
    ]
    return np.concatenate(parts, axis=1)


def confidence_correct(
    probs: np.ndarray, targets: np.ndarray, heads: Sequence[HeadLike]
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per head, over known targets: the confidence of the predicted label and whether it is right.

    A binary head predicts labels[1] when p > 0.5 with confidence max(p, 1 - p); a softmax head its argmax.
    """
    out = {}
    for j, (head, columns) in enumerate(zip(heads, head_slices(heads), strict=True)):
        known = targets[:, j] >= 0
        cols, t = probs[known][:, columns], targets[known, j]
        if head.type == "binary":
            p = cols[:, 0]
            out[head.name] = (np.maximum(p, 1 - p), (p > 0.5).astype(np.int64) == t)
        else:
            out[head.name] = (cols.max(1), cols.argmax(1) == t)
    return out


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = BINS) -> float | None:
    """ECE: the sample-weighted mean |accuracy - confidence| over equal-width confidence bins."""
    if len(confidence) == 0:
        return None
    which = np.clip((np.asarray(confidence) * bins).astype(np.int64), 0, bins - 1)
    total = 0.0
    for b in np.unique(which):
        in_bin = which == b
        total += in_bin.sum() * abs(float(correct[in_bin].mean()) - float(confidence[in_bin].mean()))
    return total / len(confidence)


def calibration_figures(
    logits: np.ndarray, targets: np.ndarray, heads: Sequence[HeadLike], temperatures: dict[str, float] | None
) -> dict[str, Any]:
    """ECE and NLL per head and their means over heads with known targets, at `temperatures`."""
    temperatures = temperatures or {}
    pairs = confidence_correct(probabilities(logits, heads, temperatures), targets, heads)
    per_head: dict[str, dict[str, float | None]] = {}
    for j, (head, columns) in enumerate(zip(heads, head_slices(heads), strict=True)):
        known = (targets[:, j] >= 0).any()
        nll = (
            head_nll(logits[:, columns], targets[:, j], head.type, temperatures.get(head.name, 1.0)) if known else None
        )
        per_head[head.name] = {"ece": expected_calibration_error(*pairs[head.name]), "nll": nll}
    eces = [f["ece"] for f in per_head.values() if f["ece"] is not None]
    nlls = [f["nll"] for f in per_head.values() if f["nll"] is not None]
    return {
        "ece": float(np.mean(eces)) if eces else None,
        "nll": float(np.mean(nlls)) if nlls else None,
        "per_head": per_head,
    }


def reliability_diagram(
    logits: np.ndarray,
    targets: np.ndarray,
    heads: Sequence[HeadLike],
    temperatures: dict[str, float],
    path: str | Path,
    title: str = "",
    bins: int = 10,
) -> Path:
    """PNG: accuracy against confidence over all heads pooled, before and after calibration, with the bin counts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, counts) = plt.subplots(2, 1, figsize=(5.5, 6.5), height_ratios=[3, 1], sharex=True)
    ax.plot([0, 1], [0, 1], color="0.6", linestyle="--", label="perfect")
    edges = np.linspace(0, 1, bins + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    for label, temps, colour in (("before", None, "tab:red"), ("after", temperatures, "tab:blue")):
        pairs = confidence_correct(probabilities(logits, heads, temps), targets, heads)
        conf = np.concatenate([c for c, _ in pairs.values()])
        correct = np.concatenate([k for _, k in pairs.values()]).astype(np.float64)
        which = np.clip((conf * bins).astype(np.int64), 0, bins - 1)
        filled = [b for b in range(bins) if (which == b).any()]
        accuracy = [correct[which == b].mean() for b in filled]
        mean_conf = [conf[which == b].mean() for b in filled]
        ece = np.mean([expected_calibration_error(*pair) or 0.0 for pair in pairs.values()])
        ax.plot(mean_conf, accuracy, marker="o", color=colour, label=f"{label} (mean ECE over heads {ece:.3f})")
        counts.bar(centres + (-0.02 if label == "before" else 0.02), np.bincount(which, minlength=bins), width=0.04,
                   color=colour, label=label)  # fmt: skip
    ax.set_ylabel("fraction correct")
    ax.set_title(title or "attribute reliability (all heads pooled)")
    ax.legend(loc="upper left")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    counts.set_xlabel("confidence of the predicted label")
    counts.set_ylabel("predictions")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def logits_from_probabilities(probs: np.ndarray, heads: Sequence[HeadLike], eps: float = 1e-7) -> np.ndarray:
    """Logits that give `probs` back (log-odds for binary columns, log-probabilities for softmax heads, exact up
    to the constant a softmax ignores): an exported graph's outputs can be calibrated without its checkpoint."""
    p = np.clip(np.asarray(probs, dtype=np.float64), eps, 1 - eps)
    out = np.log(p)
    for head, columns in zip(heads, head_slices(heads), strict=True):
        if head.type == "binary":
            out[:, columns] = np.log(p[:, columns]) - np.log1p(-p[:, columns])
    return out


def main(argv: list[str] | None = None) -> int:
    """`python -m training.export.calibration --onnx M --data D`: how calibrated an exported model is on `data`
    (temperatures fitted on even person ids, ECE before/after on odd ones), JSON on stdout, optional diagram."""
    import argparse
    import json

    from personid.manifest import load_manifest
    from training.data.datasets import load_dataset
    from training.data.transforms import EvalTransform
    from training.evaluation.evaluate import aligned_targets, extract, onnx_runner

    parser = argparse.ArgumentParser(prog="python -m training.export.calibration", description=main.__doc__)
    parser.add_argument("--onnx", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True, help="labelled held-out set (query + gallery are used)")
    parser.add_argument("--png", type=Path, help="write the reliability diagram here")
    args = parser.parse_args(argv)
    manifest = load_manifest(args.onnx)
    heads = manifest.outputs.attributes.heads
    split = load_dataset(args.data)
    records = [r for r in split.query + split.gallery if r.attrs is not None]
    if split.schema is None or not records:
        raise SystemExit(f"{args.data}: no attribute-labelled query or gallery images")
    targets = aligned_targets(records, split.schema, heads)
    run = onnx_runner(args.onnx, manifest)
    _, probs = extract(run, records, EvalTransform(manifest.input), len(split.schema.heads), desc="calibration")
    logits = logits_from_probabilities(probs, heads)
    fit = np.array([r.pid for r in records]) % 2 == 0
    temperatures = fit_temperatures(logits[fit], targets[fit], heads)
    report = {
        "onnx": str(args.onnx),
        "data": str(args.data),
        "fit_images": int(fit.sum()),
        "check_images": int((~fit).sum()),
        "temperatures": temperatures,
        "before": calibration_figures(logits[~fit], targets[~fit], heads, None),
        "after": calibration_figures(logits[~fit], targets[~fit], heads, temperatures),
    }
    if args.png is not None:
        title = f"{args.onnx.name} on held-out ids of {args.data.name}"
        reliability_diagram(logits[~fit], targets[~fit], heads, temperatures, args.png, title)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
