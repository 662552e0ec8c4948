"""The durable side of the queue: PostgreSQL is the truth for every job.

Only ``jobs.services`` writes ``Job.status`` (and the fields that move with it).
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q


class JobStatus(models.TextChoices):
    """A job's place in its lifecycle (docs/lifecycle.md draws every arrow)."""

    SCHEDULED = "scheduled", "scheduled"  # waiting for run_at
    QUEUED = "queued", "queued"  # ready to be popped by a worker
    RUNNING = "running", "running"  # claimed by a worker, holds a lease
    RETRYING = "retrying", "retrying"  # failed an attempt, waiting for its backoff
    SUCCEEDED = "succeeded", "succeeded"  # terminal: the handler returned
    FAILED = "failed", "failed"  # terminal: attempts exhausted or permanent error (has a DeadLetter)
    CANCELLED = "cancelled", "cancelled"  # terminal: an operator stopped it


TERMINAL_STATUSES = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})
RUNNABLE_STATUSES = frozenset({JobStatus.SCHEDULED, JobStatus.QUEUED, JobStatus.RETRYING})
ACTIVE_STATUSES = frozenset(set(JobStatus) - TERMINAL_STATUSES)


class AttemptOutcome(models.TextChoices):
    """How one attempt ended."""

    SUCCEEDED = "succeeded", "succeeded"
    FAILED = "failed", "failed"  # the handler raised (or its arguments were rejected)
    TIMED_OUT = "timed_out", "timed out"  # exceeded the job's timeout
    LEASE_EXPIRED = "lease_expired", "lease expired"  # the worker died or lost its lease
    CANCELLED = "cancelled", "cancelled"  # stopped on an operator's request


class NextVal(models.Func):
    """``nextval('<sequence>')``: the FIFO sequence number, assigned by PostgreSQL on insert."""

    function = "nextval"
    output_field = models.BigIntegerField()

    def __init__(self, sequence: str) -> None:
        super().__init__(models.Value(sequence))


JOB_SEQ_SEQUENCE = "jobs_job_seq_seq"


class Job(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Orders jobs of equal priority (invariant 8: FIFO by sequence, not clock).
    seq = models.BigIntegerField(db_default=NextVal(JOB_SEQ_SEQUENCE), unique=True, editable=False)
    type = models.CharField(max_length=200)
    queue = models.CharField(max_length=64, default="default")
    priority = models.SmallIntegerField(default=0, help_text="-100..100, higher runs first")
    args = models.JSONField(default=list, blank=True)
    kwargs = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED)
    attempts = models.PositiveIntegerField(default=0)
    max_attempts = models.PositiveIntegerField(default=3)
    run_at = models.DateTimeField(null=True, blank=True)
    timeout = models.FloatField(null=True, blank=True, help_text="seconds; the type's default when empty")
    backoff = models.JSONField(null=True, blank=True, help_text="{base, max, jitter}; the type's when empty")
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.DB_SET_NULL,  # database-level like every relation to Job (fields.E323)
        related_name="+",
        db_index=False,  # the partial index job_owner below: jobs from code and schedules have no owner
    )
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)
    result = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    worker = models.CharField(max_length=200, blank=True, default="")
    lease_token = models.CharField(max_length=100, null=True, blank=True)
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        # Every claim and finish is an UPDATE that changes `status`, so none is HOT: each writes a new
        # entry into every index below. Indexes on mostly-NULL columns are partial for that reason.
        indexes = [
            models.Index(fields=["status", "queue", "priority"], name="job_status_queue_prio"),
            models.Index(fields=["created_at"], name="job_created"),
            models.Index(fields=["type"], name="job_type"),
            models.Index(
                fields=["idempotency_key"], name="job_idem_key", condition=Q(idempotency_key__isnull=False)
            ),
            models.Index(fields=["owner"], name="job_owner", condition=Q(owner__isnull=False)),
            models.Index(
                fields=["updated_at"],
                name="job_active_updated",
                condition=Q(status__in=["scheduled", "queued", "running", "retrying"]),
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(priority__gte=-100) & Q(priority__lte=100), name="job_priority_range"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.type} {str(self.id)[:8]} ({self.status})"

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


class JobAttempt(models.Model):
    """One run of a job; written when the attempt ends (invariant 3: unique on job and number)."""

    # No index of its own: the unique (job, number) constraint below serves every lookup by job.
    job = models.ForeignKey(Job, on_delete=models.DB_CASCADE, related_name="attempt_set", db_index=False)
    number = models.PositiveIntegerField()
    worker = models.CharField(max_length=200, blank=True, default="")
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=16, choices=AttemptOutcome.choices)
    error = models.TextField(blank=True, default="")
    traceback = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["job", "number"]
        constraints = [models.UniqueConstraint(fields=["job", "number"], name="attempt_job_number_unique")]

    def __str__(self) -> str:
        return f"attempt {self.number} of {self.job_id}: {self.outcome}"

    @property
    def duration(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None


class DeadLetter(models.Model):
    """A job that will not run again by itself: its attempts are exhausted or it failed permanently."""

    class Resolution(models.TextChoices):
        RETRIED = "retried", "retried"
        DISCARDED = "discarded", "discarded"

    job = models.OneToOneField(Job, on_delete=models.DB_CASCADE, related_name="dead_letter")
    reason = models.TextField()
    errors = models.JSONField(default=list, help_text="every attempt's error, oldest first")
    dead_at = models.DateTimeField()
    resolution = models.CharField(max_length=16, choices=Resolution.choices, blank=True, default="")
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-dead_at"]
        indexes = [models.Index(fields=["resolution", "dead_at"], name="deadletter_open")]

    def __str__(self) -> str:
        return f"dead letter for {self.job_id}"


class IdempotencyKey(models.Model):
    """Maps (owner, key) to the job it created, with a fingerprint of the request.

    Kept for its own retention, independent of job pruning: a pruned job leaves
    its key behind so the same request still cannot enqueue twice.
    """

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.DB_CASCADE,  # database-level like the job link beside it (models.E050)
        related_name="+",
    )
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64)
    job = models.ForeignKey(Job, null=True, on_delete=models.DB_SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["owner", "key"], name="idem_owner_key", nulls_distinct=False)
        ]
        indexes = [models.Index(fields=["created_at"], name="idem_created")]
