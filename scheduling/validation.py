"""Checks a schedule's job parameters with the very rules ``jobs.services.enqueue`` applies.

A schedule is validated when it is saved (admin form, API), not only when it fires, so an
operator learns at once that a type is unknown or a handler rejects the payload.
"""

from __future__ import annotations

from typing import Any

from jobs import services
from jobs.errors import InvalidJob


def job_errors(
    type: str,
    args: Any,
    kwargs: Any,
    queue: str | None,
    priority: int | None,
    max_attempts: int | None,
) -> dict[str, list[str]]:
    """Field name (the model's) -> problems; empty when ``enqueue`` would accept these parameters."""
    spec = services.JobSpec(
        type=type, args=args, kwargs=kwargs, queue=queue or None, priority=priority, max_attempts=max_attempts
    )
    try:
        services.validate(spec)
    except InvalidJob as exc:
        return exc.message_dict
    return {}
