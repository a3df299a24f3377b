"""``lsvos validate``: check a submission zip; exit 0 only when it is valid."""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

NAME = "validate"
HELP = "check a submission zip against a split's meta; exit status 0 only when valid"
SHOWN = 50


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("zip", type=Path, metavar="ZIP")
    parser.add_argument("--meta", required=True, type=Path, metavar="META_JSON")
    parser.add_argument("--format", required=True, choices=("ytvos", "mevis"))
    parser.add_argument(
        "--images",
        type=Path,
        default=None,
        metavar="DIR",
        help="the split's JPEGImages, for frame sizes (default: found beside the meta)",
    )


def run(args: argparse.Namespace) -> int:
    from pipeline.core.submission import validate

    problems = validate(args.zip, args.meta, args.format, frame_root=args.images)
    if not problems:
        print(f"{args.zip}: valid")
        return 0
    for problem in problems[:SHOWN]:
        print(problem)
    if len(problems) > SHOWN:
        print(f"... and {len(problems) - SHOWN} more")
    counts = ", ".join(
        f"{n} {kind}" for kind, n in sorted(Counter(p.kind for p in problems).items())
    )
    print(f"{args.zip}: INVALID, {len(problems)} problem(s): {counts}")
    return 1
