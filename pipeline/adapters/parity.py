"""Parity cases: read a case folder, run the family's port, compare with the official outputs.

A case folder (``../shared/parity/<case>/``; format in its ``README.md``) holds ``config.json``,
``manifest.tsv`` and ``buffers.npz`` (the official checkpoint layout), and for ``full`` cases
``inputs.npz`` and ``expected.npz``. Float weights are rebuilt by the ``recipe.py`` beside the
case folders; it is imported from there, never copied.
"""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from models.build import FAMILIES, PRODUCER_FAMILIES
from models.shared.parity_case import ParityCase
from pipeline.core.errors import UserError
from vos.build import ENGINE_FAMILIES, ENGINES

# Each family's parity module comes from its record in models.build or vos.build (see
# models/shared/parity_case.py for a parity module's two functions).
PARITY_FAMILIES: tuple[str, ...] = (*ENGINE_FAMILIES, *PRODUCER_FAMILIES)

PARITY_DIR_ENV = "LSVOS_PARITY_DIR"


def default_parity_root() -> Path:
    """``$LSVOS_PARITY_DIR``, else ``../shared/parity`` beside the repository root."""
    if os.environ.get(PARITY_DIR_ENV):
        return Path(os.environ[PARITY_DIR_ENV])
    return Path(__file__).resolve().parents[3] / "shared" / "parity"


# The cases this project made itself (SAM 2, Cutie: bench/parity/ rebuilds them from the
# official code) ship with it, beside their recipe.py.
PROJECT_PARITY_ROOT = Path(__file__).resolve().parents[2] / "tests" / "parity"


def list_cases(root: Path | None = None) -> list[Path]:
    """Case folders (those holding a ``config.json``) under ``root``, sorted by name; by
    default the shared cases and the project's own."""
    roots = [root] if root is not None else [default_parity_root(), PROJECT_PARITY_ROOT]
    cases = [p for r in roots if r.is_dir() for p in r.iterdir() if (p / "config.json").is_file()]
    return sorted(cases, key=lambda p: p.name)


def family_module(family: str) -> ModuleType | None:
    """The family's parity module, or ``None`` when that family has no port yet."""
    if family in ENGINES:
        return ENGINES[family].parity
    if family not in FAMILIES:
        raise UserError(f"unknown parity family {family!r}; known: {sorted(PARITY_FAMILIES)}")
    return FAMILIES[family].parity


def _load_recipe(case_dir: Path) -> ModuleType:
    recipe_path = case_dir.parent / "recipe.py"
    if not recipe_path.is_file():
        raise UserError(f"{case_dir}: no recipe.py beside the case folder ({recipe_path})")
    spec = importlib.util.spec_from_file_location("lsvos_parity_recipe", recipe_path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read_case(case_dir: str | Path) -> tuple[ParityCase, dict[str, np.ndarray]]:
    """The case as a :class:`ParityCase` plus its expected arrays (empty for manifest-only)."""
    case_dir = Path(case_dir)
    config_path = case_dir / "config.json"
    if not config_path.is_file():
        raise UserError(f"{case_dir} is not a parity case: no config.json")
    config: dict[str, Any] = json.loads(config_path.read_text())
    for key in ("family", "variant_id"):
        if key not in config:
            raise UserError(f"{config_path}: missing required key {key!r}")
    state = _load_recipe(case_dir).load_official_state(case_dir)
    inputs: dict[str, np.ndarray] = {}
    expected: dict[str, np.ndarray] = {}
    if (case_dir / "inputs.npz").is_file():
        with np.load(case_dir / "inputs.npz") as z:
            inputs = {k: z[k] for k in z.files}
    if (case_dir / "expected.npz").is_file():
        with np.load(case_dir / "expected.npz") as z:
            expected = {k: z[k] for k in z.files}
    return ParityCase(case_dir.name, config, state, inputs, directory=case_dir), expected


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one array's check."""

    array: str
    passed: bool
    detail: str
    worst: float  # largest excess over tolerance (<= 0 when passed), or 1 - agreement


def compare(
    name: str, actual: np.ndarray | None, expected: np.ndarray, rule: dict[str, Any]
) -> CheckResult:
    """Apply one ``checks`` rule: tolerance, ``exact`` or ``min_agreement`` (per frame)."""
    if actual is None:
        return CheckResult(name, False, "not produced by the port", float("inf"))
    actual = np.asarray(actual)
    if actual.shape != expected.shape:
        squeezable = actual.size == expected.size
        if not squeezable:
            return CheckResult(
                name, False, f"shape {actual.shape} != expected {expected.shape}", float("inf")
            )
        actual = actual.reshape(expected.shape)
    a = actual.astype(np.float64)
    e = expected.astype(np.float64)
    if rule.get("exact"):
        bad = int(np.count_nonzero(a != e))
        return CheckResult(name, bad == 0, f"exact: {bad} of {e.size} differ", float(bad))
    if "min_agreement" in rule:
        need = float(rule["min_agreement"])
        equal = a == e
        per_frame = (
            equal.reshape(equal.shape[0], -1).mean(axis=1) if equal.ndim >= 3 else equal.ravel()
        )
        worst = float(per_frame.min()) if equal.ndim >= 3 else float(equal.mean())
        return CheckResult(
            name, worst >= need, f"agreement {worst:.6f} (min per frame), need {need}", 1 - worst
        )
    atol = float(rule.get("atol", 0.0))
    rtol = float(rule.get("rtol", 0.0))
    diff = np.abs(a - e)
    excess = diff - (atol + rtol * np.abs(e))
    worst_idx = np.unravel_index(int(np.argmax(excess)), excess.shape) if excess.size else ()
    detail = (
        f"max |diff| {diff.max() if diff.size else 0:.3e} at {tuple(int(i) for i in worst_idx)}"
        f" (atol {atol:g}, rtol {rtol:g}); {int((excess > 0).sum())} of {e.size} outside"
    )
    passed = bool((excess <= 0).all())  # NaN compares False: a NaN output fails
    return CheckResult(name, passed, detail, float(excess.max()) if excess.size else 0.0)


@dataclass(frozen=True)
class ParityReport:
    """Everything ``lsvos parity`` prints for one case."""

    case: str
    kind: str
    results: list[CheckResult]
    note: str = ""

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)


def run_case_dir(case_dir: str | Path) -> ParityReport:
    """Run one case through its family's port and compare every checked array."""
    case, expected = read_case(case_dir)
    module = family_module(case.family)
    if module is None:
        raise UserError(f"{case.name}: family {case.family!r} has no port in this checkout yet")
    if not case.is_full:
        report = module.convert_parity(case)
        return ParityReport(
            case.name, "manifest_only", [CheckResult("keys", True, report.summary(), 0.0)]
        )
    checks: dict[str, dict[str, Any]] = case.config.get("checks", {})
    if not checks:
        raise UserError(f"{case.name}: a full case without 'checks' in config.json")
    outputs = module.run_parity(case)
    results = [
        compare(name, outputs.get(name), expected[name], rule) for name, rule in checks.items()
    ]
    return ParityReport(case.name, "full", results)


def format_report(report: ParityReport) -> str:
    lines = [f"parity {report.case} ({report.kind}): {'PASS' if report.passed else 'FAIL'}"]
    for r in sorted(report.results, key=lambda r: -r.worst):
        lines.append(f"  {'ok  ' if r.passed else 'FAIL'} {r.array:<28} {r.detail}")
    return "\n".join(lines)
