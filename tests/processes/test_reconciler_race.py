"""The reconciler racing a worker that drains the queue: it re-dispatches (and warns about) nothing.

The false alarm this guards against: the reconciler read a batch of queued rows from PostgreSQL, a worker
claimed and finished some of them before the reconciler looked in Redis, and the reconciler then called
them "lost" and re-added them.
"""

from __future__ import annotations

import logging
import threading
import time

import pytest
from django.db import connection
from django.db.models import Count

from jobs import dispatch, services
from jobs.models import Job, JobAttempt, JobStatus
from tests.support.helpers import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

MIN_JOBS = 3000
MAX_JOBS = 30000
BATCH = 100


def test_reconciler_racing_a_drain_redispatches_nothing_and_every_job_runs_once(start_worker, broker, caplog):
    caplog.set_level(logging.DEBUG, logger="jobs.services")
    services.enqueue_many([{"type": "test.ok"}] * 500)  # a backlog for the worker to chew on at once
    dispatch.flush()
    worker = start_worker("--queues", "default", "--processes", "1", "--threads", "4", "--prefetch", "16")
    stop = threading.Event()
    passes: list[int] = []
    errors: list[BaseException] = []

    def reconcile_every_100ms() -> None:
        try:
            while not stop.is_set():
                # Zero settle window: every active row, however fresh, is a candidate.
                passes.append(services.reconcile(broker, settle_seconds=0, batch=200))
                stop.wait(0.1)
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread below
            errors.append(exc)
        finally:
            connection.close()  # this thread's own connection: the test database is dropped next

    reconciler = threading.Thread(target=reconcile_every_100ms)
    reconciler.start()
    enqueued = 500
    try:
        # Keep jobs streaming in until the race has really happened a few times (rows claimed and finished
        # between the reconciler's PostgreSQL read and its Redis check), or enough jobs went through.
        # A loaded machine runs fewer reconciler passes per job: keep going until there were enough of both.
        while enqueued < MIN_JOBS or ((_races(caplog) < 3 or len(passes) < 10) and enqueued < MAX_JOBS):
            services.enqueue_many([{"type": "test.ok"}] * BATCH)
            enqueued += BATCH
            dispatch.flush()  # push now, as a web process's pusher would right after the commit
            time.sleep(0.01)
        wait_until(
            lambda: not Job.objects.exclude(status=JobStatus.SUCCEEDED).exists(),
            timeout=120,
            what="every job to succeed",
        )
    finally:
        stop.set()
        reconciler.join(timeout=30)
    assert not errors, errors
    assert _races(caplog) >= 1, "the race never happened: the test proves nothing"
    assert len(passes) >= 10, "the reconciler must have raced the drain many times"
    assert sum(passes) == 0
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert "re-dispatched" not in worker.log()
    # Every job ran exactly once: one attempt each, no duplicates.
    assert Job.objects.count() == enqueued
    assert set(Job.objects.values_list("attempts", flat=True)) == {1}
    per_job = JobAttempt.objects.values("job").annotate(n=Count("id")).values_list("n", flat=True)
    assert len(per_job) == enqueued and set(per_job) == {1}


def _races(caplog: pytest.LogCaptureFixture) -> int:
    """Jobs the reconciler found missing from Redis that had moved on in PostgreSQL meanwhile."""
    return sum(
        int(record.args[1])  # type: ignore[index]
        for record in list(caplog.records)
        if record.name == "jobs.services" and "moved on while checked" in record.msg
    )
