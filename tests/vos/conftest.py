"""Tiny random AOT / DeAOT networks for CPU tests."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from vos.deaot import build_network
from vos.variants import EngineSpec, get_variant


def tiny_spec(family: str, **changes: object) -> EngineSpec:
    """The shipped tiny spec of ``family`` with ``changes`` applied."""
    return replace(get_variant(f"{family}_tiny"), **changes)  # type: ignore[arg-type]


def tiny_network(family: str, seed: int = 0, **changes: object):
    torch.manual_seed(seed)
    net = build_network(tiny_spec(family, **changes)).eval()
    # Random weights large enough that predictions vary over the frame.
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith("relative_emb_v"):
                p.normal_(0, 0.1)
    return net


def synthetic_video(frames: int = 6, height: int = 49, width: int = 65, seed: int = 0):
    """T x 3 x H x W uint8 frames with two moving squares, and their T x H x W ids."""
    g = torch.Generator().manual_seed(seed)
    video = torch.randint(0, 60, (frames, 3, height, width), generator=g, dtype=torch.uint8)
    labels = torch.zeros(frames, height, width, dtype=torch.long)
    for t in range(frames):
        y, x = 6 + t, 8 + 2 * t
        video[t, :, y : y + 14, x : x + 14] = torch.tensor([220, 40, 40]).view(3, 1, 1)
        labels[t, y : y + 14, x : x + 14] = 1
        y2, x2 = height - 20 - t, width - 22 - t
        video[t, :, y2 : y2 + 12, x2 : x2 + 16] = torch.tensor([40, 200, 90]).view(3, 1, 1)
        labels[t, y2 : y2 + 12, x2 : x2 + 16] = 2
    return video, labels


@pytest.fixture(params=["aot", "deaot"])
def family(request: pytest.FixtureRequest) -> str:
    return str(request.param)
