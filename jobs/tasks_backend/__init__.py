"""The django.tasks adapter: ``TASKS`` backend (``backend``), task ↔ job type (``bridge``),
finding tasks by module path (``lookup``) and its system checks (``checks``).

The engine does not know this package: ``jobs.apps`` calls ``install()`` at start-up,
which hands the registry the resolver that turns a task's module path into a job type.
"""

from __future__ import annotations

from jobs import registry
from jobs.tasks_backend.bridge import RESOLVER


def install() -> None:
    """Let ``registry.find`` resolve django.tasks tasks by module path (idempotent)."""
    registry.add_resolver(RESOLVER)
