"""django.tasks tasks run by real runworker processes: results, context, signals, retries, security."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta

import pytest
from django.tasks import TaskResult, TaskResultStatus, default_task_backend
from django.tasks.exceptions import TaskResultDoesNotExist
from django.utils import timezone

from jobs import services
from jobs.models import DeadLetter, Job, JobAttempt, JobStatus
from tests.support import tasks_fixtures as fx
from tests.support.helpers import REPO, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

IMPORTS = {"JOBQUEUE_IMPORTS": "tests.support.jobtypes,tests.support.tasks_fixtures"}
ALL_QUEUES = ("--queues", "high,default,low")


def _finished(result: TaskResult, timeout: float = 30.0) -> TaskResult:
    def done() -> bool:
        result.refresh()
        return result.is_finished

    wait_until(done, timeout=timeout, what=f"task {result.task.module_path} {result.id} to finish")
    return result


def _signals(broker) -> list[dict]:
    return [json.loads(item) for item in broker.client.lrange(fx.signals_key(), 0, -1)]


def test_workers_run_sync_and_async_tasks_and_any_process_reads_the_result(start_worker, worker_env):
    added = fx.add.enqueue(2, b=3)
    doubled = fx.async_double.enqueue(value=21)
    welcome = fx.send_welcome.enqueue(42)
    start_worker(*ALL_QUEUES, env=IMPORTS)

    for result, value in ((added, 5), (doubled, {"doubled": 42}), (welcome, "welcome 42")):
        _finished(result)
        job = Job.objects.get(pk=result.id)
        assert result.status == TaskResultStatus.SUCCESSFUL and job.status == JobStatus.SUCCEEDED
        assert result.return_value == value == job.result
        assert result.attempts == 1 and result.worker_ids == [job.worker] and job.worker
        assert result.errors == []
        assert result.enqueued_at <= result.started_at == result.last_attempted_at <= result.finished_at
        assert result.finished_at == job.finished_at

    # Another process, which imports the tasks' module as the workers do, sees the same result.
    code = (
        "import json, sys, django; django.setup()\n"
        "from django.tasks import default_task_backend\n"
        "r = default_task_backend.get_result(sys.argv[1])\n"
        "print(json.dumps({'status': r.status, 'value': r.return_value, 'workers': r.worker_ids,\n"
        "                  'task': r.task.module_path, 'finished_at': r.finished_at.isoformat()}))\n"
    )
    env = {**worker_env, **IMPORTS, "DJANGO_SETTINGS_MODULE": "jobqueue_site.settings"}
    done = subprocess.run(
        [sys.executable, "-c", code, doubled.id],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen == {
        "status": "SUCCESSFUL",
        "value": {"doubled": 42},
        "workers": doubled.worker_ids,
        "task": "tests.support.tasks_fixtures.async_double",
        "finished_at": doubled.finished_at.isoformat(),
    }


def test_takes_context_gets_the_attempt_number_and_job_id_on_every_attempt(start_worker):
    retried = fx.context_probe.enqueue(fail_until=1)
    first_try = fx.async_context_probe.enqueue()
    start_worker(*ALL_QUEUES, env=IMPORTS)

    _finished(retried)
    assert retried.status == TaskResultStatus.SUCCESSFUL and retried.attempts == 2
    value = retried.return_value
    assert value["attempt"] == 2 and value["id"] == retried.id
    assert value["worker_ids"] == retried.worker_ids and len(value["worker_ids"]) == 2
    assert value["errors"] == ["builtins.RuntimeError"]
    (error,) = retried.errors
    assert error.exception_class is RuntimeError and "failing attempt 1 on purpose" in error.traceback
    assert "Traceback" in error.traceback

    assert _finished(first_try).return_value == [1, first_try.id]


def test_signals_fire_in_the_enqueuing_process_and_in_the_worker(start_worker, broker):
    result = fx.context_probe.enqueue(fail_until=1)
    worker = start_worker(*ALL_QUEUES, env=IMPORTS)
    _finished(result)
    children = set(worker.children())

    events = wait_until(
        lambda: (e := _signals(broker)) and e[-1]["signal"] == "finished" and e, what="signals"
    )
    assert [(e["signal"], e["status"], e["attempts"], e["errors"]) for e in events] == [
        ("enqueued", "READY", 0, []),
        ("started", "RUNNING", 1, []),
        ("finished", "READY", 1, ["builtins.RuntimeError"]),  # retrying: READY again, not finished
        ("started", "RUNNING", 2, ["builtins.RuntimeError"]),
        ("finished", "SUCCESSFUL", 2, ["builtins.RuntimeError"]),
    ]
    assert all(e["id"] == result.id and e["sender"] == "jobs.backends.JobQueueBackend" for e in events)
    assert events[0]["pid"] == os.getpid()
    assert {e["pid"] for e in events[1:]} <= children and os.getpid() not in {e["pid"] for e in events[1:]}


def test_failing_tasks_retry_then_land_in_the_dead_letters_and_operators_can_retry_them(start_worker):
    failing = fx.always_fails.enqueue("kaput")
    permanent = fx.fails_permanently.enqueue()
    start_worker(*ALL_QUEUES, env=IMPORTS)

    _finished(failing)
    assert failing.status == TaskResultStatus.FAILED and failing.attempts == 2
    assert [e.exception_class_path for e in failing.errors] == ["builtins.ValueError"] * 2
    assert all("ValueError: kaput" in e.traceback for e in failing.errors)
    with pytest.raises(ValueError, match="Task failed"):
        _ = failing.return_value
    dead = DeadLetter.objects.get(job_id=failing.id)
    assert [e["attempt"] for e in dead.errors] == [1, 2]

    _finished(permanent)
    assert permanent.attempts == 1  # PermanentError: no retries despite max_attempts=5
    assert [e.exception_class_path for e in permanent.errors] == ["jobs.errors.PermanentError"]
    assert DeadLetter.objects.filter(job_id=permanent.id).exists()

    requeued = services.retry_dead_letter(dead.pk)
    assert requeued.status == JobStatus.QUEUED
    assert DeadLetter.objects.get(pk=dead.pk).resolution == DeadLetter.Resolution.RETRIED
    wait_until(lambda: JobAttempt.objects.filter(job_id=failing.id).count() == 3, what="the operator's retry")
    _finished(failing)
    assert failing.status == TaskResultStatus.FAILED and failing.attempts == 3 and len(failing.errors) == 3


def test_timeout_option_stops_the_attempt_and_reports_a_timeout_error(start_worker):
    result = fx.sleeps.enqueue(30)
    start_worker(*ALL_QUEUES, env=IMPORTS)

    _finished(result)
    assert result.status == TaskResultStatus.FAILED and result.attempts == 1
    (error,) = result.errors
    assert error.exception_class is TimeoutError
    assert (result.finished_at - result.started_at) < timedelta(seconds=10)


def test_workers_honour_priority_and_run_after(start_worker):
    low = fx.echo.using(queue_name="default", priority=-10).enqueue("low")
    high = fx.echo.using(queue_name="default", priority=50).enqueue("high")
    due = timezone.now() + timedelta(seconds=2)
    later = fx.add.using(run_after=due).enqueue(1)
    start_worker("--queues", "default", "--threads", "1", "--prefetch", "0", env=IMPORTS)

    for result in (low, high, later):
        _finished(result)
    assert high.started_at < low.started_at
    assert later.started_at >= due and later.return_value == 1


def test_result_ttl_expires_finished_results(start_worker):
    result = fx.exposed.enqueue(7)
    start_worker(*ALL_QUEUES, env=IMPORTS)
    assert _finished(result).return_value == 7

    # A minute passes (result_ttl=60): move the finish time back instead of waiting.
    Job.objects.filter(pk=result.id).update(finished_at=timezone.now() - timedelta(seconds=61))
    with pytest.raises(TaskResultDoesNotExist, match="expired"):
        default_task_backend.get_result(result.id)
    assert Job.objects.filter(pk=result.id, status=JobStatus.SUCCEEDED).exists()  # still there for operators


def test_workers_run_nothing_that_does_not_resolve_to_a_task(start_worker, broker, tmp_path):
    """Rows forged past enqueue validation: an import path chosen by an attacker is never run."""
    marker = tmp_path / "pwned"
    forged = [
        Job.objects.create(type="os.system", args=[f"touch {marker}"], max_attempts=1),
        Job.objects.create(type="tests.support.tasks_fixtures.plain_function", max_attempts=1),
        Job.objects.create(type="tests.support.jobtypes.ok", max_attempts=1),
        # A real task, but its module is neither an installed app's nor in this worker's JOBQUEUE_IMPORTS.
        Job.objects.create(type="tests.support.tasks_fixtures.add", args=[1, 2], max_attempts=1),
    ]
    broker.enqueue([services.placement_for(Job.objects.get(pk=job.pk)) for job in forged])
    start_worker(*ALL_QUEUES)  # JOBQUEUE_IMPORTS=tests.support.jobtypes only

    wait_until(
        lambda: (
            Job.objects.filter(pk__in=[j.pk for j in forged], status=JobStatus.FAILED).count() == len(forged)
        ),
        what="the forged jobs to fail",
    )
    for job in Job.objects.filter(pk__in=[j.pk for j in forged]):
        assert job.error.startswith(f"unknown job type {job.type!r}")
        assert job.result is None
    assert not marker.exists()
