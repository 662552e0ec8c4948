"""Exactly-once database effects with real workers: an atomic job's handler writes commit if and only if
the job succeeds, through retries, timeouts, cancels, a stolen lease and ``kill -9`` at random moments."""

from __future__ import annotations

import os
import random
import signal
import time

import pytest
from django.db import connection

from jobs import services
from jobs.models import AttemptOutcome, Job, JobAttempt, JobStatus
from tests.support.helpers import wait_until
from tests.support.jobtypes import atomic_effects, create_atomic_effects_table

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _effects_table() -> None:
    create_atomic_effects_table()


def _status(job: Job) -> str:
    return Job.objects.get(pk=job.pk).status


def _ids(jobs: list[Job]) -> list[str]:
    return [str(j.pk) for j in jobs]


def test_every_succeeded_atomic_job_wrote_exactly_one_row(start_worker):
    jobs = services.enqueue_many([{"type": "test.atomic_write"} for _ in range(40)])
    start_worker("--queues", "default", "--threads", "4")

    wait_until(
        lambda: Job.objects.filter(pk__in=_ids(jobs), status=JobStatus.SUCCEEDED).count() == 40,
        timeout=30,
        what="40 atomic jobs to succeed",
    )
    assert atomic_effects(_ids(jobs)) == {i: 1 for i in _ids(jobs)}


def test_a_handler_raising_after_its_write_is_rolled_back_and_its_retry_writes_once(start_worker):
    job = services.enqueue("test.atomic_write", kwargs={"fail_times": 2})
    start_worker("--queues", "default")

    wait_until(
        lambda: _status(job) == JobStatus.SUCCEEDED, timeout=30, what="the job to succeed on attempt 3"
    )
    outcomes = list(JobAttempt.objects.filter(job=job).order_by("number").values_list("outcome", flat=True))
    assert outcomes == [AttemptOutcome.FAILED, AttemptOutcome.FAILED, AttemptOutcome.SUCCEEDED]
    assert atomic_effects([str(job.pk)]) == {str(job.pk): 1}


def test_a_timeout_after_the_write_leaves_no_row(start_worker):
    job = services.enqueue("test.atomic_write", kwargs={"seconds": 10}, timeout=0.5, max_attempts=1)
    start_worker("--queues", "default")

    wait_until(lambda: _status(job) == JobStatus.FAILED, timeout=30, what="the job to time out")
    assert list(JobAttempt.objects.filter(job=job).values_list("outcome", flat=True)) == [
        AttemptOutcome.TIMED_OUT
    ]
    assert atomic_effects([str(job.pk)]) == {}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"seconds": 30},  # stops at the signal
        {"wait_for_cancel": True},  # sees the committed request, returns as if nothing happened
    ],
    ids=["cooperative handler", "handler returning despite the cancel"],
)
def test_a_cancel_after_the_write_leaves_no_row(start_worker, kwargs):
    job = services.enqueue("test.atomic_write", kwargs=kwargs)
    start_worker("--queues", "default")
    wait_until(lambda: _status(job) == JobStatus.RUNNING, what="the job to start")
    time.sleep(0.3)  # the handler has written its row, uncommitted

    services.cancel(job.pk)

    wait_until(lambda: _status(job) == JobStatus.CANCELLED, timeout=30, what="the job to be cancelled")
    assert atomic_effects([str(job.pk)]) == {}


def test_a_worker_that_lost_its_lease_while_stopped_cannot_commit_its_write(start_worker):
    """SIGSTOP past the lease: another worker's reaper takes the job and runs it; the stale one resumes
    after that and must not record its success (the lease token fences it), so its write rolls back."""
    job = services.enqueue("test.atomic_write", kwargs={"seconds": 1.0, "cooperative": False})
    stale = start_worker("--queues", "default", "--threads", "1")
    wait_until(lambda: _status(job) == JobStatus.RUNNING, what="the first worker to start the job")
    stale_name = Job.objects.get(pk=job.pk).worker
    time.sleep(0.2)  # inside the handler, after its write
    os.killpg(stale.pid, signal.SIGSTOP)
    try:
        start_worker("--queues", "default", "--threads", "1")
        wait_until(
            lambda: _status(job) == JobStatus.SUCCEEDED, timeout=30, what="the second worker to succeed"
        )
    finally:
        os.killpg(stale.pid, signal.SIGCONT)
    stored = Job.objects.get(pk=job.pk)
    assert stored.worker != stale_name and stored.attempts == 2
    time.sleep(3)  # the stale worker resumes, finishes its handler and tries to record the success

    assert atomic_effects([str(job.pk)]) == {str(job.pk): 1}
    with connection.cursor() as cursor:
        cursor.execute("SELECT worker FROM test_atomic_effects WHERE job_id = %s", [str(job.pk)])
        assert cursor.fetchall() == [(stored.worker,)]
    assert Job.objects.get(pk=job.pk).status == JobStatus.SUCCEEDED
    log = stale.log()
    assert "was refused" in log or "lease lost" in log, log[-3000:]


def _rows_per_job(ids: list[str]) -> dict[str, tuple[str, int]]:
    """{id: (status, rows its handler committed)} read in ONE statement, so from one snapshot: a commit
    landing between two reads cannot make them disagree."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT j.id::text, j.status, (SELECT count(*) FROM test_atomic_effects e WHERE e.job_id = j.id) "
            "FROM jobs_job j WHERE j.id = ANY(%s::uuid[])",
            [ids],
        )
        return {row[0]: (row[1], row[2]) for row in cursor.fetchall()}


def _assert_rows_match_successes(ids: list[str]) -> int:
    rows = _rows_per_job(ids)
    wrong = {i: r for i, r in rows.items() if r[1] != (1 if r[0] == JobStatus.SUCCEEDED else 0)}
    assert not wrong, f"{len(wrong)} job(s) whose committed rows disagree with their status: {wrong}"
    return sum(1 for status, _ in rows.values() if status == JobStatus.SUCCEEDED)


def test_kill_9_at_random_moments_never_duplicates_or_loses_an_atomic_write(start_worker):
    """Five workers killed with SIGKILL mid-drain, then one that finishes: after every kill and at the
    end, the rows the handlers committed are exactly the succeeded jobs, one each."""
    rng = random.Random(int(os.environ.get("ATOMIC_CHAOS_SEED", "0")) or None)
    jobs = services.enqueue_many(
        [
            {"type": "test.atomic_write", "kwargs": {"seconds": rng.choice([0.02, 0.05, 0.1])}}
            for _ in range(200)
        ]
    )
    ids = _ids(jobs)

    def succeeded() -> set[str]:
        return {
            str(i)
            for i in Job.objects.filter(pk__in=ids, status=JobStatus.SUCCEEDED).values_list("pk", flat=True)
        }

    kills = 0
    for _ in range(5):
        before = len(succeeded())
        if before == len(ids):
            break
        worker = start_worker("--queues", "default", "--threads", "4")
        wait_until(lambda b=before: len(succeeded()) > b, timeout=30, what="the worker to make progress")
        time.sleep(rng.uniform(0.0, 0.4))
        worker.kill()
        kills += 1
        _assert_rows_match_successes(ids)
    start_worker("--queues", "default", "--threads", "4")
    wait_until(lambda: len(succeeded()) == len(ids), timeout=90, what="every job to succeed in the end")

    assert kills == 5, kills  # slow enough handlers that five kills land mid-drain
    assert _assert_rows_match_successes(ids) == len(ids)
    assert atomic_effects(ids) == {i: 1 for i in ids}
    lost = JobAttempt.objects.filter(job_id__in=ids, outcome=AttemptOutcome.LEASE_EXPIRED).count()
    assert lost > 0  # the kills really interrupted jobs that were then run again
