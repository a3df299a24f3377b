"""``lsvos data synth|info``: write the synthetic benchmark, or summarise a dataset split."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "data"
HELP = "datasets: write the synthetic benchmark (synth) or summarise a split (info)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    synth = sub.add_parser(
        "synth",
        help="write a synthetic RVOS benchmark (Ref-YouTube-VOS or MeViS layout)",
        description=(
            "Write a synthetic RVOS benchmark. --format ytvos (default): Ref-YouTube-VOS's "
            "layout with ground truth for train, valid and test. --format mevis: MeViS's "
            "layout, motion and multi-object expressions, ground truth for train and valid_u, "
            "frames and expressions only for valid. Deterministic from the seed."
        ),
    )
    synth.add_argument("--out", required=True, type=Path, metavar="ROOT", help="output folder")
    synth.add_argument(
        "--format",
        default="ytvos",
        choices=("ytvos", "mevis"),
        help="layout and content (default ytvos)",
    )
    synth.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    synth.add_argument(
        "--videos",
        type=int,
        default=None,
        metavar="N",
        help="videos per split (default: ytvos 64 train, 16 valid, 16 test; "
        "mevis 24 train, 8 valid_u, 8 valid)",
    )
    synth.add_argument(
        "--size",
        default=None,
        metavar="HxW|SHORT",
        help="frame size: HxW for one size (e.g. 720x1280), or a short side to scale the "
        "default sizes to (default: sizes with short sides 120-240)",
    )
    synth.add_argument("--workers", type=int, default=1, help="processes (default 1)")
    synth.add_argument("--jpeg-quality", type=int, default=90, help="JPEG quality (default 90)")
    synth.set_defaults(data_run=_run_synth)

    info = sub.add_parser("info", help="index a dataset split and print its counts")
    info.add_argument("root", type=Path, metavar="ROOT")
    info.add_argument("--split", required=True)
    info.add_argument("--format", default="ytvos", choices=("ytvos", "mevis", "davis"))
    info.set_defaults(data_run=_run_info)


def run(args: argparse.Namespace) -> int:
    return int(args.data_run(args))


def _run_synth(args: argparse.Namespace) -> int:
    import time

    from pipeline.core.data.synth import DEFAULT_SIZES, parse_size, write_synthetic_benchmark
    from pipeline.core.data.synth_mevis import write_synthetic_mevis_benchmark

    sizes = DEFAULT_SIZES if args.size is None else parse_size(args.size)
    start = time.perf_counter()
    writer = (
        write_synthetic_mevis_benchmark if args.format == "mevis" else write_synthetic_benchmark
    )
    root = writer(
        args.out,
        seed=args.seed,
        videos=args.videos,
        sizes=sizes,
        jpeg_quality=args.jpeg_quality,
        workers=args.workers,
    )
    what = "synthetic MeViS benchmark" if args.format == "mevis" else "synthetic benchmark"
    print(f"wrote the {what} to {root} in {time.perf_counter() - start:.1f} s")
    return 0


def _run_info(args: argparse.Namespace) -> int:
    from pipeline.core.data import open_dataset

    dataset = open_dataset(args.format, args.root, args.split)
    videos = dataset.videos()
    n_exp = sum(len(dataset.expressions(v.id)) for v in videos)
    n_frames = sum(len(v.frame_ids) for v in videos)
    print(
        f"{args.format} {args.split}: {len(videos)} videos, {n_exp} expressions, "
        f"{n_frames} frames, ground truth: {'yes' if dataset.has_ground_truth else 'no'}"
    )
    return 0
