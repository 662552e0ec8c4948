"""Rebuilding Redis from PostgreSQL: reconcile and the epoch (invariant 6, "nothing lost when Redis is")."""

from __future__ import annotations

from workers.broker import Broker, Placement, ready_score

LEASE_MS = 30_000


def test_reconcile_adds_only_what_is_missing_and_never_duplicates(broker: Broker) -> None:
    future = broker.now_ms() + 60_000
    broker.enqueue([Placement("leased", "default", ready_score(0, 1))])
    broker.enqueue([Placement("present", "default", ready_score(0, 2))])
    (leased,) = broker.dequeue(["default"], 1, LEASE_MS, "w1").jobs
    placements = [
        Placement("present", "default", ready_score(0, 2)),
        Placement("leased", "default", ready_score(0, 1)),
        Placement("missing-now", "default", ready_score(0, 3)),
        Placement("missing-later", "other", ready_score(0, 4), future),
    ]
    running = [("leased", leased.token, "default"), ("running-lost", "tok-9", "default")]

    assert leased.id == "leased"
    assert broker.reconcile(placements, running, LEASE_MS) == 3
    assert broker.reconcile(placements, running, LEASE_MS) == 0

    assert broker.location("missing-now", "default") == "ready"
    assert broker.location("missing-later", "other") == "delayed"
    assert broker.client.hget(broker.key("ready_scores"), "missing-later") == str(ready_score(0, 4))
    assert broker.location("running-lost", "default") == "leased"
    assert broker.client.hget(broker.key("lease_tokens"), "running-lost") == "tok-9"
    assert broker.client.hget(broker.key("lease_queues"), "running-lost") == "default"
    assert broker.client.hget(broker.key("lease_tokens"), "leased") == leased.token
    assert broker.depths(["default", "other"]) == {
        "default": {"ready": 2, "delayed": 0},
        "other": {"ready": 0, "delayed": 1},
    }


def test_reconcile_touches_markers_like_enqueue(broker: Broker) -> None:
    run_at = broker.now_ms() + 60_000
    broker.reconcile(
        [Placement("a", "now", ready_score(0, 1)), Placement("b", "later", ready_score(0, 2), run_at)],
        [],
        LEASE_MS,
    )

    assert broker.client.zscore(broker.key("marker", "now"), "m") == 0
    assert broker.client.zscore(broker.key("marker", "later"), "m") == run_at


def test_reconciled_lease_is_handled_by_the_reaper_when_nobody_extends_it(
    broker: Broker, wait_until_ms
) -> None:
    broker.reconcile([], [("orphan", "tok-1", "default")], 20)
    wait_until_ms(broker, broker.now_ms() + 30)

    assert broker.expired() == [("orphan", "tok-1", "default")]


def test_rebuild_after_data_loss_restores_dispatch_in_priority_order(broker: Broker, lose_redis_data) -> None:
    jobs = [
        Placement(f"j{seq}", "default", ready_score(prio, seq)) for seq, prio in [(1, 0), (2, 10), (3, -10)]
    ]
    broker.enqueue(jobs)
    lose_redis_data()

    assert broker.reconcile(jobs, [], LEASE_MS) == 3
    assert [j.id for j in broker.dequeue(["default"], 3, LEASE_MS, "w1").jobs] == ["j2", "j1", "j3"]


def test_reconcile_chunks_large_inputs(broker: Broker) -> None:
    placements = [Placement(f"j{i}", "bulk", ready_score(0, i)) for i in range(1, 1501)]
    running = [(f"r{i}", f"t{i}", "bulk") for i in range(1, 1201)]

    assert broker.reconcile(placements, running, LEASE_MS) == 2700
    assert broker.depths(["bulk"])["bulk"]["ready"] == 1500
    assert broker.client.zcard(broker.key("leases")) == 1200


def test_epoch_is_created_once(broker: Broker) -> None:
    value, created = broker.epoch()
    again, created_again = broker.epoch()

    assert created is True
    assert created_again is False
    assert again == value


def test_a_new_epoch_reveals_lost_data(broker: Broker, lose_redis_data) -> None:
    before, _ = broker.epoch()
    lose_redis_data()

    after, created = broker.epoch()

    assert created is True
    assert after != before


def test_reconciled_running_job_leaves_ready(broker: Broker) -> None:
    """Invariant 7: PostgreSQL says running, so the re-created lease is its only place in Redis."""
    broker.enqueue([Placement("j", "default", ready_score(0, 1))])

    assert broker.reconcile([], [("j", "tok-1", "default")], LEASE_MS) == 1

    assert broker.location("j", "default") == "leased"
    assert broker.client.zscore(broker.key("ready", "default"), "j") is None
