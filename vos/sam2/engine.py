"""SAM 2 / SAM 2.1 as a :mod:`vos.engine` propagation engine, and its builder.

    engine = build_sam2_engine("sam2", EngineWeights.official(ckpt, "sam2.1_hiera_large"), options)
    session = engine.new_session(num_frames=len(frames))   # num_frames: optional, see Sam2Options
    enc = session.encode(frame)                           # 3 x H x W uint8, encoded once
    session.add_reference(enc, mask, track="a", frame_step=0)
    out = session.step(session.encode(next_frame))["a"]

Weights: ``official`` - a release file's dict (``{"model": state_dict}``) and its variant name
(:data:`vos.sam2.spec.VARIANTS`); ``project`` - the same key names with the spec mapping
(:func:`vos.sam2.spec.spec_to_dict`). Of :class:`~vos.engine_inputs.PropagatorOptions` SAM 2 uses
``device`` and ``precision`` (``fp16``: bfloat16 autocast on CUDA, as ``tools/vos_inference.py``);
test-time scales / flip and the AOT memory settings have no SAM 2 meaning and are refused when
set to anything but their defaults.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import torch

from models.shared.checkpoint import load_state_strict
from vos.engine_inputs import (
    EngineBuildError,
    EngineWeights,
    PropagatorOptions,
    cuda_autocast,
)
from vos.sam2.convert import load_official
from vos.sam2.model import Sam2Model
from vos.sam2.session import Sam2Encoding, Sam2Session, Sam2StepOutput, TrackId
from vos.sam2.spec import VARIANTS, Sam2Options, Sam2Spec, get_sam2_variant, spec_from_dict

SAM2_FAMILY = "sam2"


class Sam2Engine:
    """A SAM 2 model in eval mode with its options; one :class:`Sam2Session` per video.
    ``batch_tracks``: its sessions propagate the objects of all stepped tracks as one batch
    (the outputs are the same either way; False = one object at a time, the official order)."""

    def __init__(
        self,
        model: Sam2Model,
        options: Sam2Options | None = None,
        *,
        autocast: bool = False,
        batch_tracks: bool = True,
    ) -> None:
        self.model = model.eval()
        self.options = options or Sam2Options()
        self.autocast = autocast
        self.batch_tracks = batch_tracks

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def new_session(self, num_frames: int | None = None) -> AutocastSession:
        """A session with no tracks; ``num_frames`` (the video length) reproduces the official
        predictor's pointer count and temporal scaling on videos shorter than 16 frames."""
        options = (
            self.options if num_frames is None else replace(self.options, num_frames=num_frames)
        )
        inner = Sam2Session(self.model, options, self.device)
        inner.batch_objects = self.batch_tracks
        return AutocastSession(inner, self.autocast and self.device.type == "cuda")


class AutocastSession:
    """A :class:`Sam2Session` run under bfloat16 autocast when asked (CUDA only); otherwise a
    plain pass-through. Satisfies :class:`vos.engine.EngineSession`."""

    def __init__(self, inner: Sam2Session, autocast: bool) -> None:
        self.inner = inner
        self.autocast = autocast

    @property
    def stats(self) -> dict[str, int]:
        return self.inner.stats

    def _precision(self) -> contextlib.AbstractContextManager[Any]:
        # the engine passes autocast only on CUDA
        return cuda_autocast(self.autocast, "cuda", torch.bfloat16)

    def encode(self, frame: torch.Tensor) -> Sam2Encoding:
        with self._precision():
            return self.inner.encode(frame)

    def add_reference(
        self,
        frame: Sam2Encoding,
        mask: torch.Tensor,
        *,
        track: TrackId,
        frame_step: int | None = None,
    ) -> None:
        with self._precision():
            self.inner.add_reference(frame, mask, track=track, frame_step=frame_step)

    def step(
        self, frame: Sam2Encoding, *, tracks: Sequence[TrackId] | None = None
    ) -> Mapping[TrackId, Sam2StepOutput]:
        with self._precision():
            return self.inner.step(frame, tracks=tracks)

    def drop_track(self, track: TrackId) -> None:
        self.inner.drop_track(track)

    def memory_bytes(self) -> int:
        return self.inner.memory_bytes()


def sam2_variant_problem(variant: str) -> str | None:
    """Why ``variant`` is not a SAM 2 variant (None: it is)."""
    if variant in VARIANTS:
        return None
    return f"unknown SAM 2 variant {variant!r}; known: {sorted(VARIANTS)}"


def _check_options(options: PropagatorOptions, where: str) -> None:
    defaults = PropagatorOptions()
    unused = [
        name
        for name in ("scales", "flip", "long_term_gap", "long_term_cap", "short_term_skip")
        if getattr(options, name) != getattr(defaults, name)
    ]
    if unused:
        raise EngineBuildError(f"{where}: SAM 2 has no setting {unused} (AOT / DeAOT options)")


def _spec(weights: EngineWeights) -> Sam2Spec:
    if weights.layout == "official":
        problem = sam2_variant_problem(weights.variant)
        if problem is not None:
            raise EngineBuildError(f"{weights.where}: {problem}")
        return get_sam2_variant(weights.variant)
    assert weights.config is not None  # EngineWeights refuses project weights without one
    return spec_from_dict(weights.config, where=weights.where)


def build_sam2_engine(
    family: str, weights: EngineWeights, options: PropagatorOptions
) -> Sam2Engine:
    """The :data:`vos.build.EngineBuilder` of SAM 2: ``family`` must be ``"sam2"``; the model
    on ``options.device`` in eval mode with ``weights`` loaded strictly."""
    if family != SAM2_FAMILY:
        raise EngineBuildError(f"{weights.where}: the SAM 2 builder cannot build {family!r}")
    _check_options(options, weights.where)
    spec = _spec(weights)
    model = Sam2Model(spec)
    if weights.layout == "official":
        load_official(model, weights.state, what=weights.where)
    else:
        load_state_strict(model, weights.state, what=weights.where)
    model = model.to(torch.device(options.device))
    return Sam2Engine(model, Sam2Options(), autocast=options.autocast)
