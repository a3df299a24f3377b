"""Small helpers shared by the ReferFormer / MUTR / SOC tests."""

from __future__ import annotations

from pathlib import Path


def manifest_shapes(case: Path, prefix: str) -> dict[str, tuple[int, ...]]:
    """Official key -> shape for the manifest rows under ``prefix`` (prefix removed)."""
    out: dict[str, tuple[int, ...]] = {}
    for line in (case / "manifest.tsv").read_text().splitlines()[1:]:
        name, _dtype, shape, *_ = line.split("\t")
        if name.startswith(prefix):
            out[name[len(prefix) :]] = tuple(int(d) for d in shape.split("x")) if shape else ()
    return out
