"""KEYS/ARGV layouts of every script, checked without Redis."""

from __future__ import annotations

import pytest
import redis

from workers import broker as b
from workers.broker import Broker, Placement, ready_score


def test_keys_carry_the_prefix_and_the_cluster_hash_tag() -> None:
    assert b.make_key("jq", "ready", "default") == "jq:{jq}:ready:default"
    assert b.make_key("x", "ready", "default") == "x:{jq}:ready:default"
    assert b.make_key("jq", "worker", "w-1") == "jq:{jq}:worker:w-1"
    assert b.key_base("x") == "x:{jq}:"


def test_broker_key_uses_its_prefix() -> None:
    client = redis.Redis(decode_responses=True)  # no connection is made until a command runs
    assert Broker(client).key("ready", "default") == "jq:{jq}:ready:default"
    assert Broker(client, "x").key("leases") == "x:{jq}:leases"


def test_broker_refuses_a_client_that_returns_bytes() -> None:
    with pytest.raises(ValueError, match="decode_responses=True"):
        Broker(redis.Redis())


def test_ready_score_orders_priority_first_then_seq() -> None:
    assert ready_score(0, 1) == 100 * 10**13 + 1
    assert ready_score(100, 5) == 5
    assert ready_score(-100, 1) == 200 * 10**13 + 1
    assert ready_score(10, 999) < ready_score(0, 1) < ready_score(0, 2) < ready_score(-1, 1)
    assert ready_score(-100, 10**13 - 1) < 2**53  # exact as a Redis score (a double)


@pytest.mark.parametrize(("priority", "seq"), [(101, 1), (-101, 1), (0, 0), (0, 10**13)])
def test_ready_score_rejects_values_that_would_overlap_priority_bands(priority: int, seq: int) -> None:
    with pytest.raises(ValueError, match="must be"):
        ready_score(priority, seq)


def test_enqueue_layout() -> None:
    assert b.enqueue_keys("jq", "q") == [
        "jq:{jq}:ready:q",
        "jq:{jq}:delayed:q",
        "jq:{jq}:marker:q",
        "jq:{jq}:ready_scores",
    ]
    placements = [Placement("a", "q", 7), Placement("b", "q", 8, 1234)]
    assert b.enqueue_args(placements) == ["a", "7", "", "b", "8", "1234"]


def test_dequeue_layout_lists_every_queue_in_precedence_order() -> None:
    assert b.dequeue_keys("jq", ["hi", "lo"]) == [
        "jq:{jq}:leases",
        "jq:{jq}:lease_tokens",
        "jq:{jq}:lease_queues",
        "jq:{jq}:lease_workers",
        "jq:{jq}:ready_scores",
        "jq:{jq}:ready:hi",
        "jq:{jq}:delayed:hi",
        "jq:{jq}:marker:hi",
        "jq:{jq}:ready:lo",
        "jq:{jq}:delayed:lo",
        "jq:{jq}:marker:lo",
    ]
    assert b.dequeue_args(["hi", "lo"], 128, 30000, "abc", "w1") == ["128", "30000", "abc", "w1", "hi", "lo"]


def test_release_layouts() -> None:
    lease_keys = ["jq:{jq}:leases", "jq:{jq}:lease_tokens", "jq:{jq}:lease_queues", "jq:{jq}:lease_workers"]
    assert b.ack_keys("jq") == [*lease_keys, "jq:{jq}:cancel"]
    assert b.ack_args([("a", "t1"), ("b", "t2")]) == ["a", "t1", "b", "t2"]
    assert (
        b.retry_keys("jq")
        == b.give_back_keys("jq")
        == [*lease_keys, "jq:{jq}:cancel", "jq:{jq}:ready_scores"]
    )
    assert b.retry_args("jq", [("a", "t1", 99, 7)]) == ["jq:{jq}:", "a", "t1", "99", "7"]
    assert b.give_back_args("x", [("a", "t1", 7)]) == ["x:{jq}:", "a", "t1", "7"]


def test_extend_layout_indexes_distinct_queues() -> None:
    leases = [("a", "t1", "q1"), ("b", "t2", "q2"), ("c", "t3", "q1"), ("d", "t4", "")]
    assert b.extend_keys("jq", leases)[5:] == [
        "jq:{jq}:ready:q1",
        "jq:{jq}:delayed:q1",
        "jq:{jq}:ready:q2",
        "jq:{jq}:delayed:q2",
    ]
    assert b.extend_args(leases, 5000, "w1") == [
        "5000", "w1", "2", "q1", "q2",
        "a", "t1", "1", "b", "t2", "2", "c", "t3", "1", "d", "t4", "0",
    ]  # fmt: skip


def test_cancel_layout_indexes_distinct_queues() -> None:
    items = [("a", "q1"), ("b", "q2"), ("c", "q1")]
    assert b.cancel_keys("jq", items) == [
        "jq:{jq}:leases",
        "jq:{jq}:cancel",
        "jq:{jq}:ready_scores",
        "jq:{jq}:lease_workers",
        "jq:{jq}:ready:q1",
        "jq:{jq}:delayed:q1",
        "jq:{jq}:ready:q2",
        "jq:{jq}:delayed:q2",
    ]
    assert b.cancel_args("jq", items, 600) == ["jq:{jq}:", "600", "a", "1", "b", "2", "c", "1"]
    assert b.control_key("jq", "host:1:ab") == "jq:{jq}:control:host:1:ab"


def test_reconcile_layout() -> None:
    placements = [Placement("a", "q1", 7), Placement("b", "q2", 8, 1234)]
    running = [("c", "t3", "q3")]
    assert b.reconcile_keys("jq", placements, running)[4:] == [
        f"jq:{{jq}}:{kind}:{queue}" for queue in ("q1", "q2", "q3") for kind in ("ready", "delayed", "marker")
    ]
    assert b.reconcile_args(placements, running, 9000) == [
        "9000", "3", "q1", "q2", "q3", "2",
        "a", "1", "7", "", "b", "2", "8", "1234",
        "c", "t3", "3",
    ]  # fmt: skip


def test_small_script_layouts() -> None:
    assert b.epoch_keys("jq") == ["jq:{jq}:epoch"]
    assert b.reap_expired_keys("jq") == ["jq:{jq}:leases", "jq:{jq}:lease_tokens", "jq:{jq}:lease_queues"]
    assert b.reap_expired_args(10) == ["10"]
    assert b.lock_keys("jq", "reaper") == ["jq:{jq}:lock:reaper"]
    assert b.renew_lock_args("tok", 500) == ["tok", "500"]
    assert b.heartbeat_keys("jq", "w1") == ["jq:{jq}:workers", "jq:{jq}:worker:w1"]


def test_heartbeat_info_values_are_json() -> None:
    args = b.heartbeat_args("w1", {"pid": 12, "queues": ["a", "b"], "host": "h"}, 15000, prune_ms=60000)
    assert args == ["w1", "15000", "60000", "pid", "12", "queues", '["a","b"]', "host", '"h"']


def test_chunked_keeps_every_script_call_within_the_batch_limit() -> None:
    sizes = [len(chunk) for chunk in b.chunked(list(range(2500)))]
    assert sizes == [1000, 1000, 500]
    assert list(b.chunked([])) == []


def test_helper_keys_keep_their_names() -> None:
    """Data compatibility: the keys the metrics, throttle and scheduler used before the broker owned them."""
    assert b.throttle_keys("jq", "job_create", "7") == ["jq:{jq}:throttle:job_create:7"]
    assert b.throttle_args(60000, 3, "m") == ["60000", "3", "m"]
    assert b.metrics_key("jq", "outcomes") == "jq:{jq}:metrics:outcomes"
    assert b.metrics_minute_key("jq", 29000000) == "jq:{jq}:metrics:minute:29000000"
    assert b.make_key("jq", b.SCHEDULES_CHANNEL) == "jq:{jq}:schedules"
