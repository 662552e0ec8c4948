"""Real ``runscheduler`` processes: due-time firing, racing schedulers, leader failover, waking, stop.

Fire times are put a second or two ahead directly in ``next_run_at`` (cron is minute-granular) and
announced on the schedules channel; every assertion is about PostgreSQL (jobs per idempotency key,
``next_run_at``) or the Redis lock, never about log text.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import redis
from django.db import connection, transaction
from django.utils import timezone

from jobs.models import Job
from scheduling.firing import fire_due, idempotency_key
from scheduling.models import Schedule
from scheduling.signals import publish_change
from tests.support.helpers import ManagePyProcesses, WorkerProcess, wait_until
from workers.broker import make_key

pytestmark = pytest.mark.slow


@pytest.fixture
def scheduler_env(worker_env: dict[str, str]) -> dict[str, str]:
    return {**worker_env, "JOBQUEUE_SCHEDULER_LOCK_TTL": "2", "JOBQUEUE_PRUNE_INTERVAL": "0"}


@pytest.fixture
def start_scheduler(scheduler_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Start `manage.py runscheduler ARGS…` as a real process; every one is killed at teardown."""
    processes = ManagePyProcesses("runscheduler", scheduler_env, tmp_path)
    yield processes.start
    processes.kill_all()


@pytest.fixture
def rclient() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(os.environ["REDIS_URL"], decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def other_prefix(rclient: redis.Redis) -> Iterator[str]:
    """A second key prefix: a scheduler there holds its own leader lock, as after a FLUSHALL or a split."""
    prefix = f"jqt-{uuid.uuid4().hex[:12]}"
    yield prefix
    keys = list(rclient.scan_iter(match=f"{prefix}:*"))
    if keys:
        rclient.unlink(*keys)


def lock_key(prefix: str) -> str:
    return make_key(prefix, "lock", "scheduler")


def announce(rclient: redis.Redis, *prefixes: str) -> None:
    for prefix in prefixes:
        rclient.publish(make_key(prefix, "schedules"), "changed")


def yearly(name: str) -> Schedule:
    """A schedule whose cron never comes round during a test: it fires only when a test makes it due."""
    return Schedule.objects.create(name=name, type="test.ok", kwargs={"value": name}, cron="0 0 1 1 *")


def due_in(seconds: float, *schedules: Schedule) -> datetime:
    fire = timezone.now() + timedelta(seconds=seconds)
    Schedule.objects.filter(pk__in=[s.pk for s in schedules]).update(next_run_at=fire)
    return fire


def jobs_for(schedule: Schedule, fire: datetime) -> int:
    return Job.objects.filter(idempotency_key=idempotency_key(schedule.pk, fire)).count()


def advanced_past(fire: datetime, *schedules: Schedule) -> bool:
    return Schedule.objects.filter(pk__in=[s.pk for s in schedules], next_run_at__gt=fire).count() == len(
        schedules
    )


def test_a_scheduler_fires_at_the_due_time_and_not_before(start_scheduler, redis_prefix, rclient) -> None:
    schedule = yearly("due")
    start_scheduler()
    wait_until(lambda: rclient.exists(lock_key(redis_prefix)), what="the scheduler to take the leader lock")
    fire = due_in(2.5, schedule)
    announce(rclient, redis_prefix)
    while timezone.now() < fire - timedelta(seconds=0.3):
        assert jobs_for(schedule, fire) == 0, "fired before the due time"
        time.sleep(0.1)
    wait_until(lambda: jobs_for(schedule, fire), timeout=10, what="the firing")
    job = Job.objects.get(idempotency_key=idempotency_key(schedule.pk, fire))
    assert job.created_at >= fire
    assert job.run_at == fire and job.kwargs == {"value": "due"}
    schedule.refresh_from_db()
    assert schedule.last_job_id == job.pk and schedule.next_run_at.year == fire.year + 1


def test_two_schedulers_racing_on_the_same_rows_fire_each_due_time_once(
    start_scheduler, redis_prefix, other_prefix, rclient
) -> None:
    """Both are leaders (separate lock keys, as after a FLUSHALL): row locks and keys keep firing unique."""
    one = yearly("one")
    many = [yearly(f"many-{i}") for i in range(5)]
    start_scheduler()
    start_scheduler(env={"JOBQUEUE_REDIS_PREFIX": other_prefix})
    wait_until(
        lambda: rclient.exists(lock_key(redis_prefix)) and rclient.exists(lock_key(other_prefix)),
        what="both schedulers to lead",
    )
    for group in ([one], many, [one, *many]):
        fire = due_in(1.5, *group)
        announce(rclient, redis_prefix, other_prefix)
        wait_until(lambda g=group, f=fire: advanced_past(f, *g), timeout=15, what="every row to advance")
        assert [jobs_for(s, fire) for s in group] == [1] * len(group)
    assert Job.objects.count() == 2 + 2 * len(many)


def test_a_follower_takes_over_when_the_leader_is_killed(start_scheduler, redis_prefix, rclient) -> None:
    schedule = yearly("failover")
    channel = make_key(redis_prefix, "schedules")
    leader = start_scheduler()
    wait_until(lambda: rclient.exists(lock_key(redis_prefix)), what="the leader lock")
    leader_token = rclient.get(lock_key(redis_prefix))
    start_scheduler()
    wait_until(lambda: rclient.pubsub_numsub(channel)[0][1] == 2, what="the follower to listen")

    first = due_in(1.0, schedule)
    announce(rclient, redis_prefix)
    wait_until(lambda: jobs_for(schedule, first), timeout=10, what="the leader's firing")

    os.killpg(leader.pid, signal.SIGKILL)
    leader.wait(timeout=10)
    second = due_in(1.0, schedule)
    announce(rclient, redis_prefix)
    wait_until(lambda: jobs_for(schedule, second), timeout=15, what="the follower's firing")
    assert (jobs_for(schedule, first), jobs_for(schedule, second)) == (1, 1)
    assert rclient.get(lock_key(redis_prefix)) not in (None, leader_token)


def test_a_schedule_change_wakes_the_scheduler_without_polling(
    start_scheduler, redis_prefix, rclient
) -> None:
    """With a 60 s lock the scheduler's bounded wait is 20 s: only the change message can wake it sooner."""
    start_scheduler(env={"JOBQUEUE_SCHEDULER_LOCK_TTL": "60"})
    wait_until(lambda: rclient.exists(lock_key(redis_prefix)), what="the leader lock")
    time.sleep(0.5)  # let it settle into its long wait
    schedule = yearly("wake")
    fire = due_in(1.0, schedule)
    publish_change()
    wait_until(lambda: jobs_for(schedule, fire), timeout=8, what="the firing after the change message")


def test_saving_a_schedule_announces_the_change_after_commit(redis_prefix, rclient, transactional_db) -> None:
    pubsub = rclient.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(make_key(redis_prefix, "schedules"))
    pubsub.get_message(timeout=1)  # the subscription's confirmation (not returned)
    with transaction.atomic():
        schedule = yearly("announced")
        assert pubsub.get_message(timeout=0.3) is None  # not before the commit
    assert pubsub.get_message(timeout=5) is not None
    schedule.delete()
    assert pubsub.get_message(timeout=5) is not None
    pubsub.close()


def test_sigterm_stops_the_scheduler_cleanly_and_releases_the_lock(
    start_scheduler, redis_prefix, rclient
) -> None:
    process = start_scheduler()
    wait_until(lambda: rclient.exists(lock_key(redis_prefix)), what="the leader lock")
    assert process.stop(timeout=15) == 0
    assert not rclient.exists(lock_key(redis_prefix))


def test_once_fires_what_is_due_and_exits(start_scheduler) -> None:
    schedule = yearly("once")
    fire = due_in(-1.0, schedule)
    assert start_scheduler("--once").wait(timeout=60) == 0
    assert jobs_for(schedule, fire) == 1


def test_a_row_another_scheduler_holds_is_skipped_not_waited_for(redis_prefix, transactional_db) -> None:
    """SKIP LOCKED: while one scheduler fires a row, another passes it by instead of queueing behind it."""
    schedule = yearly("held")
    fire = due_in(-1.0, schedule)
    locked, release = threading.Event(), threading.Event()

    def hold() -> None:
        with transaction.atomic():
            Schedule.objects.select_for_update().get(pk=schedule.pk)
            locked.set()
            release.wait(10)
        connection.close()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert locked.wait(10)
        started = time.monotonic()
        fired, _more = fire_due(grace=timedelta(seconds=60))
        assert fired == [] and time.monotonic() - started < 2
    finally:
        release.set()
        holder.join()
    fired, _more = fire_due(grace=timedelta(seconds=60))
    assert [f.schedule_id for f in fired] == [schedule.pk]
    assert jobs_for(schedule, fire) == 1
