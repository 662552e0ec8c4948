"""The schedules API: ``/api/schedules/`` (list, create, detail, update, delete) and the
``run``, ``pause`` and ``resume`` actions.

Reads need a signed-in user; writes the model permission (``scheduling.add_schedule``,
``change_schedule``, ``delete_schedule``); the actions need ``change_schedule``.
Bad input is a 400 whose body maps each field to what is wrong with it.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.pagination import PageNumberPagination
from rest_framework.permissions import DjangoModelPermissions
from rest_framework.request import Request
from rest_framework.response import Response

from jobs.errors import InvalidJob
from scheduling import firing, validation
from scheduling.models import Schedule

API_FIELD = {"kwargs": "payload"}  # model field -> its name in the API


class SchedulePermissions(DjangoModelPermissions):
    """Model permissions, plus ``change_schedule`` for the POST actions (run, pause, resume)."""

    def has_permission(self, request: Request, view: Any) -> bool:
        if getattr(view, "action", None) in {"run", "pause", "resume"}:
            user = request.user
            return bool(user and user.is_authenticated and user.has_perm("scheduling.change_schedule"))
        return super().has_permission(request, view)


class ScheduleSerializer(serializers.ModelSerializer):
    payload = serializers.JSONField(source="kwargs", required=False, help_text="the job's keyword arguments")
    args = serializers.JSONField(required=False, help_text="the job's positional arguments")
    cron_description = serializers.CharField(read_only=True, help_text="the cron expression in words")
    next_fire_times = serializers.SerializerMethodField(help_text="the next five fire times, in the zone")
    last_job = serializers.UUIDField(source="last_job_id", read_only=True, allow_null=True)

    class Meta:
        model = Schedule
        fields = [
            "id",
            "name",
            "type",
            "payload",
            "args",
            "queue",
            "priority",
            "max_attempts",
            "cron",
            "cron_description",
            "timezone",
            "enabled",
            "misfire_policy",
            "catch_up_limit",
            "next_run_at",
            "next_fire_times",
            "last_run_at",
            "last_job",
            "last_error",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["next_run_at", "last_run_at", "last_error", "created_at", "updated_at"]

    def get_next_fire_times(self, schedule: Schedule) -> list[str]:
        try:
            return [moment.isoformat() for moment in schedule.next_fire_times(5)]
        except Exception:  # noqa: BLE001 - a schedule saved around validation still lists
            return []

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        def current(name: str, default: Any) -> Any:
            if name in attrs:
                return attrs[name]
            return getattr(self.instance, name) if self.instance is not None else default

        errors = validation.job_errors(
            current("type", ""),
            current("args", []),
            current("kwargs", {}),
            current("queue", ""),
            current("priority", None),
            current("max_attempts", None),
        )
        if errors:
            raise serializers.ValidationError(
                {API_FIELD.get(name, name): problems for name, problems in errors.items()}
            )
        return attrs


class RunResultSerializer(serializers.Serializer):
    job = serializers.UUIDField(help_text="the job enqueued now")
    status = serializers.CharField(help_text="its status (queued)")
    schedule = ScheduleSerializer()


class SchedulePagination(PageNumberPagination):
    """Pages by name; set here so a project-wide paginator (e.g. a cursor on ``created``) never applies."""

    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 500


@extend_schema(tags=["schedules"])
class ScheduleViewSet(viewsets.ModelViewSet):
    """Cron schedules: each fires its job type with its payload at the cron expression's times."""

    queryset = Schedule.objects.order_by("name")
    serializer_class = ScheduleSerializer
    permission_classes = [SchedulePermissions]
    pagination_class = SchedulePagination

    @extend_schema(request=None, responses={201: RunResultSerializer})
    @action(detail=True, methods=["post"])
    def run(self, request: Request, pk: str | None = None) -> Response:
        """Enqueue the schedule's job now (its timetable is unchanged)."""
        schedule = self.get_object()
        try:
            job = firing.run_now(schedule)
        except InvalidJob as exc:  # e.g. its type was unregistered since the schedule was saved
            raise serializers.ValidationError(
                {API_FIELD.get(name, name): problems for name, problems in exc.message_dict.items()}
            ) from None
        return Response(
            {"job": str(job.pk), "status": job.status, "schedule": self.get_serializer(schedule).data},
            status=status.HTTP_201_CREATED,
        )

    @extend_schema(request=None, responses={200: ScheduleSerializer})
    @action(detail=True, methods=["post"])
    def pause(self, request: Request, pk: str | None = None) -> Response:
        """Disable the schedule: nothing fires until it is resumed."""
        return self._set_enabled(False)

    @extend_schema(request=None, responses={200: ScheduleSerializer})
    @action(detail=True, methods=["post"])
    def resume(self, request: Request, pk: str | None = None) -> Response:
        """Enable the schedule; it fires from its next fire time after now (missed ones are not run)."""
        return self._set_enabled(True)

    def _set_enabled(self, enabled: bool) -> Response:
        schedule = self.get_object()
        if schedule.enabled != enabled:
            schedule.enabled = enabled
            schedule.save(update_fields=["enabled"])
        return Response(self.get_serializer(schedule).data)
