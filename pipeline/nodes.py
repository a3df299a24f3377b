"""One node on one video: the work behind every Prefect task, usable without Prefect.

Each function reads its inputs' mask sets (and frames where needed), computes, writes the node's
mask set for the video atomically and marks the video complete last, so an interrupted task
leaves nothing visible and a re-run recomputes exactly the incomplete (node, video) pairs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.data import RVOSDataset, open_dataset
from pipeline.errors import UserError
from pipeline.masks import MaskSet, Track, import_masks, open_masks
from pipeline.plan import NodeJob, RunPlan
from pipeline.recipe import Node
from pipeline.vote import VoteSpec, vote_mask_sets

_LOCK = threading.Lock()


# ------------------------------------------------------------------------------------------
# datasets and preflight


@lru_cache(maxsize=8)
def _dataset(format: str, root: str, split: str) -> RVOSDataset:
    return open_dataset(format, root, split)


def open_dataset_cached(dataset: Mapping[str, Any]) -> RVOSDataset:
    """The split's reader, opened once per process."""
    with _LOCK:
        return _dataset(dataset["format"], str(Path(dataset["root"]).resolve()), dataset["split"])


def preflight(cfg: Mapping[str, Any], selected: Sequence[Node]) -> list[str]:
    """Every problem that would stop the run, found before any work (paths named)."""
    from pipeline.engines import engine_problems
    from pipeline.producers import producer_problems

    problems: list[str] = []
    for node in selected:
        if node.kind == "produce":
            name = node.params["producer"]
            problems += producer_problems(f"producers.{name}", cfg["producers"][name])
        elif node.kind == "propagate":
            name = node.params["engine"]
            problems += engine_problems(f"engines.{name}", cfg["engines"][name])
    return sorted(set(problems), key=problems.index)


def is_complete(job: NodeJob, video: str) -> bool:
    return MaskSet.is_mask_set(job.out_dir) and MaskSet(job.out_dir).is_complete(video)


def prepare_outputs(jobs: Sequence[NodeJob]) -> None:
    """Create every node's mask set up front (so concurrent tasks never race to create one)."""
    for job in jobs:
        MaskSet(job.out_dir, "rle")


# ------------------------------------------------------------------------------------------
# the per-(node, video) work


def run_node_video(job: NodeJob, video: str) -> dict[str, Any]:
    """Compute ``job``'s mask set for ``video``; returns a small record of what was done."""
    start = time.perf_counter()
    out = MaskSet(job.out_dir)
    out.discard(video)  # a forced recompute, or the remains of an interrupted one
    work = {
        "produce": _produce,
        "import": _import,
        "vote": _vote,
        "propagate": _propagate,
    }[job.kind]
    try:
        work(job, video, out)
    except BaseException:
        out.discard(video)
        raise
    return {
        "node": job.name,
        "video": video,
        "status": "computed",
        "seconds": round(time.perf_counter() - start, 3),
    }


def _expressions(job: NodeJob, video: str) -> list[str]:
    return [e.id for e in open_dataset_cached(job.dataset).expressions(video)]


def _produce(job: NodeJob, video: str, out: MaskSet) -> None:
    import torch

    from pipeline.producers import get_producer, get_tokenizer

    dataset = open_dataset_cached(job.dataset)
    info = dataset.video(video)
    expressions = dataset.expressions(video)
    frames = torch.from_numpy(dataset.read_frames(video)).permute(0, 3, 1, 2).contiguous()
    producer = get_producer(job.settings, job.dataset["format"])
    text = get_tokenizer(job.settings)([e.text for e in expressions])
    keep_probs = bool(job.params.get("keep_probs"))
    key_frames: dict[str, int] = {}
    seen: set[str] = set()
    for result in producer.segment_video(frames, text):
        exp = expressions[result.index].id
        probs = result.probs.float().numpy()
        scores = result.scores.float().numpy()
        if probs.shape != (len(info.frame_ids), *frames.shape[-2:]):
            raise UserError(
                f"producer {job.name}: video {video} expression {exp}: probabilities of shape "
                f"{probs.shape}, expected {(len(info.frame_ids), *frames.shape[-2:])}"
            )
        track = Track(info.frame_ids, probs > 0.5, scores, probs if keep_probs else None)
        out.write(video, exp, track)
        key_frames[exp] = int(np.argmax(scores))
        seen.add(exp)
    missing = [e.id for e in expressions if e.id not in seen]
    if missing:
        raise UserError(f"producer {job.name}: video {video}: no output for expressions {missing}")
    out.write_key_frames(video, key_frames)
    out.mark_complete(video, [e.id for e in expressions])


def _import(job: NodeJob, video: str, out: MaskSet) -> None:
    """Copy existing predictions, checked against the split's expressions and frames (key
    frames come later from the source's ``key_frame.json`` or the argmax of its scores)."""
    from pipeline.data import SplitMeta

    settings = job.settings
    source = open_masks(settings["predictions"], scores=_scores(settings.get("scores")))
    meta = open_dataset_cached(job.dataset).meta
    one_video = SplitMeta({video: meta.videos[video]}, meta.path)
    try:
        import_masks(source, out, meta=one_video, videos=[video], overwrite=True)
    except UserError as err:
        raise UserError(f"import {job.name} ({settings['predictions']}): {err}") from err


@lru_cache(maxsize=4)
def _scores(path: str | None) -> Any:
    from pipeline.masks import read_scores_file

    return None if path is None else read_scores_file(path)


def _vote(job: NodeJob, video: str, out: MaskSet) -> None:
    p = job.params
    sources = [MaskSet(job.input_dirs[s]) for s in p["sources"]]
    spec = VoteSpec(
        sources=tuple(p["sources"]),
        weights=tuple(p["weights"]) if p.get("weights") else None,
        min_votes=p.get("min_votes"),
        pairs=bool(p.get("pairs")),
        odd_policy=p.get("odd") or "first_source",
        odd_min_votes=p.get("odd_min_votes"),
        sigmoid_twice=bool(p.get("sigmoid_twice_compat")),
        key_frame_source=p.get("keyframe_from"),
        resize=bool(p.get("resize")),
    )
    vote_mask_sets(
        sources,
        out,
        spec,
        videos=[video],
        expression_order={video: _expressions(job, video)},
        workers=1,
        resume=False,
    )


def _propagate(job: NodeJob, video: str, out: MaskSet) -> None:
    import torch

    from pipeline.engines import get_propagator, protocol_config
    from vos.protocol import propagate_video

    dataset = open_dataset_cached(job.dataset)
    info = dataset.video(video)
    expressions = _expressions(job, video)
    source = MaskSet(job.input_dirs[job.params["source"]])
    key_node = job.params.get("keyframe_from") or job.params["source"]
    key_frames = _key_frames(MaskSet(job.input_dirs[key_node]), video, expressions, key_node)
    frames = torch.from_numpy(dataset.read_frames(video)).permute(0, 3, 1, 2).contiguous()
    masks = {exp: torch.from_numpy(source.read(video, exp).masks) for exp in expressions}
    results = propagate_video(
        get_propagator(job.settings), frames, masks, key_frames, protocol_config(job.settings)
    )
    for exp in expressions:
        out.write(video, exp, Track(info.frame_ids, results[exp].masks.cpu().numpy()))
    out.mark_complete(video, expressions)


def _key_frames(
    maskset: MaskSet, video: str, expressions: Sequence[str], node: str
) -> dict[str, int]:
    """Key frames recorded by ``node`` (a vote or producer), else argmax of its scores."""
    recorded = maskset.key_frames(video)
    chosen: dict[str, int] = {}
    for exp in expressions:
        if exp in recorded:
            chosen[exp] = int(recorded[exp])
            continue
        key = maskset.read(video, exp).key_frame()
        if key is None:
            raise UserError(
                f"node {node}: video {video} expression {exp} has no key frame and no per-frame "
                "scores to choose one; set keyframe_from to a node that has them"
            )
        chosen[exp] = int(key)
    return chosen


# ------------------------------------------------------------------------------------------
# packaging and scoring


def package_submission(plan: RunPlan) -> dict[str, Any]:
    """Zip the submission node's masks in the challenge layout and validate the zip."""
    from pipeline.data import SplitMeta
    from pipeline.submission import package, validate

    assert plan.submission_node is not None
    job = plan.job(plan.submission_node)
    dataset = open_dataset_cached(plan.dataset)
    meta = SplitMeta({v: dataset.meta.videos[v] for v in plan.videos}, dataset.meta.path)
    zip_path = Path(plan.run_dir) / "submission.zip"
    fmt = plan.package_format
    package(MaskSet(job.out_dir), meta, fmt, zip_path, frame_root=dataset.frame_root)
    problems = validate(zip_path, meta, fmt, frame_root=dataset.frame_root)
    return {
        "zip": str(zip_path),
        "format": plan.package_format,
        "node": job.name,
        "valid": not problems,
        "problems": [str(p) for p in problems[:20]],
    }


def score_node_video(plan: RunPlan, job: NodeJob, video: str) -> list[dict[str, Any]]:
    """Per-expression J and F of ``job``'s masks on ``video`` (the dataset's protocol)."""
    from pipeline.scoring import score_video

    dataset = open_dataset_cached(plan.dataset)
    maskset = MaskSet(job.out_dir)
    expressions = _expressions(job, video)
    gt = {exp: dataset.ground_truth(video, exp) for exp in expressions}
    if any(g is None for g in gt.values()):
        return []
    preds = {exp: maskset.read(video, exp) for exp in expressions}
    protocol = {"ytvos": "ytvos", "mevis": "mevis", "davis": "ytvos"}[plan.dataset["format"]]
    rows = score_video(preds, gt, dataset.video(video).frame_ids, protocol=protocol, video=video)  # type: ignore[arg-type]
    return [
        {"node": job.name, "video": r.video, "expression": r.expression, "J": r.J, "F": r.F}
        for r in rows
    ]
