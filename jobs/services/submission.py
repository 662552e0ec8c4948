"""Submission: validate a job, record it with one INSERT, and dispatch it once the transaction commits.

Everything that creates jobs comes through here (``enqueue``, ``enqueue_many``, the API's ``submit``,
schedules, the django.tasks backend), so there is one set of rules (clamps, handler signature, payload
size), one idempotency protocol and one insert path, the one the throughput benchmark measures.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from jobs import payload, registry
from jobs.backoff import Backoff
from jobs.errors import IdempotencyConflict, InvalidJob, PayloadTooLarge, UnknownJobType
from jobs.models import Job, JobStatus
from jobs.services import sql
from jobs.services._common import announce
from jobs.values import JobSpec

QUEUE_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")

MAX_DELAY_SECONDS = 366 * 86400
"""How far ahead a job may be scheduled: the most ``delay`` accepts, and the latest ``run_at``."""
RUN_AT_HORIZON = "Must be at most 366 days from now (the most delay accepts); earlier times run at once."

_INSERT_ONE_SQL = sql.QUERIES["insert_job"]
_INSERT_SQL = sql.QUERIES["insert_jobs"]
_CLAIM_KEY_SQL = sql.QUERIES["claim_idempotency_key"]
_READ_KEY_SQL = sql.QUERIES["read_idempotency_key"]
_LINK_KEY_SQL = sql.QUERIES["link_idempotency_key"]


@dataclass(frozen=True)
class _Row:
    """A validated job, ready for INSERT."""

    type: str
    args: list
    kwargs: dict
    args_json: str
    kwargs_json: str
    queue: str
    priority: int
    max_attempts: int
    run_at: datetime | None
    timeout: float | None
    backoff_json: str | None
    backoff: dict | None
    status: str


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _validate(spec: JobSpec, now: datetime) -> _Row:
    """Check and clamp one job; every problem is reported against its field."""
    errors: dict[str, list[str]] = {}

    def bad(name: str, message: str) -> None:
        errors.setdefault(name, []).append(message)

    job_type = None
    if not isinstance(spec.type, str) or not spec.type:
        bad("type", "Must be a string naming a registered job type.")
    else:
        try:
            job_type = registry.get(spec.type)
        except UnknownJobType as exc:
            bad("type", f"{exc}. Registered types: {', '.join(t.name for t in registry.all_types())}.")
    args, kwargs = spec.args if spec.args is not None else [], spec.kwargs if spec.kwargs is not None else {}
    if not isinstance(args, (list, tuple)):
        bad("args", "Must be a JSON array.")
    else:
        for problem in payload.problems(list(args), "args"):
            bad("args", problem)
    if not isinstance(kwargs, dict):
        bad("kwargs", "Must be a JSON object.")
    else:
        for problem in payload.problems(kwargs, "kwargs"):
            bad("kwargs", problem)
    args_json = kwargs_json = ""
    if "args" not in errors and "kwargs" not in errors:
        args_json, kwargs_json = payload.dumps(list(args)), payload.dumps(kwargs)
        size = len(args_json.encode()) + len(kwargs_json.encode())
        if too_large := payload.size_problem(size, settings.JOBQUEUE_MAX_PAYLOAD_BYTES):
            raise PayloadTooLarge({"kwargs": [too_large]})
        if job_type is not None and (binding := job_type.check_arguments(list(args), kwargs)):
            bad("kwargs", f"The handler for {spec.type!r} does not accept these arguments: {binding}.")

    queue = spec.queue if spec.queue is not None else (job_type.queue if job_type else None)
    queue = queue or settings.JOBQUEUE_DEFAULT_QUEUE
    if not isinstance(queue, str) or not QUEUE_RE.match(queue):
        bad("queue", "Must be 1-64 characters: letters, digits, '.', '_' or '-'.")

    priority = spec.priority if spec.priority is not None else (job_type.priority if job_type else 0)
    if not _is_int(priority) or not -100 <= priority <= 100:
        bad("priority", "Must be an integer from -100 to 100.")

    max_attempts = spec.max_attempts
    if max_attempts is None:
        max_attempts = (job_type.max_attempts if job_type else None) or settings.JOBQUEUE_DEFAULT_MAX_ATTEMPTS
    if not _is_int(max_attempts) or not 1 <= max_attempts <= settings.JOBQUEUE_MAX_ATTEMPTS_LIMIT:
        bad("max_attempts", f"Must be an integer from 1 to {settings.JOBQUEUE_MAX_ATTEMPTS_LIMIT}.")

    timeout = spec.timeout
    if timeout is not None and (
        isinstance(timeout, bool)
        or not isinstance(timeout, (int, float))
        or not 0 < timeout <= settings.JOBQUEUE_MAX_TIMEOUT  # false for NaN; exact for huge ints
        or not math.isfinite(timeout)
    ):
        bad("timeout", f"Must be a number of seconds above 0 and at most {settings.JOBQUEUE_MAX_TIMEOUT:g}.")

    run_at = spec.run_at
    if run_at is not None and spec.delay is not None:
        bad("run_at", "Give either run_at or delay, not both.")
    elif spec.delay is not None:
        delay = spec.delay.total_seconds() if isinstance(spec.delay, timedelta) else spec.delay
        if (
            isinstance(delay, bool)
            or not isinstance(delay, (int, float))
            or not 0 <= delay <= MAX_DELAY_SECONDS
        ):
            bad("delay", f"Must be a number of seconds from 0 to {MAX_DELAY_SECONDS} (366 days).")
        else:
            run_at = now + timedelta(seconds=delay)
    elif run_at is not None:
        if not isinstance(run_at, datetime):
            bad("run_at", "Must be a datetime.")
        elif timezone.is_naive(run_at):
            bad("run_at", "Must be timezone-aware (include an offset such as +00:00).")
        elif run_at > now + timedelta(seconds=MAX_DELAY_SECONDS):
            bad("run_at", RUN_AT_HORIZON)

    backoff_json, backoff_dict = None, None
    if spec.backoff is not None:
        try:
            backoff = spec.backoff if isinstance(spec.backoff, Backoff) else Backoff(**spec.backoff)
        except (TypeError, ValueError) as exc:
            bad("backoff", f"Must be {{base, max, jitter}}: {exc}.")
        else:
            backoff_dict = backoff.as_dict()
            backoff_json = json.dumps(backoff_dict)

    if errors:
        raise InvalidJob(errors)
    scheduled = run_at is not None and run_at > now
    return _Row(
        type=spec.type,
        args=json.loads(args_json),  # the instance holds what the row holds (tuples become lists...)
        kwargs=json.loads(kwargs_json),
        args_json=args_json,
        kwargs_json=kwargs_json,
        queue=queue,
        priority=priority,
        max_attempts=max_attempts,
        run_at=run_at,
        timeout=float(timeout) if timeout is not None else None,
        backoff_json=backoff_json,
        backoff=backoff_dict,
        status=JobStatus.SCHEDULED if scheduled else JobStatus.QUEUED,
    )


def validate(spec: JobSpec) -> None:
    """Raise ``InvalidJob`` exactly as ``enqueue`` would for this spec, recording nothing (a dry run)."""
    _validate(spec, timezone.now())


@functools.cache
def _job_fields() -> tuple[str, ...]:
    """Job's column attnames in model order, for ``Job.from_db`` (its fast positional path)."""
    return tuple(f.attname for f in Job._meta.concrete_fields)


def _insert(rows: Sequence[_Row], owner_id: int | None, idempotency_key: str | None) -> list[Job]:
    """One INSERT for any number of jobs; seq follows the input order (FIFO).

    Ids are made here, so the statement returns only ``seq`` and the database clock's ``created_at``
    (every timestamp of a job comes from PostgreSQL), and the ``Job`` instances are built with
    ``from_db`` instead of keyword ``__init__``: both matter at thousands of jobs a second.
    """
    if not rows:
        return []
    ids = [uuid.uuid4() for _ in rows]
    if len(rows) == 1:  # a plain VALUES insert is about twice as fast as unnest for one row
        r = rows[0]
        params = [ids[0], r.type, r.queue, r.priority, r.args_json, r.kwargs_json, str(r.status)]
        params += [r.max_attempts, r.run_at, r.timeout, r.backoff_json, owner_id, idempotency_key]
        returned = sql.fetch(_INSERT_ONE_SQL, params)
    else:
        columns = (
            ids,
            [r.type for r in rows],
            [r.queue for r in rows],
            [r.priority for r in rows],
            [r.args_json for r in rows],
            [r.kwargs_json for r in rows],
            [str(r.status) for r in rows],
            [r.max_attempts for r in rows],
            [r.run_at for r in rows],
            [r.timeout for r in rows],
            [r.backoff_json for r in rows],
        )
        returned = sql.fetch(_INSERT_SQL, [owner_id, idempotency_key, *columns])
    seqs = sorted(row[0] for row in returned)  # RETURNING order is not guaranteed
    now = returned[0][1]  # now() is the transaction's start: the same for every row
    fields, db = _job_fields(), connection.alias
    jobs = []
    for job_id, seq, r in zip(ids, seqs, rows, strict=True):
        values = {
            "id": job_id,
            "seq": seq,
            "type": r.type,
            "queue": r.queue,
            "priority": r.priority,
            "args": r.args,
            "kwargs": r.kwargs,
            "status": str(r.status),
            "attempts": 0,
            "max_attempts": r.max_attempts,
            "run_at": r.run_at,
            "timeout": r.timeout,
            "backoff": r.backoff,
            "owner_id": owner_id,
            "idempotency_key": idempotency_key,
            "result": None,
            "error": "",
            "worker": "",
            "lease_token": None,
            "cancel_requested_at": None,
            "created_at": now,
            "updated_at": now,
            "started_at": None,
            "finished_at": None,
        }
        jobs.append(Job.from_db(db, fields, [values[name] for name in fields]))
    return jobs


def fingerprint(*parts: Any) -> str:
    """A stable hash of a request, to tell a replay from a different request under the same key."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class Submitted:
    job: Job
    created: bool  # False when an idempotency key returned an existing job


def submit(
    spec: JobSpec,
    *,
    idempotency_key: str | None = None,
    owner_id: int | None = None,
    request_fingerprint: str | None = None,
) -> Submitted:
    """Validate and record one job, dispatching it on commit; the API calls this directly."""
    now = timezone.now()
    row = _validate(spec, now)
    if idempotency_key is None:
        (job,) = _insert([row], owner_id, None)
        transaction.on_commit(partial(announce, [job]))
        return Submitted(job, True)

    if not isinstance(idempotency_key, str) or not 1 <= len(idempotency_key) <= 255:
        raise InvalidJob({"idempotency_key": ["Must be a string of 1-255 characters."]})
    digest = request_fingerprint or fingerprint(row.type, row.args_json, row.kwargs_json, row.queue)
    with transaction.atomic(), connection.cursor() as cursor:
        # A concurrent insert of the same key waits here until the first commits, then conflicts.
        cursor.execute(_CLAIM_KEY_SQL, [owner_id, idempotency_key, digest])
        inserted = cursor.fetchone()
        if inserted is None:
            cursor.execute(_READ_KEY_SQL, [idempotency_key, owner_id])
            existing_fingerprint, job_id = cursor.fetchone()
            if existing_fingerprint != digest:
                raise IdempotencyConflict(
                    f"Idempotency key {idempotency_key!r} was already used for a different request."
                )
            existing = Job.objects.filter(pk=job_id).first() if job_id else None
            if existing is None:
                raise IdempotencyConflict(
                    f"Idempotency key {idempotency_key!r} was used for a job that has since been pruned."
                )
            return Submitted(existing, False)
        (job,) = _insert([row], owner_id, idempotency_key)
        cursor.execute(_LINK_KEY_SQL, [job.id, inserted[0]])
    transaction.on_commit(partial(announce, [job]))
    return Submitted(job, True)


def enqueue(
    type: str,
    args: Sequence[Any] | None = None,
    kwargs: dict[str, Any] | None = None,
    *,
    queue: str | None = None,
    priority: int | None = None,
    max_attempts: int | None = None,
    run_at: datetime | None = None,
    delay: float | timedelta | None = None,
    timeout: float | None = None,
    backoff: Backoff | dict | None = None,
    idempotency_key: str | None = None,
) -> Job:
    """Record a job in PostgreSQL and dispatch it through Redis once the transaction commits.

    Inside ``transaction.atomic()`` the push waits for the commit, so a rollback
    runs nothing. With ``idempotency_key`` a repeat returns the first job.
    """
    # tuples become lists and mappings dicts; anything else reaches _validate as given (InvalidJob)
    given_args: Any = list(args) if isinstance(args, (list, tuple)) else ([] if args is None else args)
    given_kwargs: Any = dict(kwargs) if isinstance(kwargs, Mapping) else ({} if kwargs is None else kwargs)
    spec = JobSpec(
        type=type,
        args=given_args,
        kwargs=given_kwargs,
        queue=queue,
        priority=priority,
        max_attempts=max_attempts,
        run_at=run_at,
        delay=delay,
        timeout=timeout,
        backoff=backoff,
    )
    return submit(spec, idempotency_key=idempotency_key).job


def enqueue_many(specs: Iterable[JobSpec | dict[str, Any]], *, owner_id: int | None = None) -> list[Job]:
    """Bulk enqueue: one INSERT per 5,000 jobs and one Redis script call per 1,000, after commit."""
    now = timezone.now()
    rows = [_validate(spec if isinstance(spec, JobSpec) else JobSpec(**spec), now) for spec in specs]
    jobs: list[Job] = []
    if len(rows) <= 5000:  # one statement is atomic by itself: no BEGIN/COMMIT round trips
        jobs = _insert(rows, owner_id, None)
    else:
        with transaction.atomic():
            for start in range(0, len(rows), 5000):
                jobs.extend(_insert(rows[start : start + 5000], owner_id, None))
    transaction.on_commit(partial(announce, jobs))
    return jobs
