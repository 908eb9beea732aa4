"""`personid <command> ...`: imports only the module of the command asked for.

Each command module exposes `main(argv: list[str]) -> int` with its own argparse parser, so that
`personid serve` never imports torch and `personid --help` starts instantly.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("app.cli", "run the HTTP service (ONNX Runtime + Qdrant)"),
    "gallery": ("app.gallery_cli", "back up, restore, index or inspect the gallery (no model, no torch)"),
    "synth": ("synth.cli", "generate a synthetic Market-1501-format pedestrian dataset"),
    "data": ("training.data.stats", "dataset tools: `personid data stats DIR`"),
    "train": ("training.train", "train the multi-task model from a YAML config"),
    "ablate": ("training.ablation", "train config variants x seeds, score in-domain and on proxies, write a table"),
    "eval": ("training.evaluation.evaluate", "evaluate a checkpoint or an ONNX model (JSON on stdout)"),
    "proxy": ("training.evaluation.proxy", "score a model on a held-out-style proxy set (re-id, per-head attributes)"),
    "export": ("training.export.exporter", "export a checkpoint to ONNX with its manifest"),
    "peer": ("training.peer", "train and score torchreid's plain recipe on a generated set (the peer row)"),
    "bench": ("bench.cli", "benchmark model, service and gallery"),
}


def _usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = ["usage: personid <command> [options]", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "`personid <command> --help` shows a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in {"-h", "--help"}:
        print(_usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"personid: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
