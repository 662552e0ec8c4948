"""The Python enqueue API: validation, transactions and idempotency (PostgreSQL + Redis, no worker)."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from jobs import dispatch, services
from jobs.errors import IdempotencyConflict, InvalidJob, PayloadTooLarge
from jobs.models import Job, JobStatus
from workers.broker import ready_score

pytestmark = pytest.mark.django_db(transaction=True)


def test_enqueue_records_the_job_and_dispatches_it_to_the_ready_set(broker):
    job = services.enqueue("email.send", kwargs={"to": "a@example.com"}, priority=5)

    stored = Job.objects.get(pk=job.pk)
    assert stored.status == JobStatus.QUEUED
    assert (stored.queue, stored.priority, stored.max_attempts) == ("default", 5, 3)
    assert stored.seq == job.seq
    dispatch.flush()
    assert broker.location(str(job.id), "default") == "ready"
    assert broker.client.zscore(broker.key("ready", "default"), str(job.id)) == ready_score(5, job.seq)


def test_a_future_run_at_makes_the_job_scheduled_and_delayed_in_redis(broker):
    run_at = timezone.now() + timedelta(minutes=5)
    job = services.enqueue("noop", run_at=run_at)

    assert Job.objects.get(pk=job.pk).status == JobStatus.SCHEDULED
    dispatch.flush()
    assert broker.location(str(job.id), "default") == "delayed"
    assert broker.client.zscore(broker.key("delayed", "default"), str(job.id)) == int(
        run_at.timestamp() * 1000
    )


def test_enqueue_inside_a_rolled_back_transaction_leaves_nothing_to_run(broker):
    with pytest.raises(RuntimeError), transaction.atomic():
        job = services.enqueue("noop")
        dispatch.flush()  # whatever was handed to the pusher so far has reached Redis
        assert broker.location(str(job.id), "default") is None  # the push waits for the commit
        raise RuntimeError("roll back")

    assert not Job.objects.exists()
    dispatch.flush()
    assert broker.client.zcard(broker.key("ready", "default")) == 0


def test_enqueue_inside_a_committed_transaction_dispatches_on_commit(broker):
    with transaction.atomic():
        job = services.enqueue("noop")
        dispatch.flush()  # whatever was handed to the pusher so far has reached Redis
        assert broker.location(str(job.id), "default") is None
    dispatch.flush()
    assert broker.location(str(job.id), "default") == "ready"


@pytest.mark.parametrize(
    ("call", "field", "fragment"),
    [
        ({"type": "no.such.type"}, "type", "unknown job type 'no.such.type'"),
        ({"type": "noop", "priority": 101}, "priority", "from -100 to 100"),
        ({"type": "noop", "priority": "high"}, "priority", "from -100 to 100"),
        ({"type": "noop", "max_attempts": 0}, "max_attempts", "from 1 to"),
        ({"type": "noop", "queue": "bad queue!"}, "queue", "1-64 characters"),
        ({"type": "noop", "timeout": -1}, "timeout", "above 0"),
        ({"type": "noop", "run_at": timezone.now().replace(tzinfo=None)}, "run_at", "timezone-aware"),
        ({"type": "test.needs_args", "kwargs": {"wrong": 1}}, "kwargs", "does not accept these arguments"),
        (
            {"type": "noop", "kwargs": {"when": object()}},
            "kwargs",
            "kwargs.when: a value of type object is not JSON",
        ),
        ({"type": "noop", "backoff": {"base": -1}}, "backoff", "base, max, jitter"),
    ],
)
def test_invalid_enqueue_names_the_field_and_records_nothing(broker, call, field, fragment):
    with pytest.raises(InvalidJob) as excinfo:
        services.enqueue(**call)

    assert field in excinfo.value.message_dict
    assert fragment in " ".join(excinfo.value.message_dict[field])
    assert not Job.objects.exists()


def test_an_oversized_payload_is_rejected(broker, settings):
    settings.JOBQUEUE_MAX_PAYLOAD_BYTES = 1024
    with pytest.raises(PayloadTooLarge) as excinfo:
        services.enqueue("noop", kwargs={"blob": "x" * 2000})
    assert "limit is 1024" in excinfo.value.message_dict["kwargs"][0]
    assert not Job.objects.exists()


def test_idempotency_key_returns_the_first_job(broker):
    first = services.enqueue("noop", kwargs={"n": 1}, idempotency_key="order-42")
    second = services.enqueue("noop", kwargs={"n": 1}, idempotency_key="order-42")

    assert second.pk == first.pk
    assert Job.objects.count() == 1


def test_idempotency_key_reused_for_a_different_request_is_a_conflict(broker):
    services.enqueue("noop", kwargs={"n": 1}, idempotency_key="order-42")
    with pytest.raises(IdempotencyConflict, match="different request"):
        services.enqueue("noop", kwargs={"n": 2}, idempotency_key="order-42")
    assert Job.objects.count() == 1


def test_idempotency_key_holds_under_concurrent_enqueues(broker):
    """Eight threads race with the same key: one job exists and every thread gets it."""
    from django.db import connection

    barrier = threading.Barrier(8)
    results: list[str] = []
    errors: list[BaseException] = []

    def enqueue() -> None:
        try:
            barrier.wait()
            results.append(str(services.enqueue("noop", kwargs={"n": 1}, idempotency_key="race").pk))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=enqueue) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert not errors
    assert len(results) == 8 and len(set(results)) == 1
    assert Job.objects.count() == 1
    dispatch.flush()
    assert broker.client.zcard(broker.key("ready", "default")) == 1


def test_enqueue_many_preserves_order_and_dispatches_once_committed(broker):
    jobs = services.enqueue_many([{"type": "noop", "kwargs": {"i": i}} for i in range(2500)])

    assert [job.seq for job in jobs] == sorted(job.seq for job in jobs)
    assert Job.objects.count() == 2500
    dispatch.flush()
    assert broker.client.zcard(broker.key("ready", "default")) == 2500


def test_enqueue_while_redis_is_down_keeps_the_job_in_postgresql(broker, settings, caplog):
    from jobs.dispatch import reset_broker

    settings.REDIS_URL = "unix:///nonexistent/redis.sock"
    reset_broker()
    job = services.enqueue("noop")
    dispatch.flush()  # the push (and its warning) happens on the pusher thread

    assert Job.objects.get(pk=job.pk).status == JobStatus.QUEUED
    assert "to be dispatched by the reconciler" in caplog.text


def test_enqueue_returns_after_the_commit_and_the_pusher_places_a_burst_in_redis(broker):
    """The push runs on the process's pusher thread; ``flush()`` waits until all of it reached Redis."""
    jobs = [services.enqueue("noop") for _ in range(300)]
    assert Job.objects.filter(pk__in=[j.pk for j in jobs], status=JobStatus.QUEUED).count() == 300

    assert dispatch.flush() is True
    scores = dict(broker.client.zrange(broker.key("ready", "default"), 0, -1, withscores=True))
    assert scores == {str(j.id): ready_score(0, j.seq) for j in jobs}


def test_argument_checks_are_remembered_per_shape_and_never_let_a_bad_call_through():
    """The handler's signature is checked once per (positional count, keyword names): values never matter."""
    for _ in range(3):
        assert services.enqueue("test.ok", kwargs={"value": 1}).status == JobStatus.QUEUED
        with pytest.raises(InvalidJob, match="does not accept these arguments"):
            services.enqueue("test.ok", kwargs={"other": 1})
        with pytest.raises(InvalidJob, match="does not accept these arguments"):
            services.enqueue("test.ok", args=[1, 2])
        assert services.enqueue("test.ok", args=["positional"]).status == JobStatus.QUEUED
