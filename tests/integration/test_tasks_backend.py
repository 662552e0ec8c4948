"""django.tasks on jobqueue, in this process: enqueue, validation, results, signals, options, resolution.

What workers do with these tasks is in test_tasks_worker.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from datetime import datetime, timedelta

import pytest
from asgiref.sync import sync_to_async
from django.db import connections, transaction
from django.tasks import TaskResultStatus, default_task_backend, task, task_backends
from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist, TaskResultMismatch
from django.utils import timezone

from jobs import dispatch, registry, services
from jobs.backoff import Backoff
from jobs.errors import InvalidJob
from jobs.models import Job, JobStatus
from jobs.tasks_backend.backend import STATUS_MAP, JobQueueBackend, UnknownTaskOption
from tests.support import tasks_fixtures as fx

pytestmark = pytest.mark.django_db(transaction=True)


def _signals(broker) -> list[dict]:
    return [json.loads(item) for item in broker.client.lrange(fx.signals_key(), 0, -1)]


def _in_ready_set(broker, queue: str, job_id: str) -> bool:
    return broker.client.zscore(broker.key("ready", queue), job_id) is not None


def test_backend_declares_defer_priority_get_result_and_async_support():
    backend = task_backends["default"]
    assert isinstance(backend, JobQueueBackend)
    assert backend.supports_defer and backend.supports_priority
    assert backend.supports_get_result and backend.supports_async_task
    assert backend.queues == {"high", "default", "low"}


def test_enqueue_records_a_job_named_by_module_path_with_the_task_options(broker):
    result = fx.send_welcome.enqueue(user_id=42)

    job = Job.objects.get(pk=result.id)
    assert job.type == "tests.support.tasks_fixtures.send_welcome" == fx.send_welcome.module_path
    assert (job.queue, job.priority, job.max_attempts, job.timeout) == ("high", 10, 5, 30.0)
    assert job.backoff == {"base": 0.1, "max": 0.5, "jitter": 0.0}
    assert (job.args, job.kwargs, job.status) == ([], {"user_id": 42}, JobStatus.QUEUED)
    dispatch.flush()
    assert _in_ready_set(broker, "high", result.id)

    assert result.status == TaskResultStatus.READY and not result.is_finished
    assert result.task is fx.send_welcome and result.backend == "default"
    assert result.enqueued_at == job.created_at
    assert (result.args, result.kwargs) == ([], {"user_id": 42})
    assert (result.errors, result.worker_ids, result.attempts) == ([], [], 0)
    assert result.started_at is result.finished_at is result.last_attempted_at is None
    with pytest.raises(ValueError, match="not finished"):
        _ = result.return_value


def test_using_overrides_priority_queue_and_defers_with_run_after(broker):
    run_after = timezone.now() + timedelta(hours=1)
    deferred = fx.add.using(priority=-20, queue_name="low", run_after=run_after)

    result = deferred.enqueue(1, b=2)

    job = Job.objects.get(pk=result.id)
    assert (job.queue, job.priority, job.run_at, job.status) == ("low", -20, run_after, JobStatus.SCHEDULED)
    assert (job.args, job.kwargs) == ([1], {"b": 2})
    dispatch.flush()
    assert broker.client.zscore(broker.key("delayed", "low"), result.id) is not None
    assert result.status == TaskResultStatus.READY
    read = default_task_backend.get_result(result.id)
    assert (read.task.queue_name, read.task.priority, read.task.run_after) == ("low", -20, run_after)


def _local_function() -> object:
    def inner() -> None:
        return None

    return inner


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: task()(_local_function()), "Task function must be defined at a module level"),
        (lambda: task(priority=101)(fx.plain_function), "priority must be a whole number between -100"),
        (lambda: fx.add.using(priority=-101), "priority must be a whole number"),
        (lambda: fx.add.using(run_after=datetime.now()), "run_after must be an aware datetime"),
        (lambda: fx.add.using(queue_name="nope"), "Queue 'nope' is not valid for backend"),
        (lambda: task(queue_name="nope")(fx.plain_function), "Queue 'nope' is not valid for backend"),
        (lambda: task(takes_context=True)(fx.plain_function), "does not have a first argument of 'context'"),
    ],
    ids=["not-module-level", "priority-101", "priority--101", "naive-run_after", "unknown-queue-using",
         "unknown-queue-decorator", "takes_context-without-context"],
)  # fmt: skip
def test_django_validation_errors_are_raised_and_nothing_is_recorded(broker, make, message):
    with pytest.raises(InvalidTask, match=message):
        make()
    assert not Job.objects.exists()


def test_run_after_cannot_be_set_in_the_decorator():
    with pytest.raises(TypeError, match="run_after cannot be defined statically"):
        task(run_after=timezone.now())(fx.plain_function)


def test_unknown_task_option_fails_where_the_task_is_declared_naming_the_options():
    with pytest.raises(UnknownTaskOption) as raised:
        task(retries=3, max_attempts=2)(fx.plain_function)
    message = str(raised.value)
    assert "tests.support.tasks_fixtures.plain_function" in message and "'retries'" in message
    assert all(name in message for name in ("max_attempts", "backoff", "timeout", "unique_key", "result_ttl"))
    assert isinstance(raised.value, InvalidTask) and isinstance(raised.value, TypeError)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_attempts": 0}, "max_attempts must be a whole number from 1 to 100"),
        ({"max_attempts": 101}, "max_attempts must be a whole number from 1 to 100"),
        ({"max_attempts": True}, "max_attempts"),
        ({"timeout": 0}, "timeout must be seconds above 0"),
        ({"timeout": 10**9}, "timeout must be seconds above 0"),
        ({"backoff": {"base": -1}}, "invalid backoff"),
        ({"backoff": {"factor": 2}}, "invalid backoff"),
        ({"backoff": "fast"}, "invalid backoff"),
        ({"result_ttl": -1}, "result_ttl must be a number of seconds"),
        ({"unique_key": "user:{user}"}, "may only name the task's parameters"),
        ({"unique_key": "user:{0}"}, "may only name the task's parameters"),
        ({"unique_key": 7}, "unique_key must be True, a format string"),
        ({"api": "yes"}, "api must be True or False"),
    ],
)
def test_bad_option_values_fail_where_the_task_is_declared(options, message):
    with pytest.raises(InvalidTask, match=message):
        task(**options)(fx.plain_function)


def test_rollback_enqueues_nothing_and_sends_no_signal(broker):
    with pytest.raises(RuntimeError), transaction.atomic():
        result = fx.add.enqueue(1, 2)
        assert Job.objects.filter(pk=result.id).exists()
        raise RuntimeError("roll back")

    assert not Job.objects.exists()
    dispatch.flush()
    assert not _in_ready_set(broker, "default", result.id)
    assert _signals(broker) == []


def test_task_enqueued_fires_on_commit_in_the_enqueuing_process(broker):
    with transaction.atomic():
        result = fx.add.enqueue(1, 2)
        assert _signals(broker) == []
        dispatch.flush()  # whatever was handed to the pusher so far has reached Redis
        assert not _in_ready_set(broker, "default", result.id)

    (event,) = _signals(broker)
    assert event["signal"] == "enqueued" and event["id"] == result.id
    assert event["pid"] == os.getpid() and event["status"] == "READY"
    assert event["sender"] == "jobs.backends.JobQueueBackend"
    dispatch.flush()
    assert _in_ready_set(broker, "default", result.id)


def test_get_result_and_refresh_read_the_job_back(broker):
    result = fx.send_welcome.enqueue(7)

    for read in (default_task_backend.get_result(result.id), fx.send_welcome.get_result(result.id)):
        assert read.id == result.id and read.status == TaskResultStatus.READY
        assert read.task.func is fx.send_welcome.func and read.task.queue_name == "high"
        assert (read.args, read.kwargs, read.enqueued_at) == ([7], {}, result.enqueued_at)
        assert (read.errors, read.worker_ids, read.backend) == ([], [], "default")
    result.refresh()
    assert result.status == TaskResultStatus.READY and result.attempts == 0


def test_get_result_of_an_unknown_id_or_a_plain_job_does_not_exist(broker):
    plain = services.enqueue("test.ok")
    for missing in (str(uuid.uuid4()), "not-a-uuid", str(plain.id)):
        with pytest.raises(TaskResultDoesNotExist):
            default_task_backend.get_result(missing)


def test_get_result_through_another_task_raises_mismatch(broker):
    result = fx.echo.enqueue("x")
    with pytest.raises(TaskResultMismatch, match="tests.support.tasks_fixtures.echo"):
        fx.add.get_result(result.id)


def test_async_aenqueue_aget_result_and_arefresh(broker):
    async def scenario() -> tuple:
        result = await fx.async_double.aenqueue(value=4)
        read = await fx.async_double.aget_result(result.id)
        await result.arefresh()
        await sync_to_async(connections.close_all)()  # the thread sync_to_async used holds a connection
        return result, read

    result, read = asyncio.run(scenario())
    assert Job.objects.get(pk=result.id).kwargs == {"value": 4}
    assert read.id == result.id and read.status == result.status == TaskResultStatus.READY


def test_every_job_status_maps_onto_a_task_result_status():
    assert STATUS_MAP == {
        "scheduled": TaskResultStatus.READY,
        "queued": TaskResultStatus.READY,
        "retrying": TaskResultStatus.READY,
        "running": TaskResultStatus.RUNNING,
        "succeeded": TaskResultStatus.SUCCESSFUL,
        "failed": TaskResultStatus.FAILED,
        "cancelled": TaskResultStatus.FAILED,
    }
    assert set(STATUS_MAP) == set(JobStatus)


def test_operators_cancel_and_retry_tasks_like_any_job(broker):
    result = fx.add.enqueue(1, 1)

    services.cancel(result.id)
    result.refresh()
    assert result.status == TaskResultStatus.FAILED and result.is_finished
    with pytest.raises(ValueError, match="Task failed"):
        _ = result.return_value

    services.retry(result.id)
    result.refresh()
    assert result.status == TaskResultStatus.READY and result.finished_at is None
    dispatch.flush()
    assert _in_ready_set(broker, "default", result.id)


def test_unique_key_template_returns_the_first_result_for_the_same_key(broker):
    first = fx.unique_welcome.enqueue(user_id=1)
    again = fx.unique_welcome.enqueue(user_id=1, lang="fr")
    other = fx.unique_welcome.enqueue(2)

    assert again.id == first.id and other.id != first.id
    assert Job.objects.count() == 2
    assert (
        Job.objects.get(pk=first.id).idempotency_key
        == "task:tests.support.tasks_fixtures.unique_welcome:welcome:1"
    )
    assert [e["id"] for e in _signals(broker)] == [first.id, other.id]


def test_unique_key_true_dedupes_identical_arguments_only(broker):
    first = fx.unique_by_arguments.enqueue(1)
    assert fx.unique_by_arguments.enqueue(1).id == first.id
    assert fx.unique_by_arguments.enqueue(2).id != first.id
    assert Job.objects.count() == 2


def test_arguments_the_function_does_not_take_are_rejected_at_enqueue(broker):
    with pytest.raises(InvalidJob, match="does not accept these arguments"):
        fx.add.enqueue(1, c=3)
    with pytest.raises(InvalidJob, match="does not accept these arguments"):
        fx.context_probe.enqueue(object_that_is_not_a_parameter=1)
    assert not Job.objects.exists()


def test_arguments_must_be_json(broker):
    with pytest.raises(TypeError, match="Unsupported type"):
        fx.echo.enqueue(object())


# --------------------------------------------------------------------------- resolution and the registry


def test_a_task_resolves_to_a_job_type_with_its_options_as_defaults():
    job_type = registry.get("tests.support.tasks_fixtures.send_welcome")

    assert job_type.func is fx.send_welcome.func
    assert (job_type.queue, job_type.priority, job_type.max_attempts, job_type.timeout) == ("high", 10, 5, 30)
    assert job_type.backoff == Backoff(base=0.1, max=0.5, jitter=0.0)
    assert job_type.description == "The README's example."
    assert registry.find("tests.support.tasks_fixtures.send_welcome") is job_type  # cached
    assert job_type in registry.all_types()
    # takes_context: callers never pass the context, so validation leaves it out.
    assert list(registry.get("tests.support.tasks_fixtures.context_probe").signature.parameters) == [
        "fail_until"
    ]


def test_only_tasks_exposed_with_api_true_are_api_allowed():
    assert registry.get("tests.support.tasks_fixtures.exposed").api_allowed is True
    assert registry.get("tests.support.tasks_fixtures.add").api_allowed is False
    assert registry.get("test.ok").api_allowed is True  # @job types are exposed as before
    assert registry.get("tests.support.tasks_fixtures.exposed").result_ttl == 60


@pytest.mark.parametrize(
    "name",
    [
        "tests.support.tasks_fixtures.plain_function",  # a function, not a Task
        "tests.support.tasks_fixtures.task",  # the decorator imported there
        "tests.support.tasks_fixtures",  # a module
        "tests.support.jobtypes.ok",  # a @job function by its module path
        "os.system",
        "builtins.eval",
        "subprocess.run",
        "jobs.services.cancel",
        "tests.support.tasks_fixtures.add.func",  # the function behind a Task
        "tests.support.tasks_fixtures.nothing_here",
    ],
)
def test_names_that_do_not_lead_to_a_task_object_resolve_to_nothing(broker, name):
    assert registry.find(name) is None
    with pytest.raises(InvalidJob, match="unknown job type"):
        services.enqueue(name)
    assert not Job.objects.exists()


def test_modules_outside_installed_apps_and_jobqueue_imports_are_never_imported():
    assert "antigravity" not in sys.modules
    assert registry.find("antigravity.fly") is None
    assert "antigravity" not in sys.modules
