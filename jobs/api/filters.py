"""Query-string filters and ordering for the job and dead-letter lists.

Strict on purpose: DRF's stock filters ignore values they do not understand, so a typo returns
everything; here a bad value is a 400 naming the parameter. Orderings are limited to fields that
never change and are (nearly) unique, which cursor pagination needs.
"""

from __future__ import annotations

import contextlib
import uuid
from datetime import UTC, datetime, time
from typing import Any

from django.db.models import Q, QuerySet
from django.utils.dateparse import parse_date, parse_datetime
from rest_framework.exceptions import ValidationError
from rest_framework.filters import BaseFilterBackend
from rest_framework.request import Request

from jobs.api.fields import text_problem
from jobs.models import JobStatus

MAX_VALUES = 50
MAX_LENGTH = 200


def _values(request: Request, name: str, errors: dict[str, list[str]]) -> list[str]:
    """``?name=a,b&name=c`` -> [a, b, c], or [] with an error recorded."""
    values = [part.strip() for raw in request.query_params.getlist(name) for part in raw.split(",")]
    values = [value for value in values if value]
    if len(values) > MAX_VALUES:
        errors.setdefault(name, []).append(f"At most {MAX_VALUES} values.")
        return []
    for value in values:
        problem = "Too long." if len(value) > MAX_LENGTH else text_problem(value)
        if problem:
            errors.setdefault(name, []).append(problem)
            return []
    return values


def _choices(request: Request, name: str, allowed: list[str], errors: dict[str, list[str]]) -> list[str]:
    """``_values`` restricted to ``allowed``: an unknown one is an error that lists the choices."""
    values = _values(request, name, errors)
    if unknown := [value for value in values if value not in allowed]:
        choices = ", ".join(allowed)
        errors.setdefault(name, []).append(f"Unknown {name} {unknown[0]!r}. Choose from: {choices}.")
    return values


def _moment(request: Request, name: str, errors: dict[str, list[str]]) -> datetime | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    parsed: datetime | None = None
    try:
        parsed = parse_datetime(raw)
        if parsed is None and (day := parse_date(raw)) is not None:
            parsed = datetime.combine(day, time.min)
    except ValueError:
        parsed = None
    if parsed is None:
        errors.setdefault(name, []).append(
            "Must be an ISO 8601 date or date-time, e.g. 2026-01-31T12:00:00Z (write '+' as %2B in a URL)."
        )
        return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)  # documented: times without an offset are UTC
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        errors.setdefault(name, []).append("Out of range.")
        return None


def _parameter(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "required": False,
        "in": "query",
        "description": description,
        "schema": schema or {"type": "string"},
    }


class JobFilterBackend(BaseFilterBackend):
    """``status``, ``type``, ``queue`` (comma-separated or repeated), ``created_after``/``created_before``,
    ``search`` and ``ordering``."""

    orderings = ("-seq", "seq", "-created_at", "created_at")

    def filter_queryset(self, request: Request, queryset: QuerySet, view: Any) -> QuerySet:
        errors: dict[str, list[str]] = {}
        statuses = _choices(request, "status", JobStatus.values, errors)
        types = _values(request, "type", errors)
        queues = _values(request, "queue", errors)
        after = _moment(request, "created_after", errors)
        before = _moment(request, "created_before", errors)
        search = (request.query_params.get("search") or "").strip()
        if problem := ("Too long." if len(search) > MAX_LENGTH else text_problem(search)):
            errors.setdefault("search", []).append(problem)
        self._check_ordering(request, errors)
        if errors:
            raise ValidationError(errors)
        if statuses:
            queryset = queryset.filter(status__in=statuses)
        if types:
            queryset = queryset.filter(type__in=types)
        if queues:
            queryset = queryset.filter(queue__in=queues)
        if after is not None:
            queryset = queryset.filter(created_at__gte=after)
        if before is not None:
            queryset = queryset.filter(created_at__lt=before)
        if search:
            matches = Q(type__icontains=search) | Q(idempotency_key=search) | Q(error__icontains=search)
            with contextlib.suppress(ValueError):
                matches |= Q(pk=uuid.UUID(search))
            queryset = queryset.filter(matches)
        return queryset

    def _check_ordering(self, request: Request, errors: dict[str, list[str]]) -> None:
        value = request.query_params.get("ordering")
        if value is not None and value not in self.orderings:
            errors.setdefault("ordering", []).append(f"Must be one of: {', '.join(self.orderings)}.")

    def get_ordering(self, request: Request, queryset: QuerySet, view: Any) -> tuple[str, ...] | None:
        """Read by CursorPagination; an unknown value never gets here (filter_queryset ran first)."""
        value = request.query_params.get("ordering")
        return (value,) if value in self.orderings else None

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        return [
            _parameter(
                "status",
                "Comma-separated statuses.",
                {"type": "string", "example": "queued,running"},
            ),
            _parameter("type", "Comma-separated job type names."),
            _parameter("queue", "Comma-separated queue names."),
            _parameter(
                "created_after",
                "ISO 8601; created at or after (no offset = UTC).",
                {"type": "string", "format": "date-time"},
            ),
            _parameter(
                "created_before",
                "ISO 8601; created before (no offset = UTC).",
                {"type": "string", "format": "date-time"},
            ),
            _parameter("search", "Job id, part of the type or of the last error, or an idempotency key."),
            _parameter(
                "ordering", "Sort order (default -seq).", {"type": "string", "enum": list(self.orderings)}
            ),
        ]


class DeadLetterFilterBackend(BaseFilterBackend):
    """``resolution`` (open, retried, discarded) and ``type`` of the dead job."""

    resolutions = {"open": "", "retried": "retried", "discarded": "discarded"}

    def filter_queryset(self, request: Request, queryset: QuerySet, view: Any) -> QuerySet:
        errors: dict[str, list[str]] = {}
        resolutions = _choices(request, "resolution", list(self.resolutions), errors)
        types = _values(request, "type", errors)
        if errors:
            raise ValidationError(errors)
        if resolutions:
            queryset = queryset.filter(resolution__in=[self.resolutions[value] for value in resolutions])
        if types:
            queryset = queryset.filter(job__type__in=types)
        return queryset

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        return [
            _parameter("resolution", "Comma-separated: open, retried, discarded."),
            _parameter("type", "Comma-separated job type names."),
        ]
