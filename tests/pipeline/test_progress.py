"""Progress where stderr is a log file: whole lines, never a bar run into the log lines."""

from __future__ import annotations

import io

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
