"""The libraries (models/, vos/) never import the pipeline, Prefect or Hydra, and vos/ takes
nothing from models/ but the shared plumbing in models.shared."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = ("pipeline", "prefect", "hydra", "omegaconf")
LIBRARY_FILES = sorted(p for pkg in ("models", "vos") for p in (ROOT / pkg).rglob("*.py"))


@pytest.mark.parametrize("path", LIBRARY_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_library_imports(path: Path) -> None:
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            assert name.split(".")[0] not in FORBIDDEN, f"{path}: imports {name}"
            if path.is_relative_to(ROOT / "vos") and name.split(".")[0] == "models":
                assert name.startswith("models.shared"), f"{path}: imports {name}"
