"""Progress of a run: a bar on the terminal and a progress artifact in the Prefect UI.

Two levels: :class:`ProgressReporter` counts (node, video) tasks as they complete (in the flow);
:func:`node_progress` reports the inner loop of one task (a producer's expressions, a
propagation's frames) while it runs, as

* a progress artifact of the task run in the Prefect UI (created once the task has run
  ``artifact_interval`` seconds, then updated at most that often, and at the end);
* on a terminal, a bar per running task below the run's bar (``position`` 1, 2, ... one per
  worker thread, cleared when the task ends); while the bars are up, console log records
  (Prefect's) are written above them (:func:`log_lines_above_bars`), never into them;
* elsewhere (a log file, a Dask or Ray worker process), a whole line
  (``stage1/1f5989b77c: frames 40/120``) at most every ``line_interval`` seconds.

Inner progress is off unless a task turns it on (:func:`task_progress`, from
``runtime.progress``); it only observes the loop and never changes what a node computes.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TextIO

from prefect.futures import PrefectFuture, as_completed

ProgressCallback = Callable[[int, int], None]
"""``progress(done, total)``: called by an inner loop after each item."""


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
        restore_logs: Callable[[], None] | None = None
        if self.enabled:
            if sys.stderr.isatty():
                from tqdm import tqdm

                bar = tqdm(
                    total=self.total,
                    desc=self.description,
                    file=sys.stderr,
                    leave=True,
                    position=0,  # the tasks' own bars go below it (TaskProgress)
                )
                restore_logs = log_lines_above_bars()
            else:  # a log file: whole lines, never a bar that runs into the log lines
                lines = ProgressLines(self.description, self.total, sys.stderr)
            artifact_id = _create_progress_artifact(self.description)
        try:
            for done, future in enumerate(as_completed(futures), start=1):
                if bar is not None:
                    bar.update(1)
                if lines is not None:
                    lines.update(done)
                if artifact_id is not None:
                    _update_progress_artifact(artifact_id, 100.0 * done / self.total)
                yield future
        finally:
            if bar is not None:
                bar.close()
            if restore_logs is not None:
                restore_logs()


def log_lines_above_bars() -> Callable[[], None]:
    """Make every console log handler (Prefect's included) lift this process's bars off the
    terminal while it writes a record, so log lines scroll above the bars instead of running
    into them; returns the function that undoes it."""
    import logging

    from tqdm import tqdm

    patched: list[logging.Handler] = []
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    for logger in loggers:
        for handler in getattr(logger, "handlers", ()):
            stream = getattr(handler, "stream", None)
            if handler in patched or stream not in (sys.stdout, sys.stderr):
                continue
            emit = handler.emit

            def lifted(record: logging.LogRecord, emit: Callable[..., None] = emit) -> None:
                with tqdm.external_write_mode(file=sys.stderr):
                    emit(record)

            handler.emit = lifted  # type: ignore[method-assign]
            patched.append(handler)

    def restore() -> None:
        for handler in patched:
            del handler.emit  # the class's emit again

    return restore


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


def _update_progress_artifact(
    artifact_id: Any, progress: float, description: str | None = None
) -> None:
    try:
        from prefect.artifacts import update_progress_artifact

        update_progress_artifact(
            artifact_id=artifact_id, progress=progress, description=description
        )
    except Exception:
        pass


# --- progress inside one (node, video) task -------------------------------------------------

_FACTORY: ContextVar[Callable[[str, str], TaskProgress] | None] = ContextVar(
    "lsvos_task_progress", default=None
)
_WRITE_LOCK = threading.Lock()
_SLOTS_LOCK = threading.Lock()
_SLOTS: set[int] = set()  # terminal rows below the run's bar taken by running tasks (this process)


@contextmanager
def task_progress(
    enabled: bool | Callable[[str, str], TaskProgress] = True,
) -> Iterator[None]:
    """Turn inner progress on (``enabled``: True, or a factory ``(label, unit) ->
    TaskProgress``) or off for the code run inside, e.g. one task's body."""
    factory = (TaskProgress if enabled else None) if isinstance(enabled, bool) else enabled
    token = _FACTORY.set(factory)
    try:
        yield
    finally:
        _FACTORY.reset(token)


@contextmanager
def node_progress(label: str, unit: str) -> Iterator[ProgressCallback | None]:
    """The callback for one task's inner loop (``label``: ``node/video``; ``unit``: what is
    counted, e.g. ``frames``), or None where progress is off (:func:`task_progress`)."""
    factory = _FACTORY.get()
    if factory is None:
        yield None
        return
    reporter = factory(label, unit)
    try:
        yield reporter
    finally:
        reporter.close()


class TaskProgress:
    """One task's inner progress: a terminal bar or throttled lines, and a Prefect artifact.

    Args:
        label: ``node/video``.
        unit: what ``done`` counts (``frames``, ``expressions``).
        stream: where bars and lines go (default stderr).
        terminal: draw a bar (default: ``stream`` is a terminal and this is not a Dask / Ray
            worker process, whose bars would run into the run's bar in another process).
        clock: seconds, monotonic (tests inject one).
        line_interval: least seconds between two lines (not a terminal).
        artifact_interval: least seconds between two artifact updates; also how long a task
            runs before it gets an artifact at all (short tasks leave none).
        artifact: report to the Prefect UI (needs a task run; silently skipped without one).
    """

    def __init__(
        self,
        label: str,
        unit: str,
        *,
        stream: TextIO | None = None,
        terminal: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
        line_interval: float = 30.0,
        artifact_interval: float = 2.0,
        artifact: bool = True,
    ) -> None:
        self.label, self.unit = label, unit
        self.stream = stream if stream is not None else sys.stderr
        if terminal is None:
            terminal = _is_terminal(self.stream) and not _in_worker_process()
        self.bar = _TaskBar(label, unit, self.stream) if terminal else None
        self.lines = (
            None if terminal else ThrottledLines(label, unit, self.stream, line_interval, clock)
        )
        self.artifact = (
            ThrottledArtifact(label, unit, artifact_interval, clock) if artifact else None
        )

    def __call__(self, done: int, total: int) -> None:
        if self.bar is not None:
            self.bar.update(done, total)
        if self.lines is not None:
            self.lines.update(done, total)
        if self.artifact is not None:
            self.artifact.update(done, total)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.artifact is not None:
            self.artifact.close()


class ThrottledLines:
    """Whole lines ``label: unit done/total``, at most one per ``interval`` seconds (none in a
    task's first ``interval``), each written at once: never a partial line in a log file."""

    def __init__(
        self,
        label: str,
        unit: str,
        stream: TextIO,
        interval: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label, self.unit, self.stream = label, unit, stream
        self.interval, self.clock = interval, clock
        self.last = clock()

    def update(self, done: int, total: int) -> None:
        now = self.clock()
        if now - self.last < self.interval:
            return
        self.last = now
        _write_line(self.stream, f"{self.label}: {self.unit} {done}/{total}")


class ThrottledArtifact:
    """A Prefect progress artifact of the running task, updated at most every ``interval``
    seconds; created at the first update due (so a task shorter than ``interval`` leaves
    none) and brought to its last value when the task ends. ``create(progress,
    description) -> id`` / ``update(id, progress, description)`` default to Prefect's API."""

    def __init__(
        self,
        label: str,
        unit: str,
        interval: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        create: Callable[[float, str], Any] | None = None,
        update: Callable[[Any, float, str], None] | None = None,
    ) -> None:
        self.label, self.unit, self.interval, self.clock = label, unit, interval, clock
        self.create = create or _create_task_artifact
        self._update = update or _update_progress_artifact
        self.last = clock()
        self.id: Any = None
        self.failed = False
        self.pending: tuple[int, int] | None = None  # the last value not sent yet

    def update(self, done: int, total: int) -> None:
        self.pending = (done, total)
        now = self.clock()
        if now - self.last >= self.interval:
            self.last = now
            self._send()

    def close(self) -> None:
        if self.id is not None:
            self._send()

    def _send(self) -> None:
        if self.pending is None or self.failed:
            return
        done, total = self.pending
        self.pending = None
        percent = 100.0 * done / total if total > 0 else 100.0
        description = f"{self.label}: {self.unit} {done}/{total}"
        if self.id is None:
            self.id = self.create(percent, description)
            self.failed = self.id is None  # no API (a bare call): stop trying
        else:
            self._update(self.id, percent, description)


class _TaskBar:
    """A tqdm bar on the first free row below the run's bar, cleared when closed."""

    def __init__(self, label: str, unit: str, stream: TextIO) -> None:
        self.label, self.unit, self.stream = label, unit, stream
        self.bar: Any = None
        self.slot: int | None = None

    def update(self, done: int, total: int) -> None:
        if self.bar is None:
            from tqdm import tqdm

            with _SLOTS_LOCK:
                self.slot = next(i for i in range(len(_SLOTS) + 1) if i not in _SLOTS)
                _SLOTS.add(self.slot)
            self.bar = tqdm(
                total=total,
                desc=self.label,
                unit=self.unit,
                file=self.stream,
                position=1 + self.slot,
                leave=False,
                dynamic_ncols=True,
            )
        if self.bar.total != total:
            self.bar.total = total
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.slot is not None:
            with _SLOTS_LOCK:
                _SLOTS.discard(self.slot)
            self.slot = None


def _write_line(stream: TextIO, line: str) -> None:
    """One whole line in one write (not ``print``: a flow with ``log_prints`` would turn it
    into a log record)."""
    with _WRITE_LOCK:
        stream.write(line + "\n")
        stream.flush()


def _is_terminal(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _in_worker_process() -> bool:
    """Whether this is a Dask or Ray worker process (a task runner's, not the flow's)."""
    distributed = sys.modules.get("distributed")
    if distributed is not None:
        try:
            distributed.get_worker()
            return True
        except (ValueError, AttributeError):
            pass
    ray = sys.modules.get("ray")
    if ray is not None:
        try:
            return bool(ray.is_initialized()) and ray.get_runtime_context().worker.mode == getattr(
                ray, "WORKER_MODE", 1
            )
        except Exception:
            pass
    return False


def _create_task_artifact(progress: float, description: str) -> Any:
    """A progress artifact of the current task run, or None outside one."""
    try:
        from prefect.context import TaskRunContext

        if TaskRunContext.get() is None:
            return None
        from prefect.artifacts import create_progress_artifact

        return create_progress_artifact(progress=progress, description=description)
    except Exception:
        return None
