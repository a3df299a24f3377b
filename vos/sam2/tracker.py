"""One object's SAM 2 video-predictor state and its per-frame algorithm.

This is ``SAM2VideoPredictor`` for one object (the 12/2024 per-object predictor: objects never
batch) on frames given one at a time: ``reference`` = ``add_new_mask`` + the memory encoding of
``propagate_in_video_preflight``; ``track`` = one frame of ``propagate_in_video`` with
``_prepare_memory_conditioned_features`` (facebookresearch/sam2@2b90b9f
``sam2/sam2_video_predictor.py``, ``sam2/modeling/sam2_base.py``).

Frame indices are the track's own (the first reference is where the caller says, usually 0);
only differences of indices enter the algorithm, so they equal the official video indices up to
a shift (exactly so with ``memory_stride`` 1, the value of every config). Memory is bounded:
kept are the conditioning frames, and of the other frames only those the algorithm can still
read (:meth:`Tracker.prune`) - the last 6 memory features and 15 pointers behind the current
frame, and as many beside each conditioning frame (a sweep that restarts from a conditioning
frame, like ``propagate_in_video(reverse=True)`` after the forward pass, reads the forward
pass's first frames there).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from vos.sam2.memory import MemoryBank
from vos.sam2.model import NUM_MASKMEM, HeadOutput, ImageFeatures, Sam2Model
from vos.sam2.postprocess import fill_holes
from vos.sam2.spec import Sam2Options

MAX_OBJ_PTRS = 16  # max_obj_ptrs_in_encoder (no config overrides it)


@dataclass
class FrameMemory:
    """What a processed frame leaves for later frames.

    Attributes:
        features: 1 x D x h x w memory features (bfloat16 like the official predictor), or None
            once no later frame can read them.
        obj_ptr: 1 x C object pointer.
        object_score: 1 x 1 object-score logit.
    """

    features: torch.Tensor | None
    obj_ptr: torch.Tensor
    object_score: torch.Tensor

    @property
    def nbytes(self) -> int:
        tensors = [self.obj_ptr, self.object_score]
        if self.features is not None:
            tensors.append(self.features)
        return sum(t.numel() * t.element_size() for t in tensors)


@dataclass(frozen=True)
class FrameResult:
    """One object's prediction on one frame.

    Attributes:
        low_res: 1 x 1 x S/4 x S/4 logits (what the official predictor stores and upsamples).
        object_score: 1 x 1 object-score logit.
        obj_ptr: 1 x C object pointer.
        memory_out: 1 x C x h x w memory-attention output (None on a conditioning frame).
    """

    low_res: torch.Tensor
    object_score: torch.Tensor
    obj_ptr: torch.Tensor
    memory_out: torch.Tensor | None = None


@dataclass
class ObjectTrack:
    """One object's memory: conditioning frames and the others, by frame index."""

    cond: dict[int, FrameMemory] = field(default_factory=dict)
    non_cond: dict[int, FrameMemory] = field(default_factory=dict)
    cond_results: dict[int, FrameResult] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        memories = sum(m.nbytes for m in (*self.cond.values(), *self.non_cond.values()))
        low_res = sum(
            r.low_res.numel() * r.low_res.element_size() for r in self.cond_results.values()
        )
        return memories + low_res


def select_cond_frames(
    index: int, cond: dict[int, FrameMemory], max_frames: int
) -> tuple[dict[int, FrameMemory], dict[int, FrameMemory]]:
    """``select_closest_cond_frames``: all (-1), else the closest before, the closest at or
    after, then the temporally closest; -> (selected, unselected)."""
    if max_frames == -1 or len(cond) <= max_frames:
        return dict(cond), {}
    selected: dict[int, FrameMemory] = {}
    before = max((t for t in cond if t < index), default=None)
    after = min((t for t in cond if t >= index), default=None)
    for t in (before, after):
        if t is not None:
            selected[t] = cond[t]
    rest = sorted((t for t in cond if t not in selected), key=lambda t: abs(t - index))
    for t in rest[: max_frames - len(selected)]:
        selected[t] = cond[t]
    return selected, {t: m for t, m in cond.items() if t not in selected}


class Tracker:
    """The per-object algorithm on a :class:`Sam2Model` with given :class:`Sam2Options`."""

    def __init__(self, model: Sam2Model, options: Sam2Options) -> None:
        self.model = model
        self.options = options
        frames = options.num_frames
        self.max_ptrs = MAX_OBJ_PTRS if frames is None else min(frames, MAX_OBJ_PTRS)
        self._mem_pos: torch.Tensor | None = None  # the constant memory PE, 1 x hw x D

    # -- conditioning frames ---------------------------------------------------------------

    def reference(
        self,
        obj: ObjectTrack,
        feats: ImageFeatures,
        mask: torch.Tensor,
        index: int,
        as_cond: bool = True,
    ) -> FrameResult:
        """A 1 x 1 x S x S binary mask on frame ``index`` becomes a conditioning frame (or,
        ``as_cond=False``, a correction stored as a non-conditioning frame); its memory is
        encoded from the stored S/4 logits (holes filled) upsampled back (the preflight), not
        from the mask itself."""
        out = self.model.mask_as_output(feats, mask)
        low_res = self._filled(out.low_res)
        size = (self.model.spec.image_size,) * 2
        high = F.interpolate(low_res, size=size, mode="bilinear")
        features, pos = self.model.encode_memory(
            feats, high, out.object_score, binarize=self.options.binarize_prompt_memory
        )
        self._remember_pos(pos)
        memory = FrameMemory(self._stored(features), out.obj_ptr, out.object_score)
        result = FrameResult(low_res, out.object_score, out.obj_ptr)
        if as_cond:
            obj.cond[index] = memory
            obj.cond_results[index] = result
            obj.non_cond.pop(index, None)
        else:
            obj.non_cond[index] = memory
        return result

    # -- propagation -----------------------------------------------------------------------

    def track(
        self, obj: ObjectTrack, feats: ImageFeatures, index: int, reverse: bool
    ) -> FrameResult:
        """Frame ``index`` from the memory of earlier frames (later ones when ``reverse``);
        writes its memory into ``obj``. A conditioning frame returns its stored result."""
        if index in obj.cond_results:
            return obj.cond_results[index]
        memory, memory_pos, num_ptr_tokens = self.gather_memory(obj, index, reverse)
        conditioned = self.model.condition_on_memory(feats, memory, memory_pos, num_ptr_tokens)
        out: HeadOutput = self.model.heads(conditioned, feats.high_res, None, multimask=True)
        features, pos = self.model.encode_memory(feats, out.high_res, out.object_score, False)
        self._remember_pos(pos)
        obj.non_cond[index] = FrameMemory(self._stored(features), out.obj_ptr, out.object_score)
        # The memory above is of the raw mask; holes are filled in the output only.
        return FrameResult(self._filled(out.low_res), out.object_score, out.obj_ptr, conditioned)

    def track_many(
        self, feats: ImageFeatures, steps: Sequence[tuple[ObjectTrack, int, bool]]
    ) -> list[FrameResult]:
        """:meth:`track` for several objects (of any tracks) on one frame: ``steps`` holds
        (object, frame index, reverse) per object; the objects to propagate go through the
        memory attention, the heads and the memory encoder as one batch (each with its own
        memory bank), so every object gets the result :meth:`track` gives it alone."""
        results: list[FrameResult | None] = [None] * len(steps)
        pending: list[int] = []
        banks: list[MemoryBank] = []
        for i, (obj, index, reverse) in enumerate(steps):
            if index in obj.cond_results:
                results[i] = obj.cond_results[index]
                continue
            pending.append(i)
            banks.append(MemoryBank(*self.gather_memory(obj, index, reverse)))
        if pending:
            conditioned = self.model.condition_on_memories(feats, banks)
            out: HeadOutput = self.model.heads(conditioned, feats.high_res, None, multimask=True)
            features, pos = self.model.encode_memory(feats, out.high_res, out.object_score, False)
            self._remember_pos(pos)
            stored = self._stored(features)
            filled = self._filled(out.low_res)
            for row, i in enumerate(pending):
                obj, index, _ = steps[i]
                ptr = out.obj_ptr[row : row + 1].clone()
                score = out.object_score[row : row + 1].clone()
                obj.non_cond[index] = FrameMemory(stored[row : row + 1].clone(), ptr, score)
                results[i] = FrameResult(
                    filled[row : row + 1].clone(), score, ptr, conditioned[row : row + 1]
                )
        return [r for r in results if r is not None]

    def gather_memory(
        self, obj: ObjectTrack, index: int, reverse: bool
    ) -> tuple[torch.Tensor, torch.Tensor, int]:
        """The memory bank of frame ``index``: 1 x M x D tokens, their PE, and how many of the
        last tokens are object-pointer tokens (4 per pointer, excluded from RoPE)."""
        assert obj.cond, "a track needs a conditioning frame before propagation"
        assert self._mem_pos is not None
        model = self.model
        selected, unselected = select_cond_frames(index, obj.cond, self.options.max_cond_frames)
        chosen: list[tuple[int, FrameMemory]] = [(0, m) for m in selected.values()]
        for t_pos in range(1, NUM_MASKMEM):
            prev = self._previous_index(index, NUM_MASKMEM - t_pos, reverse)
            found = obj.non_cond.get(prev, unselected.get(prev))
            if found is not None and found.features is not None:
                chosen.append((t_pos, found))
        tokens, pos = [], []
        for t_pos, mem in chosen:
            assert mem.features is not None
            tokens.append(mem.features.float().flatten(2).transpose(1, 2))
            pos.append(
                self._mem_pos + model.maskmem_tpos_enc[NUM_MASKMEM - t_pos - 1].reshape(1, 1, -1)
            )
        ptr_tokens, ptr_pos = self._pointers(obj, index, reverse, selected, unselected)
        tokens.append(ptr_tokens)
        pos.append(ptr_pos)
        return torch.cat(tokens, dim=1), torch.cat(pos, dim=1), int(ptr_tokens.shape[1])

    def _previous_index(self, index: int, t_rel: int, reverse: bool) -> int:
        """The frame ``t_rel`` memory slots back (``memory_temporal_stride_for_eval``)."""
        stride = self.options.memory_stride
        if t_rel == 1:
            return index + 1 if reverse else index - 1
        if reverse:
            return -(-(index + 2) // stride) * stride + (t_rel - 2) * stride
        return ((index - 2) // stride) * stride - (t_rel - 2) * stride

    def _pointers(
        self,
        obj: ObjectTrack,
        index: int,
        reverse: bool,
        selected: dict[int, FrameMemory],
        unselected: dict[int, FrameMemory],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Object pointers of the past conditioning frames and of up to ``max_ptrs - 1``
        previous frames -> (1 x 4N x D tokens, 1 x 4N x D PE)."""
        signed = self.model.spec.use_signed_tpos_enc_to_obj_ptrs
        sign = -1 if reverse else 1
        entries: list[tuple[int, torch.Tensor]] = []
        for t, mem in selected.items():
            if (t >= index) if reverse else (t <= index):  # only_obj_ptrs_in_the_past_for_eval
                entries.append(((index - t) * sign if signed else abs(index - t), mem.obj_ptr))
        for t_diff in range(1, self.max_ptrs):
            t = index + t_diff if reverse else index - t_diff
            found = obj.non_cond.get(t, unselected.get(t))
            if found is not None:
                entries.append((t_diff, found.obj_ptr))
        ref = self.model.no_obj_ptr
        if not entries:
            empty = ref.new_zeros(1, 0, self._mem_pos.shape[-1])  # type: ignore[union-attr]
            return empty, empty
        ptrs = torch.cat([p for _, p in entries], dim=0)  # N x C
        t_diffs = torch.tensor([d for d, _ in entries], device=ref.device)
        pe = self.model.pointer_positions(t_diffs, self.max_ptrs)  # N x D
        n, c = ptrs.shape
        d = pe.shape[-1]
        tokens = ptrs.reshape(n * (c // d), d)  # each pointer split into C/D tokens
        return tokens[None], pe.repeat_interleave(c // d, dim=0)[None]

    # -- storage ---------------------------------------------------------------------------

    def _filled(self, low_res: torch.Tensor) -> torch.Tensor:
        area = self.options.fill_hole_area
        return fill_holes(low_res, area) if area > 0 else low_res

    def _stored(self, features: torch.Tensor) -> torch.Tensor:
        return features.to(torch.bfloat16) if self.options.bf16_memory else features

    def _remember_pos(self, pos: torch.Tensor) -> None:
        if self._mem_pos is None:
            self._mem_pos = pos.flatten(2).transpose(1, 2)

    def prune(self, obj: ObjectTrack, index: int) -> None:
        """Drop what no later frame can read (module docstring) once frame ``index`` is done.

        The next frame of this sweep, or the first frame of a sweep restarting from a
        conditioning frame, reads memory features up to ``5 * memory_stride`` frames and
        pointers up to ``max_ptrs - 2`` frames from ``index`` or that conditioning frame.
        """
        anchors = [index, *obj.cond]
        mem_reach = (NUM_MASKMEM - 2) * self.options.memory_stride
        ptr_reach = max(self.max_ptrs - 2, mem_reach)
        for t in list(obj.non_cond):
            distance = min(abs(t - a) for a in anchors)
            if distance > ptr_reach:
                del obj.non_cond[t]
            elif distance > mem_reach:
                obj.non_cond[t].features = None
