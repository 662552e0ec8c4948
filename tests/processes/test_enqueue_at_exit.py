"""A script that enqueues and exits at once: its job is still dispatched to Redis (a real ``manage.py``
process)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from jobs.models import Job, JobStatus
from tests.support.helpers import REPO

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_script_that_exits_right_after_enqueue_still_dispatches_its_job(broker, worker_env):
    """Nothing waits in the pusher at exit: an atexit hook flushes it."""
    code = "from jobs.services import enqueue; print(enqueue('test.ok', kwargs={'value': 1}).id)"
    done = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=REPO,
        env=worker_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    job_id = done.stdout.strip().splitlines()[-1]
    assert Job.objects.get(pk=job_id).status == JobStatus.QUEUED
    assert broker.location(job_id, "default") == "ready"
