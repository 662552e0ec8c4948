"""How finished jobs are deleted: one statement per batch, never waiting on a locked row.

Used only through ``jobs.services.delete_finished`` / ``count_finished`` (the one place that
changes jobs). Each batch picks at most ``limit`` ids with ``FOR UPDATE SKIP LOCKED`` and deletes
them together with their attempts and dead letters. A failed job whose dead letter is still open
is never deleted: an operator has not decided about it yet.

Rows that point at a job are handled the way their foreign key says (CASCADE: deleted in the
same statement; SET_NULL: cleared; database-level actions: left to PostgreSQL). A relation the
statement cannot express falls back to the ORM's delete for that batch, so a model added later
stays correct, only slower.
"""

from __future__ import annotations

from datetime import datetime

from django.db import connection, transaction
from django.db.models.deletion import (
    CASCADE,
    SET_NULL,
    SKIP_COLLECTION,
    Collector,
    get_candidate_relations_to_delete,
)
from django.db.models.signals import post_delete, pre_delete

from jobs.models import DeadLetter, Job, JobStatus


def candidates_sql(open_dead_letters: bool) -> str:
    q = connection.ops.quote_name
    job, dead = Job._meta.db_table, DeadLetter._meta.db_table
    keep_open = (
        f" AND NOT EXISTS (SELECT 1 FROM {q(dead)} d WHERE d.{q('job_id')} = j.{q('id')} "
        f"AND d.{q('resolution')} = '')"
        if open_dead_letters
        else ""
    )
    return (
        f"SELECT j.{q('id')} FROM {q(job)} j WHERE j.{q('status')} = %s "
        f"AND COALESCE(j.{q('finished_at')}, j.{q('updated_at')}) < %s{keep_open} "
        f"LIMIT %s FOR UPDATE OF j SKIP LOCKED"
    )


def related_statements() -> list[str] | None:
    """One CTE per relation to Job, or None when some relation needs the ORM's collector."""
    q = connection.ops.quote_name
    if pre_delete.has_listeners(Job) or post_delete.has_listeners(Job):
        return None
    collector = Collector(using="default", origin=None)
    statements = []
    # Hidden reverse relations (related_name="+") included, as the ORM's own collector does.
    for index, relation in enumerate(get_candidate_relations_to_delete(Job._meta)):
        on_delete = relation.on_delete
        table, column = relation.related_model._meta.db_table, relation.field.column
        if on_delete in SKIP_COLLECTION:
            continue
        if on_delete is CASCADE and collector.can_fast_delete(
            relation.related_model._base_manager.all(), from_field=relation.field
        ):
            statements.append(
                f"r{index} AS (DELETE FROM {q(table)} WHERE {q(column)} IN (SELECT id FROM doomed))"
            )
        elif on_delete is SET_NULL:
            statements.append(
                f"r{index} AS (UPDATE {q(table)} SET {q(column)} = NULL "
                f"WHERE {q(column)} IN (SELECT id FROM doomed))"
            )
        else:
            return None
    return statements


def delete_batch(status: str, cutoff: datetime, batch: int) -> int:
    """Delete up to ``batch`` jobs of ``status`` finished before ``cutoff``; returns how many."""
    candidates = candidates_sql(status == JobStatus.FAILED)
    related = related_statements()
    with transaction.atomic():
        if related is None:
            with connection.cursor() as cursor:
                cursor.execute(candidates, [status, cutoff, batch])
                ids = [row[0] for row in cursor.fetchall()]
            if ids:
                Job.objects.filter(pk__in=ids).delete()
            return len(ids)
        q = connection.ops.quote_name
        ctes = ",\n".join([f"doomed AS ({candidates})", *related])
        sql = f"WITH {ctes}\nDELETE FROM {q(Job._meta.db_table)} WHERE {q('id')} IN (SELECT id FROM doomed)"
        with connection.cursor() as cursor:
            cursor.execute(sql, [status, cutoff, batch])
            return cursor.rowcount


def count(status: str, cutoff: datetime) -> int:
    sql = candidates_sql(status == JobStatus.FAILED).replace(" LIMIT %s FOR UPDATE OF j SKIP LOCKED", "")
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM ({sql}) c", [status, cutoff])
        return cursor.fetchone()[0]
