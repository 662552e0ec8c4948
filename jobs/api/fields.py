"""Input fields strict enough that nothing a client sends reaches PostgreSQL as a 500.

PostgreSQL's ``jsonb`` rejects ``\\u0000`` and lone surrogates that Python's ``json`` happily parses, and
DRF's ``DateTimeField`` silently accepts naive date-times (and can overflow while converting time zones).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.utils.dateparse import parse_datetime
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from jobs import payload

MAX_JSON_DEPTH = payload.MAX_DEPTH


def text_problem(value: str) -> str | None:
    """Why a single string (query parameter, header) cannot be stored, or None."""
    return payload.text_problem(value)


class _JobJSONField(serializers.Field):
    """A job's JSON (``args``, ``payload``), checked by ``jobs.payload``: the rule ``enqueue`` applies."""

    container: type = object

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, self.container):
            self.fail("wrong_type")
        if problems := payload.problems(data, self.field_name):
            raise serializers.ValidationError(problems)
        return data

    def to_representation(self, value: Any) -> Any:
        return value


@extend_schema_field({"type": "object", "additionalProperties": True})
class JSONObjectField(_JobJSONField):
    default_error_messages = {"wrong_type": "Must be a JSON object."}
    container = dict


@extend_schema_field({"type": "array", "items": {}})
class JSONArrayField(_JobJSONField):
    default_error_messages = {"wrong_type": "Must be a JSON array."}
    container = list


class JobTypeField(serializers.ChoiceField):
    """A registered type's name; anything else is named as such, never echoed as a Python repr."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("help_text", "A registered job type (see /api/job-types/).")
        super().__init__(**kwargs)
        self.error_messages["not_string"] = (
            "Must be a string naming a registered job type (see /api/job-types/)."
        )
        names = ", ".join(str(choice) for choice in self.choices)
        self.error_messages["unknown"] = f'Unknown job type "{{input}}". Registered types: {names}.'

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str) or not data:
            self.fail("not_string")
        if data not in self.choices:
            shown = data if len(data) <= 64 else data[:64] + "…"
            if text_problem(shown):
                shown = shown.encode("utf-8", "backslashreplace").decode().replace("\x00", "\\u0000")
            self.fail("unknown", input=shown)
        return data


class StrictRegexField(serializers.RegexField):
    """A JSON string matching the pattern (DRF's CharField would take ``1.5`` or ``true`` as text)."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictIntegerField(serializers.IntegerField):
    """A JSON integer (``3.0`` too): no strings such as ``"3"``, no booleans, no ``1.5``."""

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, (int, float)):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictFloatField(serializers.FloatField):
    """A finite JSON number: no strings or booleans (DRF's FloatField takes ``true`` as 1.0)."""

    def to_internal_value(self, data: Any) -> float:
        if isinstance(data, bool) or not isinstance(data, (int, float)):
            self.fail("invalid")
        if isinstance(data, int) and abs(data) > 2**63:  # float() could overflow, and no bound is that wide
            if data > 0 and self.max_value is not None:
                self.fail("max_value", max_value=self.max_value)
            if data < 0 and self.min_value is not None:
                self.fail("min_value", min_value=self.min_value)
            self.fail("invalid")
        return super().to_internal_value(data)


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
