"""Module-level django.tasks tasks for the tests; workers import this module through JOBQUEUE_IMPORTS.

The signal receivers at the bottom record each django.tasks signal for these tasks
in a Redis list under the test's own key prefix, with the process id that sent it,
so a test can tell which process fired which signal.
"""

from __future__ import annotations

import asyncio
import json
import os

from django.conf import settings
from django.dispatch import receiver
from django.tasks import TaskContext, task
from django.tasks.signals import task_enqueued, task_finished, task_started

from jobs.errors import PermanentError
from tests.support.jobtypes import sleep_cooperatively


@task()
def add(a: int, b: int = 0) -> int:
    return a + b


@task(
    priority=10, queue_name="high", max_attempts=5, timeout=30, backoff={"base": 0.1, "max": 0.5, "jitter": 0}
)
def send_welcome(user_id: int) -> str:
    """The README's example."""
    return f"welcome {user_id}"


@task()
async def async_double(value: int) -> dict:
    await asyncio.sleep(0.01)
    return {"doubled": value * 2}


@task(takes_context=True, max_attempts=3, backoff={"base": 0.1, "max": 0.2, "jitter": 0})
def context_probe(context: TaskContext, fail_until: int = 0) -> dict:
    """Fails its first ``fail_until`` attempts; then reports what its context says."""
    if context.attempt <= fail_until:
        raise RuntimeError(f"failing attempt {context.attempt} on purpose")
    return {
        "attempt": context.attempt,
        "id": context.task_result.id,
        "worker_ids": context.task_result.worker_ids,
        "errors": [e.exception_class_path for e in context.task_result.errors],
    }


@task(takes_context=True)
async def async_context_probe(context: TaskContext) -> list:
    return [context.attempt, context.task_result.id]


@task(max_attempts=2, backoff={"base": 0.1, "max": 0.1, "jitter": 0})
def always_fails(message: str = "boom") -> None:
    raise ValueError(message)


@task(max_attempts=5)
def fails_permanently() -> None:
    raise PermanentError("no point retrying")


@task(max_attempts=1, timeout=0.5)
def sleeps(seconds: float = 5.0) -> str:
    """Sleeps cooperatively, so a timeout or cancel stops it promptly."""
    return sleep_cooperatively(seconds)


@task(queue_name="low")
def echo(value: object = None) -> object:
    return value


@task(unique_key="welcome:{user_id}")
def unique_welcome(user_id: int, lang: str = "en") -> str:
    return f"{lang}:{user_id}"


@task(unique_key=True)
def unique_by_arguments(value: int) -> int:
    return value


@task(api=True, result_ttl=60)
def exposed(value: int = 0) -> int:
    return value


def plain_function() -> str:
    """Not a task: the worker must never run it, even if a job names it."""
    return "ran"


# --------------------------------------------------------------------------- signal recording

_SIGNALS = {id(task_enqueued): "enqueued", id(task_started): "started", id(task_finished): "finished"}


def signals_key() -> str:
    return f"{settings.JOBQUEUE_REDIS_PREFIX}:test:signals"


@receiver(task_enqueued)
@receiver(task_started)
@receiver(task_finished)
def _record(sender: object, task_result: object, signal: object, **kwargs: object) -> None:
    # Only this module's tasks, and only under a test's own key prefix (never pollute a shared one).
    if not task_result.task.module_path.startswith(
        __name__ + "."
    ) or not settings.JOBQUEUE_REDIS_PREFIX.startswith("jqt-"):
        return
    from jobs.dispatch import get_broker

    event = {
        "signal": _SIGNALS[id(signal)],
        "sender": f"{sender.__module__}.{sender.__qualname__}",
        "id": task_result.id,
        "task": task_result.task.module_path,
        "status": str(task_result.status),
        "attempts": task_result.attempts,
        "errors": [e.exception_class_path for e in task_result.errors],
        "pid": os.getpid(),
    }
    get_broker().client.rpush(signals_key(), json.dumps(event))
