"""Full disks: ``lsvos package`` and ``lsvos vote`` writing into a real, full tmpfs print one
error line naming the destination, exit 2, and leave no temporary file.

The tmpfs is mounted in a private mount namespace (``unshare -rm``), so it vanishes with the
command; where mounting is not allowed the tests are skipped."""

from __future__ import annotations

import functools
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.core.data import open_dataset
from pipeline.core.data.synth import write_synthetic_benchmark
from pipeline.core.masks import MaskSet, Track

REPO = Path(__file__).resolve().parents[2]


@functools.cache
def _tmpfs_refusal() -> str | None:
    """Why a private tmpfs cannot be mounted here (None when it can): tried once."""
    if shutil.which("unshare") is None:
        return "no unshare command"
    probe = Path("/tmp") / "lsvos-tmpfs-probe"
    probe.mkdir(exist_ok=True)
    try:
        proc = subprocess.run(
            ["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=16k tmpfs {probe}"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError) as err:
        return f"unshare failed: {err}"
    finally:
        probe.rmdir()
    if proc.returncode != 0:
        return f"cannot mount a tmpfs in a private namespace: {proc.stderr.strip()}"
    return None


@pytest.fixture
def full_tmpfs_run(tmp_path: Path):
    """Run an ``lsvos`` command with a full tmpfs mounted on ``tmp_path / 'full'``; returns the
    exit status, stderr, and the files left on the tmpfs (besides the filler)."""
    refusal = _tmpfs_refusal()
    if refusal:
        pytest.skip(refusal)
    mount = tmp_path / "full"
    mount.mkdir()
    err_file, rc_file, listing = tmp_path / "err.txt", tmp_path / "rc.txt", tmp_path / "ls.txt"

    def run(*argv: str) -> tuple[int, str, list[str]]:
        cmd = shlex.join([sys.executable, "-m", "pipeline.cli", *argv])
        m = shlex.quote(str(mount))
        script = (
            f"mount -t tmpfs -o size=64k tmpfs {m} || exit 99; "
            f"mkdir -p {m}/out; dd if=/dev/zero of={m}/.filler bs=4k 2>/dev/null; "
            f"{cmd} 2>{shlex.quote(str(err_file))}; echo $? >{shlex.quote(str(rc_file))}; "
            f"cd {m} && find . -mindepth 1 ! -name .filler >{shlex.quote(str(listing))}"
        )
        env_cmd = ["env", "OMP_NUM_THREADS=1", f"PYTHONPATH={REPO}"]
        proc = subprocess.run(
            ["unshare", "-rm", *env_cmd, "sh", "-c", script], cwd=REPO, timeout=300
        )
        assert proc.returncode == 0, "the tmpfs could not be mounted"
        left = sorted(listing.read_text().split())
        return int(rc_file.read_text()), err_file.read_text(), left

    run.mount = mount  # type: ignore[attr-defined]
    return run


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("disk")
    write_synthetic_benchmark(root / "data", seed=3, videos=1, splits=("valid",))
    ds = open_dataset("ytvos", root / "data", "valid")
    sets = []
    for name in ("a", "b"):
        masks = MaskSet(root / name, "rle")
        for video in ds.videos():
            for exp in ds.expressions(video.id):
                gt = ds.ground_truth(video.id, exp.id)
                masks.write(video.id, exp.id, Track(video.frame_ids, gt))
            masks.mark_complete(video.id)
        sets.append(masks.root)
    meta = root / "data/meta_expressions/valid/meta_expressions.json"
    return {"sets": sets, "meta": meta}


def _one_error_line(err: str, command: str, mount: Path) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert lines[0].startswith(f"lsvos {command}: error: "), err
    assert str(mount) in lines[0], err
    assert "no space left on device" in lines[0].lower(), err
    return lines[0]


def test_package_into_a_full_disk_names_the_zip(bench: dict, full_tmpfs_run) -> None:
    out = full_tmpfs_run.mount / "out" / "sub.zip"
    argv = ["package", "--masks", str(bench["sets"][0]), "--meta", str(bench["meta"])]
    code, err, left = full_tmpfs_run(*argv, "--format", "ytvos", "--out", str(out))
    assert code == 2, err
    line = _one_error_line(err, "package", full_tmpfs_run.mount)
    assert str(out) in line
    assert left == ["./out"]  # no temporary file, no half zip


def test_vote_into_a_full_disk_names_the_output(bench: dict, full_tmpfs_run) -> None:
    out = full_tmpfs_run.mount / "out" / "voted"
    a, b = (str(p) for p in bench["sets"])
    code, err, left = full_tmpfs_run("vote", "--out", str(out), a, b)
    assert code == 2, err
    _one_error_line(err, "vote", full_tmpfs_run.mount)
    assert not any(name.endswith(".tmp") for name in left), left


@pytest.mark.slow
def test_a_run_onto_a_full_disk_ends_in_one_line_naming_the_file(
    full_tmpfs_run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``lsvos run`` with its outputs on a full disk: the first write fails the run, which ends
    in one ``lsvos run: error:`` line naming the file, no traceback, no temporary file."""
    from tests.pipeline.flow_fixtures import demo_with_imports

    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect-home"))
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    overrides = [
        o
        for o in demo_with_imports(tmp_path / "inputs", videos=1)
        if not o.startswith(("runtime.output_root", "runtime.progress"))
    ]
    out = full_tmpfs_run.mount / "out" / "outputs"
    code, err, left = full_tmpfs_run(
        "run", *overrides, f"runtime.output_root={out}", "runtime.progress=false"
    )
    assert code == 2, err
    assert "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("lsvos run: error: "), err
    assert str(full_tmpfs_run.mount) in last and "no space left on device" in last.lower(), last
    assert not any(name.endswith(".tmp") for name in left), left
