"""The engine's value types: what a caller submits and what a worker round carries.

A leaf module (it imports nothing of the engine but the broker's score function and the
backoff policy), so the registry, the worker runtime, the django.tasks adapter and
``jobs.services`` can all name these types without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from jobs.backoff import Backoff
from workers.broker import ready_score


@dataclass(frozen=True)
class JobSpec:
    """Everything ``enqueue`` accepts, validated and normalised."""

    type: str
    args: list = field(default_factory=list)
    kwargs: dict = field(default_factory=dict)
    queue: str | None = None
    priority: int | None = None
    max_attempts: int | None = None
    run_at: datetime | None = None
    delay: float | timedelta | None = None
    timeout: float | None = None
    backoff: Backoff | dict | None = None


@dataclass(frozen=True, slots=True)
class Claimed:
    """A job this worker may now run: its row as the claim returned it (invariant 1)."""

    id: str
    token: str
    seq: int
    type: str
    queue: str
    priority: int
    args: list
    kwargs: dict
    attempt: int
    max_attempts: int
    timeout: float | None
    backoff: dict | None
    created_at: datetime
    started_at: datetime
    run_at: datetime | None = None

    @property
    def ready_score(self) -> int:
        return ready_score(self.priority, self.seq)


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one attempt ended, as the worker reports it to ``settle``."""

    job: Claimed
    status: str  # JobStatus: succeeded | retrying | failed | cancelled
    outcome: str  # AttemptOutcome
    finished_at: datetime
    result_json: str | None = None
    error: str = ""
    traceback: str = ""
    run_at: datetime | None = None  # when a retrying job is due
