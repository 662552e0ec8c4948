"""Schedules in the admin: cron in words, the next five fire times in the schedule's zone, the
last run and its job, and enable / disable / run now (list actions and buttons on the page).

The form validates the cron expression, the time zone and the job parameters with the same
rules as the API (model validators and ``Schedule.clean``), so each mistake shows on its field.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import models
from django.db.models import QuerySet
from django.forms.fields import InvalidJSONInput, JSONString
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import NoReverseMatch, path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from jobs import audit, payload
from jobs.errors import InvalidJob
from scheduling import cron, firing
from scheduling.models import Schedule


class JobJSONFormField(forms.JSONField):
    """``args`` and ``payload`` read by ``jobs.payload.loads``, like the API reads them: hostile JSON
    (``10**5000``, ``[[[[…``, NaN) is a form error, never a 500; what is stored is then checked by
    ``Schedule.clean`` with the rule every job's JSON goes through."""

    def to_python(self, value: Any) -> Any:
        if self.disabled or value in self.empty_values or not isinstance(value, str):
            return super().to_python(value)
        try:
            converted = payload.loads(value)
        except ValueError as exc:
            raise ValidationError(f"Enter valid JSON: {exc}.", code="invalid") from None
        return JSONString(converted) if isinstance(converted, str) else converted

    def prepare_value(self, value: Any) -> Any:
        text = super().prepare_value(value)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: show it escaped, as JSON allows
            return json.dumps(value, cls=self.encoder)
        return text

    def bound_data(self, data: Any, initial: Any) -> Any:
        if self.disabled or data is None or not isinstance(data, str):
            return super().bound_data(data, initial)
        try:
            return payload.loads(data)
        except ValueError:
            return InvalidJSONInput(data)


def _in_zone(schedule: Schedule, moment: datetime | None) -> str:
    """``2025-03-31 09:00 CEST`` in the schedule's own time zone (UTC if that zone is unknown)."""
    if moment is None:
        return "—"
    try:
        zone = cron.validate_timezone(schedule.timezone)
    except cron.CronError:
        return moment.isoformat()
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")


def _job_link(job_id: Any) -> SafeString | str:
    if job_id is None:
        return "—"
    try:
        url = reverse("admin:jobs_job_change", args=[job_id])
    except NoReverseMatch:  # the jobs admin is not installed
        return str(job_id)
    return format_html('<a href="{}">{}</a>', url, str(job_id)[:8])


@admin.register(Schedule)
class ScheduleAdmin(admin.ModelAdmin):
    formfield_overrides = {models.JSONField: {"form_class": JobJSONFormField}}
    list_display = [
        "name",
        "type",
        "cron",
        "when",
        "timezone",
        "enabled",
        "next_run",
        "last_run",
        "last_job_link",
    ]
    list_filter = ["enabled", "type", "misfire_policy"]
    search_fields = ["name", "type"]
    actions = ["enable_schedules", "disable_schedules", "run_schedules_now"]
    readonly_fields = [
        "when",
        "next_fire_times",
        "next_run",
        "last_run",
        "last_job_link",
        "last_error",
        "created_at",
        "updated_at",
    ]
    fieldsets = [
        (None, {"fields": ["name", "enabled"]}),
        ("Job", {"fields": ["type", "kwargs", "args", "queue", "priority", "max_attempts"]}),
        (
            "When",
            {"fields": ["cron", "timezone", "when", "next_fire_times", "misfire_policy", "catch_up_limit"]},
        ),
        (
            "Runs",
            {"fields": ["next_run", "last_run", "last_job_link", "last_error", "created_at", "updated_at"]},
        ),
    ]

    class Media:
        css = {"all": ["scheduling/admin.css"]}

    @admin.display(description="in words")
    def when(self, schedule: Schedule) -> str:
        return cron.describe(schedule.cron) if schedule.cron else "—"

    @admin.display(description="next five fire times")
    def next_fire_times(self, schedule: Schedule) -> SafeString | str:
        if not schedule.pk:
            return "shown once saved"
        if not schedule.enabled:
            return "— (disabled)"
        try:
            times = schedule.next_fire_times(5)
        except Exception as exc:  # noqa: BLE001 - an unsaveable expression shows its problem instead
            return f"cannot compute: {exc}"
        return format_html(
            "<ol>{}</ol>", format_html_join("", "<li>{}</li>", ((_in_zone(schedule, t),) for t in times))
        )

    @admin.display(description="next run", ordering="next_run_at")
    def next_run(self, schedule: Schedule) -> str:
        return _in_zone(schedule, schedule.next_run_at)

    @admin.display(description="last run", ordering="last_run_at")
    def last_run(self, schedule: Schedule) -> str:
        return _in_zone(schedule, schedule.last_run_at)

    @admin.display(description="last job")
    def last_job_link(self, schedule: Schedule) -> SafeString | str:
        return _job_link(schedule.last_job_id)

    # ------------------------------------------------------------------ actions

    @admin.action(description="Enable selected schedules", permissions=["change"])
    def enable_schedules(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        self._set_enabled(request, queryset, True)

    @admin.action(description="Disable selected schedules", permissions=["change"])
    def disable_schedules(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        self._set_enabled(request, queryset, False)

    @admin.action(description="Run selected schedules now", permissions=["change"])
    def run_schedules_now(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        for schedule in queryset:
            self._run(request, schedule)

    def _set_enabled(self, request: HttpRequest, queryset: QuerySet[Schedule], enabled: bool) -> None:
        changed = []
        for schedule in queryset.filter(enabled=not enabled):
            schedule.enabled = enabled
            schedule.save(update_fields=["enabled"])  # recomputes next_run_at, wakes the scheduler
            changed.append(schedule)
        verb = "enabled" if enabled else "disabled"
        # The audit trail (jobs.audit): the form's add/change/delete are logged by the admin itself.
        change = "disabled → enabled" if enabled else "enabled → disabled"
        audit.record(
            request.user, "Enable" if enabled else "Disable", "admin", [(one, change) for one in changed]
        )
        self.message_user(request, f"{len(changed)} schedule(s) {verb}.", messages.SUCCESS)

    def _run(self, request: HttpRequest, schedule: Schedule) -> None:
        try:
            job = firing.run_now(schedule)
        except InvalidJob as exc:
            self.message_user(
                request, f"{schedule.name}: not enqueued: {'; '.join(exc.messages)}", messages.ERROR
            )
            return
        audit.record(request.user, "Run now", "admin", [(schedule, f"enqueued job {job.pk}")])
        self.message_user(
            request, format_html("{}: enqueued job {}.", schedule.name, _job_link(job.pk)), messages.SUCCESS
        )

    # ------------------------------------------------------------------ buttons on the change page

    def get_urls(self) -> list:
        info = self.opts.app_label, self.opts.model_name
        extra = [
            path(
                f"<path:object_id>/{name}/",
                self.admin_site.admin_view(self._button_view(name)),
                name=f"{info[0]}_{info[1]}_{name}",
            )
            for name in ("run", "enable", "disable")
        ]
        return extra + super().get_urls()

    def _button_view(self, name: str) -> Any:
        def view(request: HttpRequest, object_id: str) -> HttpResponse:
            if request.method != "POST":
                return HttpResponseNotAllowed(["POST"])
            schedule = get_object_or_404(Schedule, pk=object_id)
            if not self.has_change_permission(request, schedule):
                raise PermissionDenied
            if name == "run":
                self._run(request, schedule)
            else:
                self._set_enabled(request, Schedule.objects.filter(pk=schedule.pk), name == "enable")
            return HttpResponseRedirect(reverse("admin:scheduling_schedule_change", args=[schedule.pk]))

        return view

    def render_change_form(
        self, request: HttpRequest, context: dict, *args: Any, obj: Schedule | None = None, **kwargs: Any
    ) -> HttpResponse:
        buttons = []
        if obj is not None and obj.pk and self.has_change_permission(request, obj):
            names = ["run", "disable" if obj.enabled else "enable"]
            labels = {"run": "Run now", "enable": "Enable", "disable": "Disable"}
            buttons = [
                {"url": reverse(f"admin:scheduling_schedule_{name}", args=[obj.pk]), "label": labels[name]}
                for name in names
            ]
        context["schedule_buttons"] = buttons
        return super().render_change_form(request, context, *args, obj=obj, **kwargs)
