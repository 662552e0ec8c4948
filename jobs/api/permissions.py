"""Who may do what, and which jobs they see: the one place for the API's access rules.

Every API view (the schedules' included: ``ActionPermissions`` is DRF's default permission class in
the settings, so ``scheduling`` names its permissions without importing this adapter) says what its
reads and writes need:

- ``read_permissions``: the permissions of which *any one* lets a user read (GET, HEAD, OPTIONS);
  ``()`` means a signed-in user is enough. Staff read everything. A view that names nothing is refused.
- ``required_permissions``: action -> the permissions a write needs (*all* of them).
  ``DjangoModelPermissions`` maps HTTP methods to add/change/delete, but ``retry`` and ``cancel`` are
  POSTs that change a job, so each view names the permissions of its write actions instead. A write
  action the view does not list is refused, so a new action cannot ship unguarded.

``JOBQUEUE_API_VISIBILITY=own`` narrows what non-staff users see to the jobs they submitted (and those
jobs' dead letters): ``visible`` filters the querysets, so another user's job is a 404, not a 403.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request

VISIBILITIES = ("all", "own")


def effective_action(view: Any, request: Request) -> str | None:
    """The view's action; for OPTIONS (DRF's "metadata", which asks "may this user POST?" with a cloned
    request) the action that method would run."""
    action = getattr(view, "action", None)
    if action == "metadata":
        return getattr(view, "action_map", {}).get(request.method.lower())
    return action


def sees_everything(user: Any) -> bool:
    """Staff (and superusers) read every endpoint and every job, whatever the visibility."""
    return bool(user and user.is_authenticated and (user.is_staff or user.is_superuser))


def sees_own_jobs_only(user: Any) -> bool:
    """Under ``JOBQUEUE_API_VISIBILITY=own``, users without staff see only the jobs they submitted."""
    return settings.JOBQUEUE_API_VISIBILITY == "own" and not sees_everything(user)


def visible(queryset: QuerySet, user: Any, owner_field: str = "owner") -> QuerySet:
    """``queryset`` narrowed to what ``user`` may see: everything, or (``sees_own_jobs_only``) the rows
    whose ``owner_field`` is the user."""
    if sees_own_jobs_only(user):
        return queryset.filter(**{owner_field: user.pk})
    return queryset


class ActionPermissions(BasePermission):
    """Reads: staff, or any one of ``view.read_permissions``. Writes: all of
    ``view.required_permissions[view.action]``."""

    message = "You do not have permission to perform this action."

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        if request.method in SAFE_METHODS:
            readers = getattr(view, "read_permissions", None)
            if readers is None:
                return False
            return sees_everything(user) or not readers or any(user.has_perm(name) for name in readers)
        action = effective_action(view, request)
        if action is None and not hasattr(view, request.method.lower()):
            return True  # the view has no handler for this method: let DRF answer 405
        required = getattr(view, "required_permissions", {}).get(action)
        if required is None:
            return False
        return user.has_perms(required)


class CanScrapeMetrics(BasePermission):
    """``/metrics``: staff, or a (service) user granted ``jobs.view_job``, e.g. through its API token."""

    message = "Metrics need a staff user or the jobs.view_job permission."

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        return bool(user.is_staff or user.has_perm("jobs.view_job"))


class CanReadApiDocs(BasePermission):
    """The OpenAPI schema and Swagger UI: a signed-in user, or anyone with ``JOBQUEUE_PUBLIC_API_DOCS=1``
    (read per request)."""

    def has_permission(self, request: Request, view: Any) -> bool:
        if settings.JOBQUEUE_PUBLIC_API_DOCS:
            return True
        return bool(request.user and request.user.is_authenticated)
