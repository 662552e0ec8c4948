"""The scheduler loop in-process: how long it waits (from the data, never a fixed poll), election, pruning."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
import redis
from django.utils import timezone

from jobs.models import Job
from jobs.services import enqueue
from scheduling.models import Schedule
from scheduling.scheduler import LOCK_NAME, Scheduler, SchedulerConfig
from workers.broker import Broker

pytestmark = pytest.mark.usefixtures("redis_prefix", "transactional_db")


def scheduler(**config: object) -> Scheduler:
    config.setdefault("lock_ttl", 15.0)
    config.setdefault("prune_interval", 0.0)
    return Scheduler(SchedulerConfig(**config))


def test_an_idle_leader_waits_a_third_of_the_lock_ttl() -> None:
    leader = scheduler()
    assert leader._round() == pytest.approx(5.0)
    assert leader.token is not None


def test_the_leader_waits_until_the_next_due_time() -> None:
    schedule = Schedule.objects.create(name="soon", type="test.ok", cron="0 0 1 1 *")
    Schedule.objects.filter(pk=schedule.pk).update(next_run_at=timezone.now() + timedelta(seconds=2))
    wait = scheduler()._round()
    assert 1.0 < wait <= 2.0


def test_a_follower_waits_until_the_leaders_lock_would_lapse(broker: Broker) -> None:
    broker.acquire_lock(LOCK_NAME, 3000)
    follower = scheduler()
    wait = follower._round()
    assert follower.token is None
    assert 2.0 < wait <= 3.1


def test_a_lost_lock_is_noticed_at_the_next_renewal(broker: Broker) -> None:
    leader = scheduler()
    leader._round()
    broker.client.delete(broker.key("lock", LOCK_NAME))  # e.g. FLUSHALL
    broker.acquire_lock(LOCK_NAME, 15000)  # someone else leads now
    assert leader._lead() is True  # renewed moments ago: not asked again yet
    leader.renewed_at -= 60
    assert leader._lead() is False and leader.token is None


def test_with_redis_unreachable_every_scheduler_fires() -> None:
    """Correctness never depends on the lock (invariant 4), so a Redis outage must not stop firing."""
    schedule = Schedule.objects.create(name="no-redis", type="test.ok", cron="0 0 1 1 *")
    fire = timezone.now() - timedelta(seconds=1)
    Schedule.objects.filter(pk=schedule.pk).update(next_run_at=fire)
    lonely = scheduler()
    lonely.broker = Broker(
        redis.Redis(host="127.0.0.1", port=1, decode_responses=True, socket_connect_timeout=0.2), prefix="x"
    )
    lonely._round()
    assert lonely.redis_down
    assert Job.objects.filter(idempotency_key__startswith=f"schedule:{schedule.pk}:").count() == 1


def test_the_leader_prunes_in_the_background() -> None:
    old = enqueue("test.ok")
    Job.objects.filter(pk=old.pk).update(status="succeeded", finished_at=timezone.now() - timedelta(days=9))
    leader = scheduler(prune_interval=3600.0, retention=(("succeeded", 7 * 86400.0),))
    leader._round()
    assert leader.pruner is not None
    leader.pruner.join(timeout=30)
    assert not Job.objects.filter(pk=old.pk).exists()
    first_pruner, next_prune = leader.pruner, leader.next_prune
    leader._round()  # not due again for an hour
    assert leader.pruner is first_pruner and leader.next_prune == next_prune  # no second pruning
    assert 3500 < next_prune - time.monotonic() <= 3600
