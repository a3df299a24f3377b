"""Cutie as a :mod:`vos.engine` propagation engine, and its builder.

A :class:`CutieSession` holds any number of tracks (one RVOS expression each); a track is one
:class:`~vos.cutie.inference.CutieProcessor` (its objects, memories and frame counters), and
every frame is encoded once (:meth:`CutieSession.encode`) for all tracks:

    engine = build_cutie_engine("cutie", EngineWeights.official(state, "base"), options)
    session = engine.new_session()
    enc = session.encode(frame)                        # 3 x H x W uint8
    session.add_reference(enc, mask, track="a")        # H x W ids (bool = object 1)
    out = session.step(session.encode(next_frame))["a"]
    out.probs, out.foreground, out.labels              # (1+N) x H x W, H x W bool, H x W ids

Re-adding a reference to a known track (the protocol's backward sweep) is a Cutie step with a
mask: it becomes a memory frame (not permanent: the track's first frame is) and restarts the
``mem_every`` count, whatever ``frame_step`` says.
"""

from __future__ import annotations

import contextlib
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from models.shared.checkpoint import load_state_strict
from models.shared.typed import from_dict
from vos.cutie.convert import infer_variant, load_official, official_state_dict
from vos.cutie.inference import CutieEncoding, CutieProcessor, encode_frame, step_tracks
from vos.cutie.network import CutieNetwork
from vos.cutie.spec import CutieSettings, CutieSpec, get_cutie_variant
from vos.engine_inputs import (
    EngineBuildError,
    EngineWeights,
    PropagatorOptions,
    cuda_autocast,
)

TrackId = Hashable
CUTIE_FAMILY = "cutie"


@dataclass(frozen=True)
class CutieStepOutput:
    """A track's prediction for one frame at the original size.

    Attributes:
        probs: (1 + N) x H x W float32, background first, then the track's objects.
        obj_ids: the objects of channels 1 .. N.
    """

    probs: torch.Tensor
    obj_ids: tuple[int, ...]

    @property
    def channels(self) -> torch.Tensor:
        return self.probs.argmax(0)

    @property
    def foreground(self) -> torch.Tensor:
        """H x W bool: an object won the arg-max (the first maximum wins, so: an object's
        probability is above the background's; one reduction instead of an arg-max)."""
        return self.probs[1:].amax(dim=0) > self.probs[0]

    @property
    def labels(self) -> torch.Tensor:
        """H x W int64 object ids of the arg-max (0 = background)."""
        lut = torch.tensor((0, *self.obj_ids), dtype=torch.long, device=self.probs.device)
        return lut[self.channels]


class CutieEngine:
    """A Cutie network in eval mode with its inference settings; one session per video.
    ``batch_tracks``: its sessions step their tracks as one batch (the outputs are the same
    either way; False = one track at a time, the official order)."""

    def __init__(
        self,
        network: CutieNetwork,
        settings: CutieSettings | None = None,
        *,
        autocast: bool = False,
        batch_tracks: bool = True,
    ) -> None:
        self.network = network.eval()
        self.settings = settings or CutieSettings()
        self.autocast = autocast or self.settings.amp
        self.batch_tracks = batch_tracks

    @property
    def device(self) -> torch.device:
        return self.network.pixel_mean.device

    def new_session(self, num_frames: int | None = None) -> CutieSession:
        """A session with no tracks (``num_frames`` is not needed by Cutie); it batches its
        tracks when the engine's ``batch_tracks`` says so."""
        session = CutieSession(self)
        session.batch_tracks = self.batch_tracks
        return session

    def precision(self) -> contextlib.AbstractContextManager[Any]:
        return cuda_autocast(self.autocast, self.device)


class CutieSession:
    """One video: tracks sharing frame encodings (see the module docstring).

    ``stats``: ``encoder_calls`` (frames encoded) and ``track_steps`` (track-frames processed).
    ``batch_tracks``: step the tracks as one batch (default); False steps them one at a time
    (the official one-``InferenceCore``-per-expression order; the outputs are the same).
    """

    def __init__(self, engine: CutieEngine) -> None:
        self.engine = engine
        self._tracks: dict[TrackId, CutieProcessor] = {}
        self.stats = {"encoder_calls": 0, "track_steps": 0}
        self.batch_tracks = True

    @property
    def tracks(self) -> list[TrackId]:
        return list(self._tracks)

    def processor(self, track: TrackId) -> CutieProcessor:
        return self._tracks[track]

    @torch.inference_mode()
    def encode(self, frame: torch.Tensor) -> CutieEncoding:
        """A 3 x H x W uint8 RGB frame -> its encoding (shared by all tracks)."""
        with self.engine.precision():
            enc = encode_frame(self.engine.network, frame, self.engine.settings)
        self.stats["encoder_calls"] += 1
        return enc

    def _encoding(self, frame: torch.Tensor | CutieEncoding) -> CutieEncoding:
        return frame if isinstance(frame, CutieEncoding) else self.encode(frame)

    @torch.inference_mode()
    def add_reference(
        self,
        frame: torch.Tensor | CutieEncoding,
        mask: torch.Tensor,
        *,
        track: TrackId = "main",
        frame_step: int | None = None,
    ) -> None:
        """Give ``track`` a mask (H x W object ids, bool = object 1) on this frame.

        A new track starts here; a known one takes the mask as a Cutie step with a mask: its
        known objects missing from the mask are given as empty. ``frame_step`` is accepted for
        the protocol and has no effect (a mask frame always restarts Cutie's memory count).
        """
        del frame_step
        enc = self._encoding(frame)
        labels = mask.long() if mask.dtype == torch.bool else mask
        if tuple(labels.shape) != enc.size:
            raise ValueError(f"mask of track {track!r} is {tuple(labels.shape)}, frame {enc.size}")
        labels = labels.to(self.engine.device)
        present = sorted(int(o) for o in torch.unique(labels) if int(o) > 0)
        processor = self._tracks.get(track)
        if processor is None:
            if not present:
                raise ValueError(f"reference mask of track {track!r} holds no object")
            processor = CutieProcessor(self.engine.network, self.engine.settings)
        objects = [*processor.objects, *(o for o in present if o not in processor.objects)]
        with self.engine.precision():
            processor.step(enc, labels, objects)
        self._tracks[track] = processor
        self.stats["track_steps"] += 1

    @torch.inference_mode()
    def step(
        self, frame: torch.Tensor | CutieEncoding, *, tracks: Sequence[TrackId] | None = None
    ) -> dict[TrackId, CutieStepOutput]:
        """Propagate ``tracks`` (default: all) to this frame and update their memories (the
        tracks' network work batched, :func:`~vos.cutie.inference.step_tracks`, unless
        ``batch_tracks`` is False)."""
        enc = self._encoding(frame)
        names = list(self._tracks) if tracks is None else list(tracks)
        for name in names:
            if name not in self._tracks:
                raise KeyError(f"track {name!r} has no reference frame")
        processors = [self._tracks[name] for name in names]
        with self.engine.precision():
            if self.batch_tracks:
                probs = step_tracks(processors, enc)
            else:
                probs = [processor.step(enc) for processor in processors]
        results = {}
        for name, processor, prob in zip(names, processors, probs, strict=True):
            restored = enc.frame.restore(prob.float())
            results[name] = CutieStepOutput(restored, tuple(processor.objects))
            self.stats["track_steps"] += 1
        return results

    def drop_track(self, track: TrackId) -> None:
        """Forget a track and its memories (unknown tracks are ignored)."""
        self._tracks.pop(track, None)

    def memory_bytes(self) -> int:
        """Bytes of every track's working, object and sensory memory."""
        return sum(p.nbytes for p in self._tracks.values())


# --------------------------------------------------------------------------------------------
# builder (the signature of vos.build.EngineBuilder)


def settings_from_options(options: PropagatorOptions) -> CutieSettings:
    """Cutie's settings from the engine options shared by all families.

    ``flip`` -> ``flip_aug``; ``long_term_gap`` -> ``mem_every``; ``long_term_cap`` (propagated
    frames kept besides the reference) -> ``max_mem_frames = cap + 1``; ``fp16`` -> ``amp``.
    Cutie has no multi-scale test, no short-term skip and resizes by the short side
    (``max_internal_size`` 480), so ``scales`` other than (1.0,) or ``short_term_skip`` other
    than 1 are refused; ``max_long_edge``, ``memory_update`` and ``mask_unused_ids`` do not apply.
    """
    if tuple(options.scales) != (1.0,):
        raise EngineBuildError(f"Cutie runs at one scale; engine scales {options.scales} given")
    if options.short_term_skip != 1:
        raise EngineBuildError("Cutie has no short-term memory skip; short_term_skip must be 1")
    defaults = CutieSettings()
    return CutieSettings(
        mem_every=defaults.mem_every if options.long_term_gap is None else options.long_term_gap,
        max_mem_frames=(
            defaults.max_mem_frames if options.long_term_cap is None else options.long_term_cap + 1
        ),
        flip_aug=options.flip,
        amp=options.autocast,
    )


def _network(weights: EngineWeights) -> CutieNetwork:
    if weights.layout == "official":
        state = official_state_dict(weights.state)
        try:
            spec = get_cutie_variant(weights.variant or infer_variant(state))
        except KeyError as err:
            raise EngineBuildError(f"{weights.where}: {err.args[0]}") from err
        network = CutieNetwork(spec)
        load_official(network, state, what=weights.where)
        return network
    assert weights.config is not None  # EngineWeights refuses project weights without one
    config = dict(weights.config)
    config.pop("family", None)
    spec = from_dict(CutieSpec, config, where=weights.where)
    network = CutieNetwork(spec)
    load_state_strict(network, weights.state, what=weights.where)
    return network


def build_cutie_engine(
    family: str, weights: EngineWeights, options: PropagatorOptions
) -> CutieEngine:
    """A :class:`CutieEngine` on ``options.device`` with ``weights`` loaded strictly.

    Official layout: a bare Cutie state dict and ``variant`` ``base`` / ``small`` (or a release
    file stem such as ``cutie-base-mega``; empty: read from the pixel encoder's keys). Project
    layout: the port's key names (the same) and a :class:`~vos.cutie.spec.CutieSpec` mapping
    (:func:`~vos.cutie.spec.spec_to_dict`) as config.
    """
    if family != CUTIE_FAMILY:
        raise EngineBuildError(f"{weights.where}: the Cutie builder got family {family!r}")
    settings = settings_from_options(options)
    network = _network(weights).to(torch.device(options.device)).eval()
    return CutieEngine(network, settings, autocast=options.autocast)


def cutie_variant_problem(variant: str) -> str | None:
    """Why ``variant`` is not a Cutie variant (None: it is; empty = read from the weights)."""
    if not variant:
        return None
    try:
        get_cutie_variant(variant)
    except KeyError as err:
        return str(err.args[0])
    return None
