"""``lsvos import-masks``: turn an upstream output folder or zip into a mask set."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "import-masks"
HELP = (
    "import an upstream output folder or zip ([Annotations/]<video>/<exp>/<frame>.png), or an "
    "ensemble dump (.pth)"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "source",
        type=Path,
        metavar="SRC",
        help="folder or zip of PNG masks, or an upstream ensemble dump .pth (needs --meta)",
    )
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="new mask set")
    parser.add_argument(
        "--scores",
        type=Path,
        default=None,
        metavar="FILE",
        help="per-frame scores: JSON {video: {exp: [scores]}} or an upstream .pth dump "
        "(its class_info)",
    )
    parser.add_argument(
        "--key-frames",
        type=Path,
        default=None,
        metavar="KEY_FRAME_JSON",
        help="the challenge's key_frame.json (default: SRC's own, if any)",
    )
    parser.add_argument(
        "--meta",
        type=Path,
        default=None,
        metavar="META_JSON",
        help="require the videos, expressions and frames of this meta_expressions.json",
    )
    parser.add_argument(
        "--dump-values",
        default="logits",
        choices=("logits", "probs"),
        help="what a .pth dump's mask_logits hold (UNINEXT: probs; default logits)",
    )
    parser.add_argument(
        "--keep-probs", action="store_true", help="store a dump's probabilities as well"
    )
    parser.add_argument("--storage", default="rle", choices=("rle", "png"), help="default rle")
    parser.add_argument("--overwrite", action="store_true", help="re-import complete videos")


def run(args: argparse.Namespace) -> int:
    from pipeline.adapters.dumps import import_dump, read_scores
    from pipeline.core.data.datasets import default_exclude, read_split_meta
    from pipeline.core.errors import UserError
    from pipeline.core.masks import import_masks

    meta = None
    if args.meta is not None:
        meta = read_split_meta(args.meta, exclude=default_exclude(args.meta))
    if args.source.suffix in (".pth", ".pt"):
        if meta is None:
            raise UserError("a .pth dump holds no frame names: give the split's --meta")
        report = import_dump(
            args.source,
            args.out,
            meta,
            values=args.dump_values,
            keep_probs=args.keep_probs,
            storage=args.storage,
            overwrite=args.overwrite,
        )
    else:
        report = import_masks(
            args.source,
            args.out,
            scores=None if args.scores is None else read_scores(args.scores),
            key_frames=args.key_frames,
            storage=args.storage,
            meta=meta,
            overwrite=args.overwrite,
        )
    print(
        f"imported {report.videos} videos ({report.expressions} expressions) into {args.out}"
        + (f"; {report.skipped} already complete" if report.skipped else "")
    )
    return 0
