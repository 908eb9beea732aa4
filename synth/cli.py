"""`personid synth`: procedural pedestrians written exactly in Market-1501's layout.

No person dataset can be downloaded where this project is built and tested, so tests, demos and the
default model all train on what this writes (see docs/synth.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from synth.realism import FACTORS, realism_options
from synth.sheet import contact_sheet
from synth.writer import generate


def main(argv: list[str]) -> int:
    """Generate the set the arguments describe; 2 on arguments the format cannot hold."""
    parser = argparse.ArgumentParser(prog="personid synth", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="output folder (Market-1501 layout)")
    parser.add_argument("--identities", type=int, default=250, help="total identities, train + test")
    parser.add_argument("--test-identities", type=int, default=None, help="test identities (default: half)")
    parser.add_argument("--cameras", type=int, default=4)
    parser.add_argument("--images-per-identity", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1, help="processes; the output does not depend on it")
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--contact-sheet", type=Path, default=None, help="also write this PNG grid of identities")
    parser.add_argument(
        "--realism",
        default="none",
        help=f"realism factors: 'all', 'none' (the classic style) or a comma list of {', '.join(FACTORS)}",
    )
    parser.add_argument("--without", default="", help="factors to leave out of --realism (comma list)")
    parser.add_argument("--heldout-style", action="store_true", help="draw from the held-out style families")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    try:
        chosen = realism_options(args.realism).enabled()
        dropped = realism_options(args.without).enabled()
        switches = {k: True for k in chosen if k not in dropped} | (
            {"heldout_style": True} if args.heldout_style else {}
        )
        summary = generate(
            args.out,
            args.identities,
            args.test_identities,
            args.cameras,
            args.images_per_identity,
            args.seed,
            args.workers,
            args.height,
            args.width,
            progress=not args.no_progress,
            realism=switches,
        )
    except ValueError as exc:
        print(f"personid synth: {exc}", file=sys.stderr)
        return 2
    total = sum(summary.folders.values())
    print(
        f"{total} images in {summary.seconds:.2f} s = {summary.images_per_second:.0f} images/s "
        f"({args.workers} worker{'s' if args.workers != 1 else ''}; CPU {summary.cpu_seconds:.2f} s = "
        f"{total / max(summary.cpu_seconds, 1e-9):.0f} images per CPU-second) -> {args.out}"
    )
    print(
        f"train {len(summary.splits['train'].identities)} ids / {summary.folders['bounding_box_train']} images, "
        f"test {len(summary.splits['test'].identities)} ids: {summary.folders['query']} query, "
        f"{summary.folders['bounding_box_test']} gallery (incl. {summary.distractors} distractors, "
        f"{summary.junk} junk)"
    )
    if args.contact_sheet:
        print(f"contact sheet: {contact_sheet(args.out, args.contact_sheet)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
