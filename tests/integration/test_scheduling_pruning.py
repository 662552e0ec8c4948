"""Pruning finished jobs by status and age, in batches, keeping open dead letters."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.checks import run_checks
from django.core.management import CommandError, call_command
from django.utils import timezone

from jobs.models import DeadLetter, IdempotencyKey, Job, JobAttempt, JobStatus
from jobs.services import enqueue
from scheduling.models import Schedule
from scheduling.pruning import prune

pytestmark = pytest.mark.django_db

DAY = 86400.0
RETENTION = {"succeeded": 7 * DAY, "cancelled": 7 * DAY, "failed": 30 * DAY}


def finished(status: str, days_ago: float, *, key: str | None = None) -> Job:
    """A job that finished ``days_ago`` days ago, with one attempt (and a dead letter when failed)."""
    job = enqueue("test.ok", idempotency_key=key)
    when = timezone.now() - timedelta(days=days_ago)
    Job.objects.filter(pk=job.pk).update(status=status, finished_at=when, attempts=1)
    JobAttempt.objects.create(job=job, number=1, outcome="succeeded" if status == "succeeded" else "failed")
    if status == JobStatus.FAILED:
        DeadLetter.objects.create(job=job, reason="boom", dead_at=when)
    return job


def exists(job: Job) -> bool:
    return Job.objects.filter(pk=job.pk).exists()


def test_finished_jobs_older_than_their_status_retention_are_deleted_with_their_attempts() -> None:
    old_ok, new_ok = finished("succeeded", 8), finished("succeeded", 6)
    old_cancelled = finished("cancelled", 8)
    report = prune(RETENTION)
    assert not exists(old_ok) and not exists(old_cancelled)
    assert exists(new_ok)
    assert not JobAttempt.objects.filter(job_id=old_ok.pk).exists()
    assert report.deleted == {"succeeded": 1, "cancelled": 1, "failed": 0}


def test_failed_jobs_with_an_open_dead_letter_are_kept_until_resolved() -> None:
    open_letter = finished("failed", 90)
    discarded = finished("failed", 90)
    DeadLetter.objects.filter(job=discarded).update(resolution="discarded", resolved_at=timezone.now())
    recent_discarded = finished("failed", 10)
    DeadLetter.objects.filter(job=recent_discarded).update(resolution="discarded", resolved_at=timezone.now())
    prune(RETENTION)
    assert exists(open_letter) and exists(recent_discarded)
    assert not exists(discarded)
    assert not DeadLetter.objects.filter(job_id=discarded.pk).exists()


def test_active_jobs_and_statuses_without_a_retention_are_never_pruned() -> None:
    queued = enqueue("test.ok")
    Job.objects.filter(pk=queued.pk).update(updated_at=timezone.now() - timedelta(days=400))
    old_ok = finished("succeeded", 400)
    prune({"failed": 30 * DAY})
    assert exists(queued) and exists(old_ok)
    with pytest.raises(ValueError, match="only finished jobs"):
        prune({"queued": DAY})


def test_pruning_works_in_batches_until_nothing_old_is_left() -> None:
    old = [finished("succeeded", 10) for _ in range(7)]
    report = prune({"succeeded": 7 * DAY}, batch=3)
    assert report.deleted == {"succeeded": 7}
    assert report.batches == 3  # 3 + 3 + 1
    assert not Job.objects.filter(pk__in=[j.pk for j in old]).exists()


def test_links_to_a_pruned_job_are_cleared_not_deleted() -> None:
    job = finished("succeeded", 10, key="client-key-1")
    schedule = Schedule.objects.create(name="s", type="test.ok", cron="@daily")
    Schedule.objects.filter(pk=schedule.pk).update(last_job=job)
    prune(RETENTION)
    assert not exists(job)
    schedule.refresh_from_db()
    assert schedule.last_job_id is None
    key = IdempotencyKey.objects.get(key="client-key-1")  # kept for its own retention
    assert key.job_id is None


def test_dry_run_counts_without_deleting() -> None:
    old = finished("succeeded", 10)
    report = prune(RETENTION, dry_run=True)
    assert report.deleted["succeeded"] == 1 and exists(old)
    assert report.summary().startswith("pruning would delete 1 job(s)")


def test_prunejobs_command_deletes_and_reports_counts(settings) -> None:
    settings.JOBQUEUE_RETENTION = RETENTION
    old = finished("succeeded", 10)
    out = StringIO()
    call_command("prunejobs", stdout=out)
    assert not exists(old)
    assert "deleted 1 job(s): cancelled=0 failed=0 succeeded=1" in out.getvalue()


def test_prunejobs_retention_option_overrides_and_is_validated() -> None:
    old = finished("succeeded", 2)
    out = StringIO()
    call_command("prunejobs", "--retention", "succeeded=1d", stdout=out)
    assert not exists(old)
    with pytest.raises(CommandError, match="only finished statuses can be pruned, not running"):
        call_command("prunejobs", "--retention", "running=1d")
    with pytest.raises(CommandError, match="--retention"):
        call_command("prunejobs", "--retention", "succeeded=soon")


def test_a_retention_for_an_unfinished_status_fails_the_system_check(settings) -> None:
    settings.JOBQUEUE_RETENTION = {"running": DAY}
    ids = [error.id for error in run_checks()]
    assert "scheduling.E002" in ids


def test_every_relation_to_a_job_is_handled_inside_the_one_delete_statement() -> None:
    """A new model pointing at Job must not silently push pruning onto the slow ORM path."""
    from jobs.services.deletion import database_actions as related_statements

    statements = related_statements()
    assert statements is not None
    assert any("jobs_jobattempt" in s for s in statements) and any(
        "scheduling_schedule" in s for s in statements
    )
