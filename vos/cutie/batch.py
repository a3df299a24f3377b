"""Cutie's per-frame network work for several tracks at once: the tracks of a session (each a
:class:`~vos.cutie.inference.CutieProcessor` with its own objects and memories) are stacked
along the batch dimension of the per-object network calls.

Per frame, a track's work after the shared image encoding is: the memory readout (affinity
to its own memory, per bucket), pixel fusion and the object transformer (per bucket), the
mask decoder with the sensory update, and on memory frames the mask encoder. Only the first
depends on memories of different sizes, so it runs per track; the others are the same
network on tensors of the same shape once tracks with the same number of objects are grouped:
they run once per group with the groups' tensors concatenated along the batch (track-major:
entry ``k * B + b`` is track ``k``'s batch entry ``b``), and the frame's own maps repeated to
match. Everything the network reduces over (soft aggregation, the others' mask, the object
transformer's masks) is within a batch entry, so each track gets the numbers it gets alone up
to float rounding (``tests/vos/test_cutie_batching.py``).

Naming as :mod:`vos.cutie.inference`: B = 1, or 2 with flip augmentation; K = tracks in a
group; n = objects of a bucket, N = objects of a track; h x w = the stride-16 map.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch

from vos.cutie.memory import MemoryBank
from vos.cutie.network import CutieNetwork, ImageFeatures
from vos.cutie.spec import CutieSettings


class CutieProcessor(Protocol):
    """What this module reads and updates of a track (:class:`vos.cutie.inference.
    CutieProcessor`, which calls it: a protocol, so the two modules import one way only)."""

    settings: CutieSettings
    objects: list[int]
    memory: MemoryBank
    curr_ti: int
    last_mem_ti: int
    last_mask: torch.Tensor | None  # B x N x H' x W'
    taps: dict[str, list[torch.Tensor]] | None

    def tap(self, name: str, value: torch.Tensor) -> None: ...


class _PreparedImage(Protocol):
    image: torch.Tensor  # B x 3 x H' x W', the network's input


class CutieEncoding(Protocol):
    """A frame encoded once for every track (:class:`vos.cutie.inference.CutieEncoding`)."""

    frame: _PreparedImage
    features: ImageFeatures


def group_indices(keys: Iterable[Hashable]) -> list[list[int]]:
    """Indices grouped by equal key, groups in first-seen order."""
    groups: dict[Hashable, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    return list(groups.values())


def repeat_batch(x: torch.Tensor, times: int) -> torch.Tensor:
    """B x ... -> (times * B) x ... (track-major copies of a frame's map)."""
    return x if times == 1 else x.repeat(times, *([1] * (x.ndim - 1)))


def repeat_features(features: ImageFeatures, times: int) -> ImageFeatures:
    """:class:`ImageFeatures` of batch B -> batch ``times * B`` (:func:`repeat_batch`)."""
    if times == 1:
        return features
    return ImageFeatures(
        *(
            repeat_batch(t, times)
            for t in (
                features.f16,
                features.f8,
                features.f4,
                features.pix_feat,
                features.key,
                features.shrinkage,
                features.selection,
            )
        )
    )


@dataclass(frozen=True)
class BucketReadout:
    """One bucket of one track, read from its memory and waiting for fusion.

    Attributes:
        track: index of the track in the batch.
        objects: the bucket's objects (n).
        visual: B x n x CV x h x w memory readout.
        sensory: B x n x Cs x h x w sensory memory.
        last_mask: B x n x H' x W' the objects' last probabilities.
        obj_memory: B x n x 1 x Q x (C + 1) object memory.
    """

    track: int
    objects: list[int]
    visual: torch.Tensor
    sensory: torch.Tensor
    last_mask: torch.Tensor
    obj_memory: torch.Tensor


def read_buckets(
    processors: Sequence[CutieProcessor], features: ImageFeatures
) -> list[BucketReadout]:
    """The top-k memory readout of every bucket of every track (per track: its own memory)."""
    batch, _, height, width = features.key.shape
    query_key = features.key.flatten(2).float()
    query_selection = features.selection.flatten(2).float()
    units = []
    for index, processor in enumerate(processors):
        memory = processor.memory
        assert processor.last_mask is not None and memory.work.engaged
        for bucket_id, bucket in memory.work.buckets.items():
            affinity = memory.affinity(bucket_id, query_key, query_selection)
            objs = bucket.objects
            visual = memory.values(objs).float().flatten(1, 2) @ affinity  # B x (n*CV) x hw
            channels = [processor.objects.index(o) for o in objs]
            units.append(
                BucketReadout(
                    index,
                    list(objs),
                    visual.view(batch, len(objs), -1, height, width),
                    memory.get_sensory(objs),
                    processor.last_mask[:, channels],
                    torch.stack([memory.obj_memory[o] for o in objs], dim=1).unsqueeze(2),
                )
            )
    return units


def fuse_buckets(
    network: CutieNetwork, features: ImageFeatures, units: Sequence[BucketReadout]
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Pixel fusion and the object transformer, batched over buckets with the same number of
    objects -> per unit (pixel readout, refined readout), each B x n x C x h x w."""
    dtype = features.pix_feat.dtype
    batch = int(features.pix_feat.shape[0])
    out: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * len(units)
    for group in group_indices(len(u.objects) for u in units):
        members = [units[i] for i in group]
        pixel = network.pixel_fusion(
            repeat_batch(features.pix_feat, len(group)),
            torch.cat([u.visual for u in members]).to(dtype),
            torch.cat([u.sensory for u in members]).to(dtype),
            torch.cat([u.last_mask for u in members]).to(dtype),
        )
        refined = network.readout_query(pixel, torch.cat([u.obj_memory for u in members]))
        for i, p, r in zip(group, pixel.split(batch), refined.split(batch), strict=True):
            out[i] = (p, r)
    return [o for o in out if o is not None]


def read_memories(
    processors: Sequence[CutieProcessor], features: ImageFeatures
) -> list[torch.Tensor]:
    """Readout, fused and refined per object -> per track B x N x C x h x w (objects in the
    track's channel order); taps ``visual_readout``, ``pixel_readout``, ``query_readout``."""
    network = processors[0].network
    units = read_buckets(processors, features)
    fused = fuse_buckets(network, features, units)
    readouts = []
    for index, processor in enumerate(processors):
        visual, pixel, refined = {}, {}, {}
        for unit, (p, r) in zip(units, fused, strict=True):
            if unit.track != index:
                continue
            for i, obj in enumerate(unit.objects):
                visual[obj], pixel[obj], refined[obj] = unit.visual[:, i], p[:, i], r[:, i]
        order = processor.objects
        if processor.taps is not None:
            processor.tap("visual_readout", torch.stack([visual[o] for o in order], dim=1))
            processor.tap("pixel_readout", torch.stack([pixel[o] for o in order], dim=1))
        out = torch.stack([refined[o] for o in order], dim=1)
        processor.tap("query_readout", out)
        readouts.append(out)
    return readouts


def segment_tracks(
    processors: Sequence[CutieProcessor],
    features: ImageFeatures,
    update_sensory: Sequence[bool],
) -> list[torch.Tensor]:
    """Segment the frame for every track from its memory -> per track (1 + N) x H' x W'
    probabilities (with flip augmentation the two predictions averaged); the sensory memory
    of tracks with ``update_sensory`` is updated. The decoder runs once per group of tracks
    with the same number of objects and the same ``update_sensory``."""
    network = processors[0].network
    readouts = read_memories(processors, features)
    batch = int(features.key.shape[0])
    probs: list[torch.Tensor | None] = [None] * len(processors)
    keys = ((len(p.objects), update) for p, update in zip(processors, update_sensory, strict=True))
    for group in group_indices(keys):
        members = [processors[i] for i in group]
        update = update_sensory[group[0]]
        sensory, prob = network.segment(
            repeat_features(features, len(group)),
            torch.cat([readouts[i] for i in group]),
            torch.cat([p.memory.get_sensory(p.objects) for p in members]),
            update_sensory=update,
        )
        chunks = zip(group, members, sensory.split(batch), prob.split(batch), strict=True)
        for i, processor, track_sensory, track_prob in chunks:
            if update:
                processor.memory.set_sensory(track_sensory, processor.objects)
            if processor.settings.flip_aug:
                probs[i] = (track_prob[0] + track_prob[1].flip(-1)) / 2
            else:
                probs[i] = track_prob[0]
    return [p for p in probs if p is not None]


def add_memories(
    enc: CutieEncoding,
    processors: Sequence[CutieProcessor],
    masks: Sequence[torch.Tensor],
    *,
    force_permanent: bool = False,
) -> None:
    """Make this frame a memory frame of every track: encode each track's B x N x H' x W'
    ``masks`` (the mask encoder once per group of tracks with the same number of objects) and
    write working, object and sensory memory."""
    features = enc.features
    network = processors[0].network
    dtype = features.pix_feat.dtype
    batch = int(features.key.shape[0])
    for processor in processors:
        processor.memory.ensure_sensory(processor.objects, features.key, network.spec.sensory_dim)
    for group in group_indices(len(p.objects) for p in processors):
        members = [processors[i] for i in group]
        value, sensory, summaries = network.encode_mask(
            repeat_batch(enc.frame.image, len(group)),
            repeat_batch(features.pix_feat, len(group)),
            torch.cat([p.memory.get_sensory(p.objects) for p in members]).to(dtype),
            torch.cat([masks[i] for i in group]).to(dtype),
        )
        chunks = zip(
            members, value.split(batch), sensory.split(batch), summaries.split(batch), strict=True
        )
        for processor, track_value, track_sensory, track_summaries in chunks:
            # copies: a track's long-lived memory must not keep the whole group's batch alive
            single = len(group) == 1
            processor.memory.add(
                features.key,
                features.shrinkage,
                features.selection,
                track_value if single else track_value.clone(),
                track_summaries if single else track_summaries.clone(),
                processor.objects,
                permanence="all" if force_permanent else "first",
            )
            processor.last_mem_ti = processor.curr_ti
            processor.memory.set_sensory(track_sensory, processor.objects)
