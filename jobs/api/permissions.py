"""Who may do what: reads need a signed-in user, writes the Django model permission of the action.

``DjangoModelPermissions`` maps HTTP methods to add/change/delete, but ``retry`` and ``cancel`` are
POSTs that change a job, so each view names the permissions of its write actions instead.
"""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request


def effective_action(view: Any, request: Request) -> str | None:
    """The view's action; for OPTIONS (DRF's "metadata", which asks "may this user POST?" with a cloned
    request) the action that method would run."""
    action = getattr(view, "action", None)
    if action == "metadata":
        return getattr(view, "action_map", {}).get(request.method.lower())
    return action


class ActionPermissions(BasePermission):
    """Safe methods: any authenticated user. Other methods: ``view.required_permissions[view.action]``.

    A write action the view does not list is refused, so a new action cannot ship unguarded.
    """

    message = "You do not have permission to perform this action."

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        if request.method in SAFE_METHODS:
            return True
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
