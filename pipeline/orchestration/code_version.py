"""The code version of a node kind: a hash of every project module its work imports.

Each job kind runs one module of :mod:`pipeline.orchestration.nodes` (``produce``, ``import``,
``vote``, ``propagate``). Its version hashes the source of that module and of every project
module (``pipeline``, ``models``, ``vos``) reachable from it through ``import`` statements,
including imports inside functions and the ``__init__`` of every package on the way, read from
the source with :mod:`ast` (nothing is imported). So an edit to any file a kind can run changes
that kind's version, and an edit elsewhere does not.
"""

from __future__ import annotations

import ast
import hashlib
import threading
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
_PARSE_LOCK = threading.Lock()
PROJECT_PACKAGES = ("pipeline", "models", "vos")
KIND_MODULES = {
    "produce": "pipeline.orchestration.nodes.produce",
    "import": "pipeline.orchestration.nodes.import_predictions",
    "vote": "pipeline.orchestration.nodes.vote",
    "propagate": "pipeline.orchestration.nodes.propagate",
}


@cache
def code_version(kind: str) -> str:
    """16 hex digits over the import closure of ``kind``'s node module."""
    return files_version(kind, import_closure(KIND_MODULES[kind]))


def files_version(
    kind: str, files: Sequence[Path], read: Callable[[Path], bytes] = Path.read_bytes
) -> str:
    """The version of ``kind`` over ``files`` (their paths in the repository and contents)."""
    digest = hashlib.sha256(kind.encode())
    for path in files:
        digest.update(str(path.relative_to(REPO_ROOT)).encode())
        digest.update(read(path))
    return digest.hexdigest()[:16]


def import_closure(module: str, root: Path = REPO_ROOT) -> list[Path]:
    """Source files of ``module`` and of every project module it imports, sorted."""
    seen: set[Path] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        for path in _files_of(name, root):
            if path in seen:
                continue
            seen.add(path)
            todo.extend(_imported_modules(path, _module_name(path, root), root))
    return sorted(seen)


def _module_file(name: str, root: Path) -> Path | None:
    base = root.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _files_of(name: str, root: Path) -> list[Path]:
    """The module's file and its packages' ``__init__`` files (importing runs them all)."""
    parts = name.split(".")
    if parts[0] not in PROJECT_PACKAGES:
        return []
    files = []
    for depth in range(1, len(parts) + 1):
        path = _module_file(".".join(parts[:depth]), root)
        if path is not None:
            files.append(path)
    return files


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache  # the kinds' closures share most files: each is parsed once per process
def _imported_modules(path: Path, module: str, root: Path) -> list[str]:
    """Project modules ``path`` imports anywhere in its body (``from a import b`` yields ``a``
    and, where ``a.b`` is a module, ``a.b``)."""
    source = path.read_text()
    with _PARSE_LOCK:  # CPython 3.11's parser is not thread-safe ("AST constructor recursion")
        tree = ast.parse(source, filename=str(path))
    is_package = path.name == "__init__.py"
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, module, is_package)
            if not base:
                continue
            names.append(base)
            names += [f"{base}.{alias.name}" for alias in node.names if alias.name != "*"]
    return [n for n in names if n.split(".")[0] in PROJECT_PACKAGES and _module_file(n, root)]


def _absolute(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if node.level == 0:
        return node.module or ""
    package = module.split(".") if is_package else module.split(".")[:-1]
    if node.level > 1:
        package = package[: len(package) - (node.level - 1)]
    return ".".join([*package, *([node.module] if node.module else [])])
