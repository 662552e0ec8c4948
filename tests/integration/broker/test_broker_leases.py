"""Leases: fencing by token, extension and re-assertion, expiry, cancel flags (invariants 2, 3, 9)."""

from __future__ import annotations

import time

import pytest

from workers import broker as b
from workers.broker import Broker, Placement, Popped, ready_score

LEASE_MS = 30_000


def lease_one(broker: Broker, job_id: str = "j", queue: str = "default", lease_ms: int = LEASE_MS) -> Popped:
    broker.enqueue([Placement(job_id, queue, ready_score(0, 1))])
    (job,) = broker.dequeue([queue], 1, lease_ms, "w1").jobs
    return job


def lease_state(broker: Broker, job_id: str) -> tuple[object, ...]:
    c = broker.client
    return (
        c.zscore(broker.key("leases"), job_id),
        c.hget(broker.key("lease_tokens"), job_id),
        c.hget(broker.key("lease_queues"), job_id),
        c.sismember(broker.key("cancel"), job_id),
    )


def test_ack_releases_the_lease_with_the_right_token(broker: Broker) -> None:
    job = lease_one(broker)

    assert broker.ack([(job.id, job.token)]) == 1
    assert broker.location(job.id, "default") is None
    assert lease_state(broker, job.id) == (None, None, None, 0)
    assert broker.ack([(job.id, job.token)]) == 0  # safe to repeat


@pytest.mark.parametrize(
    "call",
    [
        lambda b, job: b.ack([(job.id, "wrong")]),
        lambda b, job: b.retry([(job.id, "wrong", b.now_ms(), ready_score(0, 1))]),
        lambda b, job: b.give_back([(job.id, "wrong", ready_score(0, 1))]),
    ],
    ids=["ack", "retry", "give_back"],
)
def test_a_wrong_token_changes_nothing(broker: Broker, call) -> None:
    """Invariant 3: fencing; a stale worker cannot release or move a lease it no longer owns."""
    job = lease_one(broker)
    before = lease_state(broker, job.id)

    assert call(broker, job) == 0
    assert lease_state(broker, job.id) == before
    assert broker.depths(["default"]) == {"default": {"ready": 0, "delayed": 0}}


def test_retry_moves_the_job_to_delayed_of_its_lease_queue(broker: Broker) -> None:
    job = lease_one(broker, queue="emails")
    broker.wait_for_work(["emails"], 0.1)  # an idle worker consumed the enqueue's marker
    run_at = broker.now_ms() + 60_000

    assert broker.retry([(job.id, job.token, run_at, ready_score(5, 1))]) == 1

    assert broker.location(job.id, "emails") == "delayed"
    assert broker.client.zscore(broker.key("delayed", "emails"), job.id) == run_at
    assert broker.client.hget(broker.key("ready_scores"), job.id) == str(ready_score(5, 1))
    assert broker.client.zscore(broker.key("marker", "emails"), "m") == run_at
    assert lease_state(broker, job.id) == (None, None, None, 0)


def test_retried_job_comes_back_when_due(broker: Broker, wait_until_ms) -> None:
    job = lease_one(broker)
    run_at = broker.now_ms() + 80
    broker.retry([(job.id, job.token, run_at, ready_score(0, 1))])
    wait_until_ms(broker, run_at)

    again = broker.dequeue(["default"], 1, LEASE_MS, "w2")

    assert [j.id for j in again.jobs] == [job.id]
    assert again.jobs[0].token != job.token


def test_give_back_makes_the_job_ready_at_once(broker: Broker) -> None:
    job = lease_one(broker)

    assert broker.give_back([(job.id, job.token, ready_score(0, 1))]) == 1

    assert broker.location(job.id, "default") == "ready"
    assert broker.client.zscore(broker.key("marker", "default"), "m") == 0
    assert [j.id for j in broker.dequeue(["default"], 1, LEASE_MS, "w2").jobs] == [job.id]


def test_extend_pushes_the_expiry_with_the_right_token(broker: Broker) -> None:
    job = lease_one(broker, lease_ms=1_000)
    before = broker.client.zscore(broker.key("leases"), job.id)

    result = broker.extend([(job.id, job.token, job.queue)], 120_000)

    assert result.lost == []
    assert result.cancel == []
    assert broker.client.zscore(broker.key("leases"), job.id) >= before + 100_000


def test_extend_with_another_token_reports_lost_and_changes_nothing(broker: Broker) -> None:
    job = lease_one(broker)
    before = lease_state(broker, job.id)

    result = broker.extend([(job.id, "someone-else", job.queue)], 120_000)

    assert result.lost == [job.id]
    assert lease_state(broker, job.id) == before


def test_extend_reasserts_leases_after_redis_lost_its_data(broker: Broker, lose_redis_data) -> None:
    """Invariant 6: after a flush the worker's extend re-creates its lease with its own token and queue."""
    job = lease_one(broker, queue="emails")
    lose_redis_data()

    result = broker.extend([(job.id, job.token, job.queue)], 60_000)

    assert result.lost == []
    assert broker.location(job.id, "emails") == "leased"
    assert broker.client.hget(broker.key("lease_tokens"), job.id) == job.token
    assert broker.client.hget(broker.key("lease_queues"), job.id) == "emails"
    # The re-asserted lease is fenced and released like any other.
    assert broker.ack([(job.id, job.token)]) == 1


def test_extend_does_not_reassert_a_lease_whose_job_was_queued_again(broker: Broker) -> None:
    """A reaped and re-queued job belongs to the next pop: the late worker is told it lost the lease."""
    job = lease_one(broker)
    broker.retry([(job.id, job.token, broker.now_ms() + 60_000, ready_score(0, 1))])

    result = broker.extend([(job.id, job.token, job.queue)], 60_000)

    assert result.lost == [job.id]
    assert broker.location(job.id, "default") == "delayed"


def test_expired_returns_only_expired_leases_and_changes_nothing(broker: Broker, wait_until_ms) -> None:
    short = lease_one(broker, "short", lease_ms=50)
    broker.enqueue([Placement("long", "default", ready_score(0, 2))])
    (long,) = broker.dequeue(["default"], 1, LEASE_MS, "w1").jobs
    wait_until_ms(broker, broker.now_ms() + 60)
    before = (lease_state(broker, "short"), lease_state(broker, "long"))

    assert broker.expired() == [("short", short.token, "default")]
    assert broker.expired() == [("short", short.token, "default")]  # read-only: same answer again
    assert (lease_state(broker, "short"), lease_state(broker, "long")) == before
    assert long.id == "long"


def test_expired_honours_the_limit(broker: Broker, wait_until_ms) -> None:
    broker.enqueue([Placement(f"j{i}", "default", ready_score(0, i)) for i in range(1, 6)])
    broker.dequeue(["default"], 5, 20, "w1")
    wait_until_ms(broker, broker.now_ms() + 30)

    assert [row[0] for row in broker.expired(limit=3)] == ["j1", "j2", "j3"]


def test_reaper_flow_retries_expired_leases(broker: Broker, wait_until_ms) -> None:
    """The reaper writes PostgreSQL, then calls retry() with the token expired() reported."""
    lease_one(broker, lease_ms=20)
    wait_until_ms(broker, broker.now_ms() + 30)
    ((job_id, token, queue),) = broker.expired()

    assert broker.retry([(job_id, token, broker.now_ms(), ready_score(0, 1))]) == 1
    assert broker.expired() == []
    assert broker.location(job_id, queue) == "delayed"


def test_cancel_removes_queued_and_delayed_ids(broker: Broker) -> None:
    broker.enqueue([Placement("queued", "default", ready_score(0, 1))])
    broker.enqueue([Placement("delayed", "default", ready_score(0, 2), broker.now_ms() + 60_000)])

    flagged = broker.cancel([("queued", "default"), ("delayed", "default")])

    assert flagged == []
    assert broker.location("queued", "default") is None
    assert broker.location("delayed", "default") is None
    assert broker.client.hexists(broker.key("ready_scores"), "delayed") == 0


def test_cancel_flags_a_leased_job_and_extend_reports_it(broker: Broker) -> None:
    """Invariant 9: the worker learns about the cancel request from its next extend."""
    job = lease_one(broker)

    assert broker.cancel([(job.id, job.queue)]) == [job.id]
    assert broker.location(job.id, "default") == "leased"

    result = broker.extend([(job.id, job.token, job.queue)], LEASE_MS)
    assert result.cancel == [job.id]
    assert result.lost == []

    broker.ack([(job.id, job.token)])
    assert broker.client.sismember(broker.key("cancel"), job.id) == 0


def test_cancel_pushes_a_leased_id_onto_its_workers_control_list_at_once(broker: Broker) -> None:
    """Invariant 9: the worker holding the lease can learn of the cancel without waiting to extend."""
    job = lease_one(broker)
    broker.enqueue([Placement("other", "q2", ready_score(0, 2))])
    (other,) = broker.dequeue(["q2"], 1, LEASE_MS, "w2").jobs

    assert broker.cancel([(job.id, job.queue), (other.id, other.queue), ("never-leased", "default")]) == [
        job.id,
        other.id,
    ]

    assert broker.next_cancels("w1", 0.05) == [job.id]
    assert broker.next_cancels("w2", 0.05) == [other.id]
    assert broker.next_cancels("w1", 0.05) == []  # delivered once; the cancel SET still flags it
    assert broker.extend([(job.id, job.token, job.queue)], LEASE_MS).cancel == [job.id]


def test_a_control_list_expires_and_a_leaving_worker_drops_it(broker: Broker) -> None:
    job = lease_one(broker)
    broker.cancel([(job.id, job.queue)])
    assert 0 < broker.client.pttl(broker.key("control", "w1")) <= b.CONTROL_TTL_MS

    broker.drop_cancels("w1")

    assert broker.client.exists(broker.key("control", "w1")) == 0


def test_next_cancels_waits_for_a_push_and_returns_every_id_queued(broker: Broker) -> None:
    broker.enqueue([Placement(f"j{i}", "default", ready_score(0, i + 1)) for i in range(3)])
    jobs = broker.dequeue(["default"], 3, LEASE_MS, "w1").jobs
    broker.cancel([(j.id, j.queue) for j in jobs])

    assert sorted(broker.next_cancels("w1", 1.0)) == sorted(j.id for j in jobs)
    started = time.monotonic()
    assert broker.next_cancels("w1", 0.2) == []
    assert time.monotonic() - started >= 0.15


def test_cancel_handles_several_queues_in_one_call(broker: Broker) -> None:
    broker.enqueue([Placement("a", "q1", ready_score(0, 1)), Placement("c", "q1", ready_score(0, 3))])
    broker.enqueue([Placement("b", "q2", ready_score(0, 2))])

    assert broker.cancel([("a", "q1"), ("b", "q2")]) == []

    assert broker.depths(["q1", "q2"]) == {"q1": {"ready": 1, "delayed": 0}, "q2": {"ready": 0, "delayed": 0}}
