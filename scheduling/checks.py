"""System checks for the scheduling settings (``manage.py check`` reports them before anything runs)."""

from __future__ import annotations

import zoneinfo
from typing import Any

from django.conf import settings
from django.core.checks import Error, register

from jobs.models import TERMINAL_STATUSES


@register()
def check_scheduling_settings(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    errors: list[Error] = []
    retention = getattr(settings, "JOBQUEUE_RETENTION", {})
    if not isinstance(retention, dict):
        errors.append(Error("JOBQUEUE_RETENTION must map job statuses to seconds", id="scheduling.E001"))
        retention = {}
    terminal = sorted(str(status) for status in TERMINAL_STATUSES)
    for status, seconds in retention.items():
        if status not in terminal:
            errors.append(
                Error(
                    f"JOBQUEUE_RETENTION names {status!r}, which is not a finished status",
                    hint=f"Only finished jobs are pruned: use {', '.join(terminal)}.",
                    id="scheduling.E002",
                )
            )
        if not isinstance(seconds, (int, float)) or not seconds > 0:
            errors.append(
                Error(f"JOBQUEUE_RETENTION[{status!r}] must be a positive duration", id="scheduling.E003")
            )
    if not settings.JOBQUEUE_SCHEDULER_LOCK_TTL >= 1:
        errors.append(Error("JOBQUEUE_SCHEDULER_LOCK_TTL must be at least 1 second", id="scheduling.E004"))
    if not settings.JOBQUEUE_SCHEDULER_MISFIRE_GRACE >= 0:
        errors.append(Error("JOBQUEUE_SCHEDULER_MISFIRE_GRACE must be >= 0 seconds", id="scheduling.E005"))
    if not settings.JOBQUEUE_PRUNE_INTERVAL >= 0:
        errors.append(Error("JOBQUEUE_PRUNE_INTERVAL must be >= 0 (0 turns it off)", id="scheduling.E006"))
    if not 1 <= settings.JOBQUEUE_PRUNE_BATCH <= 100_000:
        errors.append(Error("JOBQUEUE_PRUNE_BATCH must be from 1 to 100000", id="scheduling.E007"))
    try:
        zoneinfo.ZoneInfo(settings.TIME_ZONE)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        errors.append(
            Error(
                f"TIME_ZONE {settings.TIME_ZONE!r} is not an IANA time zone; new schedules default to it",
                id="scheduling.E008",
            )
        )
    return errors
