"""Django's Tasks framework on jobqueue: ``TASKS = {"default": {"BACKEND": "jobs.backends.JobQueueBackend"}}``

``some_task.enqueue(...)`` records a Job through ``jobs.services`` (PostgreSQL first, the
Redis push on commit) whose ``type`` is the task's module path; workers resolve that
path back to the ``Task`` object (``bridge``, through ``registry.find``) and run it through
two ``JobType`` hooks defined here, which add what django.tasks promises on top of a
plain job: the ``TaskContext`` argument and the ``task_started`` / ``task_finished``
signals in the worker process. Results are read back from the Job and its
``JobAttempt`` rows, so they look the same from any process.

The classes whose dotted path leaves the process as a string (the ``TASKS`` setting, the
signal sender, ``TaskError.exception_class_path``) keep the public path ``jobs.backends.*``
they have always had (``PUBLIC_MODULE``); ``jobs.backends`` re-exports them.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import json
import logging
import re
import string
import uuid
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from datetime import timedelta
from functools import lru_cache, partial
from typing import TYPE_CHECKING, Any, NoReturn

from django.conf import settings
from django.core import checks
from django.db import transaction
from django.tasks import Task, TaskContext, TaskResult, TaskResultStatus
from django.tasks.backends.base import BaseTaskBackend
from django.tasks.base import TaskError
from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
from django.tasks.signals import task_enqueued, task_finished, task_started
from django.utils import timezone
from django.utils.json import normalize_json
from django.utils.module_loading import import_string

from jobs import registry, services
from jobs.backoff import Backoff
from jobs.models import TERMINAL_STATUSES, AttemptOutcome, Job, JobAttempt, JobStatus
from jobs.tasks_backend import lookup

if TYPE_CHECKING:
    from jobs.context import JobContext
    from jobs.values import Claimed, Outcome

# Where users name these classes (TASKS, exception_class_path); jobs/backends.py re-exports them from here.
PUBLIC_MODULE = "jobs.backends"

logger = logging.getLogger(PUBLIC_MODULE)  # the logger name LOGGING configurations already use

OPTION_NAMES = ("max_attempts", "backoff", "timeout", "unique_key", "result_ttl", "api", "atomic")

STATUS_MAP: dict[str, TaskResultStatus] = {
    JobStatus.SCHEDULED: TaskResultStatus.READY,
    JobStatus.QUEUED: TaskResultStatus.READY,
    JobStatus.RETRYING: TaskResultStatus.READY,
    JobStatus.RUNNING: TaskResultStatus.RUNNING,
    JobStatus.SUCCEEDED: TaskResultStatus.SUCCESSFUL,
    JobStatus.FAILED: TaskResultStatus.FAILED,
    JobStatus.CANCELLED: TaskResultStatus.FAILED,
}


class UnknownTaskOption(InvalidTask, TypeError):
    """``@task(...)`` got an option this backend does not define; raised where ``@task`` runs (import)."""


class WorkerLost(Exception):
    """Named in a ``TaskError`` for an attempt whose worker died or lost its lease (nothing was raised)."""

    __module__ = PUBLIC_MODULE  # TaskError.exception_class_path names it


class AttemptFailed(Exception):
    """Named in a ``TaskError`` for an attempt that failed outside the task's code (arguments rejected,
    result not JSON-serialisable, task unknown to the worker)."""

    __module__ = PUBLIC_MODULE  # TaskError.exception_class_path names it


# Attempts that end without an exception of the task's own still need an importable class for TaskError.
_STAND_INS = {
    AttemptOutcome.TIMED_OUT: "builtins.TimeoutError",
    AttemptOutcome.CANCELLED: "jobs.errors.JobCancelled",
    AttemptOutcome.LEASE_EXPIRED: f"{PUBLIC_MODULE}.WorkerLost",
}
_RAISED = re.compile(r"^([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+): ")  # workers.execution: "module.Class: message"


@dataclass(frozen=True, slots=True, kw_only=True)
class JobQueueTask(Task):
    """A ``Task`` with jobqueue's options, which Django 6.1's ``@task(**kwargs)`` passes to ``task_class``."""

    max_attempts: int | None = None  # None: JOBQUEUE_DEFAULT_MAX_ATTEMPTS
    backoff: Backoff | None = None  # given as {base, max, jitter}, a base in seconds, or a Backoff
    timeout: float | None = None  # seconds per attempt; None: JOBQUEUE_DEFAULT_TIMEOUT
    unique_key: bool | str | Callable[..., str | None] | None = None  # True, "welcome:{user_id}", a callable
    result_ttl: float | None = None  # seconds a finished result stays readable through get_result()
    api: bool = False  # may API clients enqueue it by name (POST /api/jobs/)?
    atomic: bool = False  # its database writes commit together with its success, or not at all

    def __new__(cls, *args: Any, **kwargs: Any) -> JobQueueTask:
        # The dataclass __init__ would say only "unexpected keyword argument"; say what exists instead.
        if unknown := sorted(set(kwargs) - _TASK_FIELDS):
            func = kwargs.get("func")
            where = f"{func.__module__}.{func.__qualname__}: " if callable(func) else ""
            raise UnknownTaskOption(
                f"{where}unknown @task option(s) {', '.join(map(repr, unknown))} for "
                f"{JobQueueBackend.__module__}.{JobQueueBackend.__qualname__}; its options are "
                f"{', '.join(OPTION_NAMES)} besides Django's priority, queue_name, backend, takes_context."
            )
        return object.__new__(cls)

    def __post_init__(self) -> None:
        if self.backoff is not None and not isinstance(self.backoff, Backoff):
            object.__setattr__(self, "backoff", _as_backoff(self.backoff, self.func))
        Task.__post_init__(self)  # validates against the backend (slots dataclass: no zero-argument super())
        lookup.declare(self)


_TASK_FIELDS = frozenset(f.name for f in fields(JobQueueTask))


def _as_backoff(value: object, func: Callable[..., Any]) -> Backoff:
    try:
        if isinstance(value, dict):
            return Backoff(**value)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return Backoff(base=float(value))
        raise TypeError(f"expected {{base, max, jitter}} or a number of seconds, got {value!r}")
    except (TypeError, ValueError) as exc:
        raise InvalidTask(f"{func.__module__}.{func.__qualname__}: invalid backoff: {exc}") from exc


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _validate_options(task: JobQueueTask) -> None:
    """Option values, checked where ``@task`` runs (import), as Django checks priority and queue."""

    def bad(message: str) -> NoReturn:
        raise InvalidTask(f"{task.module_path}: {message}")

    limit = settings.JOBQUEUE_MAX_ATTEMPTS_LIMIT
    if task.max_attempts is not None and (
        not isinstance(task.max_attempts, int)
        or isinstance(task.max_attempts, bool)
        or not 1 <= task.max_attempts <= limit
    ):
        bad(f"max_attempts must be a whole number from 1 to {limit} (JOBQUEUE_MAX_ATTEMPTS_LIMIT).")
    if task.timeout is not None and (
        not _is_number(task.timeout) or not 0 < task.timeout <= settings.JOBQUEUE_MAX_TIMEOUT
    ):
        bad(f"timeout must be seconds above 0 and at most {settings.JOBQUEUE_MAX_TIMEOUT:g}.")
    if task.result_ttl is not None and (not _is_number(task.result_ttl) or task.result_ttl < 0):
        bad("result_ttl must be a number of seconds >= 0, or None to keep results until they are pruned.")
    if not isinstance(task.api, bool):
        bad("api must be True or False.")
    if not isinstance(task.atomic, bool):
        bad("atomic must be True or False.")
    if task.atomic and inspect.iscoroutinefunction(task.func):
        bad(
            "atomic=True needs a synchronous function: an async task's ORM calls run on other threads, "
            "outside the job's transaction."
        )
    key = task.unique_key
    if isinstance(key, str):
        params = set(lookup.call_signature(task).parameters)
        try:
            names = [field for _, field, _, _ in string.Formatter().parse(key) if field is not None]
        except ValueError as exc:
            bad(f"unique_key {key!r} is not a valid format string: {exc}.")
        roots = {re.split(r"[.\[]", name, maxsplit=1)[0] for name in names}
        if not key or "" in roots or any(root.isdigit() for root in roots) or not roots <= params:
            bad(f"unique_key {key!r} may only name the task's parameters ({', '.join(sorted(params))}).")
    elif key is not None and not isinstance(key, bool) and not callable(key):
        bad("unique_key must be True, a format string such as 'welcome:{user_id}', or a callable.")


class JobQueueBackend(BaseTaskBackend):
    """Runs ``django.tasks`` tasks as jobqueue jobs, on the same queues, workers, admin and API."""

    __module__ = PUBLIC_MODULE  # as TASKS names it, and as signal receivers see the sender
    task_class = JobQueueTask
    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def validate_task(self, task: Task) -> None:
        super().validate_task(task)
        if isinstance(task, JobQueueTask):
            _validate_options(task)

    def enqueue(self, task: Task, args: Any, kwargs: Any) -> TaskResult:
        """A Job row now; the Redis push and ``task_enqueued`` on commit (not at all on rollback)."""
        self.validate_task(task)
        job_type = registry.find(task.module_path)
        if job_type is None or job_type.func is not task.func:
            raise InvalidTask(
                f"{task.module_path} does not lead back to this task, so no worker could run it: define the "
                "task at module level under its function's name, in an installed app or a JOBQUEUE_IMPORTS "
                "module, and do not reuse a @job type's name."
            )
        args, kwargs = normalize_json(list(args)), normalize_json(dict(kwargs))
        key = _unique_key(task, job_type, args, kwargs)
        spec = services.JobSpec(
            type=task.module_path,
            args=args,
            kwargs=kwargs,
            queue=task.queue_name,
            priority=task.priority,
            run_at=task.run_after,
            max_attempts=getattr(task, "max_attempts", None),
            timeout=getattr(task, "timeout", None),
            backoff=getattr(task, "backoff", None),
        )
        # With a unique key, any later enqueue under that key returns the first job (never a conflict).
        submitted = services.submit(
            spec,
            idempotency_key=key,
            request_fingerprint=None if key is None else services.fingerprint("django.tasks", key),
        )
        job = submitted.job
        if not submitted.created:
            return self._result(job, task, _attempts(job.pk))
        result = TaskResult(
            task=task,
            id=str(job.id),
            status=TaskResultStatus.READY,
            enqueued_at=job.created_at,
            started_at=None,
            last_attempted_at=None,
            finished_at=None,
            args=args,
            kwargs=kwargs,
            backend=self.alias,
            errors=[],
            worker_ids=[],
        )
        transaction.on_commit(partial(task_enqueued.send, type(self), task_result=result), robust=True)
        return result

    def get_result(self, result_id: str) -> TaskResult:
        """The task's state as PostgreSQL has it now; works from any process."""
        try:
            pk = uuid.UUID(str(result_id))
        except ValueError:
            raise TaskResultDoesNotExist(result_id) from None
        job = Job.objects.filter(pk=pk).first()
        if job is None:
            raise TaskResultDoesNotExist(result_id)
        job_type = registry.find(job.type)
        task = lookup.find_task(job.type) if job_type is not None and job_type.call else None
        if task is None:
            raise TaskResultDoesNotExist(f"{result_id} is a jobqueue job of type {job.type!r}, not a task")
        if (
            job_type.result_ttl is not None
            and job.status in TERMINAL_STATUSES
            and job.finished_at is not None
            and job.finished_at + timedelta(seconds=job_type.result_ttl) <= timezone.now()
        ):
            raise TaskResultDoesNotExist(f"{result_id}: expired (result_ttl {job_type.result_ttl:g} s)")
        return self._result(job, task, _attempts(pk))

    def _result(self, job: Job, task: Task, attempts: list[tuple]) -> TaskResult:
        worker_ids = [worker for worker, *_ in attempts]
        if job.status == JobStatus.RUNNING:  # the running attempt's row is written when it ends
            worker_ids.append(job.worker)
        status = STATUS_MAP[job.status]
        variant = _variant(task, self.alias, job.queue, job.priority)
        if job.run_at is not None:
            variant = replace(variant, run_after=job.run_at)
        result = TaskResult(
            task=variant,
            id=str(job.id),
            status=status,
            enqueued_at=job.created_at,
            started_at=attempts[0][1] if attempts else job.started_at,
            last_attempted_at=job.started_at or (attempts[-1][1] if attempts else None),
            finished_at=job.finished_at if job.status in TERMINAL_STATUSES else None,
            args=job.args,
            kwargs=job.kwargs,
            backend=self.alias,
            errors=[task_error(*rest) for _, _, *rest in attempts if rest[0] != AttemptOutcome.SUCCEEDED],
            worker_ids=worker_ids,
        )
        if status == TaskResultStatus.SUCCESSFUL:
            object.__setattr__(result, "_return_value", job.result)
        return result

    def check(self, **kwargs: Any) -> list[checks.CheckMessage]:
        """The TASKS entry itself (Django runs this for every configured backend)."""
        where = f"TASKS[{self.alias!r}]"
        messages: list[checks.CheckMessage] = []
        if bad := sorted(q for q in self.queues if not services.QUEUE_RE.match(q)):
            messages.append(
                checks.Error(
                    f"{where} QUEUES has invalid queue names: {', '.join(map(repr, bad))}.",
                    hint="Use 1-64 letters, digits, '.', '_' or '-'.",
                    id="jobqueue.E101",
                )
            )
        if self.options:
            messages.append(
                checks.Error(
                    f"{where} OPTIONS {sorted(self.options)} are not understood by JobQueueBackend.",
                    hint=f"Per-task options go to @task(...): {', '.join(OPTION_NAMES)}.",
                    id="jobqueue.E102",
                )
            )
        if unserved := sorted(self.queues - set(settings.JOBQUEUE_QUEUES)):
            messages.append(
                checks.Warning(
                    f"{where} QUEUES {unserved} are not in JOBQUEUE_QUEUES, so `runworker` does not serve "
                    "them by default.",
                    hint="Add them to JOBQUEUE_QUEUES, or start workers with --queues naming them.",
                    id="jobqueue.W101",
                )
            )
        return messages


def _attempts(job_id: Any) -> list[tuple]:
    """(worker, started_at, outcome, error, traceback) per finished attempt, oldest first."""
    return list(
        JobAttempt.objects.filter(job_id=job_id)
        .order_by("number")
        .values_list("worker", "started_at", "outcome", "error", "traceback")
    )


def task_error(outcome: str, error: str, tb: str) -> TaskError:
    """A ``JobAttempt``'s failure as django.tasks reports it: an importable exception class, a traceback."""
    path = _STAND_INS.get(outcome)
    if path is None:
        match = _RAISED.match(error)
        path = match.group(1) if match else f"{PUBLIC_MODULE}.AttemptFailed"
    return TaskError(exception_class_path=path, traceback=tb or error)


@lru_cache(maxsize=1024)
def _variant(task: Task, alias: str, queue: str, priority: int) -> Task:
    """The task as a job ran it (queue and priority may differ from its defaults); cached per combination."""
    try:
        return task.using(backend=alias, queue_name=queue, priority=priority)
    except InvalidTask:  # e.g. an API client chose a queue this alias does not list: keep the declared one
        return task


def _unique_key(task: Task, job_type: registry.JobType, args: list, kwargs: dict) -> str | None:
    option = getattr(task, "unique_key", None)
    if option is None or option is False:
        return None
    if option is True:
        value = services.fingerprint(args, kwargs)
    elif isinstance(option, str):
        try:
            bound = lookup.call_signature(task).bind(*args, **kwargs)
        except TypeError:
            return None  # services rejects the arguments with a clear error
        bound.apply_defaults()
        value = option.format(**bound.arguments)
    else:
        value = option(*args, **kwargs)
        if value is None:
            return None
    key = f"task:{task.module_path}:{value}"
    return key if len(key) <= 255 else f"task:{hashlib.sha256(key.encode()).hexdigest()}"


# --------------------------------------------------------------------------- in the worker (JobType hooks)

_started: dict[tuple[str, str], TaskResult] = {}  # (job id, lease token) -> the result task_started carried


def run_task(task: Task, alias: str, job: Claimed, ctx: JobContext) -> Any:
    """``JobType.call``: fire ``task_started``, run the function (a ``TaskContext`` first if it takes one)."""
    result = _running_result(task, alias, job, ctx.worker)
    _started[(job.id, job.token)] = result
    task_started.send_robust(JobQueueBackend, task_result=result)  # a receiver's error must not fail the task
    args = (TaskContext(task_result=result), *job.args) if task.takes_context else job.args
    if inspect.iscoroutinefunction(task.func):
        return asyncio.run(task.func(*args, **job.kwargs))
    return task.func(*args, **job.kwargs)


def task_attempt_finished(task: Task, job: Claimed, ctx: JobContext, outcome: Outcome) -> None:
    """``JobType.on_finished``: fire ``task_finished`` with the attempt's outcome (READY while retrying)."""
    result = _started.pop((job.id, job.token), None)
    if result is None:  # task_started never fired (the hook failed before): nothing to finish
        return
    try:
        status = STATUS_MAP[outcome.status]
        object.__setattr__(result, "status", status)
        if status == TaskResultStatus.SUCCESSFUL:
            object.__setattr__(result, "_return_value", normalize_json(_json(outcome.result_json)))
        else:
            result.errors.append(task_error(outcome.outcome, outcome.error, outcome.traceback))
        if result.is_finished:
            object.__setattr__(result, "finished_at", outcome.finished_at)
        task_finished.send_robust(JobQueueBackend, task_result=result)
    except Exception:  # noqa: BLE001 - the outcome is decided; reporting it must never change it
        logger.exception("task_finished could not be sent for job %s", job.id)


def _json(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _running_result(task: Task, alias: str, job: Claimed, worker: str) -> TaskResult:
    """The RUNNING result of this attempt; earlier attempts are read only when there were some."""
    prior = (
        list(
            JobAttempt.objects.filter(job_id=job.id, number__lt=job.attempt)
            .order_by("number")
            .values_list("worker", "started_at", "outcome", "error", "traceback")
        )
        if job.attempt > 1
        else []
    )
    # One id per attempt (TaskResult.attempts is len(worker_ids)): "" for an attempt with no row.
    workers = [w for w, *_ in prior][: job.attempt - 1]
    workers += [""] * (job.attempt - 1 - len(workers))
    return TaskResult(
        task=_variant(task, alias, job.queue, job.priority),
        id=job.id,
        status=TaskResultStatus.RUNNING,
        enqueued_at=job.created_at,
        started_at=prior[0][1] if prior else job.started_at,
        last_attempted_at=job.started_at,
        finished_at=None,
        args=job.args,
        kwargs=job.kwargs,
        backend=alias,
        errors=[task_error(*rest) for _, _, *rest in prior if rest[0] != AttemptOutcome.SUCCEEDED],
        worker_ids=[*workers, worker],
    )


def worker_alias(task: Task) -> str:
    """The alias a worker reports results under: the task's own if it is a jobqueue backend, else the
    first jobqueue alias in TASKS (a task declared for another backend, enqueued with using(backend=…))."""
    if _is_ours(task.backend):
        return task.backend
    return next((alias for alias in settings.TASKS if _is_ours(alias)), task.backend)


def _is_ours(alias: str) -> bool:
    config = settings.TASKS.get(alias)
    if not config:
        return False
    try:
        backend_class = import_string(config["BACKEND"])
    except ImportError:
        return False
    return isinstance(backend_class, type) and issubclass(backend_class, JobQueueBackend)
