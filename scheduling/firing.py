"""Turning due schedules into jobs: one short transaction per schedule row.

Each due row is taken ``SELECT … FOR UPDATE SKIP LOCKED``; its fire times are enqueued through
``jobs.services.enqueue`` with the idempotency key ``schedule:<id>:<fire time, ISO UTC>`` and
``next_run_at`` advances from the last fire time handled, all in one transaction. Two schedulers
racing on a row therefore cannot both fire it (the second skips the locked row and then sees it
advanced), and a scheduler that dies after the commit cannot fire it again (same key, same job).
The leader lock is only an optimisation (invariant 4).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db import transaction
from django.utils import timezone

from jobs.errors import IdempotencyConflict, InvalidJob
from jobs.models import Job
from jobs.services import enqueue
from scheduling import cron
from scheduling.models import MisfirePolicy, Schedule

logger = logging.getLogger("scheduling.firing")


def idempotency_key(schedule_id: int, fire_time: datetime) -> str:
    """``schedule:<id>:<fire time>`` (e.g. ``schedule:7:2025-03-30T01:00:00Z``): every scheduler
    computes the same key for the same firing, so it enqueues once even across a failover."""
    return f"schedule:{schedule_id}:{fire_time.astimezone(UTC).isoformat().replace('+00:00', 'Z')}"


def select_fire_times(
    due: list[datetime], now: datetime, policy: str, grace: timedelta, limit: int
) -> list[datetime]:
    """Which of the due fire times (oldest first, the last one the latest) to enqueue.

    Only the latest fire time can be on time; it is a misfire when it is more than ``grace`` old.
    run_once fires the latest and skips the rest; skip fires the latest only if it is on time;
    run_all fires the latest ``limit`` ones.
    """
    if not due:
        return []
    if policy == MisfirePolicy.SKIP:
        return due[-1:] if now - due[-1] <= grace else []
    if policy == MisfirePolicy.RUN_ALL:
        return due[-max(limit, 1) :]
    return due[-1:]


@dataclass(frozen=True)
class Firing:
    """One enqueued fire time."""

    schedule_id: int
    fire_time: datetime
    job_id: str


def _enqueue(schedule: Schedule, fire_time: datetime | None, key: str | None) -> Job:
    return enqueue(
        schedule.type,
        list(schedule.args or []),
        dict(schedule.kwargs or {}),
        queue=schedule.queue or None,
        priority=schedule.priority,
        max_attempts=schedule.max_attempts,
        run_at=fire_time,  # the job records the fire time it stands for (queued at once: it is past)
        idempotency_key=key,
    )


def fire_schedule(schedule: Schedule, now: datetime, grace: timedelta) -> list[Firing]:
    """Fire a due schedule row the caller holds locked, and advance it; returns what was enqueued."""
    first = schedule.next_run_at
    assert first is not None
    try:
        keep = schedule.catch_up_limit if schedule.misfire_policy == MisfirePolicy.RUN_ALL else 1
        due, total = cron.due_times(schedule.cron, schedule.timezone, first, now, keep)
        # From the last fire time handled, not from now: the timetable never drifts. (After an outage
        # too long to walk completely, the walk may stop short of now: never step back into the past.)
        next_run_at = cron.next_fire(schedule.cron, schedule.timezone, due[-1] if due else first)
        if next_run_at <= now:
            next_run_at = cron.next_fire(schedule.cron, schedule.timezone, now)
    except (cron.CronError, ValueError, KeyError) as exc:
        message = f"cannot compute fire times: {exc}"
        logger.error(
            "schedule %s (%d): %s; it will not fire until it is edited", schedule.name, schedule.pk, message
        )
        Schedule.objects.filter(pk=schedule.pk).update(next_run_at=None, last_error=message)
        return []
    to_fire = select_fire_times(due, now, schedule.misfire_policy, grace, schedule.catch_up_limit)
    fired: list[Firing] = []
    errors: list[str] = []
    last_job_id = schedule.last_job_id
    for fire_time in to_fire:
        try:
            job = _enqueue(schedule, fire_time, idempotency_key(schedule.pk, fire_time))
        except (InvalidJob, IdempotencyConflict) as exc:
            text = "; ".join(exc.messages) if isinstance(exc, InvalidJob) else str(exc)
            errors.append(f"{fire_time.isoformat()}: {text}")
            logger.error(
                "schedule %s (%d) could not enqueue %s: %s", schedule.name, schedule.pk, fire_time, text
            )
            continue
        last_job_id = job.pk
        fired.append(Firing(schedule.pk, fire_time, str(job.pk)))
        logger.info(
            "schedule %s (%d) fired %s: job %s", schedule.name, schedule.pk, fire_time.isoformat(), job.pk
        )
    skipped = total - len(to_fire)
    if skipped:
        logger.warning(
            "schedule %s (%d): %d fire time(s) since %s were missed; %s policy fired %d and skipped %d",
            schedule.name,
            schedule.pk,
            total,
            first.isoformat(),
            schedule.misfire_policy,
            len(to_fire),
            skipped,
        )
    updates: dict[str, object] = {"next_run_at": next_run_at, "last_error": "\n".join(errors)}
    if fired:
        updates.update(last_run_at=fired[-1].fire_time, last_job_id=last_job_id)
    Schedule.objects.filter(pk=schedule.pk).update(**updates)
    return fired


def fire_due(
    now: datetime | None = None, *, grace: timedelta, limit: int = 500, stop: threading.Event | None = None
) -> tuple[list[Firing], bool]:
    """Fire every due schedule, one transaction per row; returns the firings and whether rows remain.

    ``now`` fixes the clock (tests); by default each row is judged against the current time.
    Rows another scheduler holds are skipped: that scheduler is firing them. ``stop`` ends the run
    between rows (shutdown).
    """
    fired: list[Firing] = []
    for _ in range(limit):
        if stop is not None and stop.is_set():
            return fired, True
        moment = now or timezone.now()
        with transaction.atomic():
            schedule = (
                Schedule.objects.select_for_update(skip_locked=True)
                .filter(enabled=True, next_run_at__lte=moment)
                .order_by("next_run_at", "pk")
                .first()
            )
            if schedule is None:
                return fired, False
            fired.extend(fire_schedule(schedule, moment, grace))
    return fired, True


def next_due_at() -> datetime | None:
    """The earliest ``next_run_at`` of an enabled schedule: when the scheduler must wake."""
    return (
        Schedule.objects.filter(enabled=True, next_run_at__isnull=False)
        .order_by("next_run_at")
        .values_list("next_run_at", flat=True)
        .first()
    )


def run_now(schedule: Schedule) -> Job:
    """Enqueue the schedule's job immediately (an operator's "Run now"); its timetable is unchanged."""
    with transaction.atomic():
        job = _enqueue(schedule, None, None)
        now = timezone.now()
        Schedule.objects.filter(pk=schedule.pk).update(last_run_at=now, last_job_id=job.pk, updated_at=now)
    schedule.last_run_at, schedule.last_job_id = now, job.pk
    return job
