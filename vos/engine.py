"""The engine-session protocol: what :mod:`vos.protocol` needs from a propagation engine.

A *propagation engine* (AOT / DeAOT through :class:`vos.session.Propagator`; SAM 2 or Cutie
adapters next) opens one *session* per video. A session holds any number of *tracks* -
independent propagation problems on the same frames (one RVOS expression each) - and works
frame by frame:

    session = engine.new_session()
    encoding = session.encode(frame)                   # 3 x H x W uint8 RGB
    session.add_reference(encoding, mask, track="a")   # H x W object ids (bool = object 1)
    result = session.step(session.encode(next_frame), tracks=["a"])["a"]
    result.probs, result.foreground, result.labels     # C x H x W, H x W bool, H x W ids

An encoding is the engine's own business (a session only ever receives encodings it made); the
protocol needs its byte size so that :func:`vos.protocol.propagate_video` can cache encodings
of any engine against one budget. Adding an engine therefore means implementing these classes
(structurally: no base class to inherit) and registering a builder in :mod:`vos.build`.

Naming: H x W = the original frame size; C = channels of a step's probabilities (background
first).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any, Protocol, TypeVar, runtime_checkable

import torch

TrackId = Hashable

EncodingT = TypeVar("EncodingT", bound="FrameEncoding")


@runtime_checkable
class FrameEncoding(Protocol):
    """One frame as a session encoded it, reusable by every track and call of that session."""

    @property
    def size(self) -> tuple[int, int]:
        """(H, W) of the original frame."""
        ...

    @property
    def nbytes(self) -> int:
        """Bytes the encoding holds (what keeping it in a feature cache costs)."""
        ...


@runtime_checkable
class StepOutput(Protocol):
    """One track's prediction for one frame, at the original size."""

    @property
    def probs(self) -> torch.Tensor:
        """C x H x W float probabilities; channel 0 is the background."""
        ...

    @property
    def foreground(self) -> torch.Tensor:
        """H x W bool: an object won (how binary RVOS masks are read)."""
        ...

    @property
    def labels(self) -> torch.Tensor:
        """H x W int64 object ids of the winner (0 = background; an engine may mark an
        identity that holds no object with -1)."""
        ...


@runtime_checkable
class EngineSession(Protocol[EncodingT]):
    """One video's propagation state: its tracks and their memories.

    Attributes:
        stats: counters the engine keeps (:class:`vos.session.Session`: ``encoder_calls`` and
            ``slot_steps``); :func:`vos.protocol.propagate_video` sums them over sessions.
    """

    stats: dict[str, int]

    def encode(self, frame: torch.Tensor) -> EncodingT:
        """A ``3 x H x W`` uint8 RGB frame -> its encoding."""
        ...

    def add_reference(
        self,
        frame: EncodingT,
        mask: torch.Tensor,
        *,
        track: TrackId,
        frame_step: int | None = None,
    ) -> None:
        """Add an annotated frame to ``track`` (a new track starts here).

        Args:
            frame: the frame's encoding (from this session's :meth:`encode`).
            mask: H x W object ids (0 = background); a bool mask is object 1.
            track: the track to add to.
            frame_step: the frame counter recorded with the reference (``0``: the protocol's
                key frame, again on the backward sweep); None lets the engine count.
        """
        ...

    def step(
        self, frame: EncodingT, *, tracks: Sequence[TrackId] | None = None
    ) -> Mapping[TrackId, StepOutput]:
        """Propagate ``tracks`` (default: all) to the next frame and write their memories.

        Returns:
            Per track stepped, its :class:`StepOutput`.
        """
        ...

    def drop_track(self, track: TrackId) -> None:
        """Forget ``track`` and its memories (unknown tracks are ignored)."""
        ...

    def memory_bytes(self) -> int:
        """Bytes held by the tracks' memories."""
        ...


@runtime_checkable
class PropagationEngine(Protocol):
    """A network with its inference settings, opening one session per video."""

    def new_session(self, num_frames: int | None = None) -> EngineSession[Any]:
        """A session with no tracks (its encodings are of the engine's own type).

        ``num_frames``: the video's length where the caller knows it (SAM 2's official predictor
        scales its object pointers by it on short videos); engines that do not need it ignore it.
        """
        ...
