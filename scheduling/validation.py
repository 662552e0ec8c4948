"""Checks a schedule's job parameters with the very rules ``jobs.services.enqueue`` applies.

A schedule is validated when it is saved (admin form, API), not only when it fires, so an
operator learns at once that a type is unknown or a handler rejects the payload. Its JSON
(``args``, ``payload``) goes through ``jobs.payload``, the one check of every JSON a job carries,
with the names the admin and the API show (``payload.name``, ``args[2]``).
"""

from __future__ import annotations

from typing import Any

from jobs import payload, services
from jobs.errors import InvalidJob

SHOWN_NAME = {"args": "args", "kwargs": "payload"}  # model field -> its name in the admin and the API


def json_errors(args: Any, kwargs: Any) -> dict[str, list[str]]:
    """Model field -> problems of the schedule's JSON (wrong container, NUL, surrogates, depth...)."""
    errors: dict[str, list[str]] = {}
    for field, value, container, kind in (("args", args, list, "array"), ("kwargs", kwargs, dict, "object")):
        if not isinstance(value, container):
            errors[field] = [f"Must be a JSON {kind}."]
        elif problems := payload.problems(value, SHOWN_NAME[field]):
            errors[field] = problems
    return errors


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
        errors = exc.message_dict
    else:
        errors = {}
    # the same problems in the names the operator sees (services say ``kwargs.name``, they ``payload.name``)
    return {**errors, **json_errors(args, kwargs)}
