"""`manage.py runworker` as a real process: order, delays, retries, dead letters and bad jobs."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from jobs import dispatch, registry, services
from jobs.models import AttemptOutcome, DeadLetter, Job, JobAttempt, JobStatus
from tests.support.helpers import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def _status(job: Job) -> str:
    return Job.objects.get(pk=job.pk).status


def _all_finished(jobs: list[Job]) -> bool:
    return (
        not Job.objects.filter(pk__in=[j.pk for j in jobs])
        .exclude(status__in=[JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED])
        .exists()
    )


@pytest.mark.parametrize("prefetch", ["0", "16"])
def test_highest_priority_runs_first_then_fifo_by_sequence(start_worker, prefetch):
    """With a prefetch one claim takes the whole batch: its jobs still start in the order Redis popped."""
    low = [services.enqueue("test.ok", kwargs={"value": f"low{i}"}, priority=-5) for i in range(3)]
    high = [services.enqueue("test.ok", kwargs={"value": f"high{i}"}, priority=50) for i in range(3)]
    mid = [services.enqueue("test.ok", kwargs={"value": f"mid{i}"}) for i in range(3)]
    jobs = low + high + mid
    dispatch.flush()  # every job is in Redis before the worker pops its first batch

    start_worker("--queues", "default", "--threads", "1", "--prefetch", prefetch)
    wait_until(lambda: _all_finished(jobs), what="all jobs to finish")

    # One thread runs them one after another; a batch claim gives its jobs one started_at, so the
    # order they ran in is the order they finished in.
    order = list(Job.objects.order_by("finished_at").values_list("result", flat=True))
    assert order == ["high0", "high1", "high2", "mid0", "mid1", "mid2", "low0", "low1", "low2"]


def test_queues_are_served_in_the_order_given(start_worker):
    low = services.enqueue("test.ok", kwargs={"value": "low"}, queue="low")
    high = services.enqueue("test.ok", kwargs={"value": "high"}, queue="high")
    default = services.enqueue("test.ok", kwargs={"value": "default"}, queue="default")

    start_worker("--queues", "high,default,low", "--threads", "1", "--prefetch", "0")
    wait_until(lambda: _all_finished([low, high, default]), what="all jobs to finish")

    assert list(Job.objects.order_by("started_at").values_list("queue", flat=True)) == [
        "high",
        "default",
        "low",
    ]


def test_delayed_job_runs_when_due_and_not_before(start_worker):
    start_worker("--queues", "default")
    due = timezone.now() + timedelta(seconds=2)
    job = services.enqueue("test.ok", run_at=due)

    wait_until(lambda: _status(job) == JobStatus.SUCCEEDED, what="the delayed job to run")
    stored = Job.objects.get(pk=job.pk)
    assert stored.started_at >= due
    assert stored.started_at - due < timedelta(seconds=1.5)


def test_retry_delays_grow_exponentially_and_end_in_the_dead_letters(start_worker):
    job = services.enqueue("test.fail", kwargs={"message": "always broken"}, max_attempts=4)
    start_worker("--queues", "default")

    wait_until(lambda: _status(job) == JobStatus.FAILED, timeout=30, what="the job to fail for good")
    attempts = list(JobAttempt.objects.filter(job=job).order_by("number"))
    assert [a.number for a in attempts] == [1, 2, 3, 4]
    assert all(a.outcome == AttemptOutcome.FAILED for a in attempts)
    assert all("always broken" in a.error and "Traceback" in a.traceback for a in attempts)
    # test.fail backs off 0.2 s * 2**(n-1) (+-25 % jitter, capped at 1 s): the gaps grow.
    gaps = [
        (b.started_at - a.finished_at).total_seconds() for a, b in zip(attempts, attempts[1:], strict=False)
    ]
    assert 0.15 * 0.75 <= gaps[0] < gaps[2]
    dead = DeadLetter.objects.get(job=job)
    assert [entry["attempt"] for entry in dead.errors] == [1, 2, 3, 4]
    assert all("always broken" in entry["error"] for entry in dead.errors)
    assert Job.objects.get(pk=job.pk).attempts == 4


def test_a_flaky_job_succeeds_on_a_later_attempt(start_worker):
    job = services.enqueue("test.flaky", kwargs={"fail_times": 2}, max_attempts=3)
    start_worker("--queues", "default")

    wait_until(lambda: _status(job) == JobStatus.SUCCEEDED, what="the flaky job to succeed")
    stored = Job.objects.get(pk=job.pk)
    assert stored.result == "succeeded on attempt 3"
    assert list(stored.attempt_set.values_list("outcome", flat=True)) == ["failed", "failed", "succeeded"]
    assert not DeadLetter.objects.filter(job=job).exists()


def test_permanent_error_skips_the_remaining_attempts(start_worker):
    job = services.enqueue("test.permanent", max_attempts=5)
    start_worker("--queues", "default")

    wait_until(lambda: _status(job) == JobStatus.FAILED, what="the job to fail")
    assert JobAttempt.objects.filter(job=job).count() == 1
    assert "cannot ever work" in DeadLetter.objects.get(job=job).reason


def test_unknown_job_type_ends_in_the_dead_letters_and_the_worker_keeps_going(start_worker):
    """The type exists where it was enqueued (this process) but not in the worker, as in a rolling deploy."""
    registry.job("test.only_in_the_web_process")(lambda: None)
    try:
        ghost = services.enqueue("test.only_in_the_web_process", max_attempts=1)
    finally:
        registry.unregister("test.only_in_the_web_process")
    start_worker("--queues", "default")

    wait_until(lambda: _status(ghost) == JobStatus.FAILED, what="the unknown job to fail")
    assert "unknown job type 'test.only_in_the_web_process'" in DeadLetter.objects.get(job=ghost).reason
    after = services.enqueue("test.ok", kwargs={"value": 1})
    wait_until(lambda: _status(after) == JobStatus.SUCCEEDED, what="the worker to keep running jobs")


def test_arguments_the_handler_rejects_fail_permanently_with_a_clear_error(start_worker):
    job = services.enqueue("test.needs_args", kwargs={"count": 2}, max_attempts=3)
    Job.objects.filter(pk=job.pk).update(kwargs={"amount": 2})  # e.g. the handler's signature changed since
    start_worker("--queues", "default")

    wait_until(lambda: _status(job) == JobStatus.FAILED, what="the job to fail")
    attempt = JobAttempt.objects.get(job=job)
    assert "the handler rejected its arguments" in attempt.error
    assert "count" in attempt.error


def test_a_handler_past_its_timeout_is_stopped_and_retried_then_dead_lettered(start_worker):
    job = services.enqueue("test.sleep", kwargs={"seconds": 30}, timeout=0.5, max_attempts=2)
    start_worker("--queues", "default")

    wait_until(lambda: _status(job) == JobStatus.FAILED, timeout=30, what="the job to time out twice")
    attempts = list(JobAttempt.objects.filter(job=job).order_by("number"))
    assert [a.outcome for a in attempts] == [AttemptOutcome.TIMED_OUT, AttemptOutcome.TIMED_OUT]
    assert all("timed out after 0.5s" in a.error for a in attempts)
    assert all(a.duration < 5 for a in attempts)


def test_many_jobs_across_processes_each_finish_exactly_once(start_worker):
    jobs = services.enqueue_many([{"type": "test.ok", "kwargs": {"value": i}} for i in range(500)])
    start_worker("--queues", "default", "--processes", "2", "--threads", "4", "--prefetch", "8")

    wait_until(lambda: _all_finished(jobs), timeout=60, what="500 jobs to finish")
    assert Job.objects.filter(status=JobStatus.SUCCEEDED, attempts=1).count() == 500
    assert JobAttempt.objects.count() == 500
