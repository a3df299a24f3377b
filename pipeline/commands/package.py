"""``lsvos package``: write a submission zip (byte-identical for the same masks)."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "package"
HELP = "write the submission zip of a mask set (or submission-layout folder / zip)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--masks", required=True, type=Path, metavar="DIR", help="the masks")
    parser.add_argument(
        "--meta",
        required=True,
        type=Path,
        metavar="META_JSON",
        help="the split's meta_expressions.json (a Ref-YouTube-VOS valid meta leaves out the "
        "videos of the sibling test meta)",
    )
    parser.add_argument("--format", required=True, choices=("ytvos", "mevis"))
    parser.add_argument("--out", required=True, type=Path, metavar="ZIP")
    parser.add_argument(
        "--images",
        type=Path,
        default=None,
        metavar="DIR",
        help="the split's JPEGImages, to check sizes (default: found beside the meta)",
    )
    parser.add_argument("--workers", type=int, default=1, help="processes (default 1)")


def run(args: argparse.Namespace) -> int:
    from pipeline.core.submission import package

    out = package(
        args.masks, args.meta, args.format, args.out, frame_root=args.images, workers=args.workers
    )
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return 0
