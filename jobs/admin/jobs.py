"""The Job admin: the indexed list, the read-only detail page with every attempt, Retry / Cancel / Run now."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from jobs.admin.actions import JOB_ACTIONS, ActionReport, JobAction, apply_job_action
from jobs.admin.base import JOB_LIST_DEFERRED, OperatorChangeList, ReadOnlyOperatorAdmin
from jobs.admin.display import (
    format_duration,
    job_duration,
    preformatted,
    pretty_json,
    redacted_payload,
    short_id,
    status_badge,
)
from jobs.admin.filters import QueueFilter, TypeFilter
from jobs.models import DeadLetter, Job, JobAttempt


class JobAttemptInline(admin.TabularInline):
    """Every attempt of the job, oldest first; tracebacks fold away."""

    model = JobAttempt
    fields = (
        "number",
        "worker",
        "outcome",
        "started_at",
        "duration_display",
        "error_display",
        "traceback_display",
    )
    readonly_fields = fields
    extra = 0
    max_num = 0
    can_delete = False
    show_change_link = False
    ordering = ("number",)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Attempts belong to the job: whoever may see the job sees its attempts.
        return request.user.has_perm("jobs.view_job") or request.user.has_perm("jobs.change_job")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="duration")
    def duration_display(self, attempt: JobAttempt) -> str:
        return format_duration(attempt.duration)

    @admin.display(description="error")
    def error_display(self, attempt: JobAttempt) -> SafeString:
        return preformatted(attempt.error)

    @admin.display(description="traceback")
    def traceback_display(self, attempt: JobAttempt) -> SafeString:
        if not attempt.traceback:
            return format_html("<span>{}</span>", "—")
        return format_html(
            '<details><summary>traceback</summary><pre class="jq-pre">{}</pre></details>', attempt.traceback
        )


class JobChangeList(OperatorChangeList):
    deferred = JOB_LIST_DEFERRED


@admin.register(Job)
class JobAdmin(ReadOnlyOperatorAdmin):
    list_display = (
        "short_id",
        "type",
        "queue",
        "priority",
        "status_badge",
        "attempts_display",
        "created_at",
        "run_at",
        "duration",
        "worker",
    )
    list_display_links = ("short_id",)
    list_filter = ("status", QueueFilter, TypeFilter, ("created_at", admin.DateFieldListFilter))
    # Searched by get_search_results (index-friendly); listed so the admin shows the search box.
    search_fields = ("id", "type", "idempotency_key")
    search_help_text = (
        "A job id or its first characters, a job type (or part of a registered one), or an idempotency key."
    )
    ordering = ("-created_at", "-seq")  # seq is unique: a total order without an extra sort key
    sortable_by = ("created_at", "type")  # indexed columns only: no sort of a million rows
    list_select_related = False  # no relation is shown: no join, and no per-row query
    actions = ("retry_jobs", "cancel_jobs", "run_jobs_now")
    inlines = (JobAttemptInline,)
    button_actions = JOB_ACTIONS
    changelist_class = JobChangeList
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "id",
                    "type",
                    "queue",
                    "priority",
                    "status_badge",
                    "attempts_display",
                    "worker",
                    "owner",
                    "idempotency_key",
                    "dead_letter_link",
                    "dashboard_link",
                )
            },
        ),
        ("Payload", {"fields": ("args_display", "payload", "result_display", "error_display")}),
        (
            "Timing",
            {
                "fields": (
                    "created_at",
                    "run_at",
                    "started_at",
                    "finished_at",
                    "duration",
                    "cancel_requested_at",
                    "updated_at",
                    "timeout",
                    "backoff_display",
                    "seq",
                )
            },
        ),
    )
    readonly_fields = tuple(name for _title, options in fieldsets for name in options["fields"])

    def button_is_available(self, action: JobAction, obj: Job) -> bool:
        return action.is_available(obj)

    def describe(self, obj: Job) -> str:
        return f"Job {short_id(obj.pk)}"

    def run_actions(self, action: JobAction, objects: list[Job]) -> ActionReport:
        return apply_job_action(action, objects)

    # -- list actions (all through jobs.services)

    @admin.action(description="Retry selected jobs (failed or cancelled → queued)", permissions=["change"])
    def retry_jobs(self, request: HttpRequest, queryset: QuerySet) -> None:
        self.run_list_action(request, queryset, "retry")

    @admin.action(description="Cancel selected jobs (running ones are asked to stop)", permissions=["change"])
    def cancel_jobs(self, request: HttpRequest, queryset: QuerySet) -> None:
        self.run_list_action(request, queryset, "cancel")

    @admin.action(
        description="Run selected jobs now (scheduled or retrying → queued)", permissions=["change"]
    )
    def run_jobs_now(self, request: HttpRequest, queryset: QuerySet) -> None:
        self.run_list_action(request, queryset, "run-now")

    # -- columns and fields

    @admin.display(description="id")
    def short_id(self, job: Job) -> str:
        return short_id(job.pk)

    @admin.display(description="status")
    def status_badge(self, job: Job) -> SafeString:
        return status_badge(job)

    @admin.display(description="attempts")
    def attempts_display(self, job: Job) -> str:
        return f"{job.attempts}/{job.max_attempts}"

    @admin.display(description="duration")
    def duration(self, job: Job) -> str:
        return job_duration(job)

    @admin.display(description="args")
    def args_display(self, job: Job) -> SafeString:
        return pretty_json(job.args)

    @admin.display(description="kwargs (sensitive fields redacted)")
    def payload(self, job: Job) -> SafeString:
        return redacted_payload(job)

    @admin.display(description="result")
    def result_display(self, job: Job) -> SafeString:
        return pretty_json(job.result)

    @admin.display(description="last error")
    def error_display(self, job: Job) -> SafeString:
        return preformatted(job.error)

    @admin.display(description="backoff")
    def backoff_display(self, job: Job) -> SafeString:
        return pretty_json(job.backoff)

    @admin.display(description="Live view")
    def dashboard_link(self, job: Job) -> SafeString:
        return format_html('<a href="{}">open on the dashboard</a>', reverse("dashboard:job", args=[job.pk]))

    @admin.display(description="dead letter")
    def dead_letter_link(self, job: Job) -> SafeString | str:
        dead = DeadLetter.objects.filter(job_id=job.pk).only("id", "resolution").first()
        if dead is None:
            return "—"
        url = reverse("admin:jobs_deadletter_change", args=[dead.pk], current_app=self.admin_site.name)
        return format_html('<a href="{}">{}</a>', url, dead.resolution or "open")
