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


FAMILY_BASE = "models.family"
FAMILY_LEAVES = ("models.referformer", "models.mutr", "models.soc")


def _imported(path: Path) -> list[str]:
    """Every absolute module name ``path`` imports (also inside functions)."""
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names += [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
    return names


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


@pytest.mark.parametrize(
    "package", [FAMILY_BASE, *FAMILY_LEAVES], ids=lambda p: p.removeprefix("models.")
)
def test_family_base_and_leaves_keep_their_direction(package: str) -> None:
    """The ReferFormer / MUTR / SOC base imports no leaf; a leaf imports the base, not another
    leaf."""
    folder = ROOT.joinpath(*package.split("."))
    files = sorted(folder.rglob("*.py"))
    assert files, f"{package} has no module"
    others = [leaf for leaf in FAMILY_LEAVES if leaf != package]
    for path in files:
        for name in _imported(path):
            bad = [leaf for leaf in others if _within(name, leaf)]
            assert not bad, f"{path.relative_to(ROOT)}: imports {name}"
