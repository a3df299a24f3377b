"""Helpers for model tests: official-layout weights of a parity case, rebuilt only where needed."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

from pipeline.adapters.parity import default_parity_root


def parity_case(name: str) -> Path:
    """The folder of parity case ``name``; skips the test when the parity cases are absent."""
    case = default_parity_root() / name
    if not (case / "config.json").is_file():
        pytest.skip(f"parity case {name} not found at {case} (set LSVOS_PARITY_DIR)")
    return case


def _recipe(case: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("lsvos_parity_recipe", case.parent / "recipe.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def official_substate(case: Path, prefix: str) -> dict[str, torch.Tensor]:
    """The case's official tensors whose name starts with ``prefix``, prefix removed.

    Rebuilds only those tensors (the full RoBERTa-sized state takes seconds).
    """
    recipe = _recipe(case)
    seed = json.loads((case / "config.json").read_text())["seed"]
    buffers = dict(np.load(case / "buffers.npz")) if (case / "buffers.npz").exists() else {}
    out: dict[str, torch.Tensor] = {}
    for name, dtype, shape, alias in recipe.read_manifest(case):
        if not name.startswith(prefix) or alias:
            continue
        if name in buffers:
            tensor = torch.from_numpy(buffers[name]).to(recipe._DTYPES[dtype]).reshape(shape)
        else:
            tensor = recipe.parity_tensor(name, shape, seed).to(recipe._DTYPES[dtype])
        out[name[len(prefix) :]] = tensor
    return out


def case_arrays(case: Path, which: str) -> dict[str, np.ndarray]:
    """``inputs`` or ``expected`` arrays of a case."""
    with np.load(case / f"{which}.npz") as z:
        return {k: z[k] for k in z.files}


def manifest_state(case: Path) -> dict[str, torch.Tensor]:
    """The case's checkpoint layout with zero floats (fast; for key accounting, not numbers).

    Integer buffers are the stored ones and alias rows share their tensor, as in the real file.
    """
    recipe = _recipe(case)
    buffers = dict(np.load(case / "buffers.npz")) if (case / "buffers.npz").exists() else {}
    out: dict[str, torch.Tensor] = {}
    for name, dtype, shape, alias in recipe.read_manifest(case):
        if alias:
            out[name] = out[alias]
        elif name in buffers:
            out[name] = torch.from_numpy(buffers[name]).to(recipe._DTYPES[dtype]).reshape(shape)
        else:
            out[name] = torch.zeros(shape, dtype=recipe._DTYPES[dtype])
    return out


def case_config(case: Path) -> dict:
    return json.loads((case / "config.json").read_text())
