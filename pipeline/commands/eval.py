"""``lsvos eval``: J, F and J&F of predictions against a split with ground truth."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "eval"
HELP = "score predictions (mask set, folder or zip) against a dataset split: J, F, J&F"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--pred",
        required=True,
        type=Path,
        metavar="DIR_OR_ZIP",
        help="a mask set, or a folder or zip in the submission layout",
    )
    parser.add_argument("--gt", required=True, type=Path, metavar="ROOT", help="dataset root")
    parser.add_argument("--split", required=True, metavar="NAME", help="split, e.g. valid")
    parser.add_argument(
        "--format",
        default="ytvos",
        choices=("ytvos", "mevis", "davis"),
        help="dataset layout and protocol (default ytvos: every listed frame; mevis: MeViS's; "
        "davis: the DAVIS semi-supervised toolkit's, first and last frame dropped)",
    )
    parser.add_argument("--json", type=Path, default=None, metavar="FILE", help="write the scores")
    parser.add_argument(
        "--csv", type=Path, default=None, metavar="FILE", help="write per-expression rows"
    )
    parser.add_argument("--workers", type=int, default=1, help="processes (default 1)")


def run(args: argparse.Namespace) -> int:
    from pipeline.core.data import open_dataset
    from pipeline.core.masks import open_masks
    from pipeline.core.scoring import MISSING_SHOWN, score_mask_set

    dataset = open_dataset(args.format, args.gt, args.split)
    table = score_mask_set(open_masks(args.pred), dataset, args.format, workers=args.workers)
    if args.json is not None:
        table.to_json(args.json)
    if args.csv is not None:
        table.to_csv(args.csv)
    print(table.summary())  # its second line names the expressions without prediction
    if len(table.missing) > MISSING_SHOWN:
        where = args.json or args.csv
        hint = f"all in {where}" if where is not None else "--json or --csv lists them all"
        print(f"({hint})")
    return 0
