"""Atomic job types in the worker's ``execute``, in this process: the handler's database writes commit with
the job's success, fenced by the lease token and the cancel rule, or roll back with anything else."""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

import pytest
from django.tasks import task
from django.tasks.exceptions import InvalidTask

from jobs import registry, services
from jobs.context import JobContext
from jobs.models import AttemptOutcome, Job, JobAttempt, JobStatus
from jobs.tasks_backend import lookup
from jobs.tasks_backend.bridge import job_type_for
from jobs.values import Claimed
from tests.support import tasks_fixtures as fx
from tests.support.api import WORKER, claim, client_for, make_user
from tests.support.helpers import wait_until
from tests.support.jobtypes import atomic_effects, create_atomic_effects_table
from workers.broker import Broker
from workers.execution import Finished, Running, execute

pytestmark = pytest.mark.django_db(transaction=True)  # execute opens and commits its own transaction


@pytest.fixture(autouse=True)
def _effects_table() -> None:
    create_atomic_effects_table()


def _running(claimed: Claimed) -> Running:
    ctx = JobContext(
        job_id=claimed.id,
        type=claimed.type,
        queue=claimed.queue,
        attempt=claimed.attempt,
        max_attempts=claimed.max_attempts,
        worker=WORKER,
    )
    return Running(job=claimed, ctx=ctx, timeout=300)


def _claim(broker: Broker, **kwargs: Any) -> Claimed:
    return claim(broker, services.enqueue("test.atomic_write", kwargs=kwargs))


def _attempts(job_id: str) -> list[str]:
    return list(JobAttempt.objects.filter(job_id=job_id).order_by("number").values_list("outcome", flat=True))


def test_a_succeeding_atomic_job_commits_its_write_with_its_success_and_releases_the_lease(broker: Broker):
    claimed = _claim(broker)

    finished = execute(_running(claimed), WORKER)

    assert type(finished) is Finished and finished.outcome.status == JobStatus.SUCCEEDED
    stored = Job.objects.get(pk=claimed.id)
    assert (stored.status, stored.result, stored.lease_token) == (JobStatus.SUCCEEDED, "written", None)
    assert _attempts(claimed.id) == [AttemptOutcome.SUCCEEDED]
    assert atomic_effects([claimed.id]) == {claimed.id: 1}
    assert broker.location(claimed.id, claimed.queue) == "leased"  # the worker releases it after commit
    services.after_atomic_finish(broker, [finished.outcome], WORKER)
    assert broker.location(claimed.id, claimed.queue) is None


def test_a_handler_that_raises_after_writing_leaves_no_row_and_its_retry_writes_once(broker: Broker):
    claimed = _claim(broker, fail_times=1)

    outcome = execute(_running(claimed), WORKER)

    assert type(outcome) is not Finished and outcome.status == JobStatus.RETRYING
    assert atomic_effects([claimed.id]) == {}
    services.settle(broker, [outcome], [], WORKER)
    popped = wait_until(lambda: broker.dequeue([claimed.queue], 1, 60_000, WORKER).jobs, what="the retry")
    (again,) = services.settle(broker, [], popped, WORKER)
    assert again.id == claimed.id and again.attempt == 2

    finished = execute(_running(again), WORKER)

    assert type(finished) is Finished
    assert atomic_effects([claimed.id]) == {claimed.id: 1}
    assert _attempts(claimed.id) == [AttemptOutcome.FAILED, AttemptOutcome.SUCCEEDED]


def test_a_timeout_signalled_after_the_write_rolls_it_back(broker: Broker):
    claimed = _claim(broker, seconds=10)
    running = _running(claimed)
    threading.Timer(0.3, running.signal, ("timed out after 0.3s",), {"timed_out": True}).start()

    outcome = execute(running, WORKER)

    assert type(outcome) is not Finished and outcome.outcome == AttemptOutcome.TIMED_OUT
    assert atomic_effects([claimed.id]) == {}


def test_a_cancel_request_committed_before_the_finish_refuses_the_success_and_rolls_back(broker: Broker):
    """The handler never saw the signal and returned; the committed request still wins (invariant 9)."""
    claimed = _claim(broker)
    services.cancel(claimed.id)

    outcome = execute(_running(claimed), WORKER)

    assert type(outcome) is not Finished and outcome.status == JobStatus.CANCELLED
    assert atomic_effects([claimed.id]) == {}
    assert Job.objects.get(pk=claimed.id).status == JobStatus.RUNNING  # the refused finish rolled back too
    services.settle(broker, [outcome], [], WORKER)
    stored = Job.objects.get(pk=claimed.id)
    assert stored.status == JobStatus.CANCELLED and "database writes were rolled back" in stored.error
    assert _attempts(claimed.id) == [AttemptOutcome.CANCELLED]


def test_a_stale_lease_token_refuses_the_success_and_rolls_the_write_back(broker: Broker):
    claimed = _claim(broker)
    stale = dataclasses.replace(claimed, token="someone-elses-lease")

    outcome = execute(_running(stale), WORKER)

    assert type(outcome) is not Finished and outcome.outcome == AttemptOutcome.LEASE_EXPIRED
    assert atomic_effects([claimed.id]) == {}
    stored = Job.objects.get(pk=claimed.id)
    assert (stored.status, stored.lease_token) == (JobStatus.RUNNING, claimed.token)
    assert not JobAttempt.objects.filter(job_id=claimed.id).exists()


def test_a_non_atomic_handler_write_is_not_undone_by_its_failure(broker: Broker):
    """The control: without ``atomic`` a handler's write stands whatever happens to its job."""
    job_type = registry.get("test.atomic_write")
    plain = dataclasses.replace(job_type, name="test.plain_write", atomic=False)
    registry.register(plain)
    try:
        claimed = claim(broker, services.enqueue("test.plain_write", kwargs={"fail_times": 1}))
        outcome = execute(_running(claimed), WORKER)
    finally:
        registry.unregister("test.plain_write")

    assert type(outcome) is not Finished and outcome.status == JobStatus.RETRYING
    assert atomic_effects([claimed.id]) == {claimed.id: 1}


def test_job_types_api_says_which_types_are_atomic():
    response = client_for(make_user("reader", "view_job")).get("/api/job-types/")

    assert response.status_code == 200
    types = {item["name"]: item for item in response.json()}
    assert types["test.atomic_write"]["atomic"] is True
    assert types["test.ok"]["atomic"] is False


def test_atomic_must_be_a_bool_and_a_synchronous_handler():
    with pytest.raises(TypeError, match="atomic must be True or False"):
        registry.job("test.bad_atomic", atomic="yes")  # type: ignore[arg-type]

    async def handler() -> None:
        return None

    with pytest.raises(TypeError, match="atomic=True needs a synchronous function"):
        registry.job("test.bad_atomic", atomic=True)(handler)
    assert registry.find("test.bad_atomic") is None


def test_the_task_option_atomic_reaches_the_job_type_and_is_validated(monkeypatch):
    monkeypatch.setattr(lookup, "_declared", dict(lookup._declared))  # the tasks made here are forgotten
    assert job_type_for(task(atomic=True)(fx.plain_function)).atomic is True
    assert job_type_for(task()(fx.plain_function)).atomic is False
    with pytest.raises(InvalidTask, match="atomic must be True or False"):
        task(atomic="yes")(fx.plain_function)

    async def coroutine() -> None:
        return None

    coroutine.__module__, coroutine.__qualname__ = fx.__name__, "plain_async"
    with pytest.raises(InvalidTask, match="atomic=True needs a synchronous function"):
        task(atomic=True)(coroutine)
