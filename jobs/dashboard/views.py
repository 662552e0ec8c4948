"""Dashboard pages: server-rendered first paint, then each page's ES module keeps it live.

The modules are in ``jobs/static/jobs/dashboard/`` (no build step); each template loads only its
page's entry module (``overview.js``, ``job.js``, ``create.js``).

Every page is staff only (``staff_member_required`` sends others to the admin
login). The pages read the database directly for their first paint so they are
useful before any JavaScript runs; every change afterwards (retry, cancel,
create) goes through the REST API, the one write path for clients.
"""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import NoReverseMatch, reverse
from django.views.decorators.csrf import ensure_csrf_cookie

from jobs import registry
from jobs.models import ACTIVE_STATUSES, RUNNABLE_STATUSES, DeadLetter, Job, JobStatus
from jobs.redaction import redact

FILTERS = ("status", "queue", "type")


def admin_url(name: str, *args: Any) -> str | None:
    """The admin page for an object, or None when the admin does not register that model."""
    try:
        return reverse(f"admin:{name}", args=args)
    except NoReverseMatch:
        return None


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


def _page_config(request: HttpRequest, **extra: Any) -> dict[str, Any]:
    """What the page's modules need to know, passed with ``json_script`` (never interpolated into JS)."""
    user = request.user
    return {
        "api": "/api/",
        "ws": "/ws/dashboard/",
        "statuses": list(JobStatus.values),
        "terminal": [JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED],
        "queues": list(settings.JOBQUEUE_QUEUES),
        "admin": {
            "job": admin_url("jobs_job_change", "00000000-0000-0000-0000-000000000000"),
            "dead_letters": admin_url("jobs_deadletter_changelist"),
        },
        "can": {
            "add": user.has_perm("jobs.add_job"),
            "change": user.has_perm("jobs.change_job"),
        },
        **extra,
    }


@staff_member_required
@ensure_csrf_cookie
def index(request: HttpRequest) -> HttpResponse:
    """Counters, queues, throughput, workers, the live job table and the dead letters tab."""
    filters = {key: request.GET.get(key, "") for key in FILTERS}
    tab = "dead" if request.GET.get("tab") == "dead" else "jobs"
    queues = sorted(set(settings.JOBQUEUE_QUEUES) | ({filters["queue"]} - {""}))
    types = [t.name for t in registry.all_types()]
    if filters["type"] and filters["type"] not in types:
        types.append(filters["type"])
    context = {
        "filters": filters,
        "tab": tab,
        "statuses": JobStatus.values,
        "queues": queues,
        "types": types,
        "config": _page_config(request, page="index", filters=filters, tab=tab),
        "admin_jobs": admin_url("jobs_job_changelist"),
        "admin_dead_letters": admin_url("jobs_deadletter_changelist"),
    }
    return render(request, "dashboard/index.html", context)


@staff_member_required
@ensure_csrf_cookie
def job_detail(request: HttpRequest, job_id: Any) -> HttpResponse:
    """One job: fields, payload (sensitive fields redacted), result, attempts; live, with actions."""
    job = get_object_or_404(Job, pk=job_id)
    attempts = list(job.attempt_set.order_by("number"))
    dead = DeadLetter.objects.filter(job=job).first()
    can_change = request.user.has_perm("jobs.change_job")
    context = {
        "job": job,
        "args": _pretty(job.args),
        "payload": _pretty(redact(job.type, job.kwargs)),
        "result": _pretty(job.result) if job.result is not None else "",
        "attempts": attempts,
        "dead_letter": dead,
        "can_retry": can_change and job.status in (JobStatus.FAILED, JobStatus.CANCELLED),
        "can_cancel": can_change and job.status in ACTIVE_STATUSES and not job.cancel_requested_at,
        "admin_job": admin_url("jobs_job_change", job.pk),
        "admin_dead_letter": admin_url("jobs_deadletter_change", dead.pk) if dead else None,
        "config": _page_config(
            request,
            page="job",
            job={"id": str(job.pk), "status": job.status, "cancel_requested": bool(job.cancel_requested_at)},
            runnable=sorted(RUNNABLE_STATUSES),
        ),
    }
    return render(request, "dashboard/job.html", context)


@staff_member_required
@ensure_csrf_cookie
def create(request: HttpRequest) -> HttpResponse:
    """The enqueue form; ``create.js`` posts it to ``POST /api/jobs/`` and shows the API's answer."""
    context = {
        "queues": settings.JOBQUEUE_QUEUES,
        "default_queue": settings.JOBQUEUE_DEFAULT_QUEUE,
        "default_max_attempts": settings.JOBQUEUE_DEFAULT_MAX_ATTEMPTS,
        "max_attempts_limit": settings.JOBQUEUE_MAX_ATTEMPTS_LIMIT,
        "config": _page_config(request, page="create"),
    }
    return render(request, "dashboard/create.html", context)
