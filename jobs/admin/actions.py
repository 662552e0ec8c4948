"""Operator actions as the admin runs them: every change goes through ``jobs.services``, one job at a time,
and the outcome is summarised as "3 retried; 2 skipped: already succeeded".

A job the service refuses (``IllegalTransition``) is skipped, never half-changed;
skips are grouped by reason so a large selection gives one readable line.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from django.contrib import messages

from jobs import services
from jobs.audit import dead_letter_changes, transition
from jobs.errors import IllegalTransition
from jobs.models import ACTIVE_STATUSES, TERMINAL_STATUSES, DeadLetter, Job, JobStatus

# An action on more jobs than this is refused: each job is its own transaction, and a
# "select all" over a million rows would hold the request for minutes.
MAX_ACTION_OBJECTS = 1000

CANCELLABLE = ACTIVE_STATUSES
RETRYABLE = frozenset({JobStatus.FAILED, JobStatus.CANCELLED})
RUNNABLE_NOW = frozenset({JobStatus.SCHEDULED, JobStatus.RETRYING})

_ALREADY_RE = re.compile(r"\balready (\w+)")


def status_reason(status: str) -> str:
    """Why a job in ``status`` was skipped, in the words an operator expects."""
    if status in TERMINAL_STATUSES or status == JobStatus.QUEUED:
        return f"already {status}"
    return f"still {status}"


def skip_reason(exc: IllegalTransition) -> str:
    match = _ALREADY_RE.search(str(exc))
    if match:
        return f"already {match.group(1)}"
    if exc.status:
        return status_reason(exc.status)
    return str(exc)


@dataclass
class ActionReport:
    """What one action did; ``message()`` is the line shown to the operator."""

    verb: str  # "retried", "cancelled", ...
    changed: list[Any] = field(default_factory=list)
    requested: list[Any] = field(default_factory=list)  # running jobs asked to stop (cancel only)
    skipped: Counter[str] = field(default_factory=Counter)
    # What the audit trail records: (object, what changed) for every object the action changed.
    audit: list[tuple[Any, str]] = field(default_factory=list)

    def message(self) -> str:
        text = f"{len(self.changed)} {self.verb}"
        if self.requested:
            if len(self.requested) == 1:
                text += "; cancel requested for 1 running job (its worker stops it)"
            else:
                text += f"; cancel requested for {len(self.requested)} running jobs (their workers stop them)"
        if self.skipped:
            total = sum(self.skipped.values())
            if len(self.skipped) == 1:
                reasons = next(iter(self.skipped))
            else:
                reasons = ", ".join(f"{count} {reason}" for reason, count in self.skipped.most_common())
            text += f"; {total} skipped: {reasons}"
        return text

    def single_message(self, subject: str) -> str:
        """The line for a detail-page button, which acts on one object (``subject``, e.g. "Job 1a2b3c4d")."""
        if self.changed:
            return f"{subject} {self.verb}."
        if self.requested:
            return f"{subject}: cancel requested; it shows cancel requested until its worker stops it."
        reason = next(iter(self.skipped), "nothing to do")
        return f"{subject} not changed: {reason}."

    @property
    def level(self) -> int:
        if self.skipped:
            return messages.WARNING
        return messages.SUCCESS


@dataclass(frozen=True)
class JobAction:
    name: str  # URL segment and action name
    label: str  # button text
    verb: str
    allowed_from: frozenset[str]
    service: Callable[[Any], Any]

    def is_available(self, job: Job) -> bool:
        """Whether the button makes sense for this job (the service still has the last word)."""
        if self.name == "cancel" and job.status == JobStatus.RUNNING:
            return job.cancel_requested_at is None
        return job.status in self.allowed_from


JOB_ACTIONS: dict[str, JobAction] = {
    action.name: action
    for action in (
        JobAction("retry", "Retry", "retried", RETRYABLE, services.retry),
        JobAction("cancel", "Cancel", "cancelled", CANCELLABLE, services.cancel),
        JobAction("run-now", "Run now", "queued to run now", RUNNABLE_NOW, services.run_now),
    )
}


def apply_job_action(action: JobAction, jobs: Iterable[Job]) -> ActionReport:
    """Call the action's service for each job; illegal transitions become grouped skip reasons."""
    report = ActionReport(action.verb)
    for job in jobs:
        if action.name == "cancel" and job.status == JobStatus.RUNNING and job.cancel_requested_at:
            report.skipped["cancel already requested"] += 1
            continue
        try:
            result = action.service(job.pk)
        except IllegalTransition as exc:
            report.skipped[skip_reason(exc)] += 1
        except Job.DoesNotExist:
            report.skipped["no longer exists"] += 1
        else:
            if action.name == "cancel" and result.status == JobStatus.RUNNING:
                report.requested.append(result)
                report.audit.append((result, "running → cancel requested"))
            else:
                report.changed.append(result)
                report.audit.append((result, transition(job.status, result.status)))
    return report


@dataclass(frozen=True)
class DeadLetterAction:
    name: str
    label: str
    verb: str
    service: Callable[[Any], Any]
    needs_change_job: bool  # retrying re-queues the job: the operator must be allowed to change jobs


DEAD_LETTER_ACTIONS: dict[str, DeadLetterAction] = {
    action.name: action
    for action in (
        DeadLetterAction("retry", "Retry", "retried", services.retry_dead_letter, True),
        DeadLetterAction("discard", "Discard", "discarded", services.discard_dead_letter, False),
    )
}


def apply_dead_letter_action(action: DeadLetterAction, dead_letters: Iterable[DeadLetter]) -> ActionReport:
    report = ActionReport(action.verb)
    for dead in dead_letters:
        try:
            result = action.service(dead.pk)
        except IllegalTransition as exc:
            report.skipped[skip_reason(exc)] += 1
        except (DeadLetter.DoesNotExist, Job.DoesNotExist):
            report.skipped["no longer exists"] += 1
        else:
            report.changed.append(dead)
            report.audit.extend(dead_letter_changes(action.name, dead, dead.job.status, result))
    return report
