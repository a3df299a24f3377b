"""Every parity case in ../shared/parity, through ``lsvos parity`` (families with a port)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.parity import family_module
from tests.conftest import parity_case_dirs, require_parity_root

CASES = parity_case_dirs()


def _family(case: Path) -> str:
    return json.loads((case / "config.json").read_text())["family"]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_parity_case(case: Path, capsys: pytest.CaptureFixture[str]) -> None:
    require_parity_root()
    if family_module(_family(case)) is None:
        pytest.skip(f"family {_family(case)!r} is not ported in this checkout yet")
    status = main(["parity", str(case)])
    out = capsys.readouterr().out
    assert status == 0, out


def test_parity_root_is_found_or_skipped() -> None:
    require_parity_root()
    assert CASES, "the parity folder exists but holds no case"
