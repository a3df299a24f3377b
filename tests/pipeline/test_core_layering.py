"""The ensemble core is a library: it imports no Prefect, Hydra, OmegaConf or torch, and no part
of ``pipeline`` outside ``pipeline.core`` (read from the source, and checked in a fresh
interpreter)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORE_FILES = sorted((ROOT / "pipeline" / "core").rglob("*.py"))
FORBIDDEN_PACKAGES = ("prefect", "hydra", "omegaconf", "torch", "models", "vos", "transformers")


def _imports(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


@pytest.mark.parametrize("path", CORE_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_core_imports_only_itself_and_plain_libraries(path: Path) -> None:
    for name in _imports(path):
        top = name.split(".")[0]
        assert top not in FORBIDDEN_PACKAGES, f"{path}: imports {name}"
        if top == "pipeline":
            assert name.startswith("pipeline.core"), f"{path}: imports {name}"


def test_core_runs_without_orchestration() -> None:
    modules = [
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for p in CORE_FILES
    ]
    script = (
        "import sys\n"
        f"for m in {modules!r}: __import__(m)\n"
        f"loaded = sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN_PACKAGES!r}"
        " or m.startswith(('pipeline.orchestration', 'pipeline.adapters', 'pipeline.commands',"
        " 'pipeline.training', 'pipeline.cli')))\n"
        "print(','.join(loaded))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "", f"importing pipeline.core loaded: {out.stdout.strip()}"
