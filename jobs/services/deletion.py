"""Deleting finished jobs (pruning): one DELETE per batch, and PostgreSQL removes what points at them.

The policy (retention per status, batch size, stopping) is ``scheduling.pruning``'s; this is the
statement. Every foreign key to ``Job`` has a database-level ``on_delete`` (``DB_CASCADE`` for
attempts and dead letters, ``DB_SET_NULL`` for idempotency keys and a schedule's last job), so
the DELETE of a batch is the whole deletion: no rows are collected in Python and no private ORM
API is needed. Each batch picks its jobs with ``FOR UPDATE SKIP LOCKED`` and never waits on a row
someone is using. A failed job whose dead letter is still open is never deleted: an operator has
not decided about it yet. Like any bulk SQL delete it sends no ``pre_delete``/``post_delete``
signals for jobs (none are connected).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from django.db import connection, transaction
from django.db.models.deletion import DatabaseOnDelete, get_candidate_relations_to_delete

from jobs.errors import IllegalTransition
from jobs.models import Job, JobStatus
from jobs.services import sql

if TYPE_CHECKING:
    from django.db.models.fields.reverse_related import ForeignObjectRel
    from django.db.models.options import Options

TERMINAL = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)

_DELETE_SQL = sql.QUERIES["delete_finished"]
_COUNT_SQL = sql.QUERIES["count_finished"]


def delete_finished(status: str, finished_before: datetime, limit: int) -> int:
    """Delete up to ``limit`` jobs of a terminal ``status`` finished before the cutoff (pruning).

    Attempts and dead letters go with them; a failed job whose dead letter is still open stays.
    """
    if status not in TERMINAL:
        raise IllegalTransition(f"only finished jobs can be deleted, not {status!r} ones", status=status)
    params: dict[str, str | datetime | int] = {"status": status, "cutoff": finished_before, "limit": limit}
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_DELETE_SQL, params)
        return cursor.rowcount


def count_finished(status: str, finished_before: datetime) -> int:
    """How many jobs ``delete_finished`` would remove (a dry run)."""
    with connection.cursor() as cursor:
        cursor.execute(_COUNT_SQL, {"status": status, "cutoff": finished_before})
        return cursor.fetchone()[0]


def database_actions() -> list[str] | None:
    """What PostgreSQL does to each relation to ``Job`` when a job is deleted, e.g. ``jobs_jobattempt.job_id
    ON DELETE CASCADE``; None when some relation is not database-level, so the one DELETE would miss it.

    Hidden reverse relations (``related_name="+"``) included, as the ORM's own collector counts them.
    """
    actions = []
    opts: Options[Any] = Job._meta  # the stub wants Options[Model] and Options is invariant
    # The stub says Field; Django yields the reverse relations (ForeignObjectRel) of opts.get_fields().
    relations = cast("Iterable[ForeignObjectRel]", get_candidate_relations_to_delete(opts))
    for relation in relations:
        on_delete = relation.on_delete
        if not isinstance(on_delete, DatabaseOnDelete):
            return None
        table, column = relation.related_model._meta.db_table, relation.field.column
        actions.append(f"{table}.{column} ON DELETE {on_delete.operation}")
    return actions
