"""Prefect's run logs without tracebacks for the errors a user causes.

Prefect logs a failed task or flow with its traceback, at every level it passes (the task, the
sub-flow, the flow). For a :class:`~pipeline.core.errors.UserError` (a bad path, a refused
checkpoint, a full disk) the traceback says nothing the one-line message does not, and in a
run with many videos it buries that line under hundreds of others. The filter keeps the
record and drops only its traceback; any other exception keeps it.
"""

from __future__ import annotations

import logging

from pipeline.core.errors import UserError

PREFECT_RUN_LOGGERS = ("prefect.task_runs", "prefect.flow_runs", "prefect.task_engine")


class UserErrorTracebacks(logging.Filter):
    """Drop the traceback of a record whose exception is a :class:`UserError`."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], UserError):
            record.exc_info = None
            record.exc_text = None
        return True


def quiet_user_error_tracebacks() -> None:
    """Install :class:`UserErrorTracebacks` on Prefect's run loggers (once per process)."""
    for name in (*PREFECT_RUN_LOGGERS, "prefect.flow_engine"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, UserErrorTracebacks) for f in logger.filters):
            logger.addFilter(UserErrorTracebacks())
