"""Per-slot memories of a propagation engine.

A *slot* is one propagated sequence: one engine (up to ``max_objects`` identities) of one track
under one test-time augmentation. Its state is a long-term memory (reference frames plus every
``long_term_gap``-th propagated frame), a short-term memory (the last ``short_term_skip``
frames; the oldest is read) and the step counters of the official engine.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from vos.layers.attention import KeyValue


class LongTermMemory:
    """Long-term memory of one slot: per layer, a buffer of frames of (key, value) tokens.

    Reference frames are kept for good; propagated frames are capped at ``cap`` (None: no
    cap), the oldest propagated frame making room for a new one. The official engine
    concatenates new frames in front of the old ones; softmax attention does not depend on the
    order of its memory tokens, so frames here live in fixed buffer positions (no copy on
    insert, O(1) eviction) and growth doubles the buffers.
    """

    def __init__(self, cap: int | None = None) -> None:
        if cap is not None and cap < 0:
            raise ValueError(f"long-term cap must be >= 0 or None, got {cap}")
        self.cap = cap
        self._keys: list[torch.Tensor] = []
        self._values: list[torch.Tensor] = []
        self._is_reference: list[bool] = []
        self._stamp: list[int] = []
        self._count = 0

    @property
    def num_frames(self) -> int:
        return len(self._is_reference)

    @property
    def num_references(self) -> int:
        return sum(self._is_reference)

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (*self._keys, *self._values))

    def add(self, entries: Sequence[KeyValue], reference: bool) -> int | None:
        """Store one frame: per layer a (1 x L x Ck, 1 x L x Cv) pair. Returns the buffer
        position it went to (see :meth:`frame`), None when a cap of 0 drops it."""
        self._count += 1
        if not reference and self.cap is not None:
            propagated = [i for i, ref in enumerate(self._is_reference) if not ref]
            if len(propagated) >= self.cap:
                if self.cap == 0:
                    return None
                index = min(propagated, key=lambda i: self._stamp[i])
                self._write(index, entries)
                self._stamp[index] = self._count
                return index
        index = self.num_frames
        self._ensure_capacity(index + 1, entries)
        self._write(index, entries)
        self._is_reference.append(reference)
        self._stamp.append(self._count)
        return index

    def frame(self, index: int) -> list[KeyValue]:
        """The frame at buffer position ``index`` as per-layer (1 x L x Ck, 1 x L x Cv) copies.

        A reference frame keeps its position for good (growth copies the buffers in order,
        eviction only replaces propagated frames), so :meth:`add`'s answer for a reference
        stays valid.
        """
        if not 0 <= index < self.num_frames:
            raise IndexError(f"no frame {index} in a memory of {self.num_frames}")
        return [
            (key[index : index + 1].clone(), value[index : index + 1].clone())
            for key, value in zip(self._keys, self._values, strict=True)
        ]

    def _ensure_capacity(self, frames: int, entries: Sequence[KeyValue]) -> None:
        if self._keys and self._keys[0].shape[0] >= frames:
            return
        old = self._keys[0].shape[0] if self._keys else 0
        capacity = max(frames, 2 * old, 2)
        if self.cap is not None:
            capacity = min(capacity, max(frames, self.num_references + 1 + self.cap))
        for layer, (key, value) in enumerate(entries):
            new_key = key.new_empty((capacity, *key.shape[-2:]))
            new_value = value.new_empty((capacity, *value.shape[-2:]))
            if old:
                new_key[:old] = self._keys[layer][:old]
                new_value[:old] = self._values[layer][:old]
                self._keys[layer], self._values[layer] = new_key, new_value
            else:
                self._keys.append(new_key)
                self._values.append(new_value)

    def _write(self, index: int, entries: Sequence[KeyValue]) -> None:
        if len(entries) != len(self._keys):
            raise ValueError(f"memory has {len(self._keys)} layers, got {len(entries)}")
        for layer, (key, value) in enumerate(entries):
            self._keys[layer][index] = key.reshape(key.shape[-2:])
            self._values[layer][index] = value.reshape(value.shape[-2:])

    def layer(self, index: int) -> KeyValue:
        """Layer ``index`` as (1 x N*L x Ck, 1 x N*L x Cv) views of the stored frames."""
        n = self.num_frames
        key = self._keys[index][:n]
        value = self._values[index][:n]
        return key.reshape(1, -1, key.shape[-1]), value.reshape(1, -1, value.shape[-1])


@dataclass
class EngineSlot:
    """State of one propagated sequence (official ``AOTEngine`` fields in brackets).

    Attributes:
        long_term: reference and gap frames (``long_term_memories``).
        short_term: the last ``short_term_skip`` frames, oldest first
            (``short_term_memories_list``).
        frame_step: propagated frames so far (``frame_step``).
        last_mem_step: step of the last long-term write (``last_mem_step``).
        live_ids: identities not masked in the logits (``obj_nums``).
    """

    long_term: LongTermMemory
    short_term: deque[list[KeyValue]]
    frame_step: int = 0
    last_mem_step: int = 0
    live_ids: int = 0

    @classmethod
    def empty(cls, cap: int | None, short_term_skip: int) -> EngineSlot:
        return cls(LongTermMemory(cap), deque(maxlen=max(1, short_term_skip)))

    @property
    def has_reference(self) -> bool:
        return self.long_term.num_references > 0
