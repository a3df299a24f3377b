"""Progress of a run: a bar on the terminal and a progress artifact in the Prefect UI."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import Any

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
        bar = None
        artifact_id = None
        if self.enabled:
            from tqdm import tqdm

            bar = tqdm(total=self.total, desc=self.description, file=sys.stderr, leave=True)
            artifact_id = _create_progress_artifact(self.description)
        for done, future in enumerate(as_completed(futures), start=1):
            if bar is not None:
                bar.update(1)
            if artifact_id is not None:
                _update_progress_artifact(artifact_id, 100.0 * done / self.total)
            yield future
        if bar is not None:
            bar.close()


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
