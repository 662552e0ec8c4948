"""Running one claimed job: resolve its handler, call it, and turn what happened into an Outcome.

Nothing a handler does can escape this function: unknown types, rejected
arguments, exceptions, cancels and timeouts all become an attempt outcome.

A handler signalled to stop before it returned ends ``cancelled`` (or ``timed_out``) whatever it
did: returned, raised, or raised ``PermanentError``. That is the rule as far as this worker knows;
a cancel request that committed before the signal arrived is applied by the settle statement
(``finish_attempts`` in ``jobs/services/queries.sql``), which sees ``cancel_requested_at``.

An atomic job type (``@job(..., atomic=True)``) runs its handler inside ``transaction.atomic()`` on
this thread's connection and records its success in that same transaction (``services.finish_atomic``,
the settle's finish for one row, lease-fenced): the handler's writes commit if and only if the job
succeeds. Anything else (an exception, a timeout or cancel, a refused finish: lease lost, cancel
request committed first) rolls them back and goes the batched way as an ordinary failed attempt.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
import traceback
from dataclasses import dataclass

from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections, transaction

from jobs import registry, services
from jobs.context import JobContext, set_current
from jobs.errors import JobCancelled, PermanentError
from jobs.models import AttemptOutcome, JobStatus
from jobs.values import Claimed, Outcome

logger = logging.getLogger("workers.execution")

CANCELLED_BY_OPERATOR = "cancelled by an operator"


@dataclass(frozen=True, slots=True)
class Finished:
    """An atomic job's success, already committed with the handler's writes: the caller releases it
    (``services.after_atomic_finish``) instead of handing it to the batched settle."""

    outcome: Outcome


class _RolledBack(Exception):  # noqa: N818 - not an error: leaves transaction.atomic() with an outcome
    def __init__(self, outcome: Outcome) -> None:
        self.outcome = outcome


@dataclass
class Running:
    """A job handed to a thread; the watchdog reads its deadline and flags."""

    job: Claimed
    ctx: JobContext
    timeout: float
    started: float | None = None  # monotonic, set when a thread picks it up
    timed_out: bool = False
    signalled_at: float | None = None  # when cancel/timeout was signalled (monotonic)
    done: bool = False  # the handler returned (or raised); a flag, never waited on

    def signal(self, reason: str, *, timed_out: bool = False) -> None:
        if self.signalled_at is None:
            self.timed_out = timed_out
            self.ctx.reason = reason
            self.signalled_at = time.monotonic()
            self.ctx.cancelled.set()


def effective_timeout(job: Claimed, default: float) -> float:
    if job.timeout:
        return float(job.timeout)
    job_type = registry.find(job.type)
    return float(job_type.timeout) if job_type and job_type.timeout else default


def _log(level: int, job: Claimed, worker: str, outcome: Outcome, duration: float) -> None:
    logger.log(
        level,
        "job %s %s: %s",
        job.type,
        outcome.status,
        outcome.error.splitlines()[0] if outcome.error else "",
        extra={
            "job_id": job.id,
            "type": job.type,
            "queue": job.queue,
            "attempt": job.attempt,
            "worker": worker,
            "duration_ms": round(duration * 1000, 1),
            "outcome": outcome.outcome,
        },
    )


def execute(running: Running, worker: str) -> Outcome | Finished:
    """Run the handler in this thread and report the attempt's outcome (``Finished`` when an atomic
    job's success is already committed)."""
    job = running.job
    running.started = time.monotonic()
    job_type = registry.find(job.type)
    if job_type is None:
        outcome = services.after_failure(
            job,
            AttemptOutcome.FAILED,
            f"unknown job type {job.type!r}: no handler is registered under that name in worker {worker}",
        )
    elif problem := job_type.check_arguments(job.args, job.kwargs):
        outcome = services.after_failure(
            job, AttemptOutcome.FAILED, f"the handler rejected its arguments: {problem}", permanent=True
        )
    elif running.ctx.cancelled.is_set():
        outcome = services.after_failure(
            job, AttemptOutcome.CANCELLED, running.ctx.reason or CANCELLED_BY_OPERATOR
        )
    elif job_type.atomic:
        finished = _call_atomic(job_type, running, worker)
        outcome = finished.outcome if isinstance(finished, Finished) else finished
        if job_type.on_finished is not None:
            job_type.on_finished(job, running.ctx, outcome)
        _done(job, worker, outcome, running)
        return finished
    else:
        outcome = _call(job_type, running)
        if job_type.on_finished is not None:
            job_type.on_finished(job, running.ctx, outcome)
    _done(job, worker, outcome, running)
    return outcome


def _done(job: Claimed, worker: str, outcome: Outcome, running: Running) -> None:
    assert running.started is not None
    duration = time.monotonic() - running.started
    if outcome.outcome != AttemptOutcome.SUCCEEDED:
        _log(logging.WARNING, job, worker, outcome, duration)
    elif logger.isEnabledFor(logging.DEBUG):  # no per-job line at INFO on the hot path
        _log(logging.DEBUG, job, worker, outcome, duration)
    running.done = True


def _call_atomic(job_type: registry.JobType, running: Running, worker: str) -> Outcome | Finished:
    """The handler and the record of its success in one transaction; any other ending rolls it back."""
    job = running.job
    committed = False
    try:
        with transaction.atomic():
            outcome = _call(job_type, running, tidy=False)
            if outcome.outcome != AttemptOutcome.SUCCEEDED:  # raised, timed out, cancelled, bad result
                raise _RolledBack(outcome)
            services.finish_atomic(outcome, worker)
        committed = True
    except _RolledBack as rolled_back:
        return rolled_back.outcome
    except services.AtomicFinishRefused as refused:
        logger.warning("%s; the handler's database writes were rolled back", refused)
        if refused.status == JobStatus.CANCELLED:
            return services.after_failure(
                job,
                AttemptOutcome.CANCELLED,
                f"{CANCELLED_BY_OPERATOR}; its database writes were rolled back",
            )
        # The lease is someone else's now: the batched finish will refuse this outcome too (token fence).
        return services.after_failure(
            job, AttemptOutcome.LEASE_EXPIRED, "lease lost before the job's success was recorded"
        )
    except DatabaseError as exc:  # the handler broke the transaction, or the finish or COMMIT failed
        return services.after_failure(
            job,
            AttemptOutcome.FAILED,
            f"the atomic job's success could not be committed: {_describe(exc)}",
            traceback.format_exc(),
        )
    finally:
        # A commit proves the connection works: only its age may retire it (no per-job health check).
        _tidy_if_old() if committed else _tidy_connections()
    return Finished(outcome)


def _call(job_type: registry.JobType, running: Running, *, tidy: bool = True) -> Outcome:
    job, func = running.job, job_type.func
    set_current(running.ctx)
    try:
        if job_type.call is not None:
            result = job_type.call(job, running.ctx)
        elif inspect.iscoroutinefunction(func):
            result = asyncio.run(func(*job.args, **job.kwargs))
        else:
            result = func(*job.args, **job.kwargs)
    except JobCancelled as exc:
        return _interrupted(running, str(exc))
    except PermanentError as exc:
        if running.ctx.cancelled.is_set():
            return _interrupted(running, f"{running.ctx.reason} ({_describe(exc)})")
        return services.after_failure(
            job, AttemptOutcome.FAILED, _describe(exc), traceback.format_exc(), permanent=True
        )
    except Exception as exc:  # noqa: BLE001 - a handler's failure is data, never a worker crash
        if running.ctx.cancelled.is_set():
            return _interrupted(running, f"{running.ctx.reason} ({_describe(exc)})")
        return services.after_failure(job, AttemptOutcome.FAILED, _describe(exc), traceback.format_exc())
    finally:
        set_current(None)
        if tidy:  # not inside an atomic job's transaction: the caller tidies after it ends
            _tidy_connections()
    if running.ctx.cancelled.is_set():
        return _interrupted(running, running.ctx.reason)
    return services.succeeded(job, result)


def _interrupted(running: Running, reason: str) -> Outcome:
    if running.timed_out:
        return services.after_failure(running.job, AttemptOutcome.TIMED_OUT, reason)
    return services.after_failure(running.job, AttemptOutcome.CANCELLED, reason or CANCELLED_BY_OPERATOR)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__module__}.{type(exc).__qualname__}: {exc}"


def _tidy_if_old() -> None:
    """Close this thread's default connection once it outlived ``CONN_MAX_AGE`` (after a commit)."""
    conn = connections[DEFAULT_DB_ALIAS]
    if conn.close_at is not None and time.monotonic() >= conn.close_at:
        _tidy_connections()


def _tidy_connections() -> None:
    """A handler that used the ORM may leave a broken connection in this thread; drop it if so."""
    for conn in connections.all(initialized_only=True):
        conn.close_if_unusable_or_obsolete()
