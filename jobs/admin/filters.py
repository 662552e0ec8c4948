"""Search and list filters for jobs (and dead letters, through ``job__``) that stay on indexes.

Filter choices come from settings and the registry, never ``SELECT DISTINCT`` over
the table; every search branch is a primary-key range or an indexed equality.
"""

from __future__ import annotations

import re
import uuid

from django.conf import settings
from django.contrib import admin
from django.db.models import Q, QuerySet
from django.http import HttpRequest

from jobs import registry

_HEX_PREFIX_RE = re.compile(r"^[0-9a-f]{1,32}$")


def uuid_prefix_range(term: str) -> tuple[uuid.UUID, uuid.UUID] | None:
    """The UUID range that a hex prefix (dashes allowed) covers: a primary-key range scan, not a LIKE."""
    digits = term.strip().lower().replace("-", "")
    if not _HEX_PREFIX_RE.match(digits):
        return None
    return uuid.UUID(digits.ljust(32, "0")), uuid.UUID(digits.ljust(32, "f"))


def matching_type_names(term: str) -> list[str]:
    """Registered type names containing ``term``: an indexed ``type IN (…)`` instead of a LIKE scan."""
    needle = term.lower()
    return [job_type.name for job_type in registry.all_types() if needle in job_type.name.lower()]


def job_search_q(term: str, prefix: str = "") -> Q:
    """Id (or a prefix of it), type (exact, or registered names containing the term), idempotency key.

    Every branch hits an index (the primary key, ``job_type``, ``job_idem_key``).
    """
    term = term.strip()
    query = Q(**{f"{prefix}type": term}) | Q(**{f"{prefix}idempotency_key": term})
    names = matching_type_names(term)
    if names:
        query |= Q(**{f"{prefix}type__in": names})
    id_range = uuid_prefix_range(term)
    if id_range is not None:
        query |= Q(**{f"{prefix}id__gte": id_range[0], f"{prefix}id__lte": id_range[1]})
    return query


def _with_current(choices: list[str], current: str | None) -> list[tuple[str, str]]:
    """Keep a value from the URL in the choices, so a filter on an unlisted queue/type still shows."""
    names = list(dict.fromkeys(choices))
    if current and current not in names:
        names.append(current)
    return [(name, name) for name in names]


class QueueFilter(admin.SimpleListFilter):
    """Queues from settings and the registry: no ``SELECT DISTINCT queue`` over the table."""

    title = "queue"
    parameter_name = "queue"
    field = "queue"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        queues = [*settings.JOBQUEUE_QUEUES, settings.JOBQUEUE_DEFAULT_QUEUE]
        queues += sorted({t.queue for t in registry.all_types() if t.queue} - set(queues))
        return _with_current(queues, self.value())

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        return queryset.filter(**{self.field: value}) if value else queryset


class TypeFilter(QueueFilter):
    """Job types from the registry: no ``SELECT DISTINCT type`` over the table."""

    title = "type"
    parameter_name = "type"
    field = "type"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return _with_current([t.name for t in registry.all_types()], self.value())
