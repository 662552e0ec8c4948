"""`manage.py runworker` is ours, validates its options, and operators can cancel running work."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest
from django.core.management import get_commands

from jobqueue_site.logs import JsonFormatter, TextFormatter
from jobs import services
from jobs.models import AttemptOutcome, Job, JobAttempt, JobStatus
from tests.support.helpers import REPO, wait_until


def test_manage_py_runworker_is_jobqueues_worker_not_channels():
    assert get_commands()["runworker"] == "workers"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--processes", "0"], "--processes must be at least 1"),
        (["--threads", "many"], "--threads must be an integer"),
        (["--queues", "default,bad queue"], "invalid queue name 'bad queue'"),
        (["--queues", "a,a"], "lists a queue twice"),
        (["--shutdown-grace", "-1"], "--shutdown-grace must be >= 0"),
    ],
)
def test_runworker_rejects_bad_options_with_a_clear_message(args, message):
    result = subprocess.run(
        [sys.executable, "manage.py", "runworker", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.django_db(transaction=True)
def test_cancelling_a_running_job_stops_it_cooperatively_and_never_retries(start_worker):
    """Invariant 9: the cancel request reaches the handler through its lease; the attempt ends cancelled."""
    job = services.enqueue("test.sleep", kwargs={"seconds": 30}, max_attempts=3)
    start_worker("--queues", "default")
    wait_until(lambda: Job.objects.get(pk=job.pk).status == JobStatus.RUNNING, what="the job to start")

    services.cancel(job.pk)
    assert Job.objects.get(pk=job.pk).cancel_requested_at is not None

    wait_until(
        lambda: Job.objects.get(pk=job.pk).status == JobStatus.CANCELLED,
        timeout=20,
        what="the running job to stop",
    )
    attempt = JobAttempt.objects.get(job=job)
    assert attempt.outcome == AttemptOutcome.CANCELLED
    assert Job.objects.get(pk=job.pk).attempts == 1


@pytest.mark.django_db(transaction=True)
def test_cancelling_a_queued_job_removes_it_from_redis_at_once(broker):
    job = services.enqueue("noop")
    cancelled = services.cancel(job.pk)
    assert cancelled.status == JobStatus.CANCELLED
    assert broker.location(str(job.pk), "default") is None


def test_json_log_lines_carry_the_job_context():
    record = logging.LogRecord(
        "workers.execution", logging.WARNING, __file__, 1, "job %s failed", ("x",), None
    )
    for name, value in {
        "job_id": "abc",
        "type": "email.send",
        "queue": "default",
        "attempt": 2,
        "worker": "host:1:ab",
        "duration_ms": 12.5,
    }.items():
        setattr(record, name, value)

    entry = json.loads(JsonFormatter().format(record))
    assert entry["msg"] == "job x failed"
    assert (entry["job_id"], entry["type"], entry["queue"], entry["attempt"]) == (
        "abc",
        "email.send",
        "default",
        2,
    )
    assert (entry["worker"], entry["duration_ms"], entry["level"]) == ("host:1:ab", 12.5, "WARNING")
    assert "job_id=abc" in TextFormatter().format(record)
