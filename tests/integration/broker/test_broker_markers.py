"""Wake markers: idle workers block on them instead of polling."""

from __future__ import annotations

import threading
import time

import redis

from workers.broker import Broker, Placement, ready_score

LEASE_MS = 30_000


def blocked_in(client: redis.Redis, name: str) -> str | None:
    """The command a connection named ``name`` is blocked in (CLIENT LIST flag ``b``), else None."""
    for entry in client.client_list():
        if entry.get("name") == name and "b" in entry.get("flags", ""):
            return entry.get("cmd")
    return None


def test_enqueue_to_an_empty_queue_wakes_a_blocked_worker(
    broker: Broker, blocking_broker: Broker, prefix: str
) -> None:
    """The worker must really be blocked in BZPOPMIN before the push, and be released by it."""
    name = f"{prefix}-blocking"
    woke: list[tuple[tuple[str, int] | None, float]] = []

    def idle_worker() -> None:
        woke.append((blocking_broker.wait_for_work(["other", "default"], 5.0), time.monotonic()))

    thread = threading.Thread(target=idle_worker)
    thread.start()
    deadline = time.monotonic() + 2.0
    while blocked_in(broker.client, name) is None and time.monotonic() < deadline:
        time.sleep(0.005)
    assert blocked_in(broker.client, name) == "bzpopmin", "the idle worker never blocked on its markers"
    assert thread.is_alive() and woke == [], "wait_for_work returned before any push"

    pushed = time.monotonic()
    broker.enqueue([Placement("j", "default", ready_score(0, 1))])
    thread.join(timeout=5)

    assert not thread.is_alive()
    ((reply, woke_at),) = woke
    assert reply == ("default", 0)
    assert 0 <= woke_at - pushed < 2.0  # released by the push, not by its 5 s timeout
    assert blocked_in(broker.client, name) is None


def test_wait_for_work_returns_none_on_timeout(blocking_broker: Broker) -> None:
    started = time.monotonic()

    assert blocking_broker.wait_for_work(["default"], 0.1) is None
    assert time.monotonic() - started < 2.0


def test_delayed_enqueue_sets_the_marker_to_its_run_at(broker: Broker) -> None:
    now = broker.now_ms()
    broker.enqueue([Placement("b", "default", ready_score(0, 2), now + 90_000)])
    broker.enqueue([Placement("a", "default", ready_score(0, 1), now + 60_000)])
    broker.enqueue([Placement("c", "default", ready_score(0, 3), now + 120_000)])

    assert broker.client.zrange(broker.key("marker", "default"), 0, -1, withscores=True) == [
        ("m", now + 60_000)
    ]
    assert broker.wait_for_work(["default"], 0.1) == ("default", now + 60_000)


def test_ready_enqueue_overrides_a_future_marker(broker: Broker) -> None:
    broker.enqueue([Placement("later", "default", ready_score(0, 1), broker.now_ms() + 60_000)])
    broker.enqueue([Placement("now", "default", ready_score(0, 2))])

    assert broker.client.zscore(broker.key("marker", "default"), "m") == 0


def test_dequeue_leaving_work_behind_re_arms_the_marker(broker: Broker) -> None:
    """Chain wake: the worker that takes part of the work wakes the next idle one."""
    broker.enqueue([Placement(f"j{i}", "default", ready_score(0, i)) for i in range(1, 4)])
    assert broker.wait_for_work(["default"], 0.1) == ("default", 0)

    broker.dequeue(["default"], 2, LEASE_MS, "w1")
    assert broker.wait_for_work(["default"], 0.1) == ("default", 0)

    broker.dequeue(["default"], 2, LEASE_MS, "w1")
    assert broker.wait_for_work(["default"], 0.1) is None
