"""Progress where stderr is a log file: whole lines, never a bar run into the log lines."""

from __future__ import annotations

import io
from pathlib import Path
from typing import ClassVar

import pytest

from pipeline.orchestration.progress import ProgressLines


def test_progress_lines_are_whole_lines_once_per_tenth() -> None:
    stream = io.StringIO()
    lines = ProgressLines("nodes x videos", 60, stream)
    for done in range(1, 61):
        lines.update(done)
    out = stream.getvalue()
    assert out.endswith("\n") and "\r" not in out
    rows = out.splitlines()
    assert rows[0] == "nodes x videos: 6/60 (10%)" and rows[-1] == "nodes x videos: 60/60 (100%)"
    assert len(rows) == 10


def test_few_items_give_one_line_each() -> None:
    stream = io.StringIO()
    lines = ProgressLines("score", 3, stream)
    for done in range(1, 4):
        lines.update(done)
    assert stream.getvalue().splitlines() == [
        "score: 1/3 (33%)",
        "score: 2/3 (66%)",
        "score: 3/3 (100%)",
    ]


# --- progress inside a (node, video) task ------------------------------------------------------


class FakeClock:
    """A clock the test moves by hand (no wall-clock-dependent test)."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Recorder:
    """A ``TaskProgress`` stand-in recording every call."""

    made: ClassVar[list[Recorder]] = []

    def __init__(self, label: str, unit: str) -> None:
        self.label, self.unit = label, unit
        self.calls: list[tuple[int, int]] = []
        self.closed = False
        Recorder.made.append(self)

    def __call__(self, done: int, total: int) -> None:
        self.calls.append((done, total))

    def close(self) -> None:
        self.closed = True


def test_propagate_reports_every_frame_of_both_sweeps_and_computes_the_same() -> None:
    import torch

    from tests.vos.conftest import synthetic_video, tiny_network
    from vos.protocol import ProtocolConfig, propagate_video
    from vos.session import Propagator

    torch.set_num_threads(1)
    frames, labels = synthetic_video(frames=7)
    masks = {"0": labels == 1, "1": labels == 2, "2": labels == 1}
    keys = {"0": 3, "1": 0, "2": 6}
    propagator = Propagator(tiny_network("aot"), long_term_gap=2)
    for config in (ProtocolConfig(), ProtocolConfig(max_expressions_per_batch=1)):
        calls: list[tuple[int, int]] = []
        with_progress = propagate_video(
            propagator, frames, masks, keys, config, progress=lambda d, t, c=calls: c.append((d, t))
        )
        plain = propagate_video(propagator, frames, masks, keys, config)
        for exp in masks:
            assert torch.equal(with_progress[exp].masks, plain[exp].masks)
        totals = {t for _, t in calls}
        assert len(totals) == 1
        total = totals.pop()
        assert [d for d, _ in calls] == list(range(1, total + 1))
        # batched: forward 0..6 and backward 6..0; one session per expression: 4+4, 7+0, 0+7
        assert total == (14 if config.max_expressions_per_batch is None else 22)


def fake_producer_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A produce job (the demo's SgMg node on one synthetic video) whose producer is a fake
    yielding one deterministic result per expression."""
    import torch

    from models.common.producer import ExpressionResult
    from pipeline.adapters import producers
    from pipeline.core.data import write_synthetic_benchmark
    from pipeline.orchestration.config import compose_config
    from pipeline.orchestration.prepare import prepare_run
    from tests.pipeline.flow_fixtures import SMALL_SIZES

    class FakeProducer:
        def segment_video(self, frames, text):
            for i in range(len(text)):
                gen = torch.Generator().manual_seed(i)
                t, _, h, w = frames.shape
                yield ExpressionResult(
                    i, torch.rand(t, h, w, generator=gen), torch.rand(t, generator=gen)
                )

    def tokenize(texts):
        from models.common.producer import TokenizedText

        ids = torch.ones((len(texts), 4), dtype=torch.int64)
        return TokenizedText(ids, ids)

    monkeypatch.setattr(producers, "get_producer", lambda settings, fmt: FakeProducer())
    monkeypatch.setattr(producers, "get_tokenizer", lambda settings: tokenize)
    write_synthetic_benchmark(tmp_path / "synth", seed=0, videos=1, sizes=SMALL_SIZES)
    cfg = compose_config(
        [
            "recipe=demo",
            "dataset=synth",
            f"dataset.root={tmp_path / 'synth'}",
            f"runtime.output_root={tmp_path / 'outputs'}",
            "runtime.progress=false",
        ]
    )
    plan = prepare_run(cfg, nodes=["sgmg"])
    (job,) = plan.jobs
    assert job.kind == "produce"
    return job, plan.videos[0]


def test_produce_counts_expressions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.orchestration.nodes.run import run_node_video
    from pipeline.orchestration.progress import task_progress
    from pipeline.orchestration.splits import expression_ids

    job, video = fake_producer_job(tmp_path, monkeypatch)
    expressions = expression_ids(job.dataset, video)
    Recorder.made.clear()
    with task_progress(Recorder):
        run_node_video(job, video)
    (recorder,) = Recorder.made
    assert recorder.label == f"{job.name}/{video}" and recorder.unit == "expressions"
    n = len(expressions)
    assert recorder.calls == [(done, n) for done in range(n + 1)] and recorder.closed
    reported = snapshot(Path(job.out_dir))
    run_node_video(job, video)  # progress off: the same bytes
    assert snapshot(Path(job.out_dir)) == reported


def snapshot(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name not in {"complete.json"}
    }


def test_progress_false_emits_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipeline.orchestration import progress
    from pipeline.orchestration.flow import node_video_task
    from pipeline.orchestration.progress import node_progress, task_progress

    job, video = fake_producer_job(tmp_path, monkeypatch)
    made: list[str] = []
    monkeypatch.setattr(progress, "TaskProgress", lambda label, unit: made.append(label))
    capsys.readouterr()
    node_video_task.fn(job, video, False)  # what runtime.progress=false submits
    with task_progress(False), node_progress("n/v", "frames") as report:
        assert report is None
    with node_progress("n/v", "frames") as report:  # off unless a task turns it on
        assert report is None
    assert made == []
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""


def test_task_lines_are_whole_and_throttled_by_the_clock() -> None:
    from pipeline.orchestration.progress import TaskProgress

    clock, stream = FakeClock(), io.StringIO()
    report = TaskProgress(
        "stage1/1f5989b77c",
        "frames",
        stream=stream,
        terminal=False,
        clock=clock,
        line_interval=10.0,
        artifact=False,
    )
    for done in range(1, 121):
        clock.now += 0.25  # 4 frames a second: a line every 40 frames
        report(done, 120)
    report.close()
    out = stream.getvalue()
    assert out.endswith("\n") and "\r" not in out
    assert out.splitlines() == [
        "stage1/1f5989b77c: frames 40/120",
        "stage1/1f5989b77c: frames 80/120",
        "stage1/1f5989b77c: frames 120/120",
    ]


def test_a_short_task_writes_no_line_and_no_artifact() -> None:
    from pipeline.orchestration.progress import TaskProgress, ThrottledArtifact

    clock, stream = FakeClock(), io.StringIO()
    report = TaskProgress("n/v", "frames", stream=stream, terminal=False, clock=clock)
    sent: list[object] = []
    report.artifact = ThrottledArtifact(
        "n/v", "frames", 2.0, clock, lambda *a: sent.append(a) or "id", lambda *a: sent.append(a)
    )
    for done in range(1, 11):
        clock.now += 0.1
        report(done, 10)
    report.close()
    assert stream.getvalue() == "" and sent == []


def test_artifact_updates_are_throttled_and_end_at_the_last_value() -> None:
    from pipeline.orchestration.progress import ThrottledArtifact

    clock = FakeClock()
    sent: list[tuple[str, float, str]] = []
    artifact = ThrottledArtifact(
        "sgmg/abc",
        "expressions",
        2.0,
        clock,
        create=lambda p, d: sent.append(("create", p, d)) or "id-1",
        update=lambda i, p, d: sent.append((f"update {i}", p, d)),
    )
    for done in range(1, 21):
        clock.now += 0.5  # one expression per half second: an update every 4
        artifact.update(done, 20)
    artifact.update(20, 20)
    artifact.close()
    assert sent[0] == ("create", 20.0, "sgmg/abc: expressions 4/20")
    assert [p for _, p, _ in sent] == [20.0, 40.0, 60.0, 80.0, 100.0, 100.0]
    assert all(kind == "update id-1" for kind, _, _ in sent[1:])


def test_artifact_outside_a_task_run_is_skipped() -> None:
    from pipeline.orchestration.progress import ThrottledArtifact

    clock = FakeClock()
    artifact = ThrottledArtifact("n/v", "frames", 0.0, clock)  # Prefect's API, no task run
    artifact.update(1, 2)
    artifact.update(2, 2)
    artifact.close()
    assert artifact.id is None and artifact.failed


def test_terminal_bars_take_one_row_each_below_the_run_bar() -> None:
    from pipeline.orchestration.progress import TaskProgress

    stream = io.StringIO()
    a = TaskProgress("stage1/a", "frames", stream=stream, terminal=True, artifact=False)
    b = TaskProgress("stage2/b", "frames", stream=stream, terminal=True, artifact=False)
    a(1, 10)
    b(1, 20)
    assert a.bar is not None and b.bar is not None
    assert (abs(a.bar.bar.pos), abs(b.bar.bar.pos)) == (1, 2)
    a.close()
    c = TaskProgress("sgmg/c", "expressions", stream=stream, terminal=True, artifact=False)
    c(0, 3)
    assert c.bar is not None and abs(c.bar.bar.pos) == 1  # the row a freed
    b.close()
    c.close()


def test_console_log_lines_lift_the_bars_while_they_write() -> None:
    import logging
    import sys

    from pipeline.orchestration.progress import log_lines_above_bars

    logger = logging.getLogger("lsvos.test.progress")
    handler = logging.StreamHandler(sys.stderr)
    other = logging.StreamHandler(io.StringIO())  # not the console: left alone
    logger.addHandler(handler)
    logger.addHandler(other)
    try:
        restore = log_lines_above_bars()
        assert "emit" in vars(handler) and "emit" not in vars(other)
        logger.warning("a whole line")
        restore()
        assert "emit" not in vars(handler)
    finally:
        logger.removeHandler(handler)
        logger.removeHandler(other)
