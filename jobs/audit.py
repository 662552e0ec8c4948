"""The operator audit trail: who changed what, when, and through which surface.

Every operator action (retry, cancel, run now, dead-letter retry and discard, schedule create / edit /
delete / pause / resume / run now) is recorded by ``record`` as Django admin ``LogEntry`` rows, so
the admin's History page of the job, dead letter or schedule lists it. The adapters (``jobs.admin``,
``jobs.api``, ``scheduling``) call it after the service call succeeded; a refused action
(``IllegalTransition``, a 4xx) records nothing. One row per object changed, never a summary row, so
each object's history is complete; a bulk action's rows are one ``bulk_create`` (batched).

The message reads ``"<Action> (<via>): <what changed>"``, e.g. ``"Retry (admin): failed → queued"``;
``via`` is "admin", "api" or "dashboard" (the dashboard's pages call the API with ``CLIENT_HEADER``,
a label of the surface, not a credential: the user is the authenticated one either way).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.db import models

__all__ = [
    "ADDITION",
    "CHANGE",
    "CLIENT_HEADER",
    "DELETION",
    "Target",
    "dead_letter_changes",
    "record",
    "recent",
    "transition",
    "via_of",
]

CLIENT_HEADER = "X-Jobqueue-Client"  # sent by the dashboard's fetch calls (static/jobs/dashboard/api.js)
VIAS = frozenset({"admin", "api", "dashboard"})
BATCH_SIZE = 500  # rows per INSERT: a 1000-object admin action is two statements
RECENT_LIMIT = 10

Target = models.Model | tuple[models.Model, str]


def via_of(headers: Mapping[str, str], default: str = "api") -> str:
    """The surface an API request came from: "dashboard" when its pages sent ``CLIENT_HEADER``."""
    return "dashboard" if headers.get(CLIENT_HEADER) == "dashboard" else default


def transition(before: str, after: str) -> str:
    """``"failed → queued"``; just ``after`` when nothing moved."""
    return after if before == after else f"{before} → {after}"


def dead_letter_changes(name: str, dead: models.Model, job_before: str, result: Any) -> list[Target]:
    """What a dead-letter action changed: the dead letter, and for "retry" its job too (re-queued)."""
    if name == "retry":
        return [
            (dead, "open → retried"),
            (result, f"{transition(job_before, result.status)} (dead letter retried)"),
        ]
    return [(dead, "open → discarded")]


def record(
    user: Any,
    action: str,
    via: str,
    targets: Iterable[Target],
    *,
    flag: int = CHANGE,
) -> list[LogEntry]:
    """One ``LogEntry`` per target (an object, or ``(object, what changed)``), by ``user``.

    Nothing is recorded for a user without a row (anonymous): ``LogEntry.user`` cannot be empty,
    and every surface that changes state requires a signed-in user with the model permission.
    """
    if via not in VIAS:
        raise ValueError(f"unknown surface {via!r}")
    user_id = getattr(user, "pk", None)
    if user_id is None:
        return []
    entries = []
    for target in targets:
        obj, detail = target if isinstance(target, tuple) else (target, "")
        message = f"{action} ({via})"
        if detail:
            message += f": {detail}"
        entries.append(
            LogEntry(
                user_id=user_id,
                content_type_id=ContentType.objects.get_for_model(obj, for_concrete_model=False).pk,
                object_id=str(obj.pk),
                object_repr=str(obj)[:200],
                action_flag=flag,
                change_message=message,
            )
        )
    if not entries:
        return []
    return LogEntry.objects.bulk_create(entries, batch_size=BATCH_SIZE)


def recent(obj: models.Model, limit: int = RECENT_LIMIT) -> list[LogEntry]:
    """The latest operator actions on ``obj``, newest first, with their users (one query)."""
    content_type = ContentType.objects.get_for_model(obj, for_concrete_model=False)
    return list(
        LogEntry.objects.filter(content_type=content_type, object_id=str(obj.pk))
        .select_related("user")
        .order_by("-action_time", "-id")[:limit]
    )
