"""Every parity case, through ``lsvos parity``: the shared ones in ../shared/parity, and the
project's own (SAM 2, Cutie) in tests/parity.

Manifest-only cases of very large checkpoints (UNINEXT ConvNeXt-L, ViT-H: 0.5-1.4 G parameters,
up to ~8 GB to rebuild their random tensors) are marked slow; all others run by default.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from pipeline.adapters.parity import PROJECT_PARITY_ROOT, default_parity_root, family_module
from pipeline.cli import main
from tests.conftest import parity_case_dirs, require_parity_root

SLOW_PARAMETERS = 400e6


def _config(case: Path) -> dict:
    return json.loads((case / "config.json").read_text())


def _parameters(case: Path) -> int:
    total = 0
    for line in (case / "manifest.tsv").read_text().splitlines():
        if not line or line.startswith(("#", "name\t")):
            continue
        _name, _dtype, shape, *rest = line.split("\t")
        if rest and rest[0]:
            continue  # an alias of an earlier tensor
        total += math.prod(int(d) for d in shape.split("x")) if shape else 1
    return total


def _param(case: Path) -> object:
    cfg = _config(case)
    manifest_only = cfg.get("kind") == "manifest_only" or cfg.get("manifest_only")
    big = manifest_only and _parameters(case) > SLOW_PARAMETERS
    return pytest.param(case, id=case.name, marks=[pytest.mark.slow] if big else [])


CASES = parity_case_dirs()
# Without the cases (a user's clone has no ../shared/parity) one test skips and says why, instead
# of pytest's "got empty parameter set".
NO_CASES = pytest.param(
    None,
    id="no-cases",
    marks=pytest.mark.skip(
        reason=f"no parity cases at {default_parity_root()} (they live beside the repository in "
        "../shared/parity; set LSVOS_PARITY_DIR to point elsewhere)"
    ),
)


@pytest.mark.parametrize("case", [_param(c) for c in CASES] or [NO_CASES])
def test_parity_case(case: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if case.parent != PROJECT_PARITY_ROOT:  # the project's own cases ship with it
        require_parity_root()
    family = _config(case)["family"]
    if family_module(family) is None:
        pytest.skip(f"family {family!r} is not ported in this checkout yet")
    status = main(["parity", str(case)])
    out = capsys.readouterr().out
    assert status == 0, out


def test_parity_root_is_found_or_skipped() -> None:
    require_parity_root()
    assert CASES, "the parity folder exists but holds no case"
