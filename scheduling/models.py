"""Cron schedules: recurring jobs defined in the database and fired by ``manage.py runscheduler``.

``next_run_at`` is the schedule's next fire time (UTC). It is recomputed from "now" when the
cron expression, the time zone or ``enabled`` changes, and otherwise only advanced by the
scheduler, from the fire time it handled (so it never drifts). The scheduler owns
``next_run_at``, ``last_run_at``, ``last_job`` and ``last_error``: a plain ``save()`` of an
edited schedule never writes them back, so an admin form loaded before a firing cannot undo it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from scheduling import cron, validation

TIMING_FIELDS = ("cron", "timezone", "enabled")
SCHEDULER_FIELDS = ("next_run_at", "last_run_at", "last_job", "last_error")


def default_timezone() -> str:
    """The project's TIME_ZONE, read when a schedule is created (never at import)."""
    return settings.TIME_ZONE


def validate_cron(value: str) -> None:
    cron.validate_cron(value)


def validate_timezone(value: str) -> None:
    cron.check_timezone(value)


class MisfirePolicy(models.TextChoices):
    """What the scheduler does with fire times it finds already past (it was down, or disabled)."""

    RUN_ONCE = "run_once", "run once (fire the latest missed time, skip the rest)"
    SKIP = "skip", "skip (fire nothing that was missed)"
    RUN_ALL = "run_all", "run all (fire every missed time, up to the catch-up limit)"


class Schedule(models.Model):
    name = models.CharField(max_length=200, unique=True)
    type = models.CharField(max_length=200, help_text="a registered job type, e.g. email.send")
    args = models.JSONField(default=list, blank=True, help_text="positional arguments (a JSON array)")
    kwargs = models.JSONField(
        "payload", default=dict, blank=True, help_text="the job's keyword arguments (a JSON object)"
    )
    queue = models.CharField(max_length=64, blank=True, default="", help_text="empty: the type's queue")
    priority = models.SmallIntegerField(null=True, blank=True, help_text="-100..100; empty: the type's")
    max_attempts = models.PositiveIntegerField(null=True, blank=True, help_text="empty: the type's default")
    cron = models.CharField(
        max_length=200,
        validators=[validate_cron],
        help_text="5 fields (minute hour day-of-month month day-of-week), or @hourly, @daily, @weekly, "
        "@monthly, @yearly",
    )
    timezone = models.CharField(
        max_length=64,
        default=default_timezone,
        validators=[validate_timezone],
        help_text="IANA name, e.g. Europe/Berlin; the cron expression is read in this zone",
    )
    enabled = models.BooleanField(default=True)
    misfire_policy = models.CharField(
        max_length=16, choices=MisfirePolicy.choices, default=MisfirePolicy.RUN_ONCE
    )
    catch_up_limit = models.PositiveSmallIntegerField(
        default=10,
        validators=[MinValueValidator(1), MaxValueValidator(1000)],
        help_text="run all: most missed fire times enqueued after downtime (the latest ones), 1-1000",
    )
    next_run_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_run_at = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="fire time of the latest firing"
    )
    last_job = models.ForeignKey(
        "jobs.Job",
        null=True,
        blank=True,
        editable=False,
        on_delete=models.DB_SET_NULL,  # PostgreSQL clears it when the job is pruned
        related_name="+",
    )
    last_error = models.TextField(blank=True, default="", editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        indexes = [
            models.Index(fields=["next_run_at"], name="schedule_due", condition=Q(enabled=True)),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(priority__isnull=True) | (Q(priority__gte=-100) & Q(priority__lte=100)),
                name="schedule_priority_range",
            ),
            models.CheckConstraint(
                condition=Q(misfire_policy__in=MisfirePolicy.values), name="schedule_misfire_policy_valid"
            ),
            models.CheckConstraint(
                condition=Q(catch_up_limit__gte=1) & Q(catch_up_limit__lte=1000),
                name="schedule_catch_up_limit_range",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @classmethod
    def from_db(cls, db: str | None, field_names: Any, values: Any, **kwargs: Any) -> Schedule:
        """Remember the loaded timing fields, so ``save()`` knows whether they were edited."""
        instance = super().from_db(db, field_names, values, **kwargs)
        instance._loaded_timing = instance._timing()
        return instance

    def _timing(self) -> tuple[Any, ...]:
        return tuple(self.__dict__.get(name) for name in TIMING_FIELDS)

    def compute_next_run(self, now: datetime | None = None) -> datetime | None:
        """The first fire time after ``now``; None while disabled (a disabled schedule never fires)."""
        if not self.enabled:
            return None
        return cron.next_fire(self.cron, self.timezone, now or timezone.now())

    def next_fire_times(self, count: int = 5, now: datetime | None = None) -> list[datetime]:
        """The next ``count`` fire times, as aware datetimes in the schedule's own time zone."""
        zone = cron.validate_timezone(self.timezone)
        start = now or timezone.now()
        return [
            moment.astimezone(zone) for moment in cron.next_fire_times(self.cron, self.timezone, start, count)
        ]

    def clean(self) -> None:
        """The job parameters must be ones ``enqueue`` accepts (the admin form shows each problem)."""
        errors = validation.job_errors(
            self.type, self.args, self.kwargs, self.queue, self.priority, self.max_attempts
        )
        if errors:
            raise ValidationError(errors)

    @property
    def cron_description(self) -> str:
        return cron.describe(self.cron)

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Recompute ``next_run_at`` when the timing changed; never write back scheduler-owned fields."""
        self.cron = cron.normalize(self.cron)
        update_fields = kwargs.get("update_fields")
        adding = self._state.adding or kwargs.get("force_insert")
        if adding:
            timing_changed = True
        elif update_fields is not None:
            timing_changed = bool(set(update_fields) & set(TIMING_FIELDS))
        else:
            timing_changed = self._timing() != getattr(self, "_loaded_timing", None)
        if timing_changed:
            self.next_run_at = self.compute_next_run()
            self.last_error = ""
        if not adding:
            if update_fields is None:
                update_fields = [
                    f.name
                    for f in self._meta.concrete_fields
                    if not f.primary_key and f.name not in SCHEDULER_FIELDS
                ]
            else:
                update_fields = list(update_fields)
            if timing_changed:
                update_fields += [name for name in ("next_run_at", "last_error") if name not in update_fields]
            if "updated_at" not in update_fields:
                update_fields.append("updated_at")
            kwargs["update_fields"] = update_fields
        super().save(*args, **kwargs)
        self._loaded_timing = self._timing()
