"""`runworker --burst` drains what is ready and exits 0 by itself; delayed jobs are left for later.

README: "``--burst``: exit once nothing is ready and nothing is running (delayed jobs are not awaited)".
"""

from __future__ import annotations

import json
import subprocess
import time
from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from jobs import dispatch, services
from jobs.models import Job, JobAttempt, JobStatus

pytestmark = pytest.mark.django_db(transaction=True)

JSON_LOGS = {"JOBQUEUE_LOG_FORMAT": "json"}


def _exit_code(worker, timeout: float) -> int:
    try:
        return worker.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"runworker --burst still running after {timeout}s:\n{worker.log()}") from None


def _logged_at(log: str, fragment: str) -> float:
    """The timestamp (epoch seconds) of the first JSON log line whose message contains ``fragment``."""
    for line in log.splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if fragment in entry["msg"]:
                return datetime.fromisoformat(entry["ts"]).timestamp()
    raise AssertionError(f"no log line with {fragment!r}:\n{log}")


def test_burst_runs_every_ready_job_then_exits_0_and_leaves_delayed_jobs_for_later(start_worker, broker):
    ready = services.enqueue_many(
        [{"type": "test.ok", "kwargs": {"value": i}} for i in range(40)]
        + [{"type": "test.sleep", "kwargs": {"seconds": 0.3}} for _ in range(4)]
    )
    delayed = services.enqueue(
        "test.ok", kwargs={"value": "later"}, run_at=timezone.now() + timedelta(hours=1)
    )
    dispatch.flush()  # in Redis before the worker looks: burst exits when Redis has nothing ready

    worker = start_worker("--queues", "default", "--processes", "2", "--threads", "2", "--burst")
    assert _exit_code(worker, timeout=90) == 0, worker.log()

    pks = [job.pk for job in ready]
    assert Job.objects.filter(pk__in=pks, status=JobStatus.SUCCEEDED, attempts=1).count() == len(ready)
    assert JobAttempt.objects.filter(job_id__in=pks).count() == len(ready)  # each ran once
    stored = Job.objects.get(pk=delayed.pk)
    assert (stored.status, stored.attempts) == (JobStatus.SCHEDULED, 0)  # not awaited, not run early
    assert broker.location(str(delayed.pk), "default") == "delayed"  # still due later, for any worker
    assert worker.log().count("burst mode: nothing left to run, exiting") == 2  # both processes drained


def test_burst_on_an_empty_queue_exits_0_promptly(start_worker):
    launched = time.time()
    worker = start_worker("--queues", "default", "--burst", env=JSON_LOGS)
    assert _exit_code(worker, timeout=60) == 0, worker.log()
    exited = time.time()

    # From the worker's loop starting to the whole command having exited: no idle waiting for work.
    started = _logged_at(worker.log(), "started: queues=default")
    assert launched <= started <= exited
    assert exited - started < 10, f"took {exited - started:.1f}s to notice an empty queue:\n{worker.log()}"
    assert not Job.objects.exists()
