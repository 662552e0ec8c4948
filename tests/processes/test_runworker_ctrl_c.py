"""Ctrl-C on `runworker`: the first drains (running jobs finish), the second stops at once.

README: "SIGTERM / Ctrl-C: stop taking jobs, let running ones finish within the grace period, hand back
the rest, exit 0. A second Ctrl-C kills the processes." A killed process's job comes back the way any
``kill -9``'s does: "its lease expires; the reaper records a ``lease_expired`` attempt and retries the
job". Ctrl-C in a terminal signals the whole foreground process group (the supervisor and its worker
processes), so that is what these tests send.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import psutil
import pytest

from jobs import services
from jobs.models import AttemptOutcome, Job, JobAttempt, JobStatus
from tests.support.helpers import WorkerProcess, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

LONG_GRACE = "120"  # the drain would wait this long for the long job: far longer than the test
FORCED_EXIT = 1  # Supervisor.run's status when a second signal cut the drain short


def ctrl_c(worker: WorkerProcess) -> None:
    os.killpg(worker.pid, signal.SIGINT)


def _status(job: Job) -> str:
    return Job.objects.get(pk=job.pk).status


def _outcomes(job: Job) -> list[str]:
    return list(JobAttempt.objects.filter(job=job).order_by("number").values_list("outcome", flat=True))


def _alive(pids: list[int]) -> list[int]:
    alive = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.append(pid)
        except psutil.NoSuchProcess:
            pass
    return alive


def _second_ctrl_c_exit(worker: WorkerProcess) -> tuple[int, float]:
    sent = time.monotonic()
    ctrl_c(worker)
    try:
        code = worker.wait(timeout=30)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"a second Ctrl-C did not stop runworker within 30s:\n{worker.log()}") from None
    return code, time.monotonic() - sent


def test_a_second_ctrl_c_stops_at_once_and_the_killed_job_is_recovered_by_its_lease(start_worker):
    long = services.enqueue("test.hang", kwargs={"seconds": 600}, max_attempts=3)
    worker = start_worker("--queues", "default", "--threads", "1", "--shutdown-grace", LONG_GRACE)
    wait_until(lambda: _status(long) == JobStatus.RUNNING, what=f"the long job to start\n{worker.log()}")
    children = worker.children()
    assert children, "the supervisor has no worker process"
    first_worker = Job.objects.get(pk=long.pk).worker
    time.sleep(0.5)  # claimed is not yet started: let its thread take it (a job not started is handed back)

    ctrl_c(worker)
    wait_until(lambda: "stopping workers gracefully" in worker.log(), what="the first Ctrl-C to be seen")
    time.sleep(2)  # the drain is waiting for the long job, as it should
    assert worker.popen.poll() is None, f"the first Ctrl-C did not wait for the running job:\n{worker.log()}"
    assert _alive(children) == children
    assert _status(long) == JobStatus.RUNNING

    code, took = _second_ctrl_c_exit(worker)

    assert took < 10, f"the second Ctrl-C took {took:.1f}s: it should not wait for the job"
    assert code == FORCED_EXIT, f"exit status {code}\n{worker.log()}"
    assert "second signal: killing worker processes now" in worker.log()
    assert _alive(children) == [], "a worker process outlived the second Ctrl-C"
    assert _status(long) == JobStatus.RUNNING  # killed, not handed back: nothing settled it

    # As after kill -9: the next worker's reaper finds the lease expired, records it, and retries the job.
    start_worker("--queues", "default", "--threads", "1")
    wait_until(
        lambda: _outcomes(long)[:1] == [AttemptOutcome.LEASE_EXPIRED], timeout=30, what="the lease to expire"
    )
    wait_until(
        lambda: Job.objects.filter(pk=long.pk, status=JobStatus.RUNNING, attempts=2).exists(),
        timeout=30,
        what="the retry of the killed job to start",
    )
    assert Job.objects.get(pk=long.pk).worker != first_worker


def test_a_job_that_finished_during_the_drain_is_recorded_once_even_if_a_second_ctrl_c_follows(start_worker):
    """The short job's handler returns during the drain; a second Ctrl-C must not make it run again."""
    long = services.enqueue("test.hang", kwargs={"seconds": 600}, max_attempts=3)
    short = services.enqueue("test.sleep", kwargs={"seconds": 3}, max_attempts=3)
    worker = start_worker(
        "--queues",
        "default",
        "--threads",
        "2",
        "--prefetch",
        "0",
        "--shutdown-grace",
        LONG_GRACE,
        env={"JOBQUEUE_LOG_FORMAT": "json", "JOBQUEUE_LOG_LEVEL": "DEBUG"},
    )
    wait_until(
        lambda: Job.objects.filter(pk__in=[long.pk, short.pk], status=JobStatus.RUNNING).count() == 2,
        what=f"both jobs to start\n{worker.log()}",
    )
    time.sleep(1)  # claimed is not yet started: let the threads take them (a job not started is handed back)

    ctrl_c(worker)

    def handler_returned() -> bool:
        for line in worker.log().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:  # not JSON, or a line still being written
                continue
            if not isinstance(entry, dict) or entry.get("job_id") != str(short.pk):
                continue
            if entry.get("outcome") == AttemptOutcome.SUCCEEDED:
                return True
        return False

    try:
        wait_until(handler_returned, timeout=20)
    except AssertionError:
        raise AssertionError(f"the short job's handler did not return:\n{worker.log()}") from None
    try:  # the drain goes on (the long job still runs); what it finished should be in PostgreSQL by now
        wait_until(lambda: _status(short) == JobStatus.SUCCEEDED, timeout=10)
        recorded_during_drain = True
    except AssertionError:
        recorded_during_drain = False
    status_during_drain = _status(short)
    assert worker.popen.poll() is None, f"the drain ended before the long job did:\n{worker.log()}"

    code, _took = _second_ctrl_c_exit(worker)
    assert code == FORCED_EXIT, worker.log()

    # A later worker recovers the killed long job; the short one must not be run a second time.
    start_worker("--queues", "default", "--threads", "2")
    wait_until(
        lambda: _outcomes(long)[:1] == [AttemptOutcome.LEASE_EXPIRED], timeout=30, what="the lease to expire"
    )
    wait_until(lambda: _status(short) == JobStatus.SUCCEEDED, timeout=30, what="the short job to be done")
    outcomes = _outcomes(short)
    problems = []
    if not recorded_during_drain:
        problems.append(f"PostgreSQL still said {status_during_drain!r} 10 s after its handler returned")
    if outcomes != [AttemptOutcome.SUCCEEDED]:
        problems.append(f"after the second Ctrl-C its attempts were {outcomes}: it ran again")
    assert not problems, "the short job finished during the drain, but " + "; ".join(problems)
