"""Cursor pagination: stable pages while jobs keep arriving, and no OFFSET scans deep into the table.

A cursor that does not decode, or whose position does not fit the ordering field, is a 400 naming
``cursor`` (DRF answers 404 for the first and lets the second reach the query as a 500).
"""

from __future__ import annotations

import re
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import models
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import Cursor, CursorPagination
from rest_framework.request import Request

BIGINT_LIMIT = 2**63
BASE64_RE = re.compile(r"^[A-Za-z0-9+/]*={0,2}$")


class StrictCursorPagination(CursorPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500
    invalid_cursor_message = "Invalid cursor: use the next/previous links from an earlier page."

    def paginate_queryset(self, queryset: models.QuerySet, request: Request, view: Any = None) -> Any:
        self._model = queryset.model
        return super().paginate_queryset(queryset, request, view)

    def decode_cursor(self, request: Request) -> Cursor | None:
        encoded = request.query_params.get(self.cursor_query_param)
        # DRF's base64 decoding skips foreign characters, so garbage could pass as the first page.
        if encoded is not None and not BASE64_RE.match(encoded):
            raise ValidationError({self.cursor_query_param: [self.invalid_cursor_message]})
        try:
            cursor = super().decode_cursor(request)
        except NotFound:
            raise ValidationError({self.cursor_query_param: [self.invalid_cursor_message]}) from None
        if cursor is not None and cursor.position is not None and not self._position_fits(cursor.position):
            raise ValidationError({self.cursor_query_param: [self.invalid_cursor_message]})
        return cursor

    def _position_fits(self, position: str) -> bool:
        field = self._model._meta.get_field(self.ordering[0].lstrip("-"))
        if "\x00" in position:
            return False
        try:
            value = field.to_python(position)
        except (DjangoValidationError, ValueError, OverflowError):
            return False
        if isinstance(value, int) and not -BIGINT_LIMIT < value < BIGINT_LIMIT:
            return False
        # Positions this API hands out are aware; a naive one would compare in the server's time zone.
        return not (isinstance(field, models.DateTimeField) and (value is None or value.tzinfo is None))


class JobCursorPagination(StrictCursorPagination):
    ordering = "-seq"


class DeadLetterCursorPagination(StrictCursorPagination):
    ordering = "-id"
