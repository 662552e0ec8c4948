"""The django.tasks side of ``registry.find``: a task's module path becomes a ``JobType``.

``install()`` adds ``RESOLVER`` to the registry at start-up, so a job whose type is a
task's module path (enqueued by ``JobQueueBackend``, or by an API client for an
``api=True`` task) resolves to a job type in every process; the registry registers it,
so later look-ups are a dict hit. Which names may resolve is ``lookup``'s rule.
The type's defaults are the task's options; its hooks make the worker call the task
the django.tasks way (``backend.run_task`` / ``backend.task_attempt_finished``).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterable
from functools import partial

from django.tasks import Task

from jobs import registry
from jobs.tasks_backend import backend, lookup

_DOTTED = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)+$")


class TaskResolver:
    """A ``registry.Resolver`` for django.tasks tasks: names are module paths of declared ``Task`` objects."""

    def resolve(self, name: str) -> registry.JobType | None:
        if not _DOTTED.match(name):
            return None
        task = lookup.find_task(name)
        return None if task is None else job_type_for(task)

    def declared_names(self) -> Iterable[str]:
        return list(lookup.declared_tasks())


RESOLVER = TaskResolver()


def job_type_for(task: Task) -> registry.JobType:
    """The task as a job type: its options become the type's defaults; the worker calls it via hooks."""
    return registry.JobType(
        name=task.module_path,
        func=task.func,
        queue=task.queue_name,
        priority=task.priority,
        max_attempts=getattr(task, "max_attempts", None),
        backoff=getattr(task, "backoff", None),
        timeout=getattr(task, "timeout", None),
        description=inspect.getdoc(task.func) or "",
        signature=lookup.call_signature(task),
        api_allowed=bool(getattr(task, "api", False)),
        atomic=bool(getattr(task, "atomic", False)),
        result_ttl=getattr(task, "result_ttl", None),
        call=partial(backend.run_task, task, backend.worker_alias(task)),
        on_finished=partial(backend.task_attempt_finished, task),
    )
