"""Writing a data set: every planned image (in one process or a pool), `market_attribute.mat` and `synth.json`.

The summary returned is what the tests check the real loaders against; `synth.json` records it without the
timings, so that the same arguments write the same bytes.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from tqdm import tqdm

from synth.identity import identity
from synth.layout import FOLDERS, plan
from synth.realism import Realism, realism_options
from synth.render import Job, write
from training.data.attributes_mat import write_attribute_mat


@dataclass
class SplitSummary:
    """One split as written: its ids, its image count and its rows of the attribute file."""

    identities: list[str]
    images: int
    attributes: dict[str, dict[str, int]]


@dataclass
class SynthSummary:
    """What was written: the tests compare the loaders against this."""

    out: str
    splits: dict[str, SplitSummary]
    folders: dict[str, int]
    distractors: int
    junk: int
    arguments: dict[str, object] = field(default_factory=dict)
    seconds: float = 0.0  # wall clock
    images_per_second: float = 0.0  # per wall-clock second
    cpu_seconds: float = 0.0  # this process and its workers: the fair figure on a busy machine


_NOT_RECORDED = ("out", "seconds", "images_per_second", "cpu_seconds")  # synth.json stays byte-identical


def _cpu_seconds() -> float:
    """User + system time of this process and of its finished worker processes."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _check(
    identities: int, test_identities: int, cameras: int, images_per_identity: int, height: int, width: int
) -> None:
    """Refuse arguments Market's format or protocol cannot hold, before anything is written."""
    if not 2 <= identities <= 1501:
        raise ValueError(f"identities must be in 2..1501 (Market's id range), got {identities}")
    if not 1 <= test_identities < identities:
        raise ValueError(f"test identities must be in 1..{identities - 1}, got {test_identities}")
    if not 2 <= cameras <= 9:
        raise ValueError(f"cameras must be in 2..9 (one digit in the file name), got {cameras}")
    if images_per_identity < 2:
        raise ValueError("images per identity must be at least 2 (a query needs a gallery match in another camera)")
    if height < 16 or width < 8:
        raise ValueError(f"image size {width}x{height} is too small (at least 8 wide, 16 high)")


def _write_all(jobs: list[Job], out: Path, workers: int, progress: bool) -> None:
    """Render every job; the files do not depend on `workers` since each image is seeded on its own."""
    tasks = [(j, str(out)) for j in jobs]
    bar = tqdm(total=len(jobs), desc="synth", unit="img", disable=not progress)
    if workers <= 1:
        for task in tasks:
            write(task)
            bar.update()
    else:
        with multiprocessing.get_context().Pool(workers) as pool:
            for _ in pool.imap_unordered(write, tasks, chunksize=16):
                bar.update()
    bar.close()


def _splits(jobs: list[Job], train: list[int], labels: dict[str, dict[str, dict[str, int]]]) -> dict[str, SplitSummary]:
    """Ids, image count and attribute rows per split (distractors and junk count in neither)."""
    per_split = {"train": sum(j.kind == 0 and j.pid in set(train) for j in jobs)}
    per_split["test"] = sum(j.kind == 0 for j in jobs) - per_split["train"]
    return {s: SplitSummary(sorted(labels[s]), per_split[s], labels[s]) for s in ("train", "test")}


def generate(
    out: Path,
    identities: int,
    test_identities: int | None = None,
    cameras: int = 4,
    images_per_identity: int = 8,
    seed: int = 0,
    workers: int = 1,
    height: int = 128,
    width: int = 64,
    progress: bool = True,
    realism: Realism | Mapping[str, object] | str | bool | None = None,
) -> SynthSummary:
    """Write a Market-1501-format data set of procedural pedestrians to `out` and return what was written.

    `realism` switches realism factors on (see `synth.realism`; a dict from YAML, "all", or a `Realism`).
    Off by default: the classic style, byte-identical per seed, which is the held-out proxy style."""
    test_identities = identities // 2 if test_identities is None else test_identities
    _check(identities, test_identities, cameras, images_per_identity, height, width)
    switches = realism_options(realism)
    out = Path(out)
    train, test, jobs = plan(seed, identities, test_identities, cameras, images_per_identity, height, width)
    if switches.any:
        jobs = [replace(j, realism=switches) for j in jobs]
    for folder in FOLDERS:
        (out / folder).mkdir(parents=True, exist_ok=True)
    start, cpu_start = time.perf_counter(), _cpu_seconds()
    _write_all(jobs, out, workers, progress)
    seconds, cpu = time.perf_counter() - start, _cpu_seconds() - cpu_start
    labels = {
        split: {f"{pid:04d}": identity(seed, pid).market_attributes() for pid in ids}
        for split, ids in (("train", train), ("test", test))
    }
    write_attribute_mat(out / "market_attribute.mat", "market_attribute", labels)
    summary = SynthSummary(
        out=str(out),
        splits=_splits(jobs, train, labels),
        folders={f: sum(j.path.startswith(f + "/") for j in jobs) for f in FOLDERS},
        distractors=sum(j.kind == 1 for j in jobs),
        junk=sum(j.kind == 2 for j in jobs),
        arguments={
            "identities": identities,
            "test_identities": test_identities,
            "cameras": cameras,
            "images_per_identity": images_per_identity,
            "seed": seed,
            "height": height,
            "width": width,
            **({"realism": switches.enabled()} if switches.any else {}),  # classic sets keep their bytes
        },
        seconds=round(seconds, 3),
        images_per_second=round(len(jobs) / max(seconds, 1e-9), 1),
        cpu_seconds=round(cpu, 3),
    )
    record = {k: v for k, v in asdict(summary).items() if k not in _NOT_RECORDED}
    (out / "synth.json").write_text(json.dumps(record, indent=1, sort_keys=True))
    return summary
