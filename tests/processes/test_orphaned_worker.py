"""A worker process whose supervisor was killed with SIGKILL finishes its running job and exits.

Found by the chaos soak (docs/reliability.md): a supervisor cannot stop its children when it is
SIGKILLed, and the orphans went on taking jobs with nobody to restart them or enforce hard
timeouts. Now a child notices its parent is gone, drains like a graceful stop, and exits.
"""

from __future__ import annotations

import signal
import time

import psutil
import pytest

from jobs import services
from jobs.dispatch import flush
from jobs.models import Job, JobStatus
from tests.support.helpers import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_an_orphaned_worker_finishes_its_running_job_then_exits_and_takes_no_more(start_worker):
    worker = start_worker("--queues", "default", "--processes", "1", "--threads", "2", "--prefetch", "0")
    wait_until(lambda: worker.children(), timeout=30, what="the worker process never started")
    (child,) = worker.children()
    running = services.enqueue("test.sleep", kwargs={"seconds": 4.0}, queue="default")
    flush()
    wait_until(
        lambda: Job.objects.get(pk=running.pk).status == JobStatus.RUNNING,
        timeout=20,
        what="the job never started",
    )

    worker.popen.send_signal(signal.SIGKILL)
    worker.popen.wait(timeout=10)
    wait_until(lambda: "is gone" in worker.log(), timeout=10, what="the orphan never noticed")
    assert Job.objects.get(pk=running.pk).status == JobStatus.RUNNING  # noticed while still running it
    later = services.enqueue("test.ok", queue="default")  # the draining orphan must not take it
    flush()

    process = psutil.Process(child)
    deadline = time.monotonic() + 20
    while process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, f"the orphaned worker {child} is still running:\n{worker.log()}"
        time.sleep(0.1)

    assert Job.objects.get(pk=running.pk).status == JobStatus.SUCCEEDED
    assert Job.objects.get(pk=later.pk).status == JobStatus.QUEUED
    assert "supervisor (pid" in worker.log()
