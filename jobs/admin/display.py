"""How the admin shows jobs: one colour per status (list, detail, dead letters and workers agree),
durations, short ids and JSON payloads (kwargs always through ``jobs.redaction.redact``)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

from jobs.models import Job, JobStatus
from jobs.redaction import redact

# One mapping for every badge, so a status looks the same on every page (list, detail, dead letters).
STATUS_COLOURS: dict[str, str] = {
    JobStatus.SCHEDULED: "#6f42c1",
    JobStatus.QUEUED: "#0b5ed7",
    JobStatus.RUNNING: "#0a7ea4",
    JobStatus.RETRYING: "#b35c00",
    JobStatus.SUCCEEDED: "#157347",
    JobStatus.FAILED: "#b02a37",
    JobStatus.CANCELLED: "#5c636a",
}
CANCEL_REQUESTED = "cancel requested"
BADGE_COLOURS: dict[str, str] = {
    **{str(status): colour for status, colour in STATUS_COLOURS.items()},
    "cancel-requested": "#a52a6b",
    "alive": STATUS_COLOURS[JobStatus.SUCCEEDED],
    "stale": STATUS_COLOURS[JobStatus.CANCELLED],
    "open": STATUS_COLOURS[JobStatus.FAILED],
    "retried": STATUS_COLOURS[JobStatus.QUEUED],
    "discarded": STATUS_COLOURS[JobStatus.CANCELLED],
}


def badge(label: str, kind: str) -> SafeString:
    """A coloured pill: classes only (no inline style), so a strict Content-Security-Policy still works."""
    return format_html(
        '<span class="jq-badge jq-{}">{}</span>', kind if kind in BADGE_COLOURS else "other", label
    )


def badge_css() -> SafeString:
    """The stylesheet for badges and the detail pages' action buttons, generated from BADGE_COLOURS.

    Built only from constants in this module, so it is safe to emit unescaped inside a <style> element.
    """
    rules = [
        ".jq-badge{display:inline-block;color:#fff;background:#333;border-radius:9px;padding:1px 8px;"
        "white-space:nowrap;font-size:0.8em;font-weight:600;line-height:1.5}",
        *(f".jq-badge.jq-{kind}{{background:{colour}}}" for kind, colour in BADGE_COLOURS.items()),
        ".object-tools li.jq-action form{margin:0;display:inline}",
        ".object-tools li.jq-action button{display:block;float:left;padding:3px 12px;border:0;cursor:pointer;"
        "background:var(--object-tools-bg);color:var(--object-tools-fg);font-weight:400;font-size:0.6875rem;"
        "text-transform:uppercase;letter-spacing:0.5px;border-radius:15px;line-height:1rem}",
        ".object-tools li.jq-action button:hover{background:var(--object-tools-hover-bg)}",
        ".jq-pre{margin:0;white-space:pre-wrap;word-break:break-word}",
        "table.jq-errors td,table.jq-errors th{vertical-align:top}",
    ]
    return mark_safe("\n".join(rules))


def status_label(status: str, cancel_requested_at: datetime | None) -> str:
    """A running job whose cancel was requested shows ``cancel requested`` until its worker stops it."""
    if status == JobStatus.RUNNING and cancel_requested_at is not None:
        return CANCEL_REQUESTED
    return status


def status_badge(job: Job) -> SafeString:
    label = status_label(job.status, job.cancel_requested_at)
    return badge(label, "cancel-requested" if label == CANCEL_REQUESTED else job.status)


def short_id(value: Any) -> str:
    """The first 8 hex digits: enough to recognise a job, and a prefix the admin search accepts."""
    return str(value)[:8]


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def job_duration(job: Job) -> str:
    """Finished jobs: start to finish; a running job: elapsed so far (marked with …)."""
    if job.started_at is None:
        return "—"
    if job.finished_at is not None and job.finished_at >= job.started_at:
        return format_duration((job.finished_at - job.started_at).total_seconds())
    if job.status == JobStatus.RUNNING:
        return format_duration((timezone.now() - job.started_at).total_seconds()) + " …"
    return "—"


def pretty_json(value: Any) -> SafeString:
    if value is None:
        return format_html("<span>{}</span>", "—")
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)
    return format_html('<pre class="jq-pre">{}</pre>', text)


def redacted_payload(job: Job) -> SafeString:
    """The job's kwargs with its type's sensitive fields replaced: the only way the admin shows kwargs."""
    return pretty_json(redact(job.type, job.kwargs))


def preformatted(text: str) -> SafeString:
    if not text:
        return format_html("<span>{}</span>", "—")
    return format_html('<pre class="jq-pre">{}</pre>', text)
