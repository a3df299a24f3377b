"""``lsvos vote``: fuse mask sources by pixel votes into a mask set."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "vote"
HELP = "fuse mask sets (or submission-layout folders / zips) by pixel votes"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "sources",
        nargs="+",
        type=Path,
        metavar="SOURCE",
        help="a mask-set folder, or a folder or zip in the submission layout "
        "([Annotations/]<video>/<exp>/<frame>.png); the first one is source 0",
    )
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="output mask set")
    parser.add_argument(
        "--pairs", action="store_true", help="pool expressions (0,1), (2,3), ... of each video"
    )
    parser.add_argument(
        "--min-votes",
        type=float,
        default=None,
        metavar="K",
        help="foreground when at least K votes agree (default: half of the votes, ties to "
        "foreground)",
    )
    parser.add_argument(
        "--keyframe-from",
        default=None,
        metavar="NAME",
        help="choose key frames by argmax of this source's per-frame scores (NAME = the "
        "source's folder name)",
    )
    parser.add_argument(
        "--weights", default=None, metavar="W,W,...", help="one weight per source (default 1)"
    )
    parser.add_argument(
        "--odd",
        default="own_threshold",
        choices=("own_threshold", "first_source"),
        help="with --pairs, how the last of an odd number of expressions is voted: by every "
        "source alone (default) or as source 0's mask",
    )
    parser.add_argument(
        "--odd-min-votes",
        type=float,
        default=None,
        metavar="K",
        help="threshold for that expression under own_threshold (default: strict majority)",
    )
    parser.add_argument(
        "--sigmoid-twice",
        action="store_true",
        help="reproduce the challenge's V2 bug for --odd first_source (needs soft probabilities)",
    )
    parser.add_argument(
        "--resize", action="store_true", help="resize sources to source 0's size (nearest)"
    )
    parser.add_argument(
        "--meta",
        type=Path,
        default=None,
        metavar="META_JSON",
        help="take videos and expression order from this meta_expressions.json",
    )
    parser.add_argument("--storage", default="png", choices=("png", "rle"), help="output storage")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes (default 1, which decodes each track's PNG frames on a thread per core; "
        "each of several processes decodes on one)",
    )
    parser.add_argument(
        "--no-resume", action="store_true", help="re-vote videos already complete in DIR"
    )


def run(args: argparse.Namespace) -> int:
    from pipeline.core.data.datasets import default_exclude, read_split_meta
    from pipeline.core.errors import UserError
    from pipeline.core.masks import open_masks
    from pipeline.core.vote import VoteSpec, vote_mask_sets

    sources = [open_masks(p) for p in args.sources]
    weights = None
    if args.weights is not None:
        try:
            weights = tuple(float(w) for w in args.weights.split(","))
        except ValueError as err:
            raise UserError(
                f"--weights {args.weights!r}: expected numbers separated by commas"
            ) from err
    spec = VoteSpec(
        sources=tuple(s.name for s in sources),
        weights=weights,
        min_votes=args.min_votes,
        pairs=args.pairs,
        odd_policy=args.odd,
        odd_min_votes=args.odd_min_votes,
        sigmoid_twice=args.sigmoid_twice,
        key_frame_source=args.keyframe_from,
        resize=args.resize,
    )
    videos = order = None
    if args.meta is not None:
        meta = read_split_meta(args.meta, exclude=default_exclude(args.meta))
        videos = list(meta.videos)
        order = {v: [e.id for e in exps] for v, (_, exps) in meta.videos.items()}
    report = vote_mask_sets(
        sources,
        args.out,
        spec,
        videos=videos,
        expression_order=order,
        workers=args.workers,
        storage=args.storage,
        resume=not args.no_resume,
    )
    if spec.key_frame_source is not None:
        from pipeline.core.masks import MaskSet

        MaskSet(args.out).export_key_frame_json(args.out / "key_frame.json")
    print(
        f"voted {report.videos} videos ({report.expressions} expressions) from "
        f"{len(sources)} sources into {args.out} in {report.seconds:.1f} s"
        + (f"; {report.skipped} already complete" if report.skipped else "")
    )
    return 0
