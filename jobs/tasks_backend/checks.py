"""System checks for django.tasks tasks on jobqueue (``manage.py check``, and before runserver/runworker).

``jobs.apps`` registers ``check_declared_tasks`` under the ``jobqueue`` tag at start-up.

Option names and values already fail where ``@task`` runs (``InvalidTask`` at import,
Django's contract). What only shows once every module is loaded is checked here:
whether a worker can find each task again by its module path, whether it collides
with a ``@job`` type, and whether any worker serves its queue by default.
The ``TASKS`` entry itself is checked by ``JobQueueBackend.check()``.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks

from jobs import registry
from jobs.tasks_backend.lookup import declared_tasks


def check_declared_tasks(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Per declared task: can workers find it by its module path, does it clash with a ``@job`` type,
    does any worker serve its queue by default?"""
    messages: list[checks.CheckMessage] = []
    served = set(settings.JOBQUEUE_QUEUES)
    for path, task in sorted(declared_tasks().items()):
        job_type = registry.find(path)
        if job_type is None:
            messages.append(
                checks.Error(
                    f"Task {path} cannot be found again at its module path, so workers would fail to run it.",
                    hint="Keep the @task result under the function's own name at module level, in an "
                    "installed app or in a module listed in JOBQUEUE_IMPORTS.",
                    obj=path,
                    id="jobqueue.E001",
                )
            )
        elif job_type.func is not task.func:
            messages.append(
                checks.Error(
                    f"Task {path} has the name of a @job type registered for {job_type.func!r}.",
                    hint="Rename the @job type: a task's job type name is its module path.",
                    obj=path,
                    id="jobqueue.E002",
                )
            )
        elif task.queue_name not in served:
            messages.append(
                checks.Warning(
                    f"Task {path} uses queue {task.queue_name!r}, which runworker does not serve by default.",
                    hint="Add it to JOBQUEUE_QUEUES, or start workers with --queues naming it.",
                    obj=path,
                    id="jobqueue.W001",
                )
            )
    return messages
