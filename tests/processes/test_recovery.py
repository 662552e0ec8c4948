"""Nothing is lost: a killed worker, a flushed or unreachable Redis, dropped database connections."""

from __future__ import annotations

import signal

import pytest
from django.db import connection

from jobs import dispatch, services
from jobs.dispatch import reset_broker
from jobs.models import AttemptOutcome, Job, JobAttempt, JobStatus
from tests.support.helpers import wait_until
from workers.broker import Broker

pytestmark = pytest.mark.django_db(transaction=True)


def _lose_redis_data(broker: Broker) -> None:
    """FLUSHALL for this test's keys only (epoch included), so concurrent test runs keep theirs."""
    keys = list(broker.client.scan_iter(match=f"{broker.prefix}:*", count=1000))
    assert keys
    broker.client.unlink(*keys)


def _status(job: Job) -> str:
    return Job.objects.get(pk=job.pk).status


def test_kill_9_mid_job_is_recovered_after_the_lease_expires_and_finishes_once(start_worker):
    """Invariant 2: the reaper writes PostgreSQL first, counting the lost attempt, then re-queues."""
    job = services.enqueue("test.sleep", kwargs={"seconds": 1.5}, max_attempts=3)
    first = start_worker("--queues", "default")
    wait_until(lambda: _status(job) == JobStatus.RUNNING, what="the job to start")
    first.kill()  # SIGKILL the supervisor and its child: no chance to clean up

    start_worker("--queues", "default")
    wait_until(lambda: _status(job) == JobStatus.SUCCEEDED, timeout=30, what="the job to be recovered")
    stored = Job.objects.get(pk=job.pk)
    assert stored.attempts == 2
    outcomes = list(JobAttempt.objects.filter(job=job).order_by("number").values_list("outcome", flat=True))
    assert outcomes == [AttemptOutcome.LEASE_EXPIRED, AttemptOutcome.SUCCEEDED]
    assert stored.result == "slept" and stored.finished_at is not None


def test_a_crashing_child_is_restarted_and_its_job_retried(start_worker):
    job = services.enqueue("test.crash_once", max_attempts=3)
    worker = start_worker("--queues", "default")

    wait_until(
        lambda: _status(job) == JobStatus.SUCCEEDED, timeout=30, what="the job to succeed after a crash"
    )
    attempts = list(JobAttempt.objects.filter(job=job).order_by("number"))
    assert [a.outcome for a in attempts] == [AttemptOutcome.LEASE_EXPIRED, AttemptOutcome.SUCCEEDED]
    assert attempts[0].worker != attempts[1].worker  # a new process ran the second attempt
    assert worker.popen.poll() is None  # the supervisor itself is still running


def test_redis_flushall_is_rebuilt_by_the_reconciler_and_every_job_finishes(start_worker, broker):
    """Invariant 6: a new epoch makes the reconciler rebuild every non-terminal job from PostgreSQL."""
    jobs = services.enqueue_many([{"type": "test.ok", "kwargs": {"value": i}} for i in range(50)])
    dispatch.flush()  # the background push must have landed before the data is lost
    _lose_redis_data(broker)  # as a Redis restart without persistence would

    start_worker("--queues", "default")
    wait_until(
        lambda: Job.objects.filter(pk__in=[j.pk for j in jobs], status=JobStatus.SUCCEEDED).count() == 50,
        timeout=30,
        what="all 50 jobs to finish after the flush",
    )
    assert JobAttempt.objects.filter(job__in=jobs).count() == 50


def test_redis_flush_while_jobs_run_loses_nothing(start_worker, broker):
    jobs = services.enqueue_many(
        [{"type": "test.sleep", "kwargs": {"seconds": 0.3}} for _ in range(6)]
        + [{"type": "test.ok", "kwargs": {"value": i}} for i in range(20)]
    )
    start_worker("--queues", "default", "--threads", "2", "--prefetch", "0")
    wait_until(lambda: Job.objects.filter(status=JobStatus.RUNNING).exists(), what="jobs to start")
    _lose_redis_data(broker)

    wait_until(
        lambda: Job.objects.filter(pk__in=[j.pk for j in jobs], status=JobStatus.SUCCEEDED).count() == 26,
        timeout=40,
        what="all jobs to finish after a flush mid-run",
    )


def test_a_job_enqueued_while_redis_is_down_runs_once_redis_is_back(start_worker, settings):
    real_url = settings.REDIS_URL
    settings.REDIS_URL = "unix:///nonexistent/redis.sock"
    reset_broker()
    job = services.enqueue("test.ok", kwargs={"value": "late"})
    settings.REDIS_URL = real_url
    reset_broker()
    assert _status(job) == JobStatus.QUEUED

    start_worker("--queues", "default")
    wait_until(lambda: _status(job) == JobStatus.SUCCEEDED, timeout=20, what="the reconciler to dispatch it")
    assert Job.objects.get(pk=job.pk).result == "late"


def test_worker_survives_its_database_connections_being_killed(start_worker):
    """As in a PostgreSQL restart: the worker logs, backs off, reconnects, and finishes every job once."""
    worker = start_worker("--queues", "default", "--threads", "2")
    first = services.enqueue_many([{"type": "test.sleep", "kwargs": {"seconds": 0.2}} for _ in range(10)])
    wait_until(lambda: Job.objects.filter(status=JobStatus.SUCCEEDED).exists(), what="work to begin")

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    second = services.enqueue_many([{"type": "test.ok", "kwargs": {"value": i}} for i in range(10)])

    everything = [j.pk for j in first + second]
    wait_until(
        lambda: Job.objects.filter(pk__in=everything, status=JobStatus.SUCCEEDED).count() == 20,
        timeout=40,
        what="all jobs to finish after the connections were killed",
    )
    assert JobAttempt.objects.filter(job__in=everything, outcome=AttemptOutcome.SUCCEEDED).count() == 20
    assert worker.popen.poll() is None


def test_sigterm_lets_running_jobs_finish_and_gives_back_the_rest(start_worker):
    running = services.enqueue("test.sleep", kwargs={"seconds": 1.0})
    worker = start_worker("--queues", "default", "--threads", "1", "--prefetch", "2")
    wait_until(lambda: _status(running) == JobStatus.RUNNING, what="the first job to start")
    waiting = [services.enqueue("test.sleep", kwargs={"seconds": 1.0}) for _ in range(2)]
    wait_until(
        lambda: Job.objects.filter(pk__in=[j.pk for j in waiting], status=JobStatus.RUNNING).count() == 2,
        what="the prefetched jobs to be claimed",
    )

    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=20) == 0

    assert _status(running) == JobStatus.SUCCEEDED
    for job in waiting:
        stored = Job.objects.get(pk=job.pk)
        assert stored.status == JobStatus.QUEUED  # handed back, not charged an attempt
        assert stored.attempts == 0
        assert not JobAttempt.objects.filter(job=job).exists()


def test_sigterm_past_the_grace_period_gives_back_the_running_job_uncharged(start_worker):
    job = services.enqueue("test.hang", kwargs={"seconds": 30})
    worker = start_worker("--queues", "default", "--shutdown-grace", "0.5")
    wait_until(lambda: _status(job) == JobStatus.RUNNING, what="the job to start")

    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=20) == 0
    stored = Job.objects.get(pk=job.pk)
    assert (stored.status, stored.attempts) == (JobStatus.QUEUED, 0)


def test_a_handler_that_ignores_its_timeout_gets_its_process_replaced(start_worker):
    """The hang is recorded as timed out; the process's other job is given back without a charge."""
    hung = services.enqueue("test.hang", kwargs={"seconds": 60}, timeout=0.5, max_attempts=1)
    worker = start_worker("--queues", "default", "--threads", "2", "--prefetch", "0")
    wait_until(lambda: _status(hung) == JobStatus.RUNNING, what="the hanging job to start")
    bystander = services.enqueue("test.sleep", kwargs={"seconds": 3})
    wait_until(lambda: _status(bystander) == JobStatus.RUNNING, what="the bystander to start")
    first_children = set(worker.children())

    wait_until(lambda: _status(hung) == JobStatus.FAILED, timeout=20, what="the hung job to be stopped")
    attempt = JobAttempt.objects.get(job=hung)
    assert attempt.outcome == AttemptOutcome.TIMED_OUT
    assert "process was replaced" in attempt.error
    wait_until(lambda: _status(bystander) == JobStatus.SUCCEEDED, timeout=30, what="the bystander to finish")
    assert Job.objects.get(pk=bystander.pk).attempts == 1  # given back, not charged
    wait_until(lambda: set(worker.children()) - first_children, what="a replacement process")
    assert worker.popen.poll() is None  # the supervisor replaced its process and kept running
