"""What the job and dead-letter admins share: read-only pages whose only writes are action buttons.

Both lists are job lists at heart (a dead letter is searched and deferred through ``job__``), so
the changelist rules, the search, the per-object action URLs and the audit log live here once.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import quote, unquote
from django.contrib.admin.views.main import ORDER_VAR, ChangeList
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.text import Truncator, capfirst
from django.utils.translation import gettext

from jobs import audit
from jobs.admin import actions as admin_actions
from jobs.admin.actions import ActionReport
from jobs.admin.display import badge_css
from jobs.admin.filters import job_search_q
from jobs.admin.pagination import EstimatedCountPaginator

# Large job columns the lists never show: not fetched for their 100 rows (payloads may be 256 KB each).
JOB_LIST_DEFERRED = ("args", "kwargs", "result", "error", "backoff", "lease_token")
RECENT_ACTIONS = 5  # operator actions listed on a detail page; the History page has them all


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
    changelist_class: type[OperatorChangeList] = OperatorChangeList
    job_lookup_prefix = ""  # the path from this admin's model to its job ("" or "job__"), for the search

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return self.changelist_class

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        """The index-friendly job search (``job_search_q``), not Django's LIKE over ``search_fields``."""
        if not search_term.strip():
            return queryset, False
        return queryset.filter(job_search_q(search_term, prefix=self.job_lookup_prefix)), False

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
        if obj is not None:
            context["jobqueue_recent_actions"] = audit.recent(obj, limit=RECENT_ACTIONS)
            context["jobqueue_history_url"] = reverse(
                f"admin:{self.opts.app_label}_{self.opts.model_name}_history",
                args=[quote(obj.pk)],
                current_app=self.admin_site.name,
            )
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
        limit = admin_actions.MAX_ACTION_OBJECTS  # read per call, so a test can lower it
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
        """The audit trail (``jobs.audit``): one History entry per object the action changed."""
        audit.record(request.user, action.label, "admin", report.audit)
