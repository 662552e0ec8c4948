"""How a job type name no ``@job`` registered becomes a django.tasks ``Task`` (``registry.find``'s fallback).

A task is stored as a Job whose ``type`` is the task's module path. Resolving such a
name must never turn a caller-chosen string into an arbitrary callable, so:

- only an object that *is* a ``django.tasks.Task``, found at exactly its own
  ``module_path``, is accepted: a plain function, a class or a builtin never is;
- a module is imported only if it belongs to an installed app or is listed in
  ``JOBQUEUE_IMPORTS``; any other module is looked up only if already imported;
- attributes are read with ``inspect.getattr_static``: no module ``__getattr__``
  or descriptor runs on a caller's behalf.

A resolved task is registered as a ``JobType`` (so later look-ups are a dict hit),
with the task's options as the type's defaults and the hooks that make the worker
call it the django.tasks way (``jobs.backends``).
"""

from __future__ import annotations

import inspect
import re
import sys
import threading
from functools import partial
from importlib import import_module
from types import ModuleType

from django.apps import apps
from django.conf import settings
from django.tasks import Task

from jobs import registry

_DOTTED = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)+$")
_lock = threading.Lock()
# module path -> the first Task constructed under it (the @task decorator's), for the system checks.
_declared: dict[str, Task] = {}


def declare(task: Task) -> None:
    """Remember a constructed task (called by ``JobQueueTask``) so the system checks can vet it."""
    _declared.setdefault(task.module_path, task)


def declared_tasks() -> dict[str, Task]:
    return dict(_declared)


def resolve_task(name: str) -> registry.JobType | None:
    """The job type for the ``Task`` at dotted path ``name``, registering it; None if there is none."""
    if not _DOTTED.match(name):
        return None
    task = find_task(name)
    if task is None:
        return None
    with _lock:
        try:
            return registry.register(job_type_for(task))
        except ValueError:  # the name is a @job type's with another function: never shadow it
            return None


def find_task(name: str) -> Task | None:
    """The ``Task`` object whose module path is ``name``, or None; imports only trusted modules."""
    parts = name.split(".")
    for split in range(len(parts) - 1, 0, -1):
        module = _module(".".join(parts[:split]))
        if module is None:
            continue
        obj: object = module
        for attr in parts[split:]:
            obj = inspect.getattr_static(obj, attr, None)
            if obj is None:
                return None
        # The longest importable prefix decides: the rest must be attributes of it.
        return obj if isinstance(obj, Task) and obj.module_path == name else None
    return None


def _module(module_name: str) -> ModuleType | None:
    module = sys.modules.get(module_name)
    if module is not None or not _may_import(module_name):
        return module
    try:
        return import_module(module_name)
    except ModuleNotFoundError as exc:
        # Only "this module does not exist"; a broken module's own failed import must surface.
        if exc.name and (exc.name == module_name or module_name.startswith(exc.name + ".")):
            return None
        raise


def _may_import(module_name: str) -> bool:
    trusted = [config.name for config in apps.get_app_configs()] + list(settings.JOBQUEUE_IMPORTS)
    return any(module_name == root or module_name.startswith(root + ".") for root in trusted)


def call_signature(task: Task) -> inspect.Signature:
    """The parameters a caller passes: without the ``context`` the worker supplies."""
    signature = inspect.signature(task.func)
    if task.takes_context:
        signature = signature.replace(parameters=list(signature.parameters.values())[1:])
    return signature


def job_type_for(task: Task) -> registry.JobType:
    """The task as a job type: its options become the type's defaults; the worker calls it via hooks."""
    from jobs import backends  # jobs.backends imports this module

    signature = call_signature(task)
    return registry.JobType(
        name=task.module_path,
        func=task.func,
        queue=task.queue_name,
        priority=task.priority,
        max_attempts=getattr(task, "max_attempts", None),
        backoff=getattr(task, "backoff", None),
        timeout=getattr(task, "timeout", None),
        description=inspect.getdoc(task.func) or "",
        signature=signature,
        api_allowed=bool(getattr(task, "api", False)),
        result_ttl=getattr(task, "result_ttl", None),
        call=partial(backends.run_task, task, backends.worker_alias(task)),
        on_finished=partial(backends.task_attempt_finished, task),
    )
