"""The SAM 2 engine session (:class:`vos.engine.EngineSession`): one image encoding per frame
shared by every track, each track one RVOS expression made of one SAM 2 object per object id
(objects are independent, as in the official per-object predictor).

A track keeps a frame index and a direction. A new track starts at ``frame_step`` (0 when not
given) moving forward; ``step`` moves every stepped track one frame on. Adding a reference again
at an index the track has left (the protocol's key frame, ``frame_step=0``, before its backward
sweep) turns the track round: it then runs as ``propagate_in_video(reverse=True)`` from that
frame on the same state, reading the forward sweep's memories where the official index
arithmetic does. A reference on an already tracked, non-conditioning frame is a correction
(stored as a non-conditioning frame, like ``add_new_mask`` on a tracked frame).

Naming: H x W = the frame size; S = the network's square input size.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from vos.sam2.model import ImageFeatures, Sam2Model
from vos.sam2.spec import Sam2Options
from vos.sam2.tracker import FrameResult, ObjectTrack, Tracker

TrackId = Hashable

IMAGE_MEAN = (0.485, 0.456, 0.406)
IMAGE_STD = (0.229, 0.224, 0.225)


def normalize_frame(frame: torch.Tensor, image_size: int) -> torch.Tensor:
    """3 x H x W uint8 RGB -> 1 x 3 x S x S: a square resize without keeping the aspect ratio
    (bicubic, antialiased, rounded to uint8 like the official PIL resize), /255, ImageNet
    mean / std (``sam2/utils/misc.py``)."""
    x = frame[None].float()
    if tuple(frame.shape[-2:]) != (image_size, image_size):
        x = F.interpolate(x, size=(image_size,) * 2, mode="bicubic", antialias=True)
        x = x.round().clamp(0, 255)
    mean = torch.tensor(IMAGE_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGE_STD, device=x.device).view(1, 3, 1, 1)
    return (x / 255.0 - mean) / std


def prompt_mask(mask: torch.Tensor, image_size: int) -> torch.Tensor:
    """H x W bool -> 1 x 1 x S x S float in {0, 1}: antialiased bilinear resize, >= 0.5
    (``add_new_mask``)."""
    x = mask[None, None].float()
    if tuple(mask.shape) != (image_size, image_size):
        x = F.interpolate(x, size=(image_size,) * 2, mode="bilinear", antialias=True)
        x = (x >= 0.5).float()
    return x


@dataclass(frozen=True)
class Sam2Encoding:
    """One frame's image features (:class:`vos.engine.FrameEncoding`)."""

    features: ImageFeatures
    frame_size: tuple[int, int]

    @property
    def size(self) -> tuple[int, int]:
        return self.frame_size

    @property
    def nbytes(self) -> int:
        return self.features.nbytes


@dataclass(frozen=True)
class Sam2StepOutput:
    """One track's prediction (:class:`vos.engine.StepOutput`).

    Attributes:
        logits: N x H x W per-object logits at the frame size (objects in ``object_ids``
            order; -1024 where an object was judged absent).
        object_ids: the track's object ids.
    """

    logits: torch.Tensor
    object_ids: tuple[int, ...]

    @property
    def probs(self) -> torch.Tensor:
        """(1 + N) x H x W: background = 1 - the largest object probability."""
        objects = torch.sigmoid(self.logits)
        if objects.shape[0] == 0:
            return torch.ones((1, *objects.shape[1:]), device=objects.device)
        return torch.cat([1.0 - objects.amax(dim=0, keepdim=True), objects])

    @property
    def foreground(self) -> torch.Tensor:
        return (self.logits > 0).any(dim=0)

    @property
    def labels(self) -> torch.Tensor:
        if not self.object_ids:
            return torch.zeros(self.logits.shape[1:], dtype=torch.int64, device=self.logits.device)
        ids = torch.tensor(self.object_ids, dtype=torch.int64, device=self.logits.device)
        winner = ids[self.logits.argmax(dim=0)]
        return torch.where(self.foreground, winner, torch.zeros_like(winner))


@dataclass
class TrackState:
    """One track: its objects' memories, its frame index and direction."""

    objects: dict[int, ObjectTrack] = field(default_factory=dict)
    index: int = 0
    direction: int = 1


class Sam2Session:
    """A video's tracks on one :class:`Sam2Model` (see the module docstring).

    Attributes:
        stats: ``encoder_calls`` (frames encoded) and ``slot_steps`` (object-frames tracked).
        taps: when a dict, receives per (track, object id) the list of
            ``(index, reverse, FrameResult)`` of every reference and step (parity runs).
        batch_objects: propagate the objects of all stepped tracks as one batch (default);
            False runs them one at a time (the official per-object predictor's order; the
            outputs are the same).
    """

    def __init__(self, model: Sam2Model, options: Sam2Options, device: torch.device) -> None:
        self.model = model
        self.options = options
        self.tracker = Tracker(model, options)
        self.device = device
        self.tracks: dict[TrackId, TrackState] = {}
        self.stats: dict[str, int] = {"encoder_calls": 0, "slot_steps": 0}
        self.taps: dict[tuple[TrackId, int], list[tuple[int, bool, FrameResult]]] | None = None
        self.batch_objects = True

    @property
    def image_size(self) -> int:
        return self.model.spec.image_size

    @torch.inference_mode()
    def encode(self, frame: torch.Tensor) -> Sam2Encoding:
        """A 3 x H x W uint8 RGB frame -> its encoding (once, for every track)."""
        image = normalize_frame(frame.to(self.device), self.image_size)
        return self.encode_normalized(image, (int(frame.shape[-2]), int(frame.shape[-1])))

    @torch.inference_mode()
    def encode_normalized(self, image: torch.Tensor, size: tuple[int, int]) -> Sam2Encoding:
        """An already normalised 1 x 3 x S x S image of a frame of ``size`` -> its encoding."""
        self.stats["encoder_calls"] += 1
        return Sam2Encoding(self.model.encode_image(image.to(self.device)), size)

    @torch.inference_mode()
    def add_reference(
        self,
        frame: Sam2Encoding,
        mask: torch.Tensor,
        *,
        track: TrackId,
        frame_step: int | None = None,
    ) -> None:
        """Add an annotated frame to ``track``; ``mask`` is H x W object ids (bool: object 1).
        ``frame_step`` is the track's frame index (None: the track's current frame)."""
        # A bool mask is object 1 even when empty (an absent object, as ``add_new_mask``).
        ids = [1] if mask.dtype == torch.bool else [int(i) for i in mask.unique() if i > 0]
        mask = mask.long()
        state = self.tracks.get(track)
        if state is None:
            state = TrackState(index=0 if frame_step is None else int(frame_step))
            self.tracks[track] = state
        index = state.index if frame_step is None else int(frame_step)
        if index != state.index:
            # The new sweep leaves towards the side the track has not come from.
            state.direction = 1 if index > state.index else -1
            state.index = index
        for obj_id in ids:
            obj = state.objects.setdefault(obj_id, ObjectTrack())
            binary = prompt_mask(mask == obj_id, self.image_size).to(self.device)
            as_cond = index in obj.cond or index not in obj.non_cond
            result = self.tracker.reference(obj, frame.features, binary, index, as_cond=as_cond)
            self._tap(track, obj_id, index, state.direction < 0, result)

    @torch.inference_mode()
    def step(
        self, frame: Sam2Encoding, *, tracks: Sequence[TrackId] | None = None
    ) -> Mapping[TrackId, Sam2StepOutput]:
        """Move ``tracks`` (default: all) one frame on and predict it.

        The objects of all stepped tracks are propagated as one batch
        (:meth:`Tracker.track_many`, each with its own memory; ``batch_objects=False`` on the
        session: one at a time, as the official per-object predictor)."""
        chosen = list(self.tracks) if tracks is None else list(tracks)
        for track in chosen:
            if track not in self.tracks:
                raise KeyError(f"track {track!r} has no reference frame")
        slots: list[tuple[TrackId, int, ObjectTrack, int, bool]] = []
        for track in chosen:
            state = self.tracks[track]
            state.index += state.direction
            reverse = state.direction < 0
            for obj_id, obj in state.objects.items():
                slots.append((track, obj_id, obj, state.index, reverse))
        steps = [(obj, index, reverse) for _, _, obj, index, reverse in slots]
        if self.batch_objects:
            results = self.tracker.track_many(frame.features, steps)
        else:
            results = [self.tracker.track(obj, frame.features, i, r) for obj, i, r in steps]
        logits: dict[TrackId, list[torch.Tensor]] = {track: [] for track in chosen}
        for (track, obj_id, obj, index, reverse), result in zip(slots, results, strict=True):
            self.tracker.prune(obj, index)
            self.stats["slot_steps"] += 1
            self._tap(track, obj_id, index, reverse, result)
            logits[track].append(result.low_res)
        return {
            track: Sam2StepOutput(
                self._at_size(logits[track], frame.size), tuple(self.tracks[track].objects)
            )
            for track in chosen
        }

    def _at_size(self, low_res: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        """N logits of 1 x 1 x S/4 x S/4 -> N x H x W (bilinear, as the official output)."""
        if not low_res:  # a track whose id mask held no object
            return torch.zeros((0, *size), device=self.device)
        logits = F.interpolate(torch.cat(low_res, dim=1), size=size, mode="bilinear")[0]
        if self.options.non_overlap_masks and logits.shape[0] > 1:
            winner = logits.argmax(dim=0, keepdim=True)
            mine = torch.arange(logits.shape[0], device=logits.device)[:, None, None] == winner
            logits = torch.where(mine, logits, logits.clamp(max=-10.0))
        return logits

    def drop_track(self, track: TrackId) -> None:
        self.tracks.pop(track, None)

    def memory_bytes(self) -> int:
        return sum(o.nbytes for s in self.tracks.values() for o in s.objects.values())

    def _tap(
        self, track: TrackId, obj_id: int, index: int, reverse: bool, result: FrameResult
    ) -> None:
        if self.taps is not None:
            self.taps.setdefault((track, obj_id), []).append((index, reverse, result))
