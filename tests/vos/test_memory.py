"""Long-term memory: growth, the cap, references never dropped."""

from __future__ import annotations

import pytest
import torch

from vos.memory import LongTermMemory


def entry(
    value: float, layers: int = 2, tokens: int = 3
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [
        (torch.full((1, tokens, 4), value), torch.full((1, tokens, 5), value + 0.5))
        for _ in range(layers)
    ]


def stored_values(memory: LongTermMemory) -> list[float]:
    key, _ = memory.layer(0)
    return sorted({round(float(x), 3) for x in key[0, :, 0]})


def test_memory_grows_and_reads_all_frames() -> None:
    memory = LongTermMemory()
    for i in range(7):
        memory.add(entry(float(i)), reference=i == 0)
    key, value = memory.layer(1)
    assert key.shape == (1, 7 * 3, 4) and value.shape == (1, 7 * 3, 5)
    assert stored_values(memory) == [float(i) for i in range(7)]
    assert memory.num_references == 1


def test_cap_evicts_oldest_propagated_frame_and_keeps_references() -> None:
    memory = LongTermMemory(cap=2)
    memory.add(entry(100.0), reference=True)
    for i in range(5):
        memory.add(entry(float(i)), reference=False)
    assert memory.num_frames == 3
    assert stored_values(memory) == [3.0, 4.0, 100.0]
    memory.add(entry(200.0), reference=True)  # a second reference (the backward pass)
    memory.add(entry(5.0), reference=False)
    assert stored_values(memory) == [4.0, 5.0, 100.0, 200.0]
    assert memory.num_references == 2


def test_cap_zero_keeps_references_only() -> None:
    memory = LongTermMemory(cap=0)
    memory.add(entry(1.0), reference=True)
    memory.add(entry(2.0), reference=False)
    assert stored_values(memory) == [1.0]


def test_bytes_stay_flat_under_the_cap() -> None:
    memory = LongTermMemory(cap=3)
    memory.add(entry(0.0), reference=True)
    sizes = []
    for i in range(50):
        memory.add(entry(float(i)), reference=False)
        sizes.append(memory.nbytes)
    assert max(sizes[10:]) == sizes[10]


def test_negative_cap_is_refused() -> None:
    with pytest.raises(ValueError, match="cap"):
        LongTermMemory(cap=-1)
