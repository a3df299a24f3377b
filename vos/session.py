"""The propagator and its per-video session: the runtime around a stateless AOT / DeAOT network.

A :class:`Propagator` holds a network and the inference settings (memory gap and cap, test-time
augmentation, resize rule, autocast). ``propagator.new_session()`` gives a :class:`Session` for
one video. A session holds any number of *tracks*: independent propagation problems on the same
frames (one VOS annotation with many objects, or one RVOS expression each). Every call encodes
the frame once per test-time scale and propagates all requested tracks together:

    session = propagator.new_session()
    session.add_reference(frames[0], labels0, track="a")   # H x W ids, 0 = background
    for frame in frames[1:]:
        result = session.step(frame)["a"]                  # probs (1+N) x H x W, labels H x W

Objects (mask ids) map to channels through :class:`ObjectRegistry`; a track with more than
``max_objects`` objects is split over several engines (slots) that share the frame encoding and
whose logits are merged by the official soft aggregation. Test-time augmentation runs one slot
per (scale, flip) with its own memory; probabilities are averaged at the original size, and the
memories are updated with the ensembled label (the RVOS challenge) or each augmentation's own
label (aot-benchmark's evaluator).

:class:`Propagator`, :class:`Session`, :class:`FrameFeatures` and :class:`StepResult` implement
the engine-session protocol of :mod:`vos.engine` (what :mod:`vos.protocol` drives).

Naming: H x W = original frame size; H' x W' = a network input size; L = stride-16 tokens.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

import torch
import torch.nn.functional as F

from vos.aot import AOT, EncodedFrame
from vos.engine_inputs import BACKWARD_MEMORIES, BackwardMemory, cuda_autocast
from vos.layers.attention import KeyValue, masked_fill_value
from vos.layers.lstt import FrameMemory
from vos.memory import EngineSlot
from vos.preprocess import ResizeRule, normalize_frames, one_hot_labels, resize_labels

TrackId = Hashable


@dataclass(frozen=True)
class Augmentation:
    """One test-time augmentation: a scale and an optional horizontal flip."""

    scale: float = 1.0
    flip: bool = False


@dataclass(frozen=True)
class TTAConfig:
    """Test-time augmentation.

    Attributes:
        scales: network-input scales (after the resize rule); the challenge uses 0.8, 1.0, 1.2.
        flip: add a horizontally flipped copy of every scale.
        memory_update: ``"ensemble"`` - every slot's memory gets the averaged prediction's label
            (the RVOS challenge's bidirectional evaluator); ``"own"`` - each augmentation's own
            label (aot-benchmark's evaluator).
    """

    scales: tuple[float, ...] = (1.0,)
    flip: bool = False
    memory_update: Literal["ensemble", "own"] = "ensemble"

    @property
    def augmentations(self) -> tuple[Augmentation, ...]:
        augs = []
        for scale in self.scales:
            augs.append(Augmentation(scale, False))
            if self.flip:
                augs.append(Augmentation(scale, True))
        return tuple(augs)


@dataclass
class FrameFeatures:
    """One frame encoded for every test-time scale (flipped copies in the same batch).

    Attributes:
        size: (H, W) of the original frame.
        encoded: per scale, an :class:`EncodedFrame` of batch 1 (or 2: original, flipped).
    """

    size: tuple[int, int]
    encoded: dict[float, EncodedFrame]

    @property
    def nbytes(self) -> int:
        """Bytes of every scale's encoder maps (:attr:`EncodedFrame.shortcuts`; the tokens are a
        view of the projected map and cost nothing more)."""
        total = 0
        for enc in self.encoded.values():
            total += sum(t.numel() * t.element_size() for t in enc.shortcuts)
        return total

    def view(self, aug: Augmentation) -> EncodedFrame:
        enc = self.encoded[aug.scale]
        return enc.select(1 if aug.flip else 0)


@dataclass(frozen=True)
class StepResult:
    """A track's prediction for one frame.

    Attributes:
        probs: C x H x W float32 probabilities at the original size: background, then the
            track's objects in :attr:`obj_ids` order; with ``mask_unused_ids=False`` the unused
            identity channels follow (C = 1 + engines * max_objects), as the RVOS challenge's
            arg-max sees them.
        obj_ids: the objects' ids (channels 1 .. N).
    """

    probs: torch.Tensor
    obj_ids: tuple[int, ...]

    @cached_property
    def channels(self) -> torch.Tensor:
        """H x W int64 arg-max channel (0 = background), computed once."""
        return first_argmax(self.probs)

    @property
    def labels(self) -> torch.Tensor:
        """H x W int64 object ids of the arg-max (0 = background, -1 = an unused identity)."""
        lut = torch.full((self.probs.shape[0],), -1, dtype=torch.long, device=self.probs.device)
        lut[: 1 + len(self.obj_ids)] = torch.tensor((0, *self.obj_ids), device=self.probs.device)
        return lut[self.channels]

    @property
    def foreground(self) -> torch.Tensor:
        """H x W bool: any identity won the arg-max (how binary RVOS masks are read)."""
        return self.channels != 0


def first_argmax(probs: torch.Tensor) -> torch.Tensor:
    """``C x H x W`` -> ``H x W`` int64 index of the largest channel, the first on ties:
    ``probs.argmax(0)``'s answer. ``max(0)`` promises the same (first maximal index, NaN the
    largest) and is an order of magnitude faster on CPU for a reduction over the outer dim."""
    return probs.max(0).indices


class ObjectRegistry:
    """Object ids of a track <-> channels.

    Invariant: channel 0 is the background; object ``obj_ids[i]`` is channel ``i + 1`` for the
    life of the track (new objects are appended). Engine ``g`` carries channels
    ``g * K + 1 .. (g + 1) * K`` as its local identities ``1 .. K`` (K = ``max_objects``).
    """

    def __init__(self, max_objects: int) -> None:
        self.max_objects = max_objects
        self.obj_ids: list[int] = []

    def extend(self, ids: Iterable[int]) -> None:
        for obj in ids:
            obj = int(obj)
            if obj <= 0:
                raise ValueError(f"object ids must be positive, got {obj}")
            if obj not in self.obj_ids:
                self.obj_ids.append(obj)

    @property
    def num_engines(self) -> int:
        return max(1, -(-len(self.obj_ids) // self.max_objects))

    def objects_in_engine(self, engine: int) -> int:
        k = self.max_objects
        return max(0, min(k, len(self.obj_ids) - engine * k))

    def channels(self, labels: torch.Tensor) -> torch.Tensor:
        """H x W object ids -> H x W channels (unknown ids count as background)."""
        size = max([*self.obj_ids, int(labels.max()) if labels.numel() else 0]) + 1
        lut = torch.zeros(size, dtype=torch.long, device=labels.device)
        for channel, obj in enumerate(self.obj_ids, start=1):
            lut[obj] = channel
        return lut[labels.long().clamp(min=0)]

    def engine_labels(self, channels: torch.Tensor, engine: int) -> torch.Tensor:
        """Channels -> engine ``engine``'s local identities (0 outside its range)."""
        k = self.max_objects
        local = channels - engine * k
        inside = (local >= 1) & (local <= k)
        return torch.where(inside, local, torch.zeros_like(local))


@dataclass
class PendingStep:
    """A stepped augmentation whose memories wait for the frame's labels."""

    aug_index: int
    slot_keys: list[tuple[TrackId, int, int]]  # (track, augmentation, engine)
    memory: FrameMemory
    input_size: tuple[int, int]


@dataclass
class ReferenceRecord:
    """Where a track's last reference frame went, to add it again without recomputing it.

    The challenge's backward pass re-adds the key frame with the same mask on the same engines;
    its self-matching propagation is a function of the frame encoding and the identities
    alone, so its memory entries equal the ones stored the first time.

    Attributes:
        features: the encoded frame (a weak reference: the record does not keep it alive).
        mask: H x W object ids it was added with.
        obj_ids: the track's objects then (channels depend on them).
        positions: per (augmentation, engine) slot, the frame's position in its long-term
            memory (:meth:`vos.memory.LongTermMemory.frame`).
    """

    features: weakref.ReferenceType[FrameFeatures]
    mask: torch.Tensor
    obj_ids: tuple[int, ...]
    positions: dict[tuple[int, int], int]

    def matches(self, feats: FrameFeatures, mask: torch.Tensor, obj_ids: Sequence[int]) -> bool:
        return (
            self.features() is feats
            and self.obj_ids == tuple(obj_ids)
            and self.mask.shape == mask.shape
            and torch.equal(self.mask, mask)
        )


@dataclass
class TrackState:
    registry: ObjectRegistry
    slots: dict[tuple[int, int], EngineSlot] = field(default_factory=dict)  # (aug, engine)
    last_reference: ReferenceRecord | None = None


class Propagator:
    """A network with its inference settings; creates per-video sessions.

    Args:
        network: an :class:`~vos.aot.AOT` or :class:`~vos.deaot.DeAOT` network (eval mode).
        long_term_gap: write every ``gap``-th propagated frame to long-term memory
            (None: the variant's official test default, 5 for -L models, 9999 otherwise).
        short_term_skip: the short-term memory is the frame ``skip`` steps back (1: previous).
        long_term_cap: at most this many propagated frames in long-term memory (None: no cap,
            as the official); reference frames are always kept on top of it.
        tta: test-time augmentation.
        resize: the network input size rule.
        mask_unused_ids: set the logits of identities beyond the engine's objects to -1e10
            (aot-benchmark); False keeps all ``max_objects`` live (the RVOS challenge's engine
            passes obj_nums=[10]).
        backward_memory: the step a reference frame records as its last long-term write (what
            decides when the backward pass's first frame joins long-term memory after the key
            frame is re-added; third_party/aot.md, "The backward pass"): ``"key_frame_step"``
            - the ``frame_step`` given to :meth:`Session.add_reference` (the RVOS winners' AOT
            copy); ``"running_step"`` - the slot's running step count, whatever is given
            (aot-benchmark 75e46fe's engine, which also masks unused identities by the real
            object count, so it needs ``mask_unused_ids``).
        autocast: run the network in float16 autocast on CUDA (no effect on CPU).
    """

    def __init__(
        self,
        network: AOT,
        *,
        long_term_gap: int | None = None,
        short_term_skip: int = 1,
        long_term_cap: int | None = None,
        tta: TTAConfig | None = None,
        resize: ResizeRule | None = None,
        mask_unused_ids: bool = True,
        backward_memory: BackwardMemory = "key_frame_step",
        autocast: bool = False,
    ) -> None:
        if backward_memory not in BACKWARD_MEMORIES:
            raise ValueError(
                f"backward_memory must be one of {BACKWARD_MEMORIES}, not {backward_memory!r}"
            )
        if backward_memory == "running_step" and not mask_unused_ids:
            raise ValueError(
                "backward_memory 'running_step' follows aot-benchmark's engine, which masks "
                "unused identities by the real object count: it needs mask_unused_ids=True"
            )
        self.network = network.eval()
        self.spec = network.spec
        self.long_term_gap = self.spec.long_term_gap if long_term_gap is None else long_term_gap
        self.short_term_skip = short_term_skip
        self.long_term_cap = long_term_cap
        self.tta = tta or TTAConfig()
        self.resize = resize or ResizeRule()
        self.mask_unused_ids = mask_unused_ids
        self.backward_memory = backward_memory
        self.autocast = autocast

    @property
    def device(self) -> torch.device:
        return next(self.network.parameters()).device

    @property
    def max_objects(self) -> int:
        return self.spec.max_objects

    def new_session(self, num_frames: int | None = None) -> Session:
        """A session with no tracks (``num_frames`` is not needed by AOT / DeAOT)."""
        return Session(self)

    def precision(self) -> contextlib.AbstractContextManager[Any]:
        return cuda_autocast(self.autocast, self.device)


class Session:
    """One video's propagation state (see the module docstring).

    ``stats`` counts encoder calls (per scale), propagated slot-frames and reference frames added
    again from memory instead of recomputed (``reference_reuses``, see :meth:`add_reference`),
    so callers and tests can check that frames are encoded once however many tracks share them.
    """

    def __init__(self, propagator: Propagator) -> None:
        self.propagator = propagator
        self.network = propagator.network
        self.augmentations = propagator.tta.augmentations
        self._tracks: dict[TrackId, TrackState] = {}
        self._pending: list[PendingStep] = []
        self._pending_tracks: list[TrackId] = []
        self._pending_own: dict[TrackId, list[torch.Tensor]] = {}
        self.stats = {"encoder_calls": 0, "slot_steps": 0, "reference_reuses": 0}
        # Debug taps (parity checks): when a dict, intermediate tensors of the first
        # augmentation are appended under "encoded", "id_emb", "lstt_out", "logits_s4", "logits".
        self.taps: dict[str, list[object]] | None = None

    def _tap(self, name: str, value: object) -> None:
        if self.taps is not None:
            self.taps.setdefault(name, []).append(value)

    # --- tracks ---------------------------------------------------------------------------

    @property
    def tracks(self) -> list[TrackId]:
        return list(self._tracks)

    def objects(self, track: TrackId) -> tuple[int, ...]:
        return tuple(self._tracks[track].registry.obj_ids)

    def drop_track(self, track: TrackId) -> None:
        """Forget a track and its memories."""
        self._tracks.pop(track, None)

    def memory_bytes(self) -> int:
        """Bytes held by all long-term memories."""
        return sum(
            slot.long_term.nbytes for t in self._tracks.values() for slot in t.slots.values()
        )

    def long_term_frames(self, track: TrackId) -> int:
        """Frames in the long-term memory of the track's first slot."""
        return self._tracks[track].slots[(0, 0)].long_term.num_frames

    # --- encoding -------------------------------------------------------------------------

    @torch.inference_mode()
    def encode(self, frame: torch.Tensor) -> FrameFeatures:
        """Encode a ``3 x H x W`` uint8 RGB frame for every test-time scale (and flip)."""
        if frame.ndim != 3 or frame.shape[0] != 3:
            raise ValueError(f"expected a 3 x H x W frame, got {tuple(frame.shape)}")
        height, width = int(frame.shape[1]), int(frame.shape[2])
        frame = frame.to(self.propagator.device)
        encoded: dict[float, EncodedFrame] = {}
        with self.propagator.precision():
            for scale in dict.fromkeys(a.scale for a in self.augmentations):
                size = self.propagator.resize.network_size(
                    height, width, scale, self.propagator.spec.align_corners
                )
                x = normalize_frames(frame[None], size)
                if any(a.flip and a.scale == scale for a in self.augmentations):
                    x = torch.cat([x, x.flip(-1)])
                encoded[scale] = self.network.encode_image(x)
                self.stats["encoder_calls"] += 1
        self._tap("encoded", encoded[self.augmentations[0].scale])
        return FrameFeatures((height, width), encoded)

    def _features(self, frame: torch.Tensor | FrameFeatures) -> FrameFeatures:
        return frame if isinstance(frame, FrameFeatures) else self.encode(frame)

    # --- references -----------------------------------------------------------------------

    @torch.inference_mode()
    def add_reference(
        self,
        frame: torch.Tensor | FrameFeatures,
        mask: torch.Tensor,
        *,
        track: TrackId = "main",
        obj_ids: Sequence[int] | None = None,
        frame_step: int | None = None,
    ) -> None:
        """Add an annotated frame to a track (a new track starts here).

        Args:
            frame: ``3 x H x W`` uint8 RGB, or its :meth:`encode` output.
            mask: ``H x W`` object ids (0 = background) at the original size; a bool mask is
                object 1.
            track: the track to add to.
            obj_ids: the track's objects (default: the ids present in ``mask``); ids not seen
                before are appended (new objects mid-video), extra engines created as needed.
            frame_step: the step recorded as the last long-term write (official
                ``add_reference_frame(frame_step=...)``); None keeps each slot's counter.
                Ignored with ``backward_memory="running_step"``, which always records the
                slot's counter.

        The frame is propagated against itself with its identities ("self matching") and
        becomes a reference in long-term memory (appended to any earlier one) and the
        short-term memory. Adding the track's last reference again - the same encoded
        ``frame`` object, an equal ``mask``, no new objects since, as the challenge's backward
        pass does with its key frame - copies its entries from long-term memory instead of
        propagating it again: the same numbers, one propagation fewer. (Not while debug
        ``taps`` are recorded, which need the propagation's intermediates.)
        """
        feats = self._features(frame)
        labels = mask.to(self.propagator.device)
        if labels.dtype == torch.bool:
            labels = labels.long()
        if tuple(labels.shape) != feats.size:
            raise ValueError(
                f"mask of track {track!r} is {tuple(labels.shape)}, frame is {feats.size}"
            )
        state = self._tracks.get(track)
        if state is None:
            state = TrackState(ObjectRegistry(self.propagator.max_objects))
        ids = obj_ids if obj_ids is not None else torch.unique(labels[labels > 0]).tolist()
        state.registry.extend(ids)
        if not state.registry.obj_ids:
            raise ValueError(f"reference mask of track {track!r} holds no object")
        self._tracks[track] = state
        record = state.last_reference
        reusable = record is not None and record.matches(feats, labels, state.registry.obj_ids)
        if reusable and self.taps is None:
            assert record is not None
            self._add_reference_again(state, record, frame_step)
            return
        channels = state.registry.channels(labels)
        net = self.network
        positions: dict[tuple[int, int], int] = {}
        for aug_index, aug in enumerate(self.augmentations):
            enc = feats.view(aug)
            local = torch.stack(
                [
                    state.registry.engine_labels(channels, g)
                    for g in range(state.registry.num_engines)
                ]
            )
            local = resize_labels(local.flip(-1) if aug.flip else local, enc.input_size)
            with self.propagator.precision():
                id_emb = net.id_embedding(one_hot_labels(local, net.max_objects + 1))
                out = net.propagate(enc.tokens, enc.size_2d, None, id_emb)
            if aug_index == 0:
                self._tap("id_emb", id_emb)
            for g in range(state.registry.num_engines):
                slot = state.slots.get((aug_index, g))
                if slot is None:
                    slot = EngineSlot.empty(
                        self.propagator.long_term_cap, self.propagator.short_term_skip
                    )
                    state.slots[(aug_index, g)] = slot
                entries = [
                    (k[g : g + 1], v[g : g + 1])
                    for k, v in zip(out.memory.key, out.memory.value, strict=True)
                ]
                position = slot.long_term.add(entries, reference=True)
                assert position is not None  # references are always kept
                positions[(aug_index, g)] = position
                self._start_from_reference(state, slot, g, entries, frame_step)
        state.last_reference = ReferenceRecord(
            weakref.ref(feats), labels, tuple(state.registry.obj_ids), positions
        )

    def _add_reference_again(
        self, state: TrackState, record: ReferenceRecord, frame_step: int | None
    ) -> None:
        """Add the frame of ``record`` again from the copy in long-term memory: the same
        entries the network would compute (see :class:`ReferenceRecord`)."""
        for (aug_index, g), position in record.positions.items():
            slot = state.slots[(aug_index, g)]
            entries = slot.long_term.frame(position)
            slot.long_term.add(entries, reference=True)
            self._start_from_reference(state, slot, g, entries, frame_step)
        self.stats["reference_reuses"] += 1

    def _start_from_reference(
        self,
        state: TrackState,
        slot: EngineSlot,
        engine: int,
        entries: list[KeyValue],
        frame_step: int | None,
    ) -> None:
        """A reference frame (already in long-term memory) becomes the short-term memory."""
        slot.short_term.clear()
        slot.short_term.append(entries)
        slot.last_mem_step = self._reference_step(slot, frame_step)
        slot.live_ids = self._live_ids(state, engine)

    def _reference_step(self, slot: EngineSlot, frame_step: int | None) -> int:
        """The last long-term write step a reference frame leaves on ``slot``."""
        if self.propagator.backward_memory == "running_step" or frame_step is None:
            return slot.frame_step
        return frame_step

    def _live_ids(self, state: TrackState, engine: int) -> int:
        if not self.propagator.mask_unused_ids:
            return self.propagator.max_objects
        return state.registry.objects_in_engine(engine)

    # --- propagation ----------------------------------------------------------------------

    @torch.inference_mode()
    def step(
        self,
        frame: torch.Tensor | FrameFeatures,
        *,
        tracks: Sequence[TrackId] | None = None,
        update: bool = True,
    ) -> dict[TrackId, StepResult]:
        """Propagate the next frame of ``tracks`` (default: all) and return their predictions.

        With ``update`` the memories are then written with the arg-max labels; otherwise call
        :meth:`update_memory` with the labels to use (e.g. ground truth merged in).
        """
        if self._pending_tracks:
            raise RuntimeError(
                f"tracks {self._pending_tracks} were stepped without update=True and wait for "
                "update_memory()"
            )
        feats = self._features(frame)
        names = list(self._tracks) if tracks is None else list(tracks)
        for name in names:
            if name not in self._tracks:
                raise KeyError(f"track {name!r} has no reference frame")
        if not names:
            return {}
        net = self.network
        own = self.propagator.tta.memory_update == "own" and len(self.augmentations) > 1
        summed: dict[TrackId, torch.Tensor] = {}
        own_channels: dict[TrackId, list[torch.Tensor]] = {name: [] for name in names}
        self._pending = []
        for aug_index, aug in enumerate(self.augmentations):
            enc = feats.view(aug)
            slot_keys = [
                (name, aug_index, g)
                for name in names
                for g in range(self._tracks[name].registry.num_engines)
            ]
            slots = [self._tracks[n].slots[(a, g)] for n, a, g in slot_keys]
            memories = self._read_memories(slots)
            with self.propagator.precision():
                out = net.propagate(enc.tokens, enc.size_2d, memories)
                logits = net.decode(out, enc)
            logits = logits.float()
            fill = masked_fill_value(logits.dtype)
            for i, slot in enumerate(slots):
                slot.frame_step += 1
                logits[i, slot.live_ids + 1 :] = fill
            self._pending.append(PendingStep(aug_index, slot_keys, out.memory, enc.input_size))
            self.stats["slot_steps"] += len(slots)
            if aug_index == 0:
                self._tap("lstt_out", out.last)
                self._tap("logits_s4", logits)
            start = 0
            for name in names:  # one track at a time: original-size maps stay small
                engines = self._tracks[name].registry.num_engines
                track_logits = F.interpolate(
                    self._channels_to_upsample(logits[start : start + engines], name),
                    size=feats.size,
                    mode="bilinear",
                    align_corners=net.spec.align_corners,
                )
                start += engines
                if aug_index == 0:
                    self._tap("logits", track_logits)
                if aug.flip:
                    track_logits = track_logits.flip(-1)
                probs = self._merge_engines(track_logits)
                if own:
                    own_channels[name].append(first_argmax(self._considered(probs, name)))
                summed[name] = probs if name not in summed else summed[name].add_(probs)
        results = {}
        for name in names:
            registry = self._tracks[name].registry
            probs = summed[name].div_(len(self.augmentations))
            results[name] = StepResult(self._considered(probs, name), tuple(registry.obj_ids))
        self._pending_tracks = names
        self._pending_own = own_channels
        if update:
            self._write_memory({name: results[name].channels for name in names})
        return results

    def _read_memories(self, slots: list[EngineSlot]) -> list[tuple[object, KeyValue]]:
        layers = len(slots[0].short_term[0])
        memories = []
        for layer in range(layers):
            long_term = [slot.long_term.layer(layer) for slot in slots]
            shorts = [slot.short_term[0][layer] for slot in slots]
            if len(slots) == 1:
                short = shorts[0]
            else:
                short = (torch.cat([s[0] for s in shorts]), torch.cat([s[1] for s in shorts]))
            memories.append((long_term, short))
        return memories  # type: ignore[return-value]

    def _merge_engines(self, logits: torch.Tensor) -> torch.Tensor:
        """Per-engine logits (E x (K+1) x H x W) -> probabilities over 1 + E*K channels.

        One engine: softmax. Several: the official ``soft_logit_aggregation`` (background
        probability = product of the engines' background probabilities, foregrounds
        concatenated, clamped to [1e-5, 1 - 1e-5], logit) followed by the evaluator's softmax.
        """
        probs = torch.softmax(logits, dim=1)
        if logits.shape[0] == 1:
            return probs[0]
        k = self.propagator.max_objects
        background = probs[:, 0:1].prod(dim=0)
        merged = torch.cat([background, *[p[1 : 1 + k] for p in probs]]).clamp(1e-5, 1 - 1e-5)
        return torch.softmax(torch.logit(merged), dim=0)

    def _considered(self, probs: torch.Tensor, track: TrackId) -> torch.Tensor:
        """The channels the arg-max considers: background + objects, plus the unused identity
        channels when they are not masked."""
        if not self.propagator.mask_unused_ids:
            return probs
        return probs[: self._considered_channels(track)]

    def _considered_channels(self, track: TrackId) -> int:
        """Background + objects: the channels :meth:`_considered` keeps with masked identities."""
        return 1 + len(self._tracks[track].registry.obj_ids)

    def _channels_to_upsample(self, logits: torch.Tensor, track: TrackId) -> torch.Tensor:
        """The part of a track's stride-4 logits (E x (K+1) x h x w) that :meth:`step` takes to
        full size.

        With one engine and masked identities, the considered channels only: the others hold
        the masked fill (-1e8), whose softmax weight is exactly 0 in float32 (exp underflows),
        so dropping them first changes no probability and skips (K - N) / (K + 1) of the
        full-size interpolation and softmax. Otherwise every channel: unmasked identities are
        considered, and with several engines the soft aggregation clamps an unused identity to
        1e-5, which enters the final softmax.
        """
        if logits.shape[0] == 1 and self.propagator.mask_unused_ids:
            return logits[:, : self._considered_channels(track)]
        return logits

    @torch.inference_mode()
    def update_memory(self, labels: dict[TrackId, torch.Tensor]) -> None:
        """Write the last stepped frame into memory, with ``labels[track]`` (H x W object ids
        at the original size, 0 = background) for every track of that step."""
        if set(labels) != set(self._pending_tracks):
            raise ValueError(
                f"update_memory needs labels for exactly the stepped tracks "
                f"{self._pending_tracks}, got {list(labels)}"
            )
        channels = {}
        for name, label in labels.items():
            registry = self._tracks[name].registry
            channels[name] = registry.channels(label.to(self.propagator.device))
        self._write_memory(channels)

    def _write_memory(self, channels: dict[TrackId, torch.Tensor]) -> None:
        """Fuse each stepped slot's memory with its identities (H x W channel maps)."""
        net = self.network
        own = self.propagator.tta.memory_update == "own" and len(self.augmentations) > 1
        for pending in self._pending:
            aug_index, slot_keys = pending.aug_index, pending.slot_keys
            aug = self.augmentations[aug_index]
            local_maps = []
            for name, _, g in slot_keys:
                registry = self._tracks[name].registry
                track_channels = self._pending_own[name][aug_index] if own else channels[name]
                local_maps.append(registry.engine_labels(track_channels, g))
            local = torch.stack(local_maps)
            local = resize_labels(local.flip(-1) if aug.flip else local, pending.input_size)
            with self.propagator.precision():
                id_emb = net.id_embedding(one_hot_labels(local, net.max_objects + 1))
                fused = net.fuse_memory(pending.memory, id_emb)
            gap = self.propagator.long_term_gap
            for i, (name, a, g) in enumerate(slot_keys):
                slot = self._tracks[name].slots[(a, g)]
                entries = [(k[i : i + 1], v[i : i + 1]) for k, v in fused]
                slot.short_term.append(entries)
                if slot.frame_step - slot.last_mem_step >= gap:
                    slot.long_term.add(entries, reference=False)
                    slot.last_mem_step = slot.frame_step
        self._pending = []
        self._pending_tracks = []
        self._pending_own = {}
