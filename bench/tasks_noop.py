"""The no-op django.tasks task bench/tasks_drain.py enqueues; workers import it through JOBQUEUE_IMPORTS."""

from __future__ import annotations

from django.tasks import task


@task()
def noop() -> None:
    return None
