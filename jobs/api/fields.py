"""Input fields strict enough that nothing a client sends reaches PostgreSQL as a 500.

PostgreSQL's ``jsonb`` rejects ``\\u0000`` and lone surrogates that Python's ``json`` happily parses, and
DRF's ``DateTimeField`` silently accepts naive date-times (and can overflow while converting time zones).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from django.utils.dateparse import parse_datetime
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

MAX_JSON_DEPTH = 32


def json_problem(value: Any) -> str | None:
    """Why ``value`` cannot be stored as ``jsonb`` (NUL, lone surrogates, too deep), or None. Iterative."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return "Strings must not contain NUL (\\u0000) characters."
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return "Strings must be valid Unicode (no lone surrogates)."
        elif isinstance(item, (dict, list)):
            if depth > MAX_JSON_DEPTH:
                return f"Nested too deeply: at most {MAX_JSON_DEPTH} levels."
            if isinstance(item, dict):
                stack.extend((key, depth) for key in item)
                stack.extend((child, depth + 1) for child in item.values())
            else:
                stack.extend((child, depth + 1) for child in item)
    return None


def text_problem(value: str) -> str | None:
    """The same check for a single string (query parameters, headers)."""
    return json_problem(value)


@extend_schema_field({"type": "object", "additionalProperties": True})
class JSONObjectField(serializers.Field):
    default_error_messages = {"not_object": "Must be a JSON object."}

    def to_internal_value(self, data: Any) -> dict:
        if not isinstance(data, Mapping):
            self.fail("not_object")
        if problem := json_problem(data):
            raise serializers.ValidationError(problem)
        return dict(data)

    def to_representation(self, value: Any) -> Any:
        return value


@extend_schema_field({"type": "array", "items": {}})
class JSONArrayField(serializers.Field):
    default_error_messages = {"not_array": "Must be a JSON array."}

    def to_internal_value(self, data: Any) -> list:
        if not isinstance(data, list):
            self.fail("not_array")
        if problem := json_problem(data):
            raise serializers.ValidationError(problem)
        return data

    def to_representation(self, value: Any) -> Any:
        return value


class AwareDateTimeField(serializers.DateTimeField):
    """ISO 8601 with an explicit offset; a naive time would silently mean the server's time zone."""

    default_error_messages = {
        "invalid": "Must be an ISO 8601 date-time with an offset, e.g. 2026-01-31T12:00:00+00:00.",
        "naive": "Must include a UTC offset (e.g. +00:00 or Z).",
    }

    def to_internal_value(self, value: Any) -> datetime:
        if isinstance(value, datetime):
            parsed: datetime | None = value
        elif isinstance(value, str) and len(value) <= 64:
            try:
                parsed = parse_datetime(value)
            except ValueError:
                parsed = None
        else:
            parsed = None
        if parsed is None:
            self.fail("invalid")
        if parsed.tzinfo is None or parsed.utcoffset() is None:
            self.fail("naive")
        try:
            return parsed.astimezone(UTC)
        except OverflowError:
            self.fail("invalid")
