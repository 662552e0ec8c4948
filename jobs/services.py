"""Every change of a job's state happens here, and nowhere else.

Each transition checks that the job's current status allows it (an illegal one
raises and changes nothing), writes PostgreSQL, and only after the commit
touches Redis (DESIGN.md invariant 2: commit, then release). The worker's hot
path goes through ``settle()``: one transaction that records a batch of
finished attempts and claims a batch of popped jobs with two set-based
statements, never one round trip per job.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import random
import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import redis
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from jobs import deletion, events, fast_sql, metrics, registry
from jobs.backoff import Backoff
from jobs.errors import IdempotencyConflict, IllegalTransition, InvalidJob, PayloadTooLarge, UnknownJobType
from jobs.models import (
    ACTIVE_STATUSES,
    RUNNABLE_STATUSES,
    AttemptOutcome,
    DeadLetter,
    Job,
    JobStatus,
)
from jobs.values import Claimed, JobSpec, Outcome
from workers.broker import Broker, Placement, Popped, ready_score

__all__ = ["Claimed", "JobSpec", "Outcome"]  # re-exported: callers name them from here too

logger = logging.getLogger("jobs.services")

QUEUE_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
TERMINAL = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


def _broker() -> Broker:
    from jobs.dispatch import get_broker

    return get_broker()


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


# --------------------------------------------------------------------------- enqueue


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
        bad("type", "This field is required and must be a job type name.")
    else:
        try:
            job_type = registry.get(spec.type)
        except UnknownJobType as exc:
            bad("type", f"{exc}. Registered types: {', '.join(t.name for t in registry.all_types())}.")
    args, kwargs = spec.args if spec.args is not None else [], spec.kwargs if spec.kwargs is not None else {}
    if not isinstance(args, (list, tuple)):
        bad("args", "Must be a JSON array.")
    if not isinstance(kwargs, dict):
        bad("kwargs", "Must be a JSON object.")
    elif not all(isinstance(key, str) for key in kwargs):
        bad("kwargs", "Keys must be strings.")
    args_json = kwargs_json = ""
    if "args" not in errors and "kwargs" not in errors:
        try:
            args_json = json.dumps(list(args), separators=(",", ":"), allow_nan=False)
            kwargs_json = json.dumps(kwargs, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as exc:
            bad("kwargs", f"Arguments must be JSON-serialisable: {exc}.")
        else:
            size = len(args_json.encode()) + len(kwargs_json.encode())
            if size > settings.JOBQUEUE_MAX_PAYLOAD_BYTES:
                raise PayloadTooLarge(
                    {
                        "kwargs": [
                            f"Payload is {size} bytes; the limit is {settings.JOBQUEUE_MAX_PAYLOAD_BYTES}."
                        ]
                    }
                )
            if job_type is not None and (problem := job_type.check_arguments(list(args), kwargs)):
                bad("kwargs", f"The handler for {spec.type!r} does not accept these arguments: {problem}.")

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
        or not math.isfinite(timeout)
        or not 0 < timeout <= settings.JOBQUEUE_MAX_TIMEOUT
    ):
        bad("timeout", f"Must be a number of seconds above 0 and at most {settings.JOBQUEUE_MAX_TIMEOUT:g}.")

    run_at = spec.run_at
    if run_at is not None and spec.delay is not None:
        bad("run_at", "Give either run_at or delay, not both.")
    elif spec.delay is not None:
        delay = spec.delay.total_seconds() if isinstance(spec.delay, timedelta) else spec.delay
        if isinstance(delay, bool) or not isinstance(delay, (int, float)) or not 0 <= delay <= 366 * 86400:
            bad("delay", "Must be a number of seconds from 0 to one year.")
        else:
            run_at = now + timedelta(seconds=delay)
    elif run_at is not None:
        if not isinstance(run_at, datetime):
            bad("run_at", "Must be a datetime.")
        elif timezone.is_naive(run_at):
            bad("run_at", "Must be timezone-aware (include an offset such as +00:00).")

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


_INSERT_ONE_SQL = """
INSERT INTO jobs_job (id, type, queue, priority, args, kwargs, status, attempts, max_attempts, run_at,
                      timeout, backoff, owner_id, idempotency_key, error, worker, created_at, updated_at)
VALUES (%s, %s, %s, %s, %s::jsonb, %s::jsonb, %s, 0, %s, %s, %s, %s::jsonb, %s, %s, '', '', now(), now())
RETURNING seq, created_at
"""

_INSERT_SQL = """
INSERT INTO jobs_job (id, type, queue, priority, args, kwargs, status, attempts, max_attempts, run_at,
                      timeout, backoff, owner_id, idempotency_key, error, worker, created_at, updated_at)
SELECT v.id, v.type, v.queue, v.priority, v.args::jsonb, v.kwargs::jsonb, v.status, 0,
       v.max_attempts, v.run_at, v.timeout, v.backoff::jsonb, %b, %b, '', '', now(), now()
FROM unnest(%b::uuid[], %b::text[], %b::text[], %b::int[], %b::text[], %b::text[], %b::text[], %b::int[],
            %b::timestamptz[], %b::float8[], %b::text[])
     WITH ORDINALITY AS v(id, type, queue, priority, args, kwargs, status, max_attempts, run_at, timeout,
                          backoff, ord)
ORDER BY v.ord
RETURNING seq, created_at
"""


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
        returned = fast_sql.fetch(_INSERT_ONE_SQL, params)
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
        returned = fast_sql.fetch(_INSERT_SQL, [owner_id, idempotency_key, *columns])
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


def placement_for(job: Job) -> Placement:
    """Where a runnable job belongs in Redis (ready now, or delayed until run_at)."""
    run_at_ms = _ms(job.run_at) if job.run_at is not None and job.status != JobStatus.QUEUED else None
    return Placement(
        id=str(job.id), queue=job.queue, ready_score=ready_score(job.priority, job.seq), run_at_ms=run_at_ms
    )


def _announce(jobs: list[Job], previous: str | None = None) -> None:
    """After commit: push the jobs to Redis and tell the dashboards."""
    _dispatch([placement_for(job) for job in jobs])
    _emit_jobs(jobs, previous)


def _dispatch(placements: list[Placement]) -> None:
    """Hand committed jobs to the background pusher: they are durable already; Redis only makes them visible.

    If Redis is down the pusher logs it and the reconciler pushes them later.
    """
    from jobs.dispatch import push

    push(placements)


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
        transaction.on_commit(partial(_announce, [job]))
        return Submitted(job, True)

    if not isinstance(idempotency_key, str) or not 1 <= len(idempotency_key) <= 255:
        raise InvalidJob({"idempotency_key": ["Must be a string of 1-255 characters."]})
    digest = request_fingerprint or fingerprint(row.type, row.args_json, row.kwargs_json, row.queue)
    with transaction.atomic(), connection.cursor() as cursor:
        # A concurrent insert of the same key waits here until the first commits, then conflicts.
        cursor.execute(
            "INSERT INTO jobs_idempotencykey (owner_id, key, fingerprint, job_id, created_at) "
            "VALUES (%s, %s, %s, NULL, now()) ON CONFLICT ON CONSTRAINT idem_owner_key DO NOTHING "
            "RETURNING id",
            [owner_id, idempotency_key, digest],
        )
        inserted = cursor.fetchone()
        if inserted is None:
            cursor.execute(
                "SELECT fingerprint, job_id FROM jobs_idempotencykey WHERE key = %s "
                "AND owner_id IS NOT DISTINCT FROM %s",
                [idempotency_key, owner_id],
            )
            existing_fingerprint, job_id = cursor.fetchone()
            if existing_fingerprint != digest:
                raise IdempotencyConflict(
                    f"Idempotency key {idempotency_key!r} was already used for a different request."
                )
            job = Job.objects.filter(pk=job_id).first() if job_id else None
            if job is None:
                raise IdempotencyConflict(
                    f"Idempotency key {idempotency_key!r} was used for a job that has since been pruned."
                )
            return Submitted(job, False)
        (job,) = _insert([row], owner_id, idempotency_key)
        cursor.execute("UPDATE jobs_idempotencykey SET job_id = %s WHERE id = %s", [job.id, inserted[0]])
    transaction.on_commit(partial(_announce, [job]))
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
    spec = JobSpec(
        type=type,
        args=list(args or []),
        kwargs=dict(kwargs or {}),
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
    transaction.on_commit(partial(_announce, jobs))
    return jobs


# --------------------------------------------------------------------------- the worker's batch


def after_failure(
    job: Claimed,
    outcome: str,
    error: str,
    tb: str = "",
    *,
    permanent: bool = False,
    now: datetime | None = None,
) -> Outcome:
    """Retry with backoff while attempts remain; otherwise fail (and become a dead letter)."""
    now = now or timezone.now()
    if outcome == AttemptOutcome.CANCELLED:
        return Outcome(job, JobStatus.CANCELLED, outcome, now, error=error, traceback=tb)
    if permanent or job.attempt >= job.max_attempts:
        return Outcome(job, JobStatus.FAILED, outcome, now, error=error, traceback=tb)
    job_type = registry.find(job.type)
    if job.backoff:
        policy = Backoff(**job.backoff)
    elif job_type is not None:
        policy = job_type.effective_backoff()
    else:
        policy = Backoff(
            settings.JOBQUEUE_BACKOFF_BASE, settings.JOBQUEUE_BACKOFF_MAX, settings.JOBQUEUE_BACKOFF_JITTER
        )
    run_at = now + timedelta(seconds=policy.delay(job.attempt, random))
    return Outcome(job, JobStatus.RETRYING, outcome, now, error=error, traceback=tb, run_at=run_at)


def succeeded(job: Claimed, result: Any, now: datetime | None = None) -> Outcome:
    """A successful attempt; an unserialisable or oversized result fails the attempt instead."""
    now = now or timezone.now()
    try:
        result_json = json.dumps(result, allow_nan=False)
    except (TypeError, ValueError) as exc:
        return after_failure(
            job, AttemptOutcome.FAILED, f"result is not JSON-serialisable: {exc}", permanent=True, now=now
        )
    if len(result_json) > settings.JOBQUEUE_MAX_RESULT_BYTES:
        return after_failure(
            job,
            AttemptOutcome.FAILED,
            f"result is {len(result_json)} bytes; the limit is {settings.JOBQUEUE_MAX_RESULT_BYTES}",
            permanent=True,
            now=now,
        )
    return Outcome(job, JobStatus.SUCCEEDED, AttemptOutcome.SUCCEEDED, now, result_json=result_json)


_FINISH_CTES = """
v AS (
    SELECT * FROM unnest(%b::uuid[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[],
                         %b::timestamptz[], %b::timestamptz[])
        AS v(id, token, status, outcome, result, error, tb, finished_at, run_at)
), upd AS (
    -- A cancel request that landed before the handler returned wins (invariant 9): never retried.
    UPDATE jobs_job j
       SET status = CASE WHEN j.cancel_requested_at IS NOT NULL
                              AND (v.status = 'retrying'
                                   OR (v.status = 'succeeded' AND j.cancel_requested_at <= v.finished_at))
                         THEN 'cancelled' ELSE v.status END,
           result = CASE WHEN v.status = 'succeeded' THEN v.result::jsonb ELSE j.result END,
           error = CASE WHEN j.cancel_requested_at IS NOT NULL AND v.status IN ('retrying', 'succeeded')
                        THEN 'cancelled by an operator while running' ELSE v.error END,
           run_at = COALESCE(v.run_at, j.run_at),
           finished_at = CASE WHEN v.status = 'retrying' AND j.cancel_requested_at IS NULL THEN NULL
                              ELSE v.finished_at END,
           lease_token = NULL,
           updated_at = v.finished_at
      FROM v
     WHERE j.id = v.id AND j.lease_token = v.token AND j.status = 'running'
 RETURNING j.id, j.attempts, j.worker, j.started_at, j.status, j.error
), attempt AS (
    INSERT INTO jobs_jobattempt (job_id, number, worker, started_at, finished_at, outcome, error, traceback)
    SELECT upd.id, upd.attempts, upd.worker, upd.started_at, v.finished_at,
           CASE WHEN upd.status = 'cancelled' THEN 'cancelled' ELSE v.outcome END, upd.error, v.tb
      FROM upd JOIN v ON v.id = upd.id
    ON CONFLICT ON CONSTRAINT attempt_job_number_unique DO NOTHING
), dead AS (
    INSERT INTO jobs_deadletter (job_id, reason, errors, dead_at, resolution, resolved_at)
    SELECT upd.id, v.error,
           COALESCE((SELECT jsonb_agg(jsonb_build_object('attempt', a.number, 'outcome', a.outcome,
                                                         'error', a.error) ORDER BY a.number)
                       FROM jobs_jobattempt a WHERE a.job_id = upd.id AND a.number < upd.attempts),
                    '[]'::jsonb)
             || jsonb_build_array(jsonb_build_object('attempt', upd.attempts, 'outcome', v.outcome,
                                                     'error', v.error)),
           v.finished_at, '', NULL
      FROM upd JOIN v ON v.id = upd.id
     WHERE upd.status = 'failed'
    ON CONFLICT (job_id) DO UPDATE
       SET reason = EXCLUDED.reason, errors = EXCLUDED.errors, dead_at = EXCLUDED.dead_at,
           resolution = '', resolved_at = NULL
)
"""
"""Finish the attempts of earlier pops: guarded by lease token and status, repeat-safe (invariant 3)."""

_CLAIM_CTES = """
popped AS (
    SELECT p.id, p.token, o.status AS previous
      FROM unnest(%b::uuid[], %b::text[]) AS p(id, token) JOIN jobs_job o ON o.id = p.id
), claim AS (
    UPDATE jobs_job j
       SET status = 'running',
           attempts = CASE WHEN j.lease_token = p.token THEN j.attempts ELSE j.attempts + 1 END,
           lease_token = p.token, worker = %b,
           started_at = CASE WHEN j.lease_token = p.token THEN j.started_at ELSE now() END, updated_at = now()
      FROM popped p
     WHERE j.id = p.id
       AND ((j.status IN ('queued', 'scheduled', 'retrying') AND j.cancel_requested_at IS NULL)
            -- already claimed with this very token: a repeat after a commit whose outcome was unknown
            OR (j.status = 'running' AND j.lease_token = p.token))
    RETURNING j.id, p.token, j.seq, j.type, j.queue, j.priority, j.args::text, j.kwargs::text, j.attempts,
              j.max_attempts, j.timeout, j.backoff::text, j.created_at, j.started_at, j.run_at, p.previous
)
"""
"""Claim the new pops (invariant 1): only runnable rows, or a repeat of this very claim."""

_FINISHED_ROWS = "SELECT true, id, " + "NULL, " * 14 + "status FROM upd"
_CLAIMED_ROWS = "SELECT false, * FROM claim"

_SETTLE_SQL = {
    (True, True): f"WITH {_FINISH_CTES}, {_CLAIM_CTES} {_FINISHED_ROWS} UNION ALL {_CLAIMED_ROWS}",
    (True, False): f"WITH {_FINISH_CTES} {_FINISHED_ROWS}",
    (False, True): f"WITH {_CLAIM_CTES} {_CLAIMED_ROWS}",
}
"""The worker's round as ONE statement, so one round trip and one transaction (autocommit makes a single
statement atomic), keyed by (any outcomes, any pops): finished rows come back flagged true (id and final
status), claimed rows flagged false. All CTEs read the same snapshot, so a job finished here is never
claimed in the same statement: its status was still 'running' under another token. The one-sided
variants keep a lone claim (the pickup path) from planning the finish part.
"""


def _settle_params(outcomes: Sequence[Outcome], popped: Sequence[Popped], worker: str) -> list[Any]:
    finish = [
        [o.job.id for o in outcomes],
        [o.job.token for o in outcomes],
        [str(o.status) for o in outcomes],
        [str(o.outcome) for o in outcomes],
        [o.result_json for o in outcomes],
        [o.error for o in outcomes],
        [o.traceback for o in outcomes],
        [o.finished_at for o in outcomes],
        [o.run_at for o in outcomes],
    ]
    claim = [[p.id for p in popped], [p.token for p in popped], worker]
    return (finish if outcomes else []) + (claim if popped else [])


def _settle_statement(
    outcomes: Sequence[Outcome], popped: Sequence[Popped], worker: str
) -> tuple[dict[str, str], list[Claimed], list[str]]:
    """Run ``_SETTLE_SQL``: ({id: final status} of accepted outcomes, claimed jobs, their previous status)."""
    claimed: list[Claimed] = []
    previous: list[str] = []
    accepted: dict[str, str] = {}
    if not outcomes and not popped:
        return accepted, claimed, previous
    for row in fast_sql.fetch(
        _SETTLE_SQL[bool(outcomes), bool(popped)], _settle_params(outcomes, popped, worker), prepare=False
    ):
        if row[0]:
            accepted[str(row[1])] = row[16]
            continue
        claimed.append(
            Claimed(
                id=str(row[1]),
                token=row[2],
                seq=row[3],
                type=row[4],
                queue=row[5],
                priority=row[6],
                args=json.loads(row[7]),
                kwargs=json.loads(row[8]),
                attempt=row[9],
                max_attempts=row[10],
                timeout=row[11],
                backoff=json.loads(row[12]) if row[12] else None,
                created_at=row[13],
                started_at=row[14],
                run_at=row[15],
            )
        )
        previous.append(row[16])
    if len(claimed) > 1:  # RETURNING has no order: hand jobs to threads in the order Redis popped them
        rank = {p.id: i for i, p in enumerate(popped)}
        order = sorted(range(len(claimed)), key=lambda i: rank[claimed[i].id])
        claimed, previous = [claimed[i] for i in order], [previous[i] for i in order]
    return accepted, claimed, previous


def _release(broker: Broker, outcomes: Sequence[Outcome], accepted: dict[str, str]) -> None:
    """Redis after the commit: retries move to their delayed set, everything else drops its lease."""
    retries, acks = [], []
    for o in outcomes:
        if accepted.get(o.job.id) == JobStatus.RETRYING and o.run_at is not None:
            retries.append((o.job.id, o.job.token, _ms(o.run_at), o.job.ready_score))
        else:
            acks.append((o.job.id, o.job.token))
    if retries:
        broker.retry(retries)
    if acks:
        broker.ack(acks)


def _emit_round(
    outcomes: Sequence[Outcome],
    accepted: dict[str, str],
    claimed: Sequence[Claimed],
    previous: list[str],
    worker: str,
) -> None:
    """Status events for one committed round: finished attempts and new claims."""
    batch = [
        events.job_event(
            id=o.job.id,
            type=o.job.type,
            queue=o.job.queue,
            status=accepted[o.job.id],
            previous=JobStatus.RUNNING,
            attempts=o.job.attempt,
            max_attempts=o.job.max_attempts,
            priority=o.job.priority,
            worker=worker,
            created_at=o.job.created_at,
            started_at=o.job.started_at,
            finished_at=o.finished_at,
            run_at=o.run_at,
            error=o.error,
        )
        for o in outcomes
        if o.job.id in accepted
    ]
    batch += [
        events.job_event(
            id=c.id,
            type=c.type,
            queue=c.queue,
            status=JobStatus.RUNNING,
            previous=old,
            attempts=c.attempt,
            max_attempts=c.max_attempts,
            priority=c.priority,
            worker=worker,
            created_at=c.created_at,
            started_at=c.started_at,
            run_at=c.run_at,
        )
        for c, old in zip(claimed, previous, strict=True)
    ]
    if batch:
        events.emit(batch)


def _emit_jobs(jobs: Iterable[Job], previous: str | None) -> None:
    """Status events for jobs whose new state is on the instances (enqueue and operator actions)."""
    events.emit(
        events.job_event(
            id=job.id,
            type=job.type,
            queue=job.queue,
            status=job.status,
            previous=previous,
            attempts=job.attempts,
            max_attempts=job.max_attempts,
            priority=job.priority,
            worker=job.worker,
            created_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
            run_at=job.run_at,
            error=job.error,
        )
        for job in jobs
    )


def settle(
    broker: Broker, outcomes: Sequence[Outcome], popped: Sequence[Popped], worker: str
) -> list[Claimed]:
    """The worker's round: record finished attempts and claim new pops in ONE transaction, then release.

    Returns the popped jobs the claim admitted; the rest are acked and dropped
    (invariant 1: everything in Redis is a hint).
    """
    accepted, claimed, previous = _settle_statement(outcomes, popped, worker)
    metrics.record_round(broker, outcomes, accepted, claimed)
    _emit_round(outcomes, accepted, claimed, previous, worker)
    if outcomes:
        _release(broker, outcomes, accepted)
        lost = len(outcomes) - len(accepted)
        if lost:
            logger.warning(
                "%d finished attempt(s) no longer held their lease; their outcome was discarded", lost
            )
    admitted = {c.id for c in claimed}
    rejected = [(p.id, p.token) for p in popped if p.id not in admitted]
    if rejected:
        broker.ack(rejected)
    return claimed


def give_back(broker: Broker, jobs: Sequence[Claimed]) -> int:
    """Return claimed-but-unfinished jobs to their queue without charging an attempt (shutdown, hard kill)."""
    if not jobs:
        return 0
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE jobs_job j
               SET status = 'queued', attempts = GREATEST(j.attempts - 1, 0), lease_token = NULL,
                   worker = '', started_at = NULL, updated_at = now()
              FROM unnest(%s::uuid[], %s::text[]) AS v(id, token)
             WHERE j.id = v.id AND j.lease_token = v.token AND j.status = 'running'
            RETURNING j.id
            """,
            ([c.id for c in jobs], [c.token for c in jobs]),
        )
        returned = {str(row[0]) for row in cursor.fetchall()}
    items = [(c.id, c.token, c.ready_score) for c in jobs if c.id in returned]
    if items:
        broker.give_back(items)
    stale = [(c.id, c.token) for c in jobs if c.id not in returned]
    if stale:
        broker.ack(stale)
    events.emit(
        events.job_event(
            id=c.id,
            type=c.type,
            queue=c.queue,
            status=JobStatus.QUEUED,
            previous=JobStatus.RUNNING,
            attempts=c.attempt - 1,
            max_attempts=c.max_attempts,
            priority=c.priority,
            created_at=c.created_at,
        )
        for c in jobs
        if c.id in returned
    )
    return len(items)


# --------------------------------------------------------------------------- recovery (inside workers)


def expire_leases(broker: Broker, limit: int = 1000) -> int:
    """The reaper: jobs whose lease expired (their worker died) fail this attempt, PostgreSQL first.

    The attempt is counted (outcome ``lease_expired``) and the job retries with
    backoff or becomes a dead letter. Leases PostgreSQL no longer backs are dropped.
    """
    expired = broker.expired(limit)
    if not expired:
        return 0
    tokens = {job_id: token for job_id, token, _queue in expired}
    rows = Job.objects.filter(pk__in=list(tokens), status=JobStatus.RUNNING).values_list(
        "id",
        "lease_token",
        "seq",
        "type",
        "queue",
        "priority",
        "attempts",
        "max_attempts",
        "backoff",
        "worker",
        "started_at",
        "created_at",
    )
    now = timezone.now()
    outcomes = []
    for (
        job_id,
        token,
        seq,
        type_,
        queue,
        priority,
        attempts,
        max_attempts,
        backoff,
        worker,
        started,
        created,
    ) in rows:
        if token != tokens.get(str(job_id)):
            continue
        claimed = Claimed(
            id=str(job_id),
            token=token,
            seq=seq,
            type=type_,
            queue=queue,
            priority=priority,
            args=[],
            kwargs={},
            attempt=attempts,
            max_attempts=max_attempts,
            timeout=None,
            backoff=backoff,
            created_at=created,
            started_at=started,
        )
        outcomes.append(
            after_failure(
                claimed,
                AttemptOutcome.LEASE_EXPIRED,
                f"lease expired: worker {worker or '?'} stopped renewing it (crashed or was killed)",
                now=now,
            )
        )
    accepted: dict[str, str] = {}
    if outcomes:
        accepted, _, _ = _settle_statement(outcomes, [], "")
        _release(broker, outcomes, accepted)
        metrics.record_round(broker, outcomes, accepted, [])
        _emit_round(outcomes, accepted, [], [], "")
    handled = {o.job.id for o in outcomes}
    stale = [(job_id, token) for job_id, token, _queue in expired if job_id not in handled]
    if stale:
        broker.ack(stale)
    if accepted:
        logger.warning(
            "reaper: %d job(s) lost their worker and were re-queued or dead-lettered", len(accepted)
        )
    return len(accepted)


RECONCILE_SETTLE_SECONDS = 5.0  # rows changed this recently are left to their own push


def reconcile(
    broker: Broker,
    *,
    since: datetime | None = None,
    batch: int = 1000,
    settle_seconds: float = RECONCILE_SETTLE_SECONDS,
) -> int:
    """Re-dispatch what PostgreSQL has and Redis lacks: every active job, or those changed since ``since``.

    Runs in priority order, in batches; safe to repeat and to run twice at once
    (invariant 4): the script adds only ids that are nowhere in Redis.
    """
    lease_ms = int(settings.JOBQUEUE_LEASE_SECONDS * 1000)
    # Rows changed in the last few seconds are skipped: their own push or finish is normally still
    # in flight, and re-adding them would only leave stale ids for the workers to drop.
    queryset = Job.objects.filter(
        status__in=list(ACTIVE_STATUSES), updated_at__lt=timezone.now() - timedelta(seconds=settle_seconds)
    )
    if since is not None:
        queryset = queryset.filter(updated_at__gte=since)
    queryset = queryset.order_by("-priority", "seq").values_list(
        "id", "seq", "queue", "priority", "status", "run_at", "lease_token"
    )
    added = 0
    last: tuple[int, int] | None = None
    while True:
        page = queryset
        if last is not None:
            prio, seq = last
            page = page.filter(priority__lt=prio) | page.filter(priority=prio, seq__gt=seq)
        rows = list(page[:batch])
        if not rows:
            break
        placements, running = [], []
        for job_id, seq, queue, priority, status, run_at, token in rows:
            if status == JobStatus.RUNNING:
                if token:
                    running.append((str(job_id), token, queue))
                continue
            run_at_ms = _ms(run_at) if run_at is not None and status != JobStatus.QUEUED else None
            placements.append(Placement(str(job_id), queue, ready_score(priority, seq), run_at_ms))
        added += broker.reconcile(placements, running, lease_ms)
        last = (rows[-1][3], rows[-1][1])
        if len(rows) < batch:
            break
    if added:
        logger.warning("reconciler: re-dispatched %d job(s) that Redis had lost", added)
    return added


# --------------------------------------------------------------------------- operator actions


def _on_commit_safely(func: Any, *args: Any) -> None:
    def run() -> None:
        try:
            func(*args)
        except redis.RedisError as exc:
            logger.warning("Redis unavailable (%s); the reconciler will repair the dispatch index", exc)

    transaction.on_commit(run)


def _unplace(job: Job) -> None:
    """Take a cancelled job out of Redis, after any push of it this process still has pending."""
    from jobs.dispatch import flush

    flush()
    _broker().cancel([(str(job.id), job.queue)])


def cancel(job_id: Any) -> Job:
    """Cancel a waiting job at once; ask a running job's worker to stop it (``cancel_requested_at``)."""
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job_id)
        previous = job.status
        if job.status in RUNNABLE_STATUSES:
            now = timezone.now()
            Job.objects.filter(pk=job.pk, status=job.status).update(
                status=JobStatus.CANCELLED, finished_at=now, updated_at=now, cancel_requested_at=now
            )
            _on_commit_safely(_unplace, job)
            transaction.on_commit(
                lambda: metrics.count_final(_broker(), job.type, job.queue, JobStatus.CANCELLED)
            )
        elif job.status == JobStatus.RUNNING:
            if job.cancel_requested_at is None:
                Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING).update(
                    cancel_requested_at=timezone.now(), updated_at=timezone.now()
                )
                _on_commit_safely(_unplace, job)
        else:
            raise IllegalTransition(f"cannot cancel a job that is already {job.status}", status=job.status)
        job.refresh_from_db()
        transaction.on_commit(partial(_emit_jobs, [job], previous))
    return job


def retry(job_id: Any) -> Job:
    """Send a failed or cancelled job back to its queue; its attempt history is kept and continues."""
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job_id)
        previous = job.status
        if job.status not in (JobStatus.FAILED, JobStatus.CANCELLED):
            raise IllegalTransition(
                f"only failed or cancelled jobs can be retried; this one is {job.status}", status=job.status
            )
        now = timezone.now()
        extra = max(job.max_attempts, job.attempts + 1)
        Job.objects.filter(pk=job.pk, status=job.status).update(
            status=JobStatus.QUEUED,
            max_attempts=extra,
            run_at=None,
            finished_at=None,
            cancel_requested_at=None,
            error="",
            updated_at=now,
        )
        DeadLetter.objects.filter(job_id=job.pk, resolution="").update(
            resolution=DeadLetter.Resolution.RETRIED, resolved_at=now
        )
        job.refresh_from_db()
        transaction.on_commit(partial(_announce, [job], previous))
    return job


def run_now(job_id: Any) -> Job:
    """Make a scheduled or retrying job due immediately."""
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job_id)
        previous = job.status
        if job.status not in (JobStatus.SCHEDULED, JobStatus.RETRYING):
            raise IllegalTransition(
                f"only scheduled or retrying jobs can be run now; this one is {job.status}", status=job.status
            )
        Job.objects.filter(pk=job.pk, status=job.status).update(
            status=JobStatus.QUEUED, run_at=None, updated_at=timezone.now()
        )
        job.refresh_from_db()
        transaction.on_commit(partial(_announce, [job], previous))
    return job


def delete_finished(status: str, finished_before: datetime, limit: int) -> int:
    """Delete up to ``limit`` jobs of a terminal ``status`` finished before the cutoff (pruning).

    Attempts and dead letters go with them; a failed job whose dead letter is still open stays.
    """
    if status not in TERMINAL:
        raise IllegalTransition(f"only finished jobs can be deleted, not {status!r} ones", status=status)
    return deletion.delete_batch(status, finished_before, limit)


def count_finished(status: str, finished_before: datetime) -> int:
    """How many jobs ``delete_finished`` would remove (a dry run)."""
    return deletion.count(status, finished_before)


def retry_dead_letter(dead_letter_id: Any) -> Job:
    """Retry the job behind an open dead letter (the dead letter is marked retried)."""
    dead = DeadLetter.objects.select_related("job").get(pk=dead_letter_id)
    if dead.resolution:
        raise IllegalTransition(f"this dead letter was already {dead.resolution}", status=dead.job.status)
    return retry(dead.job_id)


def discard_dead_letter(dead_letter_id: Any) -> DeadLetter:
    """Close an open dead letter without running the job again; the job stays failed."""
    with transaction.atomic():
        dead = DeadLetter.objects.select_for_update().get(pk=dead_letter_id)
        if dead.resolution:
            raise IllegalTransition(f"this dead letter was already {dead.resolution}")
        dead.resolution = DeadLetter.Resolution.DISCARDED
        dead.resolved_at = timezone.now()
        dead.save(update_fields=["resolution", "resolved_at"])
    return dead
