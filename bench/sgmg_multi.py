"""Multi-object SgMg against per-expression SgMg: speed and J&F of the shipped tiny models.

On the synthetic benchmark's valid split (``lsvos data synth``), for every video:

- ``official``: tiny SgMg, one full forward per expression (the official scripts' protocol);
  the speed baseline;
- ``sgmg``: tiny SgMg through its producer (video encoded once, expressions batched);
- ``multi``: tiny multi-object SgMg, one shared fusion and encoder for all expressions.

Prints wall seconds per video (all its expressions), the ratios to ``official`` -- over all
videos and over videos with at least ``--min-expressions`` expressions -- and each model's J&F
(``official`` and ``sgmg`` give the same masks). All three run at one short side
(``--short-side``; default: the one ``--sgmg``'s file records), so the times compare.

    python bench/sgmg_multi.py --data data/synth --threads 1
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from pipeline.core.data import open_dataset
from pipeline.core.scoring import j_and_f
from pipeline.training.rvos_models import load_trained


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--split", default="valid")
    parser.add_argument("--sgmg", type=Path, default=Path("weights/sgmg_tiny.safetensors"))
    parser.add_argument("--multi", type=Path, default=Path("weights/sgmg_multi_tiny.safetensors"))
    parser.add_argument("--min-expressions", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--videos", type=int, help="first N videos only")
    parser.add_argument("--short-side", type=int, help="test short side (default: --sgmg's)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sgmg, multi = load_trained(args.sgmg), load_trained(args.multi)
    short_side = args.short_side or sgmg.short_side
    runs = {"official": sgmg, "sgmg": sgmg, "multi": multi}
    dataset = open_dataset("ytvos", args.data, args.split)
    times: dict[str, list[float]] = {k: [] for k in runs}
    scores: dict[str, list[float]] = {k: [] for k in runs}
    counts: list[int] = []
    for vid in dataset.video_ids()[: args.videos]:
        exps = dataset.expressions(vid)
        if not exps:
            continue
        frames = torch.from_numpy(dataset.read_frames(vid)).permute(0, 3, 1, 2).contiguous()
        gts = [dataset.ground_truth(vid, e.id) for e in exps]
        counts.append(len(exps))
        for name, trained in runs.items():
            producer = trained.producer(short_side)
            tokens = trained.tokenizer([e.text for e in exps])
            start = time.perf_counter()
            if name == "official":
                results = [
                    next(iter(producer.segment_video(frames, tokens.select(i))))
                    for i in range(len(exps))
                ]
            else:
                results = list(producer.segment_video(frames, tokens))
            times[name].append(time.perf_counter() - start)
            for r, gt in zip(results, gts, strict=True):
                j, f = j_and_f((r.probs > 0.5).numpy(), gt)
                scores[name].append((float(np.mean(j)) + float(np.mean(f))) / 2)
    many = np.asarray(counts) >= args.min_expressions
    print(
        f"{len(counts)} videos, {sum(counts)} expressions ({int(many.sum())} videos with >= "
        f"{args.min_expressions}), {args.threads} threads, short side {short_side}"
    )
    base = np.asarray(times["official"])
    for name in runs:
        t = np.asarray(times[name])
        line = f"{name:9s} {t.mean():6.2f} s/video  J&F {np.mean(scores[name]):.4f}"
        if name != "official":
            line += f"  {base.sum() / t.sum():5.2f}x vs official"
            if many.any():
                line += f" ({base[many].sum() / t[many].sum():5.2f}x on >= {args.min_expressions})"
        print(line)


if __name__ == "__main__":
    main()
