"""Payload fields a job type marks ``sensitive`` are redacted everywhere (admin, API, dashboard, logs)."""

from __future__ import annotations

from typing import Any

from jobs import registry

REDACTED = "********"


def sensitive_fields(job_type: str) -> tuple[str, ...]:
    found = registry.find(job_type)
    return found.sensitive if found else ()


def redact(job_type: str, kwargs: Any) -> Any:
    """A copy of ``kwargs`` with the type's sensitive keys replaced; anything else is returned as is."""
    fields = sensitive_fields(job_type)
    if not fields or not isinstance(kwargs, dict):
        return kwargs
    return {key: (REDACTED if key in fields else value) for key, value in kwargs.items()}
