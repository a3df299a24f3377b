"""Deterministic weights for the project's own parity cases (SAM 2, Cutie), in the format of
``../shared/parity`` (its README): each case folder beside this file names every tensor of an
official checkpoint in ``manifest.tsv``; float tensors are rebuilt from (name, shape, seed),
integer tensors and any tensor a case pins to a chosen value are stored whole in
``buffers.npz``.

A case's ``config.json`` may add ``"tensor_scale": {"<regex>": factor}``: every rebuilt float
tensor whose name matches a pattern (``re.fullmatch``) is multiplied by the factor of the first
matching pattern, e.g. to keep a deep random ResNet's activations finite. The generating script
(``bench/parity/``) writes the same rule into the case it makes.

    state = load_official_state(case_dir)   # dict[str, torch.Tensor], official key names
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path

import numpy as np
import torch

DTYPES = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float64": torch.float64,
    "int64": torch.int64,
    "int32": torch.int32,
    "uint8": torch.uint8,
    "bool": torch.bool,
}


def parity_tensor(name: str, shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    """The float32 value of tensor ``name`` for ``seed`` (the same rule as ../shared/parity):
    norm statistics near their identity, 1-D weights near 1, other 1-D tensors near 0, and
    matrices and kernels with unit fan-in variance."""
    digest = hashlib.sha256(f"{seed}/{name}".encode()).digest()
    generator = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))
    shape = tuple(shape)
    if name.endswith("running_var"):
        return torch.rand(shape, generator=generator) + 0.5
    if name.endswith("running_mean"):
        return 0.1 * torch.randn(shape, generator=generator)
    if len(shape) <= 1:
        if name.endswith("weight"):
            return 1.0 + 0.1 * torch.randn(shape, generator=generator)
        return 0.02 * torch.randn(shape, generator=generator)
    return torch.randn(shape, generator=generator) / math.sqrt(math.prod(shape[1:]))


def read_manifest(case_dir: str | Path) -> list[tuple[str, str, tuple[int, ...], str]]:
    """Rows of ``manifest.tsv``: (name, dtype, shape, alias_of or '')."""
    rows = []
    for line in Path(case_dir, "manifest.tsv").read_text().splitlines():
        if not line or line.startswith(("#", "name\t")):
            continue
        name, dtype, shape, *rest = line.split("\t")
        dims = tuple(int(d) for d in shape.split("x")) if shape else ()
        rows.append((name, dtype, dims, rest[0] if rest else ""))
    return rows


def _scale_for(name: str, rules: dict[str, float]) -> float:
    for pattern, factor in rules.items():
        if re.fullmatch(pattern, name):
            return float(factor)
    return 1.0


def load_official_state(case_dir: str | Path, seed: int | None = None) -> dict[str, torch.Tensor]:
    """The case's checkpoint as a state dict with the official key names."""
    case_dir = Path(case_dir)
    config = json.loads((case_dir / "config.json").read_text())
    seed = int(config["seed"]) if seed is None else seed
    rules: dict[str, float] = dict(config.get("tensor_scale", {}))
    buffers_path = case_dir / "buffers.npz"
    buffers = dict(np.load(buffers_path)) if buffers_path.exists() else {}
    state: dict[str, torch.Tensor] = {}
    for name, dtype, shape, alias in read_manifest(case_dir):
        if alias:
            state[name] = state[alias]
        elif name in buffers:
            state[name] = torch.from_numpy(buffers[name]).to(DTYPES[dtype]).reshape(shape)
        else:
            value = parity_tensor(name, shape, seed) * _scale_for(name, rules)
            state[name] = value.to(DTYPES[dtype])
    return state
