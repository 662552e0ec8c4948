"""API views: HTTP in, ``jobs.services`` calls out. No view writes a job's state itself."""

from __future__ import annotations

import contextlib
import uuid
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.urls import NoReverseMatch
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.permissions import AllowAny
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.reverse import reverse
from rest_framework.views import APIView

from jobs import audit, registry, services
from jobs.api import health, prometheus, serializers, stats
from jobs.api.authentication import AUTHENTICATION_CLASSES
from jobs.api.exceptions import PayloadTooLargeError, exception_handler
from jobs.api.fields import text_problem
from jobs.api.filters import DeadLetterFilterBackend, JobFilterBackend
from jobs.api.job_types import describe
from jobs.api.pagination import DeadLetterCursorPagination, JobCursorPagination
from jobs.api.parsers import StrictJSONParser
from jobs.api.permissions import (
    ActionPermissions,
    CanScrapeMetrics,
    effective_action,
    sees_own_jobs_only,
    visible,
)
from jobs.api.throttling import JobCreateThrottle
from jobs.dispatch import get_broker, stale_after_ms
from jobs.models import DeadLetter, Job, JobStatus

# Room for the other fields and pretty-printing around a payload at the limit; the exact limit is the
# services' (serialized args + payload), this only refuses absurd bodies before parsing them.
BODY_SLACK_BYTES = 64 * 1024
IDEMPOTENCY_HEADER = "Idempotency-Key"

ERRORS = {
    400: OpenApiResponse(description="Bad input: field -> [messages]."),
    401: OpenApiResponse(serializers.ErrorSerializer, description="Not authenticated."),
    403: OpenApiResponse(serializers.ErrorSerializer, description="Missing the model permission."),
    503: OpenApiResponse(
        serializers.ErrorSerializer, description="PostgreSQL or Redis down; see Retry-After."
    ),
}
NOT_FOUND = {404: OpenApiResponse(serializers.ErrorSerializer, description="No such object.")}
CONFLICT = {409: OpenApiResponse(serializers.ConflictSerializer, description="The state does not allow it.")}


class APIDefaults:
    # Token (or Bearer) first, so a missing login is a 401 with WWW-Authenticate; engine errors mapped.
    # (No docstring: drf-spectacular would show an inherited one as every operation's description.)

    authentication_classes = AUTHENTICATION_CLASSES
    permission_classes = (ActionPermissions,)

    def get_exception_handler(self) -> Any:
        return exception_handler


def _idempotency_key(request: Request) -> str | None:
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is None:
        return None
    if not 1 <= len(key) <= 255 or not key.isascii() or not key.isprintable() or text_problem(key):
        raise ValidationError({IDEMPOTENCY_HEADER: ["Must be 1-255 printable ASCII characters."]})
    return key


def _check_body_size(request: Request) -> None:
    """Refuse a body that cannot hold a payload within the limit, before parsing it."""
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    limit = settings.JOBQUEUE_MAX_PAYLOAD_BYTES
    if length > 2 * limit + BODY_SLACK_BYTES:
        raise PayloadTooLargeError(
            {"payload": [f"Request body is {length} bytes; the payload limit is {limit} bytes."]}
        )


@extend_schema_view(
    list=extend_schema(
        summary="List jobs (cursor-paginated, newest first)",
        responses={200: serializers.JobSerializer(many=True), **ERRORS},
    ),
    retrieve=extend_schema(
        summary="A job with its attempts",
        responses={200: serializers.JobDetailSerializer, **ERRORS, **NOT_FOUND},
    ),
)
@extend_schema(tags=["jobs"])
class JobViewSet(APIDefaults, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Jobs. Reads need `jobs.view_job`; submitting needs `jobs.add_job`, retry/cancel `jobs.change_job`."""

    queryset = Job.objects.select_related("owner").order_by("-seq")
    serializer_class = serializers.JobSerializer
    pagination_class = JobCursorPagination
    filter_backends = (JobFilterBackend,)
    parser_classes = (StrictJSONParser,)
    lookup_value_regex = "[^/]+"
    read_permissions = ("jobs.view_job",)
    required_permissions = {
        "create": ["jobs.add_job"],
        "retry": ["jobs.change_job"],
        "cancel": ["jobs.change_job"],
    }

    def get_queryset(self) -> Any:
        queryset = visible(super().get_queryset(), self.request.user)
        if self.action == "retrieve":
            queryset = queryset.select_related("dead_letter").prefetch_related("attempt_set")
        return queryset

    def get_serializer_class(self) -> type:
        action = effective_action(self, self.request)
        if action == "create":
            return serializers.JobCreateSerializer
        if action == "retrieve":
            return serializers.JobDetailSerializer
        return serializers.JobSerializer

    def get_throttles(self) -> list:
        return [JobCreateThrottle()] if self.action == "create" else []

    def _job_response(self, job: Job, code: int = status.HTTP_200_OK) -> Response:
        return Response(
            serializers.JobSerializer(job, context=self.get_serializer_context()).data, status=code
        )

    @extend_schema(
        summary="Submit a job",
        parameters=[
            OpenApiParameter(
                IDEMPOTENCY_HEADER,
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                description="Repeat-safe submission: the same key and body return the original job (200); "
                "the same key with another body is a 409. Keys are per user and kept at least 24 h.",
            )
        ],
        request=serializers.JobCreateSerializer,
        responses={
            201: serializers.JobSerializer,
            200: OpenApiResponse(serializers.JobSerializer, description="Replay of an idempotent request."),
            **ERRORS,
            409: OpenApiResponse(
                serializers.ErrorSerializer, description="Idempotency key used for another body."
            ),
            413: OpenApiResponse(description="Payload over JOBQUEUE_MAX_PAYLOAD_BYTES."),
            415: OpenApiResponse(serializers.ErrorSerializer, description="Not JSON."),
            429: OpenApiResponse(serializers.ErrorSerializer, description="Throttled; see Retry-After."),
        },
    )
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        _check_body_size(request)
        key = _idempotency_key(request)
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        submitted = self.perform_create(serializer, idempotency_key=key)
        data = serializers.JobSerializer(submitted.job, context=self.get_serializer_context()).data
        if submitted.created:
            return Response(data, status=status.HTTP_201_CREATED, headers={"Location": data["url"]})
        return Response(data, headers={"Location": data["url"], "Idempotent-Replayed": "true"})

    def perform_create(
        self, serializer: serializers.JobCreateSerializer, idempotency_key: str | None = None
    ) -> services.Submitted:
        return services.submit(
            serializer.to_spec(),
            idempotency_key=idempotency_key,
            owner_id=self.request.user.pk,
            request_fingerprint=services.fingerprint(serializer.canonical()) if idempotency_key else None,
        )

    @extend_schema(
        summary="Retry a failed or cancelled job",
        request=None,
        responses={200: serializers.JobSerializer, **ERRORS, **NOT_FOUND, **CONFLICT},
    )
    @action(detail=True, methods=["post"])
    def retry(self, request: Request, pk: str | None = None) -> Response:
        before = self.get_object()
        job = services.retry(before.pk)
        _audit(request, "Retry", [(job, audit.transition(before.status, job.status))])
        return self._job_response(job)

    @extend_schema(
        summary="Cancel a job (202 while a running job is being stopped by its worker)",
        request=None,
        responses={
            200: serializers.JobSerializer,
            202: OpenApiResponse(
                serializers.JobSerializer, description="Running: the worker was asked to stop it."
            ),
            **ERRORS,
            **NOT_FOUND,
            **CONFLICT,
        },
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        before = self.get_object()
        job = services.cancel(before.pk)
        running = job.status == JobStatus.RUNNING
        change = "running → cancel requested" if running else audit.transition(before.status, job.status)
        _audit(request, "Cancel", [(job, change)])
        code = status.HTTP_202_ACCEPTED if running else status.HTTP_200_OK
        return self._job_response(job, code)


@extend_schema_view(
    list=extend_schema(
        summary="List dead letters (newest first)",
        responses={200: serializers.DeadLetterSerializer(many=True), **ERRORS},
    ),
    retrieve=extend_schema(responses={200: serializers.DeadLetterSerializer, **ERRORS, **NOT_FOUND}),
)
@extend_schema(tags=["dead-letters"])
class DeadLetterViewSet(
    APIDefaults, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """Jobs that will not run again by themselves. Reads need `jobs.view_deadletter`; retry needs
    `jobs.change_deadletter`, discard (DELETE) `jobs.delete_deadletter`."""

    queryset = DeadLetter.objects.select_related("job").defer("job__args", "job__kwargs", "job__result")
    serializer_class = serializers.DeadLetterSerializer
    pagination_class = DeadLetterCursorPagination
    filter_backends = (DeadLetterFilterBackend,)
    parser_classes = (StrictJSONParser,)
    read_permissions = ("jobs.view_deadletter",)
    required_permissions = {
        "retry": ["jobs.change_deadletter"],
        "destroy": ["jobs.delete_deadletter"],
    }

    def get_queryset(self) -> Any:
        return visible(super().get_queryset(), self.request.user, owner_field="job__owner")

    @extend_schema(
        summary="Send the dead job back to its queue",
        request=None,
        responses={200: serializers.JobSerializer, **ERRORS, **NOT_FOUND, **CONFLICT},
    )
    @action(detail=True, methods=["post"])
    def retry(self, request: Request, pk: str | None = None) -> Response:
        dead = self.get_object()
        job = services.retry_dead_letter(dead.pk)
        _audit(request, "Retry", audit.dead_letter_changes("retry", dead, dead.job.status, job))
        return Response(serializers.JobSerializer(job, context=self.get_serializer_context()).data)

    @extend_schema(
        summary="Discard: close the dead letter without running the job again (the job stays failed)",
        responses={204: None, **ERRORS, **NOT_FOUND, **CONFLICT},
    )
    def destroy(self, request: Request, pk: str | None = None) -> Response:
        dead = services.discard_dead_letter(self.get_object().pk)
        _audit(request, "Discard", audit.dead_letter_changes("discard", dead, "", None))
        return Response(status=status.HTTP_204_NO_CONTENT)


def _audit(request: Request, action: str, changes: list[audit.Target]) -> None:
    """The audit trail of an action that succeeded: via "dashboard" when its pages sent the header."""
    audit.record(request.user, action, audit.via_of(request.headers), changes)


def _visible_job_ids(request: Request, job_ids: list[str]) -> set[str]:
    """The job ids of ``job_ids`` the user may see (under own-visibility, not another user's running job)."""
    if not sees_own_jobs_only(request.user):
        return set(job_ids)
    ids = [job_id for job_id in job_ids if _is_uuid(job_id)]
    own = visible(Job.objects.filter(pk__in=ids), request.user)
    return {str(pk) for pk in own.values_list("pk", flat=True)}


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(str(text))
    except ValueError:
        return False
    return True


@extend_schema(tags=["workers"])
class WorkerListView(APIDefaults, APIView):
    """Worker processes known from their Redis heartbeats; `alive` means a beat in the last 3 periods.
    Needs `jobs.view_job`."""

    read_permissions = ("jobs.view_job",)

    @extend_schema(
        summary="Known workers and their heartbeats",
        responses={200: serializers.WorkerSerializer(many=True), **ERRORS},
    )
    def get(self, request: Request) -> Response:
        workers = []
        known = sorted(get_broker().workers(stale_after_ms()), key=lambda w: str(w["id"]))
        shown = _visible_job_ids(request, [job for info in known for job in info.get("current_jobs") or []])
        for info in known:
            workers.append(
                {
                    "id": info["id"],
                    "alive": info["alive"],
                    "last_heartbeat": datetime.fromtimestamp(int(info["last_heartbeat_ms"]) / 1000, UTC),
                    "hostname": info.get("hostname"),
                    "pid": info.get("pid"),
                    "queues": info.get("queues") or [],
                    "concurrency": info.get("concurrency"),
                    "current_jobs": [job for job in info.get("current_jobs") or [] if job in shown],
                }
            )
        return Response(serializers.WorkerSerializer(workers, many=True).data)


@extend_schema(tags=["job-types"])
class JobTypeListView(APIDefaults, APIView):
    """What can be submitted, with the defaults a job gets when the request leaves a field out.
    Needs `jobs.view_job` or `jobs.add_job` (a submitter builds its forms from it)."""

    read_permissions = ("jobs.view_job", "jobs.add_job")

    @extend_schema(
        summary="Registered job types: defaults, description, parameters",
        responses={200: serializers.JobTypeSerializer(many=True), **ERRORS},
    )
    def get(self, request: Request) -> Response:
        return Response([describe(job_type) for job_type in registry.api_types()])


@extend_schema(tags=["monitoring"])
class StatsView(APIDefaults, APIView):
    """Counts by status, queue depths, throughput, workers. Live from Redis; PostgreSQL's cheap counts
    (active jobs via an index, cached a few seconds) beside them, with their difference.
    Needs `jobs.view_job`."""

    read_permissions = ("jobs.view_job",)

    @extend_schema(
        summary="Queue statistics (Redis counters, reconciled with PostgreSQL)",
        responses={200: serializers.StatsSerializer, **ERRORS},
    )
    def get(self, request: Request) -> Response:
        return Response(stats.build_stats(get_broker()))


@extend_schema(tags=["monitoring"])
class MetricsView(APIDefaults, APIView):
    """A flat summary of /api/stats/ for simple dashboards and alerts. Needs `jobs.view_job`."""

    read_permissions = ("jobs.view_job",)

    @extend_schema(summary="Summary metrics (JSON)", responses={200: serializers.MetricsSerializer, **ERRORS})
    def get(self, request: Request) -> Response:
        return Response(stats.build_metrics(get_broker()))


class PrometheusRenderer(BaseRenderer):
    """Renders the exposition text as is; errors (401/403/503 dicts) as a comment line."""

    media_type = "text/plain"
    format = "prometheus"
    charset = "utf-8"

    def render(
        self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None
    ) -> bytes:
        if isinstance(data, str):
            return data.encode()
        detail = data.get("detail", data) if isinstance(data, dict) else data
        return f"# error: {detail}\n".encode()


class FixedContentNegotiation(BaseContentNegotiation):
    """Scrapers send assorted Accept headers (OpenMetrics first); there is one format, never a 406."""

    def select_parser(self, request: Request, parsers: list) -> Any:
        return parsers[0] if parsers else None

    def select_renderer(self, request: Request, renderers: list, format_suffix: str | None = None) -> tuple:
        return renderers[0], renderers[0].media_type


@extend_schema(tags=["monitoring"])
class PrometheusView(APIDefaults, APIView):
    """``GET /metrics``: staff sessions, or any token (``Authorization: Bearer <key>``) of a user with
    ``jobs.view_job``."""

    permission_classes = (CanScrapeMetrics,)
    renderer_classes = (PrometheusRenderer,)
    content_negotiation_class = FixedContentNegotiation

    @extend_schema(
        summary="Prometheus metrics (text exposition format 0.0.4)",
        responses={(200, "text/plain"): OpenApiTypes.STR, **ERRORS},
    )
    def get(self, request: Request) -> Response:
        return Response(prometheus.render(get_broker()), content_type=prometheus.CONTENT_TYPE)


@extend_schema(tags=["monitoring"])
class HealthView(APIDefaults, APIView):
    """Public (orchestrators probe it without credentials); it reveals only up/down and latency."""

    authentication_classes = ()
    permission_classes = (AllowAny,)

    @extend_schema(
        summary="Health of PostgreSQL and Redis (503 when either is down)",
        responses={200: serializers.HealthSerializer, 503: serializers.HealthSerializer},
    )
    def get(self, request: Request) -> Response:
        ok, body = health.health()
        if ok:
            return Response(body)
        return Response(body, status=status.HTTP_503_SERVICE_UNAVAILABLE, headers={"Retry-After": "5"})


class ApiRootView(APIDefaults, APIView):
    """The browsable API's front page: links to every endpoint (any signed-in user)."""

    read_permissions = ()

    @extend_schema(exclude=True)
    def get(self, request: Request) -> Response:
        def link(name: str) -> str:
            return reverse(name, request=request)

        links = {
            "jobs": link("job-list"),
            "dead_letters": link("dead-letter-list"),
            "workers": link("api-workers"),
            "job_types": link("api-job-types"),
            "stats": link("api-stats"),
            "metrics": link("api-metrics"),
            "prometheus": link("prometheus-metrics"),
            "health": link("api-health"),
            "schema": link("api-schema"),
            "docs": link("api-docs"),
        }
        with contextlib.suppress(NoReverseMatch):  # the schedules API lives in the scheduling app
            links["schedules"] = link("schedule-list")
        return Response(links)
