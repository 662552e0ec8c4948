"""The operators' admin for jobs and dead letters.

The admin never saves a job: every field is read-only, jobs cannot be added or
deleted here, and Retry / Cancel / Run now (list actions and detail-page
buttons) call ``jobs.services``, which owns every state change. The job list
stays fast on millions of rows: no ``COUNT(*)`` of the table, filter choices
from the registry and settings (no ``SELECT DISTINCT``), only indexed filters
and sort columns, no per-row queries. Payloads are shown through ``redact``.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.admin.utils import quote, unquote
from django.contrib.admin.views.main import ORDER_VAR, ChangeList
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.text import Truncator, capfirst
from django.utils.translation import gettext

from jobs import admin_actions, registry
from jobs.admin_actions import (
    DEAD_LETTER_ACTIONS,
    JOB_ACTIONS,
    ActionReport,
    DeadLetterAction,
    JobAction,
    apply_dead_letter_action,
    apply_job_action,
)
from jobs.admin_display import (
    badge,
    badge_css,
    format_duration,
    job_duration,
    preformatted,
    pretty_json,
    redacted_payload,
    short_id,
    status_badge,
)
from jobs.admin_pagination import EstimatedCountPaginator
from jobs.models import DeadLetter, Job, JobAttempt

_HEX_PREFIX_RE = re.compile(r"^[0-9a-f]{1,32}$")

# Large columns the list never shows: not fetched for its 100 rows (payloads may be 256 KB each).
_LIST_DEFERRED = ("args", "kwargs", "result", "error", "backoff", "lease_token")


# --------------------------------------------------------------------------- search and filters


def uuid_prefix_range(term: str) -> tuple[uuid.UUID, uuid.UUID] | None:
    """The UUID range that a hex prefix (dashes allowed) covers: a primary-key range scan, not a LIKE."""
    digits = term.strip().lower().replace("-", "")
    if not _HEX_PREFIX_RE.match(digits):
        return None
    return uuid.UUID(digits.ljust(32, "0")), uuid.UUID(digits.ljust(32, "f"))


def matching_type_names(term: str) -> list[str]:
    """Registered type names containing ``term``: an indexed ``type IN (…)`` instead of a LIKE scan."""
    needle = term.lower()
    return [job_type.name for job_type in registry.all_types() if needle in job_type.name.lower()]


def job_search_q(term: str, prefix: str = "") -> Q:
    """Id (or a prefix of it), type (exact, or registered names containing the term), idempotency key.

    Every branch hits an index (the primary key, ``job_type``, ``job_idem_key``).
    """
    term = term.strip()
    query = Q(**{f"{prefix}type": term}) | Q(**{f"{prefix}idempotency_key": term})
    names = matching_type_names(term)
    if names:
        query |= Q(**{f"{prefix}type__in": names})
    id_range = uuid_prefix_range(term)
    if id_range is not None:
        query |= Q(**{f"{prefix}id__gte": id_range[0], f"{prefix}id__lte": id_range[1]})
    return query


def _with_current(choices: list[str], current: str | None) -> list[tuple[str, str]]:
    """Keep a value from the URL in the choices, so a filter on an unlisted queue/type still shows."""
    names = list(dict.fromkeys(choices))
    if current and current not in names:
        names.append(current)
    return [(name, name) for name in names]


class QueueFilter(admin.SimpleListFilter):
    """Queues from settings and the registry: no ``SELECT DISTINCT queue`` over the table."""

    title = "queue"
    parameter_name = "queue"
    field = "queue"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        queues = [*settings.JOBQUEUE_QUEUES, settings.JOBQUEUE_DEFAULT_QUEUE]
        queues += sorted({t.queue for t in registry.all_types() if t.queue} - set(queues))
        return _with_current(queues, self.value())

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        return queryset.filter(**{self.field: value}) if value else queryset


class TypeFilter(QueueFilter):
    """Job types from the registry: no ``SELECT DISTINCT type`` over the table."""

    title = "type"
    parameter_name = "type"
    field = "type"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return _with_current([t.name for t in registry.all_types()], self.value())


class DeadLetterTypeFilter(TypeFilter):
    field = "job__type"


class DeadLetterStateFilter(admin.SimpleListFilter):
    """Open (unresolved) dead letters, or how they were resolved: the (resolution, dead_at) index."""

    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("open", "open"), *DeadLetter.Resolution.choices]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        if value == "open":
            return queryset.filter(resolution="")
        if value in DeadLetter.Resolution.values:
            return queryset.filter(resolution=value)
        return queryset


# --------------------------------------------------------------------------- shared admin behaviour


class OperatorChangeList(ChangeList):
    """The changelist without the columns the list never shows, sorted only by ``sortable_by`` columns.

    Django honours any ``?o=`` column even when ``sortable_by`` hides its header;
    here a hand-made URL cannot make PostgreSQL sort a million rows by an unindexed column.
    """

    deferred: tuple[str, ...] = ()

    def get_ordering(self, request: HttpRequest, queryset: QuerySet) -> list[Any]:
        value = self.params.get(ORDER_VAR)
        if value and self.sortable_by is not None:
            allowed = {str(i) for i, name in enumerate(self.list_display) if name in self.sortable_by}
            kept = [part for part in value.split(".") if part.rpartition("-")[2] in allowed]
            if kept:
                self.params[ORDER_VAR] = ".".join(kept)
            else:
                del self.params[ORDER_VAR]
        return super().get_ordering(request, queryset)

    def get_queryset(self, request: HttpRequest, exclude_parameters: Any = None) -> QuerySet:
        return super().get_queryset(request, exclude_parameters).defer(*self.deferred)


class ReadOnlyOperatorAdmin(admin.ModelAdmin):
    """Read-only pages plus buttons that POST to per-object action URLs (CSRF-protected, permission-checked).

    Nothing is added, edited or deleted through the form: state changes only through the actions.
    """

    show_full_result_count = False  # no COUNT(*) of the whole table per page load
    show_facets = admin.ShowFacets.NEVER  # facet counts would COUNT every filter choice
    paginator = EstimatedCountPaginator
    list_per_page = 100
    button_actions: dict[str, Any] = {}

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def action_checkbox(self, obj: Any) -> SafeString:
        """Django's row checkbox, without rendering a form widget through the template engine per row.

        The same markup; the widget path cost about a third of a 100-row page's render time.
        """
        return format_html(
            '<input type="checkbox" name="{}" value="{}" class="action-select" aria-label="{}">',
            helpers.ACTION_CHECKBOX_NAME,
            str(obj.pk),
            format_html(gettext("Select this object for an action - {}"), str(obj)),
        )

    def has_action_permission(self, request: HttpRequest, action: Any) -> bool:
        return self.has_change_permission(request)

    def button_is_available(self, action: Any, obj: Any) -> bool:
        raise NotImplementedError

    def describe(self, obj: Any) -> str:
        """How a message names one object."""
        return f"{self.opts.verbose_name.capitalize()} {obj.pk}"

    def run_actions(self, action: Any, objects: list[Any]) -> ActionReport:
        raise NotImplementedError

    # -- pages

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        return super().changelist_view(request, {"jobqueue_css": badge_css(), **(extra_context or {})})

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict | None = None,
    ) -> HttpResponse:
        if request.method not in ("GET", "HEAD"):
            # Saving the form would write the row behind the services' back.
            return HttpResponseNotAllowed(["GET", "HEAD"])
        extra_context = {
            "jobqueue_css": badge_css(),
            "title": capfirst(self.opts.verbose_name),  # not "Change job": nothing is edited here
            "show_save": False,
            "show_save_and_continue": False,
            "show_save_and_add_another": False,
            "show_delete": False,
            **(extra_context or {}),
        }
        return super().changeform_view(request, object_id, form_url, extra_context)

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Any = None,
    ) -> TemplateResponse:
        """Offer only the buttons that are legal for the object's state and that the user may use."""
        buttons = []
        if obj is not None:
            for name, action in self.button_actions.items():
                if self.has_action_permission(request, action) and self.button_is_available(action, obj):
                    buttons.append({"label": action.label, "url": self._action_url(name, obj.pk)})
        context["jobqueue_buttons"] = buttons
        return super().render_change_form(request, context, add, change, form_url, obj)

    # -- per-object action URLs

    def _action_url(self, name: str, pk: Any) -> str:
        opts = self.opts
        return reverse(
            f"admin:{opts.app_label}_{opts.model_name}_{name.replace('-', '_')}",
            args=[quote(pk)],
            current_app=self.admin_site.name,
        )

    def get_urls(self) -> list[URLPattern]:
        opts = self.opts
        custom = [
            path(
                f"<path:object_id>/{name}/",
                self.admin_site.admin_view(self._button_view(name)),
                name=f"{opts.app_label}_{opts.model_name}_{name.replace('-', '_')}",
            )
            for name in self.button_actions
        ]
        return custom + super().get_urls()

    def _button_view(self, name: str) -> Any:
        def view(request: HttpRequest, object_id: str) -> HttpResponse:
            return self.button_view(request, object_id, name)

        return view

    def button_view(self, request: HttpRequest, object_id: str, name: str) -> HttpResponse:
        """POST only; 403 without permission; an unknown or malformed id is a message, never a 500."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        action = self.button_actions[name]
        if not self.has_action_permission(request, action):
            raise PermissionDenied
        obj = self.get_object(request, unquote(object_id))
        changelist = reverse(
            f"admin:{self.opts.app_label}_{self.opts.model_name}_changelist", current_app=self.admin_site.name
        )
        if obj is None:
            self.message_user(
                request,
                f"No {self.opts.verbose_name} with id “{Truncator(object_id).chars(64)}” exists "
                "(it may have been pruned).",
                messages.ERROR,
            )
            return HttpResponseRedirect(changelist)
        report = self.run_actions(action, [obj])
        self.log_report(request, action, report)
        self.message_user(request, report.single_message(self.describe(obj)), report.level)
        change_url = reverse(
            f"admin:{self.opts.app_label}_{self.opts.model_name}_change",
            args=[quote(obj.pk)],
            current_app=self.admin_site.name,
        )
        return HttpResponseRedirect(change_url)

    def run_list_action(self, request: HttpRequest, queryset: QuerySet, name: str) -> None:
        """A list action: refuse oversized selections, run the service per object, report in one line."""
        action = self.button_actions[name]
        limit = admin_actions.MAX_ACTION_OBJECTS
        objects = list(queryset[: limit + 1])
        if len(objects) > limit:
            self.message_user(
                request,
                f"Nothing changed: select at most {limit} {self.opts.verbose_name_plural} "
                "per action (narrow the list with its filters first).",
                messages.ERROR,
            )
            return
        report = self.run_actions(action, objects)
        self.log_report(request, action, report)
        self.message_user(request, report.message(), report.level)

    def log_report(self, request: HttpRequest, action: Any, report: ActionReport) -> None:
        """An audit trail in the admin's history: who asked for which change."""
        done = [*report.changed, *report.requested]
        if done:
            LogEntry.objects.log_actions(
                user_id=request.user.pk,
                queryset=done,
                action_flag=CHANGE,
                change_message=f"{action.label} (admin)",
            )


# --------------------------------------------------------------------------- jobs


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
    deferred = _LIST_DEFERRED


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

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return JobChangeList

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        if not search_term.strip():
            return queryset, False
        return queryset.filter(job_search_q(search_term)), False

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

    @admin.display(description="dead letter")
    @admin.display(description="Live view")
    def dashboard_link(self, job: Job) -> SafeString:
        return format_html('<a href="{}">open on the dashboard</a>', reverse("dashboard:job", args=[job.pk]))

    def dead_letter_link(self, job: Job) -> SafeString | str:
        dead = DeadLetter.objects.filter(job_id=job.pk).only("id", "resolution").first()
        if dead is None:
            return "—"
        url = reverse("admin:jobs_deadletter_change", args=[dead.pk], current_app=self.admin_site.name)
        return format_html('<a href="{}">{}</a>', url, dead.resolution or "open")


# --------------------------------------------------------------------------- dead letters


class DeadLetterChangeList(OperatorChangeList):
    deferred = tuple(f"job__{name}" for name in _LIST_DEFERRED)


@admin.register(DeadLetter)
class DeadLetterAdmin(ReadOnlyOperatorAdmin):
    list_display = ("job_short_id", "job_type", "short_reason", "attempts", "dead_at", "state_badge")
    list_display_links = ("job_short_id",)
    list_filter = (DeadLetterStateFilter, DeadLetterTypeFilter, ("dead_at", admin.DateFieldListFilter))
    search_fields = ("job__id", "job__type")
    search_help_text = "A job id or its first characters, or a job type."
    ordering = ("-dead_at", "-id")
    sortable_by = ("dead_at",)
    list_select_related = ("job",)
    actions = ("retry_dead_letters", "discard_dead_letters")
    button_actions = DEAD_LETTER_ACTIONS
    fields = (
        "job_link",
        "job_type",
        "job_status",
        "reason_display",
        "dead_at",
        "state_badge",
        "resolved_at",
        "attempts",
        "errors_table",
        "payload",
    )
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("job")

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return DeadLetterChangeList

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        if not search_term.strip():
            return queryset, False
        return queryset.filter(job_search_q(search_term, prefix="job__")), False

    def has_retry_permission(self, request: HttpRequest) -> bool:
        """Retrying re-queues the job, so it needs the job permission as well as the dead-letter one."""
        return self.has_change_permission(request) and request.user.has_perm("jobs.change_job")

    def has_action_permission(self, request: HttpRequest, action: DeadLetterAction) -> bool:
        if action.needs_change_job:
            return self.has_retry_permission(request)
        return self.has_change_permission(request)

    def button_is_available(self, action: DeadLetterAction, obj: DeadLetter) -> bool:
        return not obj.resolution

    def describe(self, obj: DeadLetter) -> str:
        return f"Dead letter of job {short_id(obj.job_id)}"

    def run_actions(self, action: DeadLetterAction, objects: list[DeadLetter]) -> ActionReport:
        return apply_dead_letter_action(action, objects)

    @admin.action(description="Retry selected dead letters (job → queued)", permissions=["retry"])
    def retry_dead_letters(self, request: HttpRequest, queryset: QuerySet) -> None:
        self.run_list_action(request, queryset, "retry")

    @admin.action(description="Discard selected dead letters (job stays failed)", permissions=["change"])
    def discard_dead_letters(self, request: HttpRequest, queryset: QuerySet) -> None:
        self.run_list_action(request, queryset, "discard")

    @admin.display(description="job")
    def job_short_id(self, dead: DeadLetter) -> str:
        return short_id(dead.job_id)

    @admin.display(description="type")
    def job_type(self, dead: DeadLetter) -> str:
        return dead.job.type

    @admin.display(description="reason")
    def short_reason(self, dead: DeadLetter) -> str:
        return Truncator(dead.reason.splitlines()[0] if dead.reason else "").chars(100)

    @admin.display(description="attempts")
    def attempts(self, dead: DeadLetter) -> str:
        return f"{dead.job.attempts}/{dead.job.max_attempts}"

    @admin.display(description="state")
    def state_badge(self, dead: DeadLetter) -> SafeString:
        return badge(dead.resolution or "open", dead.resolution or "open")

    @admin.display(description="job")
    def job_link(self, dead: DeadLetter) -> SafeString:
        url = reverse("admin:jobs_job_change", args=[quote(dead.job_id)], current_app=self.admin_site.name)
        return format_html('<a href="{}">{}</a>', url, dead.job_id)

    @admin.display(description="job status")
    def job_status(self, dead: DeadLetter) -> SafeString:
        return status_badge(dead.job)

    @admin.display(description="reason")
    def reason_display(self, dead: DeadLetter) -> SafeString:
        return preformatted(dead.reason)

    @admin.display(description="every attempt's error")
    def errors_table(self, dead: DeadLetter) -> SafeString:
        errors = dead.errors if isinstance(dead.errors, list) else []
        if not errors:
            return format_html("<span>{}</span>", "—")
        rows = format_html_join(
            "",
            '<tr><td>{}</td><td>{}</td><td><pre class="jq-pre">{}</pre></td></tr>',
            (
                (entry.get("attempt", "?"), entry.get("outcome", ""), entry.get("error", ""))
                if isinstance(entry, dict)
                else ("?", "", str(entry))
                for entry in errors
            ),
        )
        return format_html(
            '<table class="jq-errors"><thead><tr><th>attempt</th><th>outcome</th><th>error</th></tr></thead>'
            "<tbody>{}</tbody></table>",
            rows,
        )

    @admin.display(description="kwargs (sensitive fields redacted)")
    def payload(self, dead: DeadLetter) -> SafeString:
        return redacted_payload(dead.job)
