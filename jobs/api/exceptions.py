"""HTTP errors of the API and the handler that turns engine and infrastructure failures into them.

Why a custom handler: bad input must never be a 500, and an outage is the client's cue to retry
(503 + ``Retry-After``), not a server bug. Views name it through ``JobQueueAPIView``; setting
``REST_FRAMEWORK["EXCEPTION_HANDLER"]`` to it would extend the same mapping to every DRF view.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from django.core.exceptions import ObjectDoesNotExist
from django.db import InterfaceError, OperationalError
from rest_framework import status
from rest_framework.exceptions import APIException, NotFound, ValidationError
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler
from rest_framework.views import set_rollback

from jobs.errors import IdempotencyConflict, IllegalTransition, InvalidJob, PayloadTooLarge

logger = logging.getLogger("jobs.api")

RETRY_AFTER_SECONDS = 5
# The services name the payload ``kwargs``; the API calls it ``payload`` and the key travels in a header.
FIELD_NAMES = {"kwargs": "payload", "idempotency_key": "Idempotency-Key"}


class Conflict(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The request conflicts with the resource's current state."
    default_code = "conflict"


class PayloadTooLargeError(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "payload_too_large"


class ServiceUnavailable(APIException):
    """An outage: DRF's handler turns ``wait`` into a ``Retry-After`` header."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "A backing service is unavailable; retry shortly."
    default_code = "service_unavailable"

    def __init__(self, detail: str | None = None, wait: int = RETRY_AFTER_SECONDS) -> None:
        super().__init__(detail)
        self.wait = wait


def field_errors(exc: InvalidJob) -> dict[str, list[str]]:
    """The services' ``message_dict`` with the API's field names."""
    errors = exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
    return {FIELD_NAMES.get(name, name): list(messages) for name, messages in errors.items()}


def translate(exc: Exception) -> Exception:
    """The API exception a domain or infrastructure error stands for (or ``exc`` itself)."""
    if isinstance(exc, PayloadTooLarge):
        return PayloadTooLargeError(field_errors(exc))
    if isinstance(exc, InvalidJob):
        return ValidationError(field_errors(exc))
    if isinstance(exc, IllegalTransition):
        return Conflict({"detail": str(exc), "job_status": exc.status})
    if isinstance(exc, IdempotencyConflict):
        return Conflict({"detail": str(exc)})
    if isinstance(exc, ObjectDoesNotExist):
        return NotFound()
    if isinstance(exc, (OperationalError, InterfaceError)):
        logger.warning("PostgreSQL unavailable: %s", exc)
        return ServiceUnavailable("The database is unavailable; retry shortly.")
    if isinstance(exc, redis.RedisError):
        logger.warning("Redis unavailable: %s", exc)
        return ServiceUnavailable("Redis is unavailable; retry shortly.")
    return exc


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, after mapping engine errors and outages to 4xx/503."""
    translated = translate(exc)
    if translated is not exc:
        set_rollback()
    return drf_exception_handler(translated, context)
