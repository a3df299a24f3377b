"""A produce node on one video: an RVOS model segments every expression."""

from __future__ import annotations

import numpy as np

from pipeline.core.errors import UserError
from pipeline.core.masks import MaskSet, Track
from pipeline.orchestration.jobs import NodeJob
from pipeline.orchestration.progress import node_progress
from pipeline.orchestration.splits import open_split


def produce(job: NodeJob, video: str, out: MaskSet) -> None:
    """Masks (probabilities > 0.5), per-frame scores and the argmax key frame per expression;
    the probabilities too where a downstream vote reads them (``job.keep_probs``)."""
    import torch

    from pipeline.adapters.producers import get_producer, get_tokenizer

    settings = job.required_producer()
    dataset = open_split(job.dataset)
    info = dataset.video(video)
    expressions = dataset.expressions(video)
    frames = torch.from_numpy(dataset.read_frames(video)).permute(0, 3, 1, 2).contiguous()
    try:
        producer = get_producer(settings, str(job.dataset.format))
    except UserError as err:
        raise UserError(f"producer {job.name}: {err}") from err
    text = get_tokenizer(settings)([e.text for e in expressions])
    expected = (len(info.frame_ids), *frames.shape[-2:])
    key_frames: dict[str, int] = {}
    with node_progress(f"{job.name}/{video}", "expressions") as report:
        if report is not None:
            report(0, len(expressions))
        for done, result in enumerate(producer.segment_video(frames, text), start=1):
            exp = expressions[result.index].id
            probs = result.probs.float().numpy()
            scores = result.scores.float().numpy()
            if probs.shape != expected:
                raise UserError(
                    f"producer {job.name}: video {video} expression {exp}: probabilities of "
                    f"shape {probs.shape}, expected {expected}"
                )
            track = Track(info.frame_ids, probs > 0.5, scores, probs if job.keep_probs else None)
            out.write(video, exp, track)
            key_frames[exp] = int(np.argmax(scores))
            if report is not None:
                report(done, len(expressions))
    missing = [e.id for e in expressions if e.id not in key_frames]
    if missing:
        raise UserError(f"producer {job.name}: video {video}: no output for expressions {missing}")
    out.write_key_frames(video, key_frames)
    out.mark_complete(video, [e.id for e in expressions])
