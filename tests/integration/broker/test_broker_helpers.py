"""Keys the broker owns for the engine's helpers: metrics, the API throttle and stats cache, pub/sub."""

from __future__ import annotations

import time
from collections import Counter

import pytest
import redis

from workers.broker import Broker, Placement, ready_score


def test_metrics_are_added_and_read_back_under_the_metrics_keys(broker: Broker) -> None:
    broker.add_metrics(
        {"outcomes": Counter({"t|default|succeeded": 2}), "duration_sum": Counter({"t": 0.25})},
        {1000: Counter({"succeeded": 2})},
        minute_ttl_s=600,
    )
    broker.add_metrics({"outcomes": {"t|default|succeeded": 1}, "duration_sum": {"t": 0.5}}, {}, 600)

    assert broker.client.hgetall(broker.key("metrics", "outcomes")) == {"t|default|succeeded": "3"}
    assert float(broker.client.hget(broker.key("metrics", "duration_sum"), "t")) == 0.75
    assert 0 < broker.client.ttl(broker.key("metrics", "minute", "1000")) <= 600
    hashes, minutes = broker.read_metrics(["outcomes", "pickup"], [999, 1000])
    assert hashes == {"outcomes": {"t|default|succeeded": "3"}, "pickup": {}}
    assert minutes == [{}, {"succeeded": "2"}]


def test_throttle_admits_up_to_the_limit_per_subject_then_says_how_long_to_wait(broker: Broker) -> None:
    assert [broker.throttle("job_create", "7", 60_000, 2).wait_ms for _ in range(2)] == [0, 0]
    refused = broker.throttle("job_create", "7", 60_000, 2)
    assert not refused.admitted and 0 < refused.wait_ms <= 60_000
    assert broker.throttle("job_create", "8", 60_000, 2).admitted  # another user, another window
    assert broker.client.zcard(broker.key("throttle", "job_create", "7")) == 2
    assert 0 < broker.client.pttl(broker.key("throttle", "job_create", "7")) <= 60_000


def test_throttle_counts_down_what_is_left_and_when_the_oldest_admission_frees_a_slot(
    broker: Broker,
) -> None:
    results = [broker.throttle("job_create", "7", 60_000, 3) for _ in range(4)]

    assert [r.remaining for r in results] == [2, 1, 0, 0]
    assert [r.admitted for r in results] == [True, True, True, False]
    # Every reset counts down to the first admission leaving the window, so it never grows.
    assert all(0 < r.reset_ms <= 60_000 for r in results)
    assert [r.reset_ms for r in results] == sorted((r.reset_ms for r in results), reverse=True)
    assert results[3].wait_ms == results[3].reset_ms  # refused: wait exactly until that slot frees


def test_throttle_with_a_limit_of_zero_refuses_for_a_whole_window(broker: Broker) -> None:
    result = broker.throttle("job_create", "7", 60_000, 0)
    assert (result.wait_ms, result.remaining, result.reset_ms) == (60_000, 0, 60_000)
    assert broker.client.exists(broker.key("throttle", "job_create", "7")) == 0


def test_throttle_window_slides(broker: Broker, wait_until_ms) -> None:
    assert broker.throttle("s", "u", 50, 1).admitted
    assert not broker.throttle("s", "u", 50, 1).admitted
    wait_until_ms(broker, broker.now_ms() + 60)
    assert broker.throttle("s", "u", 50, 1).admitted


def test_stats_cache_expires(broker: Broker) -> None:
    assert broker.cached_stats() is None
    broker.cache_stats('{"active": 1}', ttl_ms=5_000)
    assert broker.cached_stats() == '{"active": 1}'
    assert 0 < broker.client.pttl(broker.key("api", "stats", "postgres")) <= 5_000


def test_running_counts_leases_per_queue(broker: Broker) -> None:
    broker.enqueue([Placement(f"a{i}", "a", ready_score(0, i + 1)) for i in range(3)])
    broker.enqueue([Placement("b0", "b", ready_score(0, 9))])
    broker.dequeue(["a", "b"], 3, 30_000, "w1")

    assert broker.running() == (3, Counter({"a": 3}))
    broker.dequeue(["a", "b"], 3, 30_000, "w1")
    assert broker.running() == (4, Counter({"a": 3, "b": 1}))


def test_a_schedule_change_reaches_a_subscriber(broker: Broker, redis_url: str) -> None:
    listener = Broker(redis.Redis.from_url(redis_url, decode_responses=True), broker.prefix)
    pubsub = listener.subscribe_schedule_changes()
    try:
        assert broker.announce_schedule_change() == 1
        deadline = time.monotonic() + 5
        message = None
        while message is None and time.monotonic() < deadline:
            message = pubsub.get_message(timeout=1.0)
        assert message is not None
        assert message["channel"] == broker.key("schedules") and message["data"] == "changed"
    finally:
        pubsub.close()
        listener.client.close()


def test_subscribing_without_redis_raises_and_leaves_nothing_open() -> None:
    client = redis.Redis.from_url("unix:///nonexistent/redis.sock", decode_responses=True)
    with pytest.raises(redis.ConnectionError):
        Broker(client, "jq").subscribe_schedule_changes()
