"""Operator actions: cancel, retry, run now, and the dead-letter decisions (retry or discard).

One job at a time, each under ``SELECT ... FOR UPDATE`` so an action and the worker's round never
both decide a job's next state; the admin, the API and the dashboard all call these. (Named
``actions`` rather than ``operator`` so it never reads as the standard library's module.)
"""

from __future__ import annotations

from functools import partial
from typing import Any

import redis
from django.db import transaction
from django.utils import timezone

from jobs import metrics
from jobs.errors import IllegalTransition
from jobs.models import RUNNABLE_STATUSES, DeadLetter, Job, JobStatus
from jobs.services._common import announce, broker, emit_jobs, logger


def _on_commit_safely(func: Any, *args: Any) -> None:
    def run() -> None:
        try:
            func(*args)
        except redis.RedisError as exc:
            logger.warning("Redis unavailable (%s); the reconciler will repair the dispatch index", exc)

    transaction.on_commit(run)


def _unplace(job: Job) -> None:
    """Take a cancelled job out of Redis, after any push of it this process still has pending."""
    from jobs.dispatch import flush

    flush()
    broker().cancel([(str(job.id), job.queue)])


def cancel(job_id: Any) -> Job:
    """Cancel a waiting job at once; ask a running job's worker to stop it (``cancel_requested_at``).

    For a running job, after the commit ``cancel.lua`` pushes the id onto the control list of the
    worker holding the lease, which signals the handler at once (and flags it for the next lease
    extension, the fallback). Whatever the handler does next, the attempt ends ``cancelled``: the
    settle statement sees the committed request. Asking again re-sends the request.
    """
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job_id)
        previous = job.status
        if job.status in RUNNABLE_STATUSES:
            now = timezone.now()
            Job.objects.filter(pk=job.pk, status=job.status).update(
                status=JobStatus.CANCELLED, finished_at=now, updated_at=now, cancel_requested_at=now
            )
            _on_commit_safely(_unplace, job)
            transaction.on_commit(
                lambda: metrics.count_final(broker(), job.type, job.queue, JobStatus.CANCELLED)
            )
        elif job.status == JobStatus.RUNNING:
            if job.cancel_requested_at is None:
                Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING).update(
                    cancel_requested_at=timezone.now(), updated_at=timezone.now()
                )
            _on_commit_safely(_unplace, job)
        else:
            raise IllegalTransition(f"cannot cancel a job that is already {job.status}", status=job.status)
        job.refresh_from_db()
        transaction.on_commit(partial(emit_jobs, [job], previous))
    return job


def retry(job_id: Any) -> Job:
    """Send a failed or cancelled job back to its queue; its attempt history is kept and continues."""
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job_id)
        previous = job.status
        if job.status not in (JobStatus.FAILED, JobStatus.CANCELLED):
            raise IllegalTransition(
                f"only failed or cancelled jobs can be retried; this one is {job.status}", status=job.status
            )
        now = timezone.now()
        extra = max(job.max_attempts, job.attempts + 1)
        Job.objects.filter(pk=job.pk, status=job.status).update(
            status=JobStatus.QUEUED,
            max_attempts=extra,
            run_at=None,
            finished_at=None,
            cancel_requested_at=None,
            error="",
            updated_at=now,
        )
        DeadLetter.objects.filter(job_id=job.pk, resolution="").update(
            resolution=DeadLetter.Resolution.RETRIED, resolved_at=now
        )
        job.refresh_from_db()
        transaction.on_commit(partial(announce, [job], previous))
    return job


def run_now(job_id: Any) -> Job:
    """Make a scheduled or retrying job due immediately."""
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job_id)
        previous = job.status
        if job.status not in (JobStatus.SCHEDULED, JobStatus.RETRYING):
            raise IllegalTransition(
                f"only scheduled or retrying jobs can be run now; this one is {job.status}", status=job.status
            )
        Job.objects.filter(pk=job.pk, status=job.status).update(
            status=JobStatus.QUEUED, run_at=None, updated_at=timezone.now()
        )
        job.refresh_from_db()
        transaction.on_commit(partial(announce, [job], previous))
    return job


def retry_dead_letter(dead_letter_id: Any) -> Job:
    """Retry the job behind an open dead letter (the dead letter is marked retried)."""
    dead = DeadLetter.objects.select_related("job").get(pk=dead_letter_id)
    if dead.resolution:
        raise IllegalTransition(f"this dead letter was already {dead.resolution}", status=dead.job.status)
    return retry(dead.job_id)


def discard_dead_letter(dead_letter_id: Any) -> DeadLetter:
    """Close an open dead letter without running the job again; the job stays failed."""
    with transaction.atomic():
        dead = DeadLetter.objects.select_for_update().get(pk=dead_letter_id)
        if dead.resolution:
            raise IllegalTransition(f"this dead letter was already {dead.resolution}")
        dead.resolution = DeadLetter.Resolution.DISCARDED
        dead.resolved_at = timezone.now()
        dead.save(update_fields=["resolution", "resolved_at"])
    return dead
