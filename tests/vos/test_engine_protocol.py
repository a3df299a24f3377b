"""The engine-session protocol (vos.engine): the AOT / DeAOT runtime satisfies it, and an engine
that implements nothing but it runs through vos.protocol.propagate_video unchanged."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import torch

from tests.vos.conftest import synthetic_video, tiny_network
from vos.engine import EngineSession, FrameEncoding, PropagationEngine, StepOutput
from vos.protocol import ProtocolConfig, propagate_video
from vos.session import FrameFeatures, Propagator, StepResult

torch.set_num_threads(1)


def test_propagator_and_session_satisfy_the_protocol(family: str) -> None:
    propagator = Propagator(tiny_network(family))
    frames, labels = synthetic_video(frames=2)
    session = propagator.new_session()
    assert isinstance(propagator, PropagationEngine)
    assert isinstance(session, EngineSession)
    feats = session.encode(frames[0])
    assert isinstance(feats, FrameFeatures) and isinstance(feats, FrameEncoding)
    shortcuts = [t for enc in feats.encoded.values() for t in enc.shortcuts]
    assert feats.nbytes == sum(t.numel() * t.element_size() for t in shortcuts) > 0
    session.add_reference(feats, labels[0] == 1, track="a", frame_step=0)
    result = session.step(session.encode(frames[1]), tracks=["a"])["a"]
    assert isinstance(result, StepResult) and isinstance(result, StepOutput)
    assert result.probs.shape == (2, *frames.shape[-2:])
    assert result.foreground.dtype == torch.bool and result.labels.dtype == torch.int64
    assert session.memory_bytes() > 0
    session.drop_track("a")
    assert session.memory_bytes() == 0


@dataclass(frozen=True)
class CopyEncoding:
    """A 'feature map': the frame itself, with a declared size in bytes."""

    frame: torch.Tensor  # 3 x H x W uint8
    nbytes: int

    @property
    def size(self) -> tuple[int, int]:
        return (int(self.frame.shape[1]), int(self.frame.shape[2]))


@dataclass(frozen=True)
class CopyStep:
    """The track's mask carried over unchanged."""

    mask: torch.Tensor  # H x W bool

    @property
    def probs(self) -> torch.Tensor:  # 2 x H x W
        fg = self.mask.float()
        return torch.stack([1.0 - fg, fg])

    @property
    def foreground(self) -> torch.Tensor:
        return self.mask

    @property
    def labels(self) -> torch.Tensor:
        return self.mask.long()


class CopySession:
    """Propagates every track's last reference mask as is; logs every call."""

    def __init__(self, engine: CopyEngine) -> None:
        self.engine = engine
        self.masks: dict[Hashable, torch.Tensor] = {}
        self.stats = {"encodes": 0}

    def encode(self, frame: torch.Tensor) -> CopyEncoding:
        self.stats["encodes"] += 1
        return CopyEncoding(frame, self.engine.encoding_bytes)

    def add_reference(
        self,
        frame: CopyEncoding,
        mask: torch.Tensor,
        *,
        track: Hashable,
        frame_step: int | None = None,
    ) -> None:
        assert tuple(mask.shape) == frame.size and frame_step == 0
        self.engine.calls.append(("add", track))
        self.masks[track] = mask.bool()

    def step(
        self, frame: CopyEncoding, *, tracks: Sequence[Hashable] | None = None
    ) -> dict[Hashable, CopyStep]:
        names = list(self.masks) if tracks is None else list(tracks)
        self.engine.calls.append(("step", tuple(names)))
        return {name: CopyStep(self.masks[name]) for name in names}

    def drop_track(self, track: Hashable) -> None:
        self.engine.calls.append(("drop", track))
        self.masks.pop(track, None)

    def memory_bytes(self) -> int:
        return sum(m.numel() for m in self.masks.values())


class CopyEngine:
    """A propagation engine implementing only vos.engine's protocol."""

    def __init__(self, encoding_bytes: int = 100) -> None:
        self.encoding_bytes = encoding_bytes
        self.calls: list[tuple[str, object]] = []

    def new_session(self, num_frames: int | None = None) -> CopySession:
        self.calls.append(("new_session", num_frames))
        return CopySession(self)


def _inputs(frames: int = 5, key: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    video, labels = synthetic_video(frames=frames)
    masks = torch.zeros(labels.shape, dtype=torch.bool)
    masks[key] = labels[key] == 1
    return video, masks


def test_an_engine_of_protocol_only_runs_through_propagate_video() -> None:
    engine = CopyEngine()
    assert isinstance(engine, PropagationEngine)
    assert isinstance(engine.new_session(), EngineSession)
    video, masks = _inputs()
    stats: dict[str, int] = {}
    config = ProtocolConfig(mode="fresh", return_probs=True)
    result = propagate_video(engine, video, {"e": masks}, {"e": 2}, config, stats)["e"]
    assert result.propagated
    assert all(torch.equal(result.masks[t], masks[2]) for t in range(5))
    assert result.probs is not None and torch.equal(result.probs[0], masks[2].half())
    kinds = [kind for kind, _ in engine.calls]
    # the probe's session; then the video's, told its length (5 frames); forward: reference at
    # 2, steps 3 and 4; backward: fresh reference at 2, steps 1 and 0
    assert engine.calls[:2] == [("new_session", None), ("new_session", 5)]
    assert kinds[2:] == ["add", "step", "step", "drop", "add", "step", "step"]
    assert stats == {"encodes": 5}  # frame 2 reused from the cache


def test_the_feature_cache_counts_a_foreign_encodings_bytes() -> None:
    video, masks = _inputs()
    for budget, encodes in ((100, 5), (99, 6), (0, 6)):
        stats: dict[str, int] = {}
        config = ProtocolConfig(feature_cache_bytes=budget)
        propagate_video(
            CopyEngine(encoding_bytes=100), video, {"e": masks}, {"e": 2}, config, stats
        )
        assert stats == {"encodes": encodes}, budget
