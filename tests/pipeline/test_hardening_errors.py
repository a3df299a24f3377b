"""Hardening of error messages: writes the filesystem refuses name their destination, refused
or ill-fitting checkpoints are one line found before any work, and a config value of the wrong
type says what the key expects."""

from __future__ import annotations

import builtins
import datetime
import errno
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from pipeline.cli import main
from pipeline.core import io as core_io
from pipeline.core.errors import OutputWriteError, UserError
from pipeline.core.masks import MaskSet, Track

# --------------------------------------------------------------------------------------------
# (a) full disks: the writers name the destination and leave no temporary file


def _full_disk_open(monkeypatch: pytest.MonkeyPatch, module=core_io) -> None:
    """Make ``open(..., "wb")`` in ``module`` give files whose writes fail with ENOSPC."""
    real_open = builtins.open

    class FullFile:
        def __init__(self, f) -> None:
            self._f = f

        def write(self, data) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

        def __enter__(self):
            return self

        def __exit__(self, *exc) -> None:
            self._f.close()

    def fake_open(path, mode="r", *args, **kwargs):
        f = real_open(path, mode, *args, **kwargs)
        return FullFile(f) if "w" in mode else f

    monkeypatch.setattr(module, "open", fake_open, raising=False)


def _temps(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.name.endswith(".tmp"))


def test_atomic_write_on_a_full_disk_names_the_path_and_leaves_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _full_disk_open(monkeypatch)
    target = tmp_path / "outputs" / "x.png"
    with pytest.raises(OutputWriteError) as caught:
        core_io.atomic_write_bytes(target, b"data")
    message = str(caught.value)
    assert message.startswith(f"no space left on device writing {target}")
    assert "free space there and re-run" in message
    assert isinstance(caught.value, UserError) and "\n" not in message
    assert not target.exists() and _temps(tmp_path) == []


def test_locked_temp_file_on_a_full_disk_names_the_path(tmp_path: Path) -> None:
    target = tmp_path / "sub.zip"
    full = re.escape(f"no space left on device writing {target}")
    with pytest.raises(OutputWriteError, match=full), core_io.locked_temp_file(target) as (_, f):
        f.write(b"part")
        raise OSError(errno.ENOSPC, "No space left on device")
    assert not target.exists() and _temps(tmp_path) == []


def test_a_read_only_folder_names_the_path_other_errors_pass(tmp_path: Path) -> None:
    final = tmp_path / "Annotations" / "v0"
    read_only = re.escape(f"read-only file system writing {final}")
    with pytest.raises(OutputWriteError, match=read_only), core_io.staging_dir(final) as tmp:
        raise OSError(errno.EROFS, "Read-only file system", str(tmp / "a.png"))
    # not a write the filesystem refused: the error goes on unchanged
    with pytest.raises(FileNotFoundError), core_io.staging_dir(final):
        raise FileNotFoundError(errno.ENOENT, "No such file", "/some/input.png")
    assert not final.exists() and _temps(tmp_path) == []


def test_node_writes_on_a_full_disk_name_the_mask_set_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the write path of every node task (pipeline.orchestration.nodes.run): MaskSet.write
    # inside MaskSet.writing, which discards the partial video
    masks = MaskSet(tmp_path / "node", "rle")
    _full_disk_open(monkeypatch)
    track = Track(("00000", "00005"), np.ones((2, 4, 5), bool), np.array([0.5, 0.7]))
    with pytest.raises(OutputWriteError) as caught, masks.writing("vid0"):
        masks.write("vid0", "0", track)
    assert str(tmp_path / "node") in str(caught.value)
    assert "no space left on device writing" in str(caught.value)
    assert _temps(tmp_path) == [] and not (tmp_path / "node" / "tracks" / "vid0").exists()


def test_cli_prints_one_line_for_a_disk_error_outside_the_writers(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipeline import cli

    parser = cli.build_parser()
    real_parse = parser.parse_args

    def full(args) -> int:
        raise OSError(errno.ENOSPC, "No space left on device", "/mnt/full/report.md")

    def parse(argv):
        args = real_parse(argv)
        args._run = full
        return args

    monkeypatch.setattr(parser, "parse_args", parse)
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    assert main(["vote", "--out", "/x", "a", "b"]) == 2
    err = capsys.readouterr().err
    assert err == "lsvos vote: error: No space left on device: /mnt/full/report.md\n"


# --------------------------------------------------------------------------------------------
# (b) checkpoints: refused in preflight, before any work; a build failure is one line, once


def _refused_pickle(path: Path) -> Path:
    import torch

    torch.save({"w": torch.zeros(2), "when": datetime.date(2020, 1, 1)}, path)
    return path


def test_a_refused_checkpoint_fails_preflight_before_any_work(tmp_path: Path) -> None:
    from pipeline.orchestration.config import compose_config
    from pipeline.orchestration.prepare import prepare_run

    bad_pth = _refused_pickle(tmp_path / "sgmg.pth")
    bad_st = tmp_path / "aot.safetensors"
    bad_st.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not a header")
    out = tmp_path / "outputs"
    cfg = compose_config(
        [
            "recipe=demo",
            "dataset=synth",
            f"dataset.root={tmp_path / 'synth'}",
            f"runtime.output_root={out}",
            f"producers.sgmg.checkpoint={bad_pth}",
            f"engines.aot.checkpoint={bad_st}",
        ]
    )
    with pytest.raises(UserError) as caught:
        prepare_run(cfg)
    lines = str(caught.value).splitlines()
    sgmg = [line for line in lines if "producers.sgmg.checkpoint" in line]
    aot = [line for line in lines if "engines.aot.checkpoint" in line]
    assert len(sgmg) == 1 and str(bad_pth) in sgmg[0] and "datetime.date" in sgmg[0], lines
    assert len(aot) == 1 and str(bad_st) in aot[0] and "safetensors" in aot[0], lines
    assert not out.exists(), "a failed preflight must not start any work"
    assert not (tmp_path / "synth").exists()


def test_checkpoint_with_wrong_keys_is_one_line_and_built_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    import pipeline.adapters.engines as engines
    from pipeline.orchestration.config import compose_config

    wrong = tmp_path / "aot_wrong_keys.pth"
    torch.save({"model": {"not.a.key": torch.zeros(3)}}, wrong)
    cfg = compose_config(["recipe=demo"])
    settings = replace(cfg.engines["aot"], checkpoint=str(wrong), variant="aot_tiny")
    builds = []
    real = engines.engine_from_config

    def counted(s):
        builds.append(s)
        return real(s)

    monkeypatch.setattr(engines, "engine_from_config", counted)
    monkeypatch.setattr(engines, "_PROPAGATORS", engines.BuildCache())
    messages = []
    for _ in range(3):  # three videos' tasks
        with pytest.raises(UserError) as caught:
            engines.get_propagator(settings)
        messages.append(str(caught.value))
    assert len(builds) == 1
    assert len(set(messages)) == 1 and str(wrong) in messages[0]
    assert "does not fit" in messages[0] and "\n" not in messages[0]
    # a replaced file is read again (a long-lived server must not keep the old failure)
    torch.save({"model": {"still.not.a.key": torch.zeros(5)}}, wrong)
    with pytest.raises(UserError):
        engines.get_propagator(settings)
    assert len(builds) == 2


# --------------------------------------------------------------------------------------------
# (c) a config value of the wrong type names the key, the value and what it expects


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("runtime.workers=abc", "runtime.workers: 'abc' is not an int (expected an integer)"),
        ("runtime.progress=maybe", "runtime.progress: 'maybe' is not a bool (expected true or"),
        (
            "runtime.task_runner=threads",
            "runtime.task_runner: 'threads' is not a valid TaskRunnerKind "
            "(expected one of thread, dask, ray)",
        ),
        (
            "dataset.format=coco",
            "dataset.format: 'coco' is not a valid DatasetFormat "
            "(expected one of ytvos, mevis, davis)",
        ),
    ],
)
def test_wrong_type_says_what_the_key_expects(override: str, expected: str) -> None:
    from pipeline.orchestration.config import compose_config

    with pytest.raises(UserError) as caught:
        compose_config([override])
    assert f"invalid configuration: {expected}" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_cli_run_prints_the_expected_type(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "runtime.workers=abc"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == (
        "lsvos run: error: invalid configuration: runtime.workers: 'abc' is not an int "
        "(expected an integer)"
    )


def test_an_unknown_variant_of_an_official_checkpoint_fails_preflight(tmp_path: Path) -> None:
    """Found before any work, not once per video task when the model is built."""
    import torch

    from pipeline.orchestration.config import compose_config
    from pipeline.orchestration.prepare import preflight
    from pipeline.orchestration.recipe import Recipe

    official = tmp_path / "sgmg_official.pth"
    torch.save({"model": {"w": torch.zeros(2)}}, official)
    cfg = compose_config(["recipe=demo", f"producers.sgmg.checkpoint={official}"])
    nodes = [n for n in Recipe.from_config(cfg).nodes if n.name == "sgmg"]
    problems = preflight(cfg, nodes)
    assert problems == [
        f"producers.sgmg.variant: sgmg variant must be one of ['vswinb', 'vswint'], not 'tiny' "
        f"(for {official})"
    ]


# --------------------------------------------------------------------------------------------
# (b, in a run) a failed task stops the run's other work, and its log has no traceback


def test_a_failed_run_cancels_the_tasks_not_started() -> None:
    from concurrent.futures import ThreadPoolExecutor
    from threading import Event

    from pipeline.orchestration.flow import cancel_pending

    class Wrapped:  # what Prefect's futures hold: ``wrapped_future``
        def __init__(self, future) -> None:
            self.wrapped_future = future

    release = Event()
    with ThreadPoolExecutor(max_workers=1) as pool:
        running = pool.submit(release.wait, 30)
        queued = [pool.submit(lambda: "ran") for _ in range(5)]
        assert cancel_pending([Wrapped(f) for f in [running, *queued]]) == 5
        release.set()
    assert running.result() is True and all(f.cancelled() for f in queued)


def test_prefect_logs_a_user_error_without_its_traceback() -> None:
    import logging

    from pipeline.orchestration.logs import UserErrorTracebacks

    def record(err: BaseException) -> logging.LogRecord:
        try:
            raise err
        except BaseException:
            import sys

            return logging.LogRecord("prefect.task_runs", 40, "x", 1, "failed", (), sys.exc_info())

    user, bug = record(UserError("bad.pth: refused")), record(KeyError("bug"))
    assert UserErrorTracebacks().filter(user) and UserErrorTracebacks().filter(bug)
    assert user.exc_info is None and "Traceback" not in logging.Formatter().format(user)
    assert bug.exc_info is not None and "Traceback" in logging.Formatter().format(bug)


def test_every_missing_value_is_named_at_once(capsys: pytest.CaptureFixture[str]) -> None:
    """``recipe=card`` leaves seven checkpoints to the user: all seven are named, one per line,
    not only the first in OmegaConf's multi-line form (issue 'What a team sees', item 3)."""
    assert main(["run", "recipe=card"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lsvos run: error: 7 configuration value(s) must be set")
    named = [line.strip() for line in err.splitlines()[1:] if line.strip()]
    assert named == sorted(
        [f"producers.{p}.checkpoint" for p in ("soc", "mutr", "referformer", "sgmg", "uninext")]
        + ["engines.aot.checkpoint", "engines.deaot.checkpoint"]
    )
    assert "full_key" not in err and "reference_type" not in err
