"""A cancel reaches the running handler at once (its worker's control list), and whatever the handler
does after the request the job ends ``cancelled``: never retried, never a dead letter (invariant 9)."""

from __future__ import annotations

import time

import pytest

from jobs import services
from jobs.models import AttemptOutcome, DeadLetter, Job, JobAttempt, JobStatus
from tests.support.api import JOBS_URL, operator
from tests.support.helpers import wait_until
from workers.broker import Broker

pytestmark = pytest.mark.django_db(transaction=True)

LEASE_SECONDS = 60
"""Far above the test's bound: the keeper extends (and reports cancel flags) every LEASE_SECONDS / 3."""

PROMPT = 1.5
"""Seconds from the API's answer to ``cancelled`` in PostgreSQL."""

SLOW_PATH = {"JOBQUEUE_LEASE_SECONDS": str(LEASE_SECONDS), "JOBQUEUE_KILL_GRACE": "10"}


def _status(job: Job) -> str:
    return Job.objects.get(pk=job.pk).status


def _cancel_through_the_api(job: Job) -> float:
    """POST the cancel; returns when the API answered (monotonic)."""
    response = operator().post(f"{JOBS_URL}{job.pk}/cancel/")
    assert response.status_code == 202, response.content
    assert response.json()["status"] == JobStatus.RUNNING
    return time.monotonic()


def _start_running(start_worker, job_type: str, **kwargs: object) -> tuple[Job, object]:
    job = services.enqueue(job_type, kwargs=kwargs, max_attempts=3)
    worker = start_worker("--queues", "default", "--threads", "2", env=SLOW_PATH)
    wait_until(lambda: _status(job) == JobStatus.RUNNING, what=f"the job to start\n{worker.log()}")
    time.sleep(0.3)  # past the keeper's first lease extension: its next one is LEASE_SECONDS / 3 away
    return job, worker


def _assert_cancelled_once(job: Job) -> Job:
    stored = Job.objects.get(pk=job.pk)
    assert stored.status == JobStatus.CANCELLED
    assert stored.attempts == 1
    assert stored.finished_at is not None
    assert list(JobAttempt.objects.filter(job=job).values_list("outcome", flat=True)) == [
        AttemptOutcome.CANCELLED
    ]
    assert not DeadLetter.objects.filter(job=job).exists()
    return stored


def test_a_cancel_through_the_api_stops_a_cooperative_job_long_before_a_lease_extension(
    start_worker, worker_env
):
    # The old path (the cancel flag read when the keeper extends leases) cannot explain the speed.
    assert float(worker_env["JOBQUEUE_LEASE_SECONDS"]) < LEASE_SECONDS
    assert PROMPT < LEASE_SECONDS / 3
    job, worker = _start_running(start_worker, "test.sleep", seconds=60, step=0.05)

    answered = _cancel_through_the_api(job)
    wait_until(
        lambda: _status(job) == JobStatus.CANCELLED,
        timeout=PROMPT,
        interval=0.01,
        what=f"the running job to be cancelled\n{worker.log()}",
    )
    elapsed = time.monotonic() - answered

    assert elapsed < PROMPT
    stored = _assert_cancelled_once(job)
    assert stored.error == "cancelled by an operator"


def test_a_handler_that_returns_a_result_after_the_cancel_request_still_ends_cancelled(start_worker):
    job, worker = _start_running(start_worker, "test.finish_despite_cancel")

    _cancel_through_the_api(job)
    wait_until(lambda: _status(job) == JobStatus.CANCELLED, timeout=10, what=f"cancelled\n{worker.log()}")

    stored = _assert_cancelled_once(job)
    assert stored.error.startswith("cancelled by an operator")


@pytest.mark.parametrize("permanent", [False, True], ids=["error", "permanent-error"])
def test_a_handler_that_raises_after_the_cancel_request_ends_cancelled_without_retry_or_dead_letter(
    start_worker, permanent
):
    job, worker = _start_running(start_worker, "test.raise_despite_cancel", permanent=permanent)

    _cancel_through_the_api(job)
    wait_until(lambda: _status(job) == JobStatus.CANCELLED, timeout=10, what=f"cancelled\n{worker.log()}")
    time.sleep(0.5)  # a retry would have been due by now (test backoff base 0.2 s)

    stored = _assert_cancelled_once(job)
    assert stored.error.startswith("cancelled by an operator")
    assert "on its own" in stored.error  # what the handler raised is kept, after the cancel


def test_a_cancel_sent_to_a_dead_worker_is_finished_by_the_reaper(start_worker, broker: Broker):
    """The push lands on the dead worker's control list (it expires); the reaper ends the job cancelled."""
    job = services.enqueue("test.sleep", kwargs={"seconds": 60}, max_attempts=1)
    first = start_worker("--queues", "default")
    wait_until(lambda: _status(job) == JobStatus.RUNNING, what=f"the job to start\n{first.log()}")
    first.kill()

    _cancel_through_the_api(job)
    dead = Job.objects.get(pk=job.pk).worker
    control = broker.key("control", dead)
    assert broker.client.lrange(control, 0, -1) == [str(job.pk)]
    assert broker.client.pttl(control) > 0

    second = start_worker("--queues", "default")
    wait_until(lambda: _status(job) == JobStatus.CANCELLED, timeout=30, what=f"reaped\n{second.log()}")

    # On its last attempt the reaper's lease_expired would have failed the job into a dead letter.
    _assert_cancelled_once(job)
