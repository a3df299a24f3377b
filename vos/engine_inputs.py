"""What an engine is built from: its weights (:class:`EngineWeights`), how it runs
(:class:`PropagatorOptions`) and the error a builder raises (:class:`EngineBuildError`).

Every family's builder (:mod:`vos.aot_build`, and the next engines) takes these; the registry in
:mod:`vos.build` re-exports them, so callers import them from there.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch

Layout = Literal["official", "project"]
Precision = Literal["fp32", "fp16"]
MemoryUpdate = Literal["ensemble", "own"]
BackwardMemory = Literal["key_frame_step", "running_step"]

LAYOUTS: tuple[str, ...] = ("official", "project")
PRECISIONS: tuple[str, ...] = ("fp32", "fp16")
MEMORY_UPDATES: tuple[str, ...] = ("ensemble", "own")
BACKWARD_MEMORIES: tuple[str, ...] = ("key_frame_step", "running_step")


class EngineBuildError(ValueError):
    """Weights or options that do not make the engine asked for (the message names them)."""


@dataclass(frozen=True)
class EngineWeights:
    """An engine's tensors and how to read them.

    Attributes:
        state: name -> tensor. ``official``: an aot-benchmark checkpoint dict (``state_dict`` /
            ``model`` / the raw state dict) with its key names; ``project``: the project's key
            names (a project weights file's tensors).
        layout: ``"official"`` or ``"project"``.
        variant: the official variant name (``r50_deaotl``, ``swinl_aotl``, ...); official only.
        config: the engine spec as a mapping (:func:`vos.variants.spec_to_dict`); project only.
        where: what the weights are (a file path), for messages.
    """

    state: Mapping[str, Any]
    layout: Layout
    variant: str = ""
    config: Mapping[str, Any] | None = None
    where: str = "engine weights"

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise EngineBuildError(
                f"{self.where}: weights layout must be one of {LAYOUTS}, not {self.layout!r}"
            )
        if self.layout == "project" and self.config is None:
            raise EngineBuildError(f"{self.where}: project weights need their engine config")

    @classmethod
    def official(
        cls, checkpoint: Mapping[str, Any], variant: str, where: str = "engine weights"
    ) -> EngineWeights:
        """An aot-benchmark checkpoint of ``variant``."""
        return cls(checkpoint, "official", variant=variant, where=where)

    @classmethod
    def project(
        cls,
        state: Mapping[str, torch.Tensor],
        config: Mapping[str, Any],
        where: str = "engine weights",
    ) -> EngineWeights:
        """Project-layout tensors with the spec mapping that rebuilds their network."""
        return cls(state, "project", config=config, where=where)


@dataclass(frozen=True)
class PropagatorOptions:
    """How a built engine runs (:class:`vos.session.Propagator`'s settings).

    Attributes:
        scales: test-time network-input scales (the challenge: 0.8, 1.0, 1.2).
        flip: add a horizontally flipped copy of every scale.
        memory_update: ``"ensemble"`` (every augmentation's memory gets the averaged label, the
            RVOS challenge) or ``"own"`` (each its own arg-max, aot-benchmark).
        long_term_gap: every gap-th propagated frame joins long-term memory (None: the
            variant's official default).
        long_term_cap: at most this many propagated frames in long-term memory (None: no cap).
        short_term_skip: the short-term memory is the frame this many steps back.
        max_long_edge: the network input's long-edge cap before the scale (None: no cap).
        mask_unused_ids: False keeps every identity live in the arg-max (the challenge's
            engine).
        backward_memory: what a re-added reference frame records as its last long-term write
            (third_party/aot.md, "The backward pass"): ``"key_frame_step"`` - the step it is
            given, 0 in the protocol, so after a forward pass of ``long_term_gap - 1`` frames or
            more the first backward frame joins long-term memory at once (the winners' AOT
            copy); ``"running_step"`` - the slot's running step count,
            so it joins ``long_term_gap`` steps later (aot-benchmark 75e46fe, the DeAOT
            submodule's engine), which also masks unused identities by the real object count
            and so needs ``mask_unused_ids``.
        precision: ``"fp32"``, or ``"fp16"`` autocast on CUDA.
        device: where the network runs.
    """

    scales: tuple[float, ...] = (1.0,)
    flip: bool = False
    memory_update: MemoryUpdate = "ensemble"
    long_term_gap: int | None = None
    long_term_cap: int | None = None
    short_term_skip: int = 1
    max_long_edge: int | None = 1040
    mask_unused_ids: bool = True
    backward_memory: BackwardMemory = "key_frame_step"
    precision: Precision = "fp32"
    device: str = "cpu"

    def __post_init__(self) -> None:
        object.__setattr__(self, "scales", tuple(float(s) for s in self.scales))
        if not self.scales:
            raise EngineBuildError("engine scales must hold at least one scale")
        if self.precision not in PRECISIONS:
            raise EngineBuildError(f"engine precision must be fp32 or fp16, not {self.precision!r}")
        if self.memory_update not in MEMORY_UPDATES:
            raise EngineBuildError(
                f"engine memory update must be one of {MEMORY_UPDATES}, not {self.memory_update!r}"
            )
        if self.backward_memory not in BACKWARD_MEMORIES:
            raise EngineBuildError(
                f"engine backward memory must be one of {BACKWARD_MEMORIES}, "
                f"not {self.backward_memory!r}"
            )
        if self.backward_memory == "running_step" and not self.mask_unused_ids:
            raise EngineBuildError(
                "engine backward memory 'running_step' is aot-benchmark's engine, which masks "
                "unused identities by the real object count: it needs mask_unused_ids true"
            )

    @property
    def autocast(self) -> bool:
        """Float16 autocast (CUDA only)."""
        return self.precision == "fp16"


def cuda_autocast(
    enabled: bool, device: torch.device | str, dtype: torch.dtype = torch.float16
) -> contextlib.AbstractContextManager[Any]:
    """The engines' mixed precision: ``torch.autocast`` to ``dtype`` when ``enabled`` on a
    CUDA ``device``, else nothing (CPU runs stay float32)."""
    if enabled and torch.device(device).type == "cuda":
        return torch.autocast("cuda", dtype=dtype)
    return contextlib.nullcontext()
