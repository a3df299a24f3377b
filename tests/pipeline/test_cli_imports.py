"""The commands that need no model import neither torch nor Prefect (hardening, 'Also').

Each command runs for real in a fresh interpreter, on a two-video synthetic benchmark, and the
interpreter reports afterwards whether ``torch`` or ``prefect`` reached ``sys.modules``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.core.data import open_dataset
from pipeline.core.data.synth import write_synthetic_benchmark
from pipeline.core.masks import MaskSet, Track
from pipeline.core.submission import package

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "prefect", "hydra", "transformers")
PROBE = (
    "import sys\n"
    "from pipeline.cli import main\n"
    "try:\n"
    "    rc = main(sys.argv[1:])\n"
    "except SystemExit as done:\n"
    "    rc = done.code\n"
    f"print('HEAVY', [m for m in {HEAVY!r} if m in sys.modules], rc)\n"
)


def _heavy_imports(args: list[str], cwd: Path) -> tuple[list[str], int]:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"},
    )
    line = [x for x in proc.stdout.splitlines() if x.startswith("HEAVY ")]
    assert line, f"{args}: no probe line\n{proc.stdout}\n{proc.stderr}"
    _, rest = line[-1].split(" ", 1)
    modules, rc = rest.rsplit(" ", 1)
    return eval(modules), int(rc)  # the probe's own repr of a list of names


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli-imports")
    write_synthetic_benchmark(root / "data", seed=3, videos=2, splits=("valid",))
    ds = open_dataset("ytvos", root / "data", "valid")
    for name in ("a", "b"):
        masks = MaskSet(root / name, "rle")
        for video in ds.videos():
            for exp in ds.expressions(video.id):
                track = Track(video.frame_ids, ds.ground_truth(video.id, exp.id))
                masks.write(video.id, exp.id, track)
            masks.mark_complete(video.id)
    package(
        masks, root / "data/meta_expressions/valid/meta_expressions.json", "ytvos", root / "b.zip"
    )
    return root


@pytest.mark.parametrize(
    "args",
    [
        ["data", "synth", "--out", "fresh", "--videos", "1"],
        ["data", "info", "data", "--split", "valid"],
        ["vote", "--out", "voted", "a", "b"],
        ["package", "--masks", "a", "--meta", "META", "--format", "ytvos", "--out", "a.zip"],
        ["validate", "b.zip", "--meta", "META", "--format", "ytvos"],
        ["eval", "--pred", "b.zip", "--gt", "data", "--split", "valid"],
        ["vote", "--help"],
        ["run", "--help"],
        ["--help"],
    ],
    ids=lambda args: " ".join(args[:2]),
)
def test_model_free_commands_import_no_torch(bench: Path, args: list[str]) -> None:
    meta = str(bench / "data/meta_expressions/valid/meta_expressions.json")
    args = [meta if a == "META" else a for a in args]
    heavy, rc = _heavy_imports(args, bench)
    assert rc == 0, f"lsvos {' '.join(args)} exited {rc}"
    assert heavy == [], f"lsvos {' '.join(args)} imported {heavy}"
