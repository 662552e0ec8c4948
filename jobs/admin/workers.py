"""The admin's Workers page: live heartbeats from Redis, not rows in a table.

Workers exist only as heartbeats in the dispatch index, read through
``Broker.workers()``. So that the page sits in the admin index like any model,
it is registered for the placeholder ``workers.models.Worker`` (unmanaged, no
table, no permissions); its admin replaces every URL with one read-only page.
Staff only.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis
from django.contrib import admin, messages
from django.contrib.admin.utils import quote
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.safestring import SafeString

from jobs.admin.display import badge, badge_css, format_duration, short_id
from jobs.dispatch import get_broker, stale_after_ms
from workers.models import Worker


@dataclass(frozen=True)
class CurrentJob:
    id: str
    short: str
    url: str | None


@dataclass(frozen=True)
class WorkerRow:
    """One worker as the page shows it; fields its (expired) info hash no longer has are None."""

    id: str
    hostname: str
    pid: int | None
    queues: list[str]
    concurrency: int | None
    current_jobs: list[CurrentJob]
    last_heartbeat: datetime
    seconds_since: float
    alive: bool

    @property
    def badge(self) -> SafeString:
        return badge("alive", "alive") if self.alive else badge("stale", "stale")

    @property
    def age(self) -> str:
        return format_duration(max(self.seconds_since, 0.0)) + " ago"


def _job_url(job_id: str, site_name: str) -> str | None:
    try:
        uuid.UUID(job_id)
    except ValueError:
        return None
    return reverse("admin:jobs_job_change", args=[quote(job_id)], current_app=site_name)


def worker_rows(entries: list[dict[str, Any]], now_ms: int, site_name: str = "admin") -> list[WorkerRow]:
    """Turn ``Broker.workers()`` entries into rows: alive first, then by hostname and pid."""
    rows = []
    for entry in entries:
        worker_id = str(entry.get("id", ""))
        hostname = entry.get("hostname") or worker_id.split(":", 1)[0]
        pid = entry.get("pid")
        queues = entry.get("queues")
        current = entry.get("current_jobs")
        last_ms = int(entry.get("last_heartbeat_ms") or 0)
        rows.append(
            WorkerRow(
                id=worker_id,
                hostname=str(hostname),
                pid=pid if isinstance(pid, int) else None,
                queues=[str(q) for q in queues] if isinstance(queues, list) else [],
                concurrency=entry.get("concurrency") if isinstance(entry.get("concurrency"), int) else None,
                current_jobs=[
                    CurrentJob(str(job_id), short_id(job_id), _job_url(str(job_id), site_name))
                    for job_id in (current if isinstance(current, list) else [])
                ],
                last_heartbeat=datetime.fromtimestamp(last_ms / 1000, tz=UTC),
                seconds_since=(now_ms - last_ms) / 1000,
                alive=bool(entry.get("alive")),
            )
        )
    rows.sort(key=lambda row: (not row.alive, row.hostname, row.pid or 0, row.id))
    return rows


@admin.register(Worker)
class WorkerAdmin(admin.ModelAdmin):
    """One page listing the workers' heartbeats; nothing to add, change or delete."""

    def _is_staff(self, request: HttpRequest) -> bool:
        return bool(request.user.is_active and request.user.is_staff)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self._is_staff(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._is_staff(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_urls(self) -> list[URLPattern]:
        # Only the list: the default change/add/delete/history views would query a table that does not exist.
        info = self.opts.app_label, self.opts.model_name
        return [
            path("", self.admin_site.admin_view(self.changelist_view), name=f"{info[0]}_{info[1]}_changelist")
        ]

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        broker = get_broker()
        entries: list[dict[str, Any]] = []
        now_ms = int(datetime.now(tz=UTC).timestamp() * 1000)
        try:
            now_ms = broker.now_ms()  # the clock the heartbeats were stamped with
            entries = broker.workers(stale_after_ms=stale_after_ms())
        except redis.RedisError as exc:
            messages.error(request, f"Redis is unreachable, so no worker heartbeats can be shown: {exc}")
        rows = worker_rows(entries, now_ms, self.admin_site.name)
        context = {
            **self.admin_site.each_context(request),
            "title": "Workers",
            "subtitle": None,
            "opts": self.opts,
            "app_label": self.opts.app_label,
            "workers": rows,
            "alive_count": sum(row.alive for row in rows),
            "stale_count": sum(not row.alive for row in rows),
            "stale_after": format_duration(stale_after_ms() / 1000),
            "jobqueue_css": badge_css(),
            **(extra_context or {}),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/workers/worker/change_list.html", context)
