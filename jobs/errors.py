"""Exceptions that callers and handlers use to talk to the engine."""

from __future__ import annotations

from django.core.exceptions import ValidationError


class PermanentError(Exception):
    """Raise from a handler when retrying cannot help: the job goes straight to the dead letters."""


class JobCancelled(Exception):
    """Raised by ``JobContext.check_cancelled()`` inside a handler whose job was cancelled or timed out."""


class UnknownJobType(LookupError):
    """No handler is registered under this name (in this process)."""


class InvalidJob(ValidationError):
    """Enqueue arguments that cannot become a job; ``message_dict`` maps field → messages."""


class PayloadTooLarge(InvalidJob):
    """The serialized args and kwargs exceed JOBQUEUE_MAX_PAYLOAD_BYTES."""


class IllegalTransition(Exception):
    """The job's current status does not allow the requested change; nothing was changed."""

    def __init__(self, message: str, *, status: str | None = None) -> None:
        super().__init__(message)
        self.status = status


class IdempotencyConflict(Exception):
    """The idempotency key was already used by this owner for a different request."""
