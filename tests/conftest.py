"""Shared test fixtures: parity cases are read from ../shared/parity (or $LSVOS_PARITY_DIR)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipeline.adapters.parity import default_parity_root, list_cases


def pytest_configure(config: pytest.Config) -> None:
    """One intra-op thread per test process (and the processes tests start), unless the caller
    chose: the suite's tensors are small, and on a shared 2-core machine a second thread only
    spins. Keeps the default suite within its CPU budget (the guide: 10 CPU-minutes)."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(max(1, int(os.environ["OMP_NUM_THREADS"])))


def parity_case_dirs(prefixes: tuple[str, ...] = ()) -> list[Path]:
    """Case folders whose name starts with one of ``prefixes`` (all when empty)."""
    return [c for c in list_cases() if not prefixes or c.name.startswith(prefixes)]


def require_parity_root() -> Path:
    root = default_parity_root()
    if not root.is_dir():
        pytest.skip(
            f"parity cases not found at {root} (they live beside the repository in "
            "../shared/parity; set LSVOS_PARITY_DIR to point elsewhere)"
        )
    return root
