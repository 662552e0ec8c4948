"""Firing against PostgreSQL under a controlled clock: due times, misfires, DST, edits, disabling."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from jobs.models import Job, JobStatus
from scheduling.firing import fire_due, idempotency_key, next_due_at, run_now
from scheduling.models import MisfirePolicy, Schedule

pytestmark = pytest.mark.django_db

GRACE = timedelta(seconds=60)


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def make(cron: str = "0 9 * * *", zone: str = "UTC", **fields: object) -> Schedule:
    fields.setdefault("name", f"s-{Schedule.objects.count()}")
    fields.setdefault("type", "test.ok")
    fields.setdefault("kwargs", {"value": 1})
    return Schedule.objects.create(cron=cron, timezone=zone, **fields)


def jobs_of(schedule: Schedule) -> list[Job]:
    return list(Job.objects.filter(idempotency_key__startswith=f"schedule:{schedule.pk}:").order_by("run_at"))


def fire_at(moment: datetime) -> list:
    with time_machine.travel(moment, tick=False):
        fired, more = fire_due(grace=GRACE)
    assert not more
    return fired


def test_a_new_schedule_gets_its_next_fire_time_at_once() -> None:
    with time_machine.travel(utc(2025, 6, 2, 8, 0), tick=False):
        schedule = make("0 9 * * *")
    assert schedule.next_run_at == utc(2025, 6, 2, 9, 0)
    assert Schedule.objects.get(pk=schedule.pk).next_run_at == utc(2025, 6, 2, 9, 0)


def test_fires_at_the_due_time_and_not_before() -> None:
    with time_machine.travel(utc(2025, 6, 2, 8, 0), tick=False):
        schedule = make("0 9 * * *", queue="high", priority=5, max_attempts=2)
    assert fire_at(utc(2025, 6, 2, 8, 59, 59, 999000)) == []
    assert jobs_of(schedule) == []

    fired = fire_at(utc(2025, 6, 2, 9, 0))
    assert len(fired) == 1
    (job,) = jobs_of(schedule)
    assert job.idempotency_key == f"schedule:{schedule.pk}:2025-06-02T09:00:00Z"
    assert (job.type, job.kwargs, job.queue, job.priority, job.max_attempts) == (
        "test.ok",
        {"value": 1},
        "high",
        5,
        2,
    )
    assert job.status == JobStatus.QUEUED
    assert job.run_at == utc(2025, 6, 2, 9, 0)
    schedule.refresh_from_db()
    assert schedule.last_run_at == utc(2025, 6, 2, 9, 0)
    assert schedule.last_job_id == job.pk
    assert schedule.next_run_at == utc(2025, 6, 3, 9, 0)


def test_next_run_advances_from_the_fire_time_not_from_now() -> None:
    with time_machine.travel(utc(2025, 6, 2, 8, 58), tick=False):
        schedule = make("*/5 * * * *")
    fire_at(utc(2025, 6, 2, 9, 0, 40))  # 40 s late, within the grace
    schedule.refresh_from_db()
    assert schedule.next_run_at == utc(2025, 6, 2, 9, 5)
    assert [j.run_at for j in jobs_of(schedule)] == [utc(2025, 6, 2, 9, 0)]


def test_the_same_fire_time_enqueues_once_even_if_fired_again() -> None:
    """A second scheduler that somehow fires the same row state gets the same job back (same key)."""
    with time_machine.travel(utc(2025, 6, 2, 8, 0), tick=False):
        schedule = make("0 9 * * *")
    fire_at(utc(2025, 6, 2, 9, 0))
    Schedule.objects.filter(pk=schedule.pk).update(next_run_at=utc(2025, 6, 2, 9, 0))  # as if never advanced
    fire_at(utc(2025, 6, 2, 9, 0, 1))
    assert Job.objects.filter(idempotency_key=idempotency_key(schedule.pk, utc(2025, 6, 2, 9))).count() == 1
    schedule.refresh_from_db()
    assert schedule.next_run_at == utc(2025, 6, 3, 9, 0)


BACK_AT = datetime(2025, 6, 1, 15, 30, tzinfo=UTC)


def downtime(policy: str, *, limit: int = 10, now: datetime = BACK_AT) -> Schedule:
    """An hourly schedule last advanced to 10:00, seen again at ``now`` (the scheduler was down)."""
    with time_machine.travel(utc(2025, 6, 1, 9, 30), tick=False):
        schedule = make("0 * * * *", misfire_policy=policy, catch_up_limit=limit)
    assert schedule.next_run_at == utc(2025, 6, 1, 10)
    fire_at(now)
    schedule.refresh_from_db()
    return schedule


def test_run_once_after_downtime_fires_the_latest_missed_time_and_skips_the_rest() -> None:
    schedule = downtime(MisfirePolicy.RUN_ONCE)
    assert [j.run_at for j in jobs_of(schedule)] == [utc(2025, 6, 1, 15)]
    assert schedule.next_run_at == utc(2025, 6, 1, 16)
    assert schedule.last_run_at == utc(2025, 6, 1, 15)


def test_skip_after_downtime_fires_nothing_missed() -> None:
    schedule = downtime(MisfirePolicy.SKIP)
    assert jobs_of(schedule) == []
    assert schedule.next_run_at == utc(2025, 6, 1, 16)
    assert schedule.last_run_at is None


def test_skip_still_fires_a_due_time_seen_within_the_grace() -> None:
    schedule = downtime(MisfirePolicy.SKIP, now=utc(2025, 6, 1, 15, 0, 30))
    assert [j.run_at for j in jobs_of(schedule)] == [utc(2025, 6, 1, 15)]


def test_run_all_after_downtime_fires_every_missed_time_up_to_the_cap() -> None:
    capped = downtime(MisfirePolicy.RUN_ALL, limit=3)
    assert [j.run_at.hour for j in jobs_of(capped)] == [13, 14, 15]
    assert capped.next_run_at == utc(2025, 6, 1, 16)
    everything = downtime(MisfirePolicy.RUN_ALL, limit=10)
    assert [j.run_at.hour for j in jobs_of(everything)] == [10, 11, 12, 13, 14, 15]
    assert everything.last_run_at == utc(2025, 6, 1, 15)


def fire_chain(schedule: Schedule, count: int) -> list[str]:
    """Let the scheduler fire ``count`` times, each exactly at its due time; the UTC fire times."""
    for _ in range(count):
        schedule.refresh_from_db()
        fire_at(schedule.next_run_at)
    return [j.run_at.strftime("%Y-%m-%dT%H:%MZ") for j in jobs_of(schedule)]


@pytest.mark.parametrize(
    ("zone", "cron", "start", "expected"),
    [
        # Skipped hour: 02:30 does not exist on 2025-03-30 in Berlin; croniter fires at 03:00 CEST.
        (
            "Europe/Berlin",
            "30 2 * * *",
            utc(2025, 3, 28, 12),
            ["2025-03-29T01:30Z", "2025-03-30T01:00Z", "2025-03-31T00:30Z"],
        ),
        # Repeated hour: 02:30 happens at +02:00 and at +01:00 on 2025-10-26; each fires.
        (
            "Europe/Berlin",
            "30 2 * * *",
            utc(2025, 10, 25, 12),
            ["2025-10-26T00:30Z", "2025-10-26T01:30Z", "2025-10-27T01:30Z"],
        ),
        ("America/New_York", "30 2 * * *", utc(2025, 3, 8, 12), ["2025-03-09T07:00Z", "2025-03-10T06:30Z"]),
        (
            "America/New_York",
            "30 1 * * *",
            utc(2025, 11, 1, 12),
            ["2025-11-02T05:30Z", "2025-11-02T06:30Z", "2025-11-03T06:30Z"],
        ),
    ],
)
def test_daylight_saving_changes_fire_as_croniter_computes_for_aware_times(
    zone: str, cron: str, start: datetime, expected: list[str]
) -> None:
    with time_machine.travel(start, tick=False):
        schedule = make(cron, zone)
    assert fire_chain(schedule, len(expected)) == expected


def test_a_disabled_schedule_does_not_fire() -> None:
    with time_machine.travel(utc(2025, 6, 2, 8, 0), tick=False):
        schedule = make("0 9 * * *")
        schedule.enabled = False
        schedule.save()
    assert schedule.next_run_at is None
    assert fire_at(utc(2025, 6, 2, 9, 0)) == []
    assert jobs_of(schedule) == []
    assert next_due_at() is None


def test_enabling_again_fires_from_the_next_time_after_now() -> None:
    with time_machine.travel(utc(2025, 6, 2, 8, 0), tick=False):
        schedule = make("0 9 * * *", enabled=False)
    with time_machine.travel(utc(2025, 6, 4, 12, 0), tick=False):
        schedule.enabled = True
        schedule.save()
    assert schedule.next_run_at == utc(2025, 6, 5, 9, 0)  # the missed 3rd and 4th are not run


def test_editing_the_cron_or_time_zone_recomputes_next_run_at_at_once() -> None:
    with time_machine.travel(utc(2025, 6, 2, 8, 0), tick=False):
        schedule = make("0 9 * * *")
        schedule.cron = "30 8 * * *"
        schedule.save()
        assert Schedule.objects.get(pk=schedule.pk).next_run_at == utc(2025, 6, 2, 8, 30)
        schedule.timezone = "Europe/Berlin"  # 08:30 CEST = 06:30 UTC, already past today
        schedule.save()
        assert Schedule.objects.get(pk=schedule.pk).next_run_at == utc(2025, 6, 3, 6, 30)


def test_editing_the_payload_keeps_the_timetable() -> None:
    with time_machine.travel(utc(2025, 6, 2, 8, 0), tick=False):
        schedule = make("0 9 * * *")
    with time_machine.travel(utc(2025, 6, 2, 8, 50), tick=False):
        schedule.kwargs = {"value": 2}
        schedule.save()
    assert Schedule.objects.get(pk=schedule.pk).next_run_at == utc(2025, 6, 2, 9, 0)


def test_saving_a_stale_copy_does_not_undo_a_firing() -> None:
    """An admin form loaded before a firing and saved after it must not roll the timetable back."""
    with time_machine.travel(utc(2025, 6, 2, 8, 0), tick=False):
        schedule = make("0 9 * * *")
    stale = Schedule.objects.get(pk=schedule.pk)
    fire_at(utc(2025, 6, 2, 9, 0))
    stale.kwargs = {"value": 3}
    stale.save()
    fresh = Schedule.objects.get(pk=schedule.pk)
    assert fresh.next_run_at == utc(2025, 6, 3, 9, 0)
    assert fresh.last_run_at == utc(2025, 6, 2, 9, 0) and fresh.last_job_id is not None
    assert fresh.kwargs == {"value": 3}


def test_a_schedule_whose_job_is_rejected_records_the_error_and_moves_on() -> None:
    with time_machine.travel(utc(2025, 6, 2, 8, 0), tick=False):
        schedule = make("0 9 * * *", type="no.such.type")
    fire_at(utc(2025, 6, 2, 9, 0))
    schedule.refresh_from_db()
    assert jobs_of(schedule) == []
    assert "unknown job type 'no.such.type'" in schedule.last_error
    assert schedule.next_run_at == utc(2025, 6, 3, 9, 0)


def test_due_schedules_fire_in_order_of_their_due_time() -> None:
    with time_machine.travel(utc(2025, 6, 2, 8, 0), tick=False):
        late = make("5 9 * * *", name="late")
        early = make("0 9 * * *", name="early")
    fired = fire_at(utc(2025, 6, 2, 9, 10))
    assert [f.schedule_id for f in fired] == [early.pk, late.pk]
    assert next_due_at() == utc(2025, 6, 3, 9, 0)


def test_run_now_enqueues_without_changing_the_timetable() -> None:
    with time_machine.travel(utc(2025, 6, 2, 8, 0), tick=False):
        schedule = make("0 9 * * *", enabled=False)
        job = run_now(schedule)
    schedule.refresh_from_db()
    assert job.status == JobStatus.QUEUED and job.idempotency_key is None
    assert schedule.last_job_id == job.pk
    assert schedule.next_run_at is None
