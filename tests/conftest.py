"""Shared test fixtures: parity cases are read from ../shared/parity (or $LSVOS_PARITY_DIR)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.adapters.parity import default_parity_root, list_cases


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
