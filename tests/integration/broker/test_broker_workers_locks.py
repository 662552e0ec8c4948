"""Worker heartbeats, short locks, and script loading."""

from __future__ import annotations

from workers import broker as b
from workers.broker import Broker, Placement, ready_score


def test_heartbeat_records_info_and_liveness(broker: Broker) -> None:
    broker.heartbeat("w1", {"pid": 42, "queues": ["default"], "host": "box"}, ttl_ms=60_000)

    (worker,) = broker.workers(stale_after_ms=10_000)

    assert worker["id"] == "w1"
    assert worker["pid"] == 42
    assert worker["queues"] == ["default"]
    assert worker["host"] == "box"
    assert worker["alive"] is True
    assert abs(worker["last_heartbeat_ms"] - broker.now_ms()) < 5_000
    assert 0 < broker.client.pttl(broker.key("worker", "w1")) <= 60_000


def test_worker_without_recent_heartbeat_is_not_alive(broker: Broker, wait_until_ms) -> None:
    broker.heartbeat("w1", {"pid": 1}, ttl_ms=60_000)
    wait_until_ms(broker, broker.now_ms() + 30)

    (worker,) = broker.workers(stale_after_ms=10)

    assert worker["alive"] is False


def test_remove_worker_forgets_it(broker: Broker) -> None:
    broker.heartbeat("w1", {"pid": 1}, ttl_ms=60_000)
    broker.heartbeat("w2", {"pid": 2}, ttl_ms=60_000)

    broker.remove_worker("w1")

    assert [w["id"] for w in broker.workers(stale_after_ms=10_000)] == ["w2"]
    assert broker.client.exists(broker.key("worker", "w1")) == 0


def test_lock_is_exclusive_and_released_by_compare_and_delete(broker: Broker) -> None:
    token = broker.acquire_lock("reaper", ttl_ms=10_000)
    assert token is not None
    assert broker.acquire_lock("reaper", ttl_ms=10_000) is None

    assert broker.release_lock("reaper", "not-the-holder") is False
    assert broker.acquire_lock("reaper", ttl_ms=10_000) is None

    assert broker.release_lock("reaper", token) is True
    assert broker.release_lock("reaper", token) is False
    assert broker.acquire_lock("reaper", ttl_ms=10_000) is not None


def test_lock_renewal_needs_the_holders_token(broker: Broker) -> None:
    token = broker.acquire_lock("scheduler", ttl_ms=1_000)
    assert token is not None

    assert broker.renew_lock("scheduler", "not-the-holder", 60_000) is False
    assert broker.client.pttl(broker.key("lock", "scheduler")) <= 1_000
    assert broker.renew_lock("scheduler", token, 60_000) is True
    assert broker.client.pttl(broker.key("lock", "scheduler")) > 1_000


def test_scripts_are_reloaded_after_redis_forgot_them(broker: Broker) -> None:
    """NoScriptError (SCRIPT FLUSH, restart) is answered by one SCRIPT LOAD and a retry."""
    broker.client.script_flush()

    broker.enqueue([Placement("j", "default", ready_score(0, 1))])

    assert broker.location("j", "default") == "ready"


def test_heartbeat_forgets_silent_workers_at_most_a_hundred_at_a_time(broker: Broker) -> None:
    """The prune is bounded (invariant 5): a backlog of silent workers drains over a few heartbeats."""
    long_ago = broker.now_ms() - b.WORKER_PRUNE_MS - 60_000
    broker.client.zadd(broker.key("workers"), {f"gone-{i}": long_ago + i for i in range(150)})
    broker.client.zadd(broker.key("workers"), {"quiet": broker.now_ms() - 60_000})  # silent, not for long

    broker.heartbeat("w1", {"pid": 1}, ttl_ms=60_000)
    assert broker.client.zcard(broker.key("workers")) == 150 + 2 - 100
    assert broker.client.zscore(broker.key("workers"), "gone-0") is None  # the longest silent go first

    broker.heartbeat("w1", {"pid": 1}, ttl_ms=60_000)
    assert sorted(broker.client.zrange(broker.key("workers"), 0, -1)) == ["quiet", "w1"]


def test_lock_ttl_reports_time_left_and_absence(broker: Broker) -> None:
    assert broker.lock_ttl_ms("scheduler") == -2
    token = broker.acquire_lock("scheduler", ttl_ms=5_000)
    assert token is not None
    assert 0 < broker.lock_ttl_ms("scheduler") <= 5_000
    reported = broker.lock_ttl_ms("scheduler")
    direct = broker.client.pttl(broker.key("lock", "scheduler"))  # the same key, read a moment later
    assert 0 <= reported - direct <= 200
