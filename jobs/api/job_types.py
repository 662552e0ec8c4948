"""Registered job types with their effective defaults and parameters, so clients can build forms."""

from __future__ import annotations

import inspect
import json
from typing import Any

from django.conf import settings

from jobs.registry import JobType

KINDS = {
    inspect.Parameter.POSITIONAL_ONLY: "positional_only",
    inspect.Parameter.POSITIONAL_OR_KEYWORD: "positional_or_keyword",
    inspect.Parameter.VAR_POSITIONAL: "var_positional",
    inspect.Parameter.KEYWORD_ONLY: "keyword_only",
    inspect.Parameter.VAR_KEYWORD: "var_keyword",
}


def _json_or_repr(value: Any) -> Any:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return repr(value)
    return value


def _annotation(annotation: Any) -> str | None:
    if annotation is inspect.Parameter.empty:
        return None
    return annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))


def parameters(job_type: JobType) -> list[dict[str, Any]]:
    if job_type.signature is None:
        return []
    out = []
    for param in job_type.signature.parameters.values():
        has_default = param.default is not inspect.Parameter.empty
        variadic = param.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        out.append(
            {
                "name": param.name,
                "kind": KINDS[param.kind],
                "required": not has_default and not variadic,
                "default": _json_or_repr(param.default) if has_default else None,
                "annotation": _annotation(param.annotation),
                "sensitive": param.name in job_type.sensitive,
            }
        )
    return out


def describe(job_type: JobType) -> dict[str, Any]:
    """What enqueueing this type without overrides would use (the same fallbacks as the services)."""
    return {
        "name": job_type.name,
        "description": job_type.description,
        "queue": job_type.queue or settings.JOBQUEUE_DEFAULT_QUEUE,
        "priority": job_type.priority,
        "max_attempts": job_type.max_attempts or settings.JOBQUEUE_DEFAULT_MAX_ATTEMPTS,
        "timeout": float(job_type.timeout or settings.JOBQUEUE_DEFAULT_TIMEOUT),
        "backoff": job_type.effective_backoff().as_dict(),
        "sensitive": list(job_type.sensitive),
        "atomic": job_type.atomic,
        "parameters": parameters(job_type),
    }
