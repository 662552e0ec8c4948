"""Dispatch order, delayed promotion, one place per job, batching: against a real Redis."""

from __future__ import annotations

import random

from workers.broker import Broker, Placement, ready_score

LEASE_MS = 30_000


def ids_of(result) -> list[str]:
    return [job.id for job in result.jobs]


def test_highest_priority_first_then_fifo_by_seq(broker: Broker) -> None:
    jobs = [("low-1", -5, 1), ("high-2", 50, 2), ("mid-3", 0, 3), ("high-4", 50, 4), ("mid-5", 0, 5)]
    placements = [Placement(job_id, "default", ready_score(prio, seq)) for job_id, prio, seq in jobs]
    random.Random(7).shuffle(placements)
    broker.enqueue(placements)

    result = broker.dequeue(["default"], 10, LEASE_MS, "w1")

    assert ids_of(result) == ["high-2", "high-4", "mid-3", "mid-5", "low-1"]


def test_equal_millisecond_enqueues_keep_seq_order(broker: Broker) -> None:
    """Invariant 8: one enqueue call (same millisecond) in reverse order still pops by seq."""
    broker.enqueue([Placement(f"job-{seq}", "default", ready_score(0, seq)) for seq in range(50, 0, -1)])

    result = broker.dequeue(["default"], 50, LEASE_MS, "w1")

    assert ids_of(result) == [f"job-{seq}" for seq in range(1, 51)]


def test_each_pop_gets_its_own_token_and_lease(broker: Broker) -> None:
    broker.enqueue([Placement(f"j{i}", "default", ready_score(0, i)) for i in range(1, 4)])

    result = broker.dequeue(["default"], 3, LEASE_MS, "w1")

    tokens = [job.token for job in result.jobs]
    assert len(set(tokens)) == 3
    assert all(job.queue == "default" for job in result.jobs)
    assert all(broker.location(job.id, "default") == "leased" for job in result.jobs)
    assert broker.client.hget(broker.key("lease_tokens"), "j1") == tokens[0]
    assert broker.client.hget(broker.key("lease_queues"), "j1") == "default"


def test_delayed_job_is_not_popped_before_due_and_is_promoted_when_due(broker: Broker, wait_until_ms) -> None:
    run_at = broker.now_ms() + 150
    broker.enqueue([Placement("later", "default", ready_score(0, 1), run_at)])

    early = broker.dequeue(["default"], 10, LEASE_MS, "w1")
    assert early.jobs == []
    assert early.next_due_ms == run_at
    assert broker.location("later", "default") == "delayed"

    wait_until_ms(broker, run_at)
    due = broker.dequeue(["default"], 10, LEASE_MS, "w1")

    assert ids_of(due) == ["later"]
    assert due.next_due_ms is None
    assert broker.client.hexists(broker.key("ready_scores"), "later") == 0


def test_promoted_job_takes_its_priority_place_in_ready(broker: Broker, wait_until_ms) -> None:
    run_at = broker.now_ms() + 50
    broker.enqueue([Placement("urgent-later", "default", ready_score(90, 9), run_at)])
    broker.enqueue([Placement("normal-now", "default", ready_score(0, 1))])
    wait_until_ms(broker, run_at)

    result = broker.dequeue(["default"], 10, LEASE_MS, "w1")

    assert ids_of(result) == ["urgent-later", "normal-now"]


def test_past_run_at_goes_straight_to_ready(broker: Broker) -> None:
    broker.enqueue([Placement("overdue", "default", ready_score(0, 1), broker.now_ms() - 1000)])

    assert broker.location("overdue", "default") == "ready"


def test_leased_id_is_never_popped_again(broker: Broker) -> None:
    """Invariant 7: an id that holds a lease is skipped (and dropped from ready) by dequeue."""
    broker.enqueue([Placement("dup", "default", ready_score(0, 1))])
    first = broker.dequeue(["default"], 1, LEASE_MS, "w1")
    broker.enqueue(
        [Placement("dup", "default", ready_score(0, 1)), Placement("other", "default", ready_score(0, 2))]
    )

    second = broker.dequeue(["default"], 10, LEASE_MS, "w2")

    assert ids_of(first) == ["dup"]
    assert ids_of(second) == ["other"]
    assert broker.client.hget(broker.key("lease_tokens"), "dup") == first.jobs[0].token
    assert broker.client.zscore(broker.key("ready", "default"), "dup") is None


def test_enqueue_moves_an_id_between_ready_and_delayed(broker: Broker) -> None:
    """Invariant 7: an enqueue takes the id out of the other set of its queue first."""
    future = broker.now_ms() + 60_000
    broker.enqueue([Placement("j", "default", ready_score(0, 1))])
    broker.enqueue([Placement("j", "default", ready_score(0, 1), future)])

    assert broker.location("j", "default") == "delayed"
    assert broker.client.zscore(broker.key("ready", "default"), "j") is None
    assert broker.depths(["default"]) == {"default": {"ready": 0, "delayed": 1}}

    broker.enqueue([Placement("j", "default", ready_score(0, 1))])

    assert broker.location("j", "default") == "ready"
    assert broker.client.zscore(broker.key("delayed", "default"), "j") is None
    assert broker.client.hexists(broker.key("ready_scores"), "j") == 0


def test_duplicate_ids_in_one_enqueue_end_in_one_place(broker: Broker) -> None:
    future = broker.now_ms() + 60_000
    broker.enqueue(
        [Placement("j", "default", ready_score(0, 1)), Placement("j", "default", ready_score(0, 1), future)]
    )

    assert broker.depths(["default"]) == {"default": {"ready": 0, "delayed": 1}}


def test_dequeue_across_queues_respects_queue_order(broker: Broker) -> None:
    broker.enqueue([Placement(f"low-{i}", "low", ready_score(100, i)) for i in range(1, 4)])
    broker.enqueue([Placement(f"high-{i}", "high", ready_score(-100, i)) for i in range(1, 3)])

    result = broker.dequeue(["high", "low"], 4, LEASE_MS, "w1")

    assert [(job.queue, job.id) for job in result.jobs] == [
        ("high", "high-1"),
        ("high", "high-2"),
        ("low", "low-1"),
        ("low", "low-2"),
    ]
    assert broker.depths(["high", "low"]) == {
        "high": {"ready": 0, "delayed": 0},
        "low": {"ready": 1, "delayed": 0},
    }


def test_next_due_is_the_earliest_delayed_over_all_queues(broker: Broker) -> None:
    now = broker.now_ms()
    broker.enqueue([Placement("a", "q1", ready_score(0, 1), now + 60_000)])
    broker.enqueue([Placement("b", "q2", ready_score(0, 2), now + 30_000)])

    result = broker.dequeue(["q1", "q2"], 10, LEASE_MS, "w1")

    assert result.jobs == []
    assert result.next_due_ms == now + 30_000


def test_batches_above_one_thousand_ids_are_chunked(broker: Broker) -> None:
    broker.enqueue([Placement(f"j{i}", "bulk", ready_score(0, i)) for i in range(1, 2501)])
    assert broker.depths(["bulk"])["bulk"]["ready"] == 2500

    result = broker.dequeue(["bulk"], 2500, LEASE_MS, "w1")

    assert ids_of(result) == [f"j{i}" for i in range(1, 2501)]
    assert len({job.token for job in result.jobs}) == 2500
    assert broker.client.zcard(broker.key("leases")) == 2500
    assert broker.ack([(job.id, job.token) for job in result.jobs]) == 2500
    assert broker.client.zcard(broker.key("leases")) == 0
    assert broker.client.hlen(broker.key("lease_tokens")) == 0


def test_dequeue_of_an_empty_queue_returns_nothing(broker: Broker) -> None:
    result = broker.dequeue(["empty"], 5, LEASE_MS, "w1")

    assert result.jobs == []
    assert result.next_due_ms is None
