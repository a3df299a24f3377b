"""Peak resident memory of scoring (``lsvos eval``'s ``score_mask_set``) against the number of
videos: ours against the previous way in the same run, and against the longest video alone.

Previous way (the baseline, re-implemented here): each video's ground truth and predictions for
all its expressions read at once, then scored; its peak follows the largest expressions x
frames of any video, which grows with the number of videos drawn. Ours:
``pipeline.core.scoring.score_mask_set``, one expression's pair in memory at a time (its peak
follows the largest frame count alone). Each measurement is a fresh process scoring the first
N videos of one synthetic split (its peak RSS from ``wait4``), so imports count alike in both;
scores are checked equal.

    python bench/eval_memory.py [--videos 6 96] [--size 360x640] [--work /tmp/lsvos_evalmem]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def whole_video_score(pred, dataset, protocol: str, video: str, have: bool):
    """The previous per-video job: every expression's ground truth and prediction at once."""
    from pipeline.core.scoring import score_video

    exps = dataset.expressions(video)
    gt = {e.id: dataset.ground_truth(video, e.id) for e in exps}
    pred_exps = set(pred.expressions(video)) if have else set()
    tracks = {e.id: pred.read(video, e.id) if e.id in pred_exps else None for e in exps}
    return score_video(tracks, gt, dataset.video(video).frame_ids, protocol=protocol, video=video)


def child(split: Path, pred: Path, videos: int, way: str) -> None:
    """Score the first ``videos`` videos the given way (0: the video with the most frames
    alone); print the global J&F and row count."""
    import pipeline.core.scoring as scoring
    from pipeline.core.data import open_dataset
    from pipeline.core.masks import MaskSet

    if way == "whole videos (previous)":
        scoring._score_one = whole_video_score  # the module-level job calls it by name
    dataset = open_dataset("ytvos", split, "valid")
    chosen = dataset.video_ids()[:videos]
    if videos == 0:
        chosen = [max(dataset.videos(), key=lambda v: v.num_frames).id]
    table = scoring.score_mask_set(MaskSet(pred), dataset, videos=chosen)
    print(json.dumps({"JF": table.JF, "rows": len(table.rows)}))


def measure(split: Path, pred: Path, videos: int, way: str) -> tuple[float, float, dict]:
    """(peak RSS in MB, wall seconds, the child's printed result) of one fresh process."""
    command = [sys.executable, __file__, "--child", way, str(videos), str(split), str(pred)]
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, env={**os.environ})
    out = proc.stdout.read() if proc.stdout is not None else b""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"child {command} failed with status {proc.returncode}")
    return usage.ru_maxrss / 1024, time.perf_counter() - start, json.loads(out)


def prepare(work: Path, videos: int, size: tuple[int, int]) -> tuple[Path, Path]:
    """The split (written once) and one noisy producer's predictions as an RLE mask set."""
    from vote_common import make_split, perturb

    from pipeline.core.masks import MaskSet, Track

    split = work / f"synth_{size[0]}x{size[1]}_{videos}"
    ds = make_split(split, videos, size=size)
    pred_root = work / f"pred_{size[0]}x{size[1]}_{videos}"
    preds = MaskSet(pred_root, "rle")
    if len(preds.videos()) < len(ds):
        import numpy as np

        rng = np.random.default_rng(7)
        for video in ds.videos():
            exps = [e.id for e in ds.expressions(video.id)]
            for exp in exps:
                masks = perturb(ds.ground_truth(video.id, exp), rng)
                preds.write(video.id, exp, Track(video.frame_ids, masks))
            preds.mark_complete(video.id, exps)
    return split, pred_root


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        way, videos, split, pred = sys.argv[2:6]
        child(Path(split), Path(pred), int(videos), way)
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, nargs=2, default=(6, 96), metavar=("FEW", "MANY"))
    parser.add_argument("--size", default="360x640", help="frame size HxW of the split")
    parser.add_argument("--work", type=Path, default=Path("/tmp/lsvos_evalmem"))
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    few, many = args.videos
    split, pred = prepare(args.work, many, size)  # type: ignore[arg-type]
    print(f"synthetic valid split, {many} videos at {size[0]}x{size[1]}; one producer (RLE)")
    ways = ("whole videos (previous)", "per expression (ours)")
    results: dict[tuple[str, int], tuple[float, float, dict]] = {}
    loads = []
    for n in (few, many, 0):
        for way in ways:
            loads.append(Path("/proc/loadavg").read_text().split(" ", 3)[:3])
            results[way, n] = measure(split, pred, n, way)
    for n in (few, many, 0):
        assert all(results[way, n][2] == results[ways[0], n][2] for way in ways), "scores differ"
    for way in ways:
        (rss_few, wall_few, _), (rss_many, wall_many, _) = results[way, few], results[way, many]
        print(
            f"{way:<26} peak RSS {rss_few:6.1f} MB ({few} videos, {wall_few:5.1f} s) -> "
            f"{rss_many:6.1f} MB ({many} videos, {wall_many:5.1f} s): "
            f"{rss_many / rss_few:4.2f}x"
        )
    for way in ways:
        print(f"{way:<26} peak RSS {results[way, 0][0]:6.1f} MB for the longest video alone")
    lower = results[ways[0], many][0] / results[ways[1], many][0]
    print(f"ours vs previous at {many} videos: {lower:.2f}x lower peak; scores identical: yes")
    print(f"load average before each measurement: {loads}")


if __name__ == "__main__":
    main()
