"""Progress of a run: a bar on the terminal and a progress artifact in the Prefect UI."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

from prefect.futures import PrefectFuture, as_completed


class ProgressReporter:
    """Yields futures as they complete, advancing a tqdm bar and a Prefect progress artifact."""

    def __init__(self, description: str, total: int, enabled: bool = True) -> None:
        self.description = description
        self.total = total
        self.enabled = enabled and total > 0

    def track(self, futures: Iterable[PrefectFuture[Any]]) -> Iterator[PrefectFuture[Any]]:
        futures = list(futures)
        if not futures:
            return
        bar = lines = None
        artifact_id = None
        if self.enabled:
            if sys.stderr.isatty():
                from tqdm import tqdm

                bar = tqdm(total=self.total, desc=self.description, file=sys.stderr, leave=True)
            else:  # a log file: whole lines, never a bar that runs into the log lines
                lines = ProgressLines(self.description, self.total, sys.stderr)
            artifact_id = _create_progress_artifact(self.description)
        for done, future in enumerate(as_completed(futures), start=1):
            if bar is not None:
                bar.update(1)
            if lines is not None:
                lines.update(done)
            if artifact_id is not None:
                _update_progress_artifact(artifact_id, 100.0 * done / self.total)
            yield future
        if bar is not None:
            bar.close()


class ProgressLines:
    """Progress as one whole line per tenth done (``nodes x videos: 12/60 (20%)``), for a
    stream that is not a terminal."""

    def __init__(self, description: str, total: int, stream: TextIO, steps: int = 10) -> None:
        self.description, self.total, self.stream = description, total, stream
        self.marks = sorted({max(1, round(total * k / steps)) for k in range(1, steps + 1)})

    def update(self, done: int) -> None:
        if done in self.marks:
            percent = 100 * done // self.total
            print(f"{self.description}: {done}/{self.total} ({percent}%)", file=self.stream)
            self.stream.flush()


def _create_progress_artifact(description: str) -> Any:
    try:
        from prefect.artifacts import create_progress_artifact

        return create_progress_artifact(progress=0.0, description=description)
    except Exception:  # no API to talk to (e.g. a bare .fn() call): the bar is enough
        return None


def _update_progress_artifact(artifact_id: Any, progress: float) -> None:
    try:
        from prefect.artifacts import update_progress_artifact

        update_progress_artifact(artifact_id=artifact_id, progress=progress)
    except Exception:
        pass
