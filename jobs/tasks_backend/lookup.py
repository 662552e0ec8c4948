"""Finding a django.tasks ``Task`` by its module path, and the tasks declared so far.

A task is stored as a Job whose ``type`` is the task's module path. Turning such a name
back into a task must never turn a caller-chosen string into an arbitrary callable, so:

- only an object that *is* a ``django.tasks.Task``, found at exactly its own
  ``module_path``, is accepted: a plain function, a class or a builtin never is;
- a module is imported only if it belongs to an installed app or is listed in
  ``JOBQUEUE_IMPORTS``; any other module is looked up only if already imported;
- attributes are read with ``inspect.getattr_static``: no module ``__getattr__``
  or descriptor runs on a caller's behalf.

Its own module (below ``backend`` and ``bridge``, which both need it), so neither imports the other back.
"""

from __future__ import annotations

import inspect
import sys
from importlib import import_module
from types import ModuleType

from django.apps import apps
from django.conf import settings
from django.tasks import Task

# module path -> the first Task constructed under it (the @task decorator's), for the system checks.
_declared: dict[str, Task] = {}


def declare(task: Task) -> None:
    """Remember a constructed task (called by ``JobQueueTask``) so the system checks can vet it."""
    _declared.setdefault(task.module_path, task)


def declared_tasks() -> dict[str, Task]:
    return dict(_declared)


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
