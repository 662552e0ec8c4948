"""Serializers: input checked field by field, output with sensitive payload fields redacted.

Thin by design: the job's rules (clamps, handler signature, payload size) live in ``jobs.services``;
these only turn JSON into a ``JobSpec`` with DRF-style per-field errors, and jobs back into JSON.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from jobs import audit, registry
from jobs.api.fields import (
    AwareDateTimeField,
    JobTypeField,
    JSONArrayField,
    JSONObjectField,
    StrictFloatField,
    StrictIntegerField,
    StrictRegexField,
)
from jobs.models import DeadLetter, Job, JobAttempt
from jobs.redaction import redact
from jobs.services import QUEUE_RE, JobSpec
from jobs.services.submission import MAX_DELAY_SECONDS


class JobCreateSerializer(serializers.Serializer):
    """``POST /api/jobs/``. Unknown fields are an error (DRF would silently drop them)."""

    type = JobTypeField(choices=[])
    payload = JSONObjectField(required=False, help_text="Keyword arguments of the handler (a JSON object).")
    args = JSONArrayField(required=False, help_text="Positional arguments of the handler (a JSON array).")
    queue = StrictRegexField(
        QUEUE_RE.pattern,
        required=False,
        allow_null=True,
        max_length=64,
        error_messages={"invalid": "Must be 1-64 characters: letters, digits, '.', '_' or '-'."},
        help_text="Default: the type's queue, else JOBQUEUE_DEFAULT_QUEUE.",
    )
    priority = StrictIntegerField(
        required=False, allow_null=True, min_value=-100, max_value=100, help_text="Higher runs first."
    )
    max_attempts = StrictIntegerField(
        required=False, allow_null=True, min_value=1, max_value=settings.JOBQUEUE_MAX_ATTEMPTS_LIMIT
    )
    run_at = AwareDateTimeField(
        required=False,
        allow_null=True,
        help_text="ISO 8601 with an offset, at most 366 days ahead (like delay). Not with delay.",
    )
    delay = StrictFloatField(
        required=False,
        allow_null=True,
        min_value=0,
        max_value=MAX_DELAY_SECONDS,
        help_text="Seconds from now. Not with run_at.",
    )
    timeout = StrictFloatField(
        required=False,
        allow_null=True,
        min_value=0,
        max_value=settings.JOBQUEUE_MAX_TIMEOUT,
        help_text="Seconds (above 0); default: the type's, else JOBQUEUE_DEFAULT_TIMEOUT.",
    )

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        # Read at request time: the registry is filled by autodiscovery after this module is imported.
        names = [job_type.name for job_type in registry.api_types()]
        fields["type"] = JobTypeField(choices=names)
        return fields

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        errors: dict[str, Any] = {}
        value: dict[str, Any] = {}
        try:
            value = super().to_internal_value(data)
        except serializers.ValidationError as exc:
            errors.update(exc.detail)
        if isinstance(data, Mapping):
            allowed = ", ".join(self.fields)
            for name in sorted(set(data) - set(self.fields), key=str):
                errors[str(name)] = [f"Unknown field. Allowed fields: {allowed}."]
        if errors:
            raise serializers.ValidationError(errors)
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs.get("run_at") is not None and attrs.get("delay") is not None:
            raise serializers.ValidationError({"delay": ["Give either run_at or delay, not both."]})
        return attrs

    def to_spec(self) -> JobSpec:
        data = self.validated_data
        return JobSpec(
            type=data["type"],
            args=data.get("args") or [],
            kwargs=data.get("payload") or {},
            queue=data.get("queue"),
            priority=data.get("priority"),
            max_attempts=data.get("max_attempts"),
            run_at=data.get("run_at"),
            delay=data.get("delay"),
            timeout=data.get("timeout"),
        )

    def canonical(self) -> dict[str, Any]:
        """The request as the idempotency fingerprint sees it: defaults filled, nulls dropped."""
        data = {"args": [], "payload": {}, **self.validated_data}
        if data.get("run_at") is not None:
            data["run_at"] = data["run_at"].isoformat()
        return {name: value for name, value in data.items() if value is not None}


class AttemptSerializer(serializers.ModelSerializer):
    duration = serializers.FloatField(read_only=True, allow_null=True, help_text="seconds")

    class Meta:
        model = JobAttempt
        fields = [
            "number",
            "outcome",
            "worker",
            "started_at",
            "finished_at",
            "duration",
            "error",
            "traceback",
        ]


class JobSerializer(serializers.ModelSerializer):
    """A job as clients see it: ``kwargs`` is called ``payload`` and is redacted."""

    url = serializers.HyperlinkedIdentityField(view_name="job-detail")
    payload = serializers.SerializerMethodField()
    owner = serializers.CharField(source="owner.username", read_only=True, allow_null=True, default=None)

    class Meta:
        model = Job
        fields = [
            "id",
            "url",
            "seq",
            "type",
            "queue",
            "priority",
            "status",
            "args",
            "payload",
            "attempts",
            "max_attempts",
            "run_at",
            "timeout",
            "result",
            "error",
            "worker",
            "owner",
            "idempotency_key",
            "cancel_requested_at",
            "created_at",
            "updated_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields

    @extend_schema_field({"type": "object", "additionalProperties": True})
    def get_payload(self, job: Job) -> Any:
        return redact(job.type, job.kwargs)


RESOLUTION_FIELD = serializers.ChoiceField(choices=["open", "retried", "discarded"])


class DeadLetterBriefSerializer(serializers.ModelSerializer):
    resolution = serializers.SerializerMethodField(help_text="open, retried or discarded")

    class Meta:
        model = DeadLetter
        fields = ["id", "reason", "dead_at", "resolution", "resolved_at"]

    @extend_schema_field(RESOLUTION_FIELD)
    def get_resolution(self, dead: DeadLetter) -> str:
        return dead.resolution or "open"


class OperatorActionSerializer(serializers.Serializer):
    time = serializers.DateTimeField(source="action_time")
    user = serializers.CharField(source="user.get_username")
    action = serializers.CharField(source="change_message", help_text='e.g. "Retry (admin): failed → queued"')


class JobDetailSerializer(JobSerializer):
    attempt_history = AttemptSerializer(source="attempt_set", many=True, read_only=True)
    dead_letter = serializers.SerializerMethodField()
    operator_actions = serializers.SerializerMethodField(
        help_text="The latest operator actions on the job (the audit trail), newest first; "
        "null unless the user may change jobs (jobs.change_job)."
    )

    class Meta(JobSerializer.Meta):
        fields = [*JobSerializer.Meta.fields, "attempt_history", "dead_letter", "operator_actions"]
        read_only_fields = fields

    @extend_schema_field(OperatorActionSerializer(many=True, allow_null=True))
    def get_operator_actions(self, job: Job) -> list[dict[str, Any]] | None:
        request = self.context.get("request")
        if request is None or not request.user.has_perm("jobs.change_job"):
            return None  # who operates the queue is the operators' business, not every submitter's
        return OperatorActionSerializer(audit.recent(job), many=True).data

    @extend_schema_field(DeadLetterBriefSerializer(allow_null=True))
    def get_dead_letter(self, job: Job) -> dict[str, Any] | None:
        try:
            dead = job.dead_letter
        except ObjectDoesNotExist:
            return None
        return DeadLetterBriefSerializer(dead).data


class DeadLetterSerializer(serializers.ModelSerializer):
    url = serializers.HyperlinkedIdentityField(view_name="dead-letter-detail")
    job = serializers.HyperlinkedRelatedField(view_name="job-detail", read_only=True)
    job_id = serializers.UUIDField(read_only=True)
    job_type = serializers.CharField(source="job.type", read_only=True)
    queue = serializers.CharField(source="job.queue", read_only=True)
    job_status = serializers.CharField(source="job.status", read_only=True)
    attempts = serializers.IntegerField(source="job.attempts", read_only=True)
    resolution = serializers.SerializerMethodField(help_text="open, retried or discarded")

    class Meta:
        model = DeadLetter
        fields = [
            "id",
            "url",
            "job",
            "job_id",
            "job_type",
            "queue",
            "job_status",
            "attempts",
            "reason",
            "errors",
            "dead_at",
            "resolution",
            "resolved_at",
        ]
        read_only_fields = fields

    @extend_schema_field(RESOLUTION_FIELD)
    def get_resolution(self, dead: DeadLetter) -> str:
        return dead.resolution or "open"


# --- response shapes of the read-only views (documentation for the OpenAPI schema) -----------------


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()


class ConflictSerializer(ErrorSerializer):
    job_status = serializers.CharField(required=False, allow_null=True)


class WorkerSerializer(serializers.Serializer):
    id = serializers.CharField()
    alive = serializers.BooleanField(help_text="heartbeat within 3 heartbeat periods")
    last_heartbeat = serializers.DateTimeField()
    hostname = serializers.CharField(allow_null=True)
    pid = serializers.IntegerField(allow_null=True)
    queues = serializers.ListField(child=serializers.CharField())
    concurrency = serializers.IntegerField(allow_null=True)
    current_jobs = serializers.ListField(child=serializers.CharField())


class BackoffSerializer(serializers.Serializer):
    base = serializers.FloatField()
    max = serializers.FloatField()
    jitter = serializers.FloatField()


class ParameterSerializer(serializers.Serializer):
    name = serializers.CharField()
    kind = serializers.ChoiceField(
        choices=["positional_only", "positional_or_keyword", "var_positional", "keyword_only", "var_keyword"]
    )
    required = serializers.BooleanField()
    default = serializers.JSONField(allow_null=True)
    annotation = serializers.CharField(allow_null=True)
    sensitive = serializers.BooleanField()


class JobTypeSerializer(serializers.Serializer):
    name = serializers.CharField()
    description = serializers.CharField(allow_blank=True)
    queue = serializers.CharField()
    priority = serializers.IntegerField()
    max_attempts = serializers.IntegerField()
    timeout = serializers.FloatField()
    backoff = BackoffSerializer()
    sensitive = serializers.ListField(child=serializers.CharField())
    atomic = serializers.BooleanField(
        help_text="its database writes commit together with its success, or not at all"
    )
    parameters = ParameterSerializer(many=True)


class QueueDepthSerializer(serializers.Serializer):
    ready = serializers.IntegerField()
    delayed = serializers.IntegerField()
    running = serializers.IntegerField()


class QueueStatsSerializer(QueueDepthSerializer):
    oldest_age_seconds = serializers.FloatField(
        allow_null=True, help_text="how long the longest-waiting due job has waited; null when none is ready"
    )


class WindowSerializer(serializers.Serializer):
    started = serializers.IntegerField()
    succeeded = serializers.IntegerField()
    failed = serializers.IntegerField(help_text="jobs that ended failed (dead letters)")
    retried = serializers.IntegerField(help_text="failed attempts that will be retried")
    cancelled = serializers.IntegerField()
    finished = serializers.IntegerField(help_text="succeeded + failed + cancelled")
    failures = serializers.IntegerField(help_text="failed attempts: failed + retried")


class PostgresViewSerializer(serializers.Serializer):
    by_status = serializers.DictField(child=serializers.IntegerField(), help_text="active statuses only")
    active = serializers.IntegerField()
    by_queue = serializers.DictField(child=serializers.DictField(child=serializers.IntegerField()))
    total_jobs = serializers.IntegerField(help_text="jobs ever created (the seq sequence)")
    open_dead_letters = serializers.IntegerField()
    as_of = serializers.DateTimeField()


class ReconciliationSerializer(serializers.Serializer):
    redis_active = serializers.IntegerField()
    postgres_active = serializers.IntegerField()
    difference = serializers.IntegerField(help_text="postgres_active - redis_active")
    in_sync = serializers.BooleanField()


class StatsSerializer(serializers.Serializer):
    generated_at = serializers.DateTimeField()
    counts = serializers.DictField(child=serializers.IntegerField())
    queues = serializers.DictField(child=QueueStatsSerializer())
    redis = QueueDepthSerializer(help_text="totals over the queues listed")
    last_minute = WindowSerializer()
    last_hour = WindowSerializer()
    workers = serializers.DictField(child=serializers.IntegerField())
    postgres = PostgresViewSerializer()
    reconciliation = ReconciliationSerializer()


class MetricsSerializer(serializers.Serializer):
    total_jobs = serializers.IntegerField()
    active_jobs = serializers.IntegerField()
    completed_jobs = serializers.IntegerField()
    failed_jobs = serializers.IntegerField()
    cancelled_jobs = serializers.IntegerField()
    dead_letter_jobs = serializers.IntegerField()
    queue_length = serializers.IntegerField()
    retry_queue_length = serializers.IntegerField()
    scheduled_jobs = serializers.IntegerField()
    running_jobs = serializers.IntegerField()
    workers_alive = serializers.IntegerField()
    throughput_last_minute = serializers.IntegerField()
    failures_last_minute = serializers.IntegerField()


class CheckSerializer(serializers.Serializer):
    status = serializers.CharField(help_text="ok or down")
    latency_ms = serializers.FloatField(allow_null=True)
    error = serializers.CharField(required=False)


class HealthSerializer(serializers.Serializer):
    status = serializers.CharField(help_text="ok or unavailable")
    database = CheckSerializer()
    redis = CheckSerializer()
