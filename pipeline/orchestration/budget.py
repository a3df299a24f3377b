"""The run's compute budget: ``runtime.workers`` x threads per worker = the machine's cores.

``runtime.threads_per_worker`` (null: auto) is the number of intra-op threads (torch's and
OpenCV's) each worker computes with; auto divides the cores this process may run on
(``os.sched_getaffinity``) among the workers, at least one each. :func:`apply_compute_budget`
sets it at the start of every (node, video) task, in the process that runs the task:

- **thread runner** (the default): the workers are threads of the flow's process, and
  ``torch.set_num_threads`` / ``cv2.setNumThreads`` are process-wide (a call in one worker
  thread changes the count every thread reads; torch 2.13, OpenMP backend). Each calling thread
  still runs its parallel regions on a team of its own of that size, so one value for the
  process, the same for every worker, gives workers x threads in all. Setting it per task is
  idempotent (nothing changes after the first task), and no worker ever sets another value.
- **Dask / Ray runners**: each worker is a process (one task at a time), so the task sets its
  own process's count; cores are counted on the worker's host.

Model tasks additionally compute one at a time per process (:func:`pipeline.core.memory
.model_slot`), so in the thread runner a model task and a vote or scoring task share the cores.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from pipeline.core.errors import UserError
from pipeline.core.parallel import available_cores
from pipeline.orchestration.config import RuntimeConfig


@dataclass(frozen=True)
class ComputeBudget:
    """``workers`` concurrent tasks x ``threads`` intra-op threads each, on ``cores`` cores."""

    workers: int
    threads: int
    cores: int

    def describe(self) -> str:
        workers = f"{self.workers} worker{'s' if self.workers != 1 else ''}"
        threads = f"{self.threads} thread{'s' if self.threads != 1 else ''}"
        return f"{workers} x {threads} ({self.cores} cores)"


def resolve_budget(runtime: RuntimeConfig, cores: int | None = None) -> ComputeBudget:
    """The budget ``runtime`` asks for on a host with ``cores`` usable cores (default: this
    process's); raises :class:`UserError` naming ``runtime.workers`` or
    ``runtime.threads_per_worker`` when one is below 1."""
    if isinstance(runtime.workers, bool) or runtime.workers < 1:
        raise UserError(f"runtime.workers must be at least 1, not {runtime.workers!r}")
    threads = runtime.threads_per_worker
    if threads is not None and (isinstance(threads, bool) or threads < 1):
        raise UserError(
            f"runtime.threads_per_worker must be at least 1 or null (auto), not {threads!r}"
        )
    cores = available_cores() if cores is None else cores
    if threads is None:
        threads = max(1, cores // runtime.workers)
    return ComputeBudget(workers=runtime.workers, threads=threads, cores=cores)


def apply_compute_budget(runtime: RuntimeConfig, *, load_torch: bool = True) -> int:
    """Set this process's OpenCV and torch intra-op threads to the budget's threads per worker
    (see the module docstring for why once per process is per worker); returns that number.

    ``load_torch=False`` (a vote or scoring task, which computes without torch) sets torch's
    count only where torch is already loaded, instead of importing it for nothing; a model task
    loads it here, before its model is built.
    """
    import cv2

    threads = resolve_budget(runtime).threads
    if cv2.getNumThreads() != threads:
        cv2.setNumThreads(threads)
    if load_torch or "torch" in sys.modules:
        import torch

        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
    return threads
