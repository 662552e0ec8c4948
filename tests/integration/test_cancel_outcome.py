"""The outcome rule of invariant 9, in the settle statement: a cancel request committed before an attempt's
outcome wins whatever the outcome says, and the lease token still fences who may record it."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest

from jobs import services
from jobs.errors import IllegalTransition
from jobs.models import AttemptOutcome, DeadLetter, Job, JobAttempt, JobStatus
from jobs.values import Claimed, Outcome
from tests.support.api import WORKER, claim
from workers.broker import Broker

pytestmark = pytest.mark.django_db(transaction=True)  # the cancel's Redis push runs on commit

OUTCOMES: dict[str, Callable[[Claimed], Outcome]] = {
    "returned": lambda c: services.succeeded(c, {"value": 1}),
    "raised (retry left)": lambda c: services.after_failure(c, AttemptOutcome.FAILED, "boom"),
    "raised (last attempt)": lambda c: services.after_failure(
        c, AttemptOutcome.FAILED, "boom", permanent=True
    ),
    "timed out": lambda c: services.after_failure(c, AttemptOutcome.TIMED_OUT, "timed out after 1s"),
    "lease expired": lambda c: services.after_failure(c, AttemptOutcome.LEASE_EXPIRED, "lease expired"),
}


@pytest.mark.parametrize("what", list(OUTCOMES))
def test_an_outcome_recorded_after_a_cancel_request_ends_cancelled_never_retried(broker: Broker, what):
    claimed = claim(broker, services.enqueue("test.ok", max_attempts=3))
    services.cancel(claimed.id)

    services.settle(broker, [OUTCOMES[what](claimed)], [], WORKER)
    stored = Job.objects.get(pk=claimed.id)

    assert stored.status == JobStatus.CANCELLED
    assert stored.finished_at is not None and stored.lease_token is None
    assert stored.error.startswith("cancelled by an operator while running")
    assert list(JobAttempt.objects.filter(job_id=claimed.id).values_list("outcome", flat=True)) == [
        AttemptOutcome.CANCELLED
    ]
    assert not DeadLetter.objects.filter(job_id=claimed.id).exists()
    assert broker.location(claimed.id, claimed.queue) is None  # released, not delayed for a retry


def test_the_cancel_request_is_pushed_to_the_worker_holding_the_lease(broker: Broker):
    claimed = claim(broker, services.enqueue("test.ok"))

    services.cancel(claimed.id)

    assert broker.next_cancels(WORKER, 0.1) == [claimed.id]


def test_an_outcome_recorded_before_the_request_stands_and_the_request_is_refused(broker: Broker):
    claimed = claim(broker, services.enqueue("test.ok"))
    services.settle(broker, [services.succeeded(claimed, 7)], [], WORKER)

    with pytest.raises(IllegalTransition, match="already succeeded"):
        services.cancel(claimed.id)

    stored = Job.objects.get(pk=claimed.id)
    assert (stored.status, stored.result, stored.cancel_requested_at) == (JobStatus.SUCCEEDED, 7, None)


def test_a_stale_lease_cannot_record_an_outcome_for_a_cancelled_job(broker: Broker):
    claimed = claim(broker, services.enqueue("test.ok"))
    services.cancel(claimed.id)
    stale = dataclasses.replace(claimed, token="not-the-lease")

    services.settle(broker, [services.succeeded(stale, 1)], [], WORKER)

    stored = Job.objects.get(pk=claimed.id)
    assert stored.status == JobStatus.RUNNING and stored.cancel_requested_at is not None
    assert not JobAttempt.objects.filter(job_id=claimed.id).exists()
