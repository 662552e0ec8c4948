"""The DeadLetter admin: open and resolved dead letters, every attempt's error, Retry / Discard."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.utils import quote
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.text import Truncator

from jobs.admin.actions import DEAD_LETTER_ACTIONS, ActionReport, DeadLetterAction, apply_dead_letter_action
from jobs.admin.base import JOB_LIST_DEFERRED, OperatorChangeList, ReadOnlyOperatorAdmin
from jobs.admin.display import badge, preformatted, redacted_payload, short_id, status_badge
from jobs.admin.filters import TypeFilter
from jobs.models import DeadLetter


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


class DeadLetterChangeList(OperatorChangeList):
    deferred = tuple(f"job__{name}" for name in JOB_LIST_DEFERRED)


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
    changelist_class = DeadLetterChangeList
    job_lookup_prefix = "job__"
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
