"""The running job's context, reachable from inside a handler without changing its signature.

A handler calls ``current_job()`` to learn its job id and attempt, log progress,
and notice a cancel or timeout (``ctx.cancelled`` is set; ``check_cancelled()``
raises). An operator's cancel sets it within milliseconds of the request's commit
(the worker's control thread), so checking every 50 ms or so is enough. Python
threads cannot be killed, so this cooperative signal comes first; the worker's
supervisor replaces the process only if the handler ignores it. Once a cancel is
requested the job ends ``cancelled`` whatever the handler does afterwards.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from jobs.errors import JobCancelled

_local = threading.local()
logger = logging.getLogger("jobs.handler")


@dataclass
class JobContext:
    job_id: str
    type: str
    queue: str
    attempt: int
    max_attempts: int
    worker: str
    cancelled: threading.Event = field(default_factory=threading.Event)
    reason: str = ""

    def check_cancelled(self) -> None:
        """Raise JobCancelled if the job was cancelled or ran past its timeout."""
        if self.cancelled.is_set():
            raise JobCancelled(self.reason or "cancelled")

    def progress(self, message: str, **fields: object) -> None:
        """Log a progress line carrying the job's identity."""
        logger.info(
            message,
            extra={
                "job_id": self.job_id,
                "type": self.type,
                "queue": self.queue,
                "attempt": self.attempt,
                "worker": self.worker,
                **fields,
            },
        )


def current_job() -> JobContext | None:
    """The context of the job running in this thread, or None outside a job."""
    return getattr(_local, "ctx", None)


def set_current(ctx: JobContext | None) -> None:
    _local.ctx = ctx
