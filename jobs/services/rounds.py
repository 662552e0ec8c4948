"""The worker's round: turn attempt results into outcomes, then finish and claim a batch in one statement.

This is the hot path of the engine (measured by bench/throughput.py): ``settle`` records every
finished attempt of a round and claims every job the worker popped with one set-based statement in
one transaction, never one round trip per job, then releases Redis and emits the round's events and
metrics. Recovery's reaper finishes expired leases through the same statement.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from jobs import events, metrics, registry
from jobs.backoff import Backoff
from jobs.models import AttemptOutcome, JobStatus
from jobs.services import sql
from jobs.services._common import logger, ms
from jobs.values import Claimed, Outcome
from workers.broker import Broker, Popped


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
    run_at = now + timedelta(seconds=policy.delay(job.attempt))  # jitter from the module-level random
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


# Fragments of queries.sql (what each does is written there), joined once here into the round's statement.
_FINISH_CTES = sql.QUERIES["finish_attempts"]
_CLAIM_CTES = sql.QUERIES["claim_pops"]
_FINISHED_ROWS = sql.QUERIES["finished_rows"]
_CLAIMED_ROWS = sql.QUERIES["claimed_rows"]
_GIVE_BACK_SQL = sql.QUERIES["give_back"]

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


def settle_statement(
    outcomes: Sequence[Outcome], popped: Sequence[Popped], worker: str, *, prepare: bool | None = False
) -> tuple[dict[str, str], list[Claimed], list[str]]:
    """Run ``_SETTLE_SQL``: ({id: final status} of accepted outcomes, claimed jobs, their previous status)."""
    claimed: list[Claimed] = []
    previous: list[str] = []
    accepted: dict[str, str] = {}
    if not outcomes and not popped:
        return accepted, claimed, previous
    for row in sql.fetch(
        _SETTLE_SQL[bool(outcomes), bool(popped)], _settle_params(outcomes, popped, worker), prepare=prepare
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


def release(broker: Broker, outcomes: Sequence[Outcome], accepted: dict[str, str]) -> None:
    """Redis after the commit: retries move to their delayed set, everything else drops its lease."""
    retries, acks = [], []
    for o in outcomes:
        if accepted.get(o.job.id) == JobStatus.RETRYING and o.run_at is not None:
            retries.append((o.job.id, o.job.token, ms(o.run_at), o.job.ready_score))
        else:
            acks.append((o.job.id, o.job.token))
    if retries:
        broker.retry(retries)
    if acks:
        broker.ack(acks)


def emit_round(
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


def after_commit(
    broker: Broker,
    outcomes: Sequence[Outcome],
    accepted: dict[str, str],
    claimed: Sequence[Claimed],
    previous: list[str],
    worker: str,
) -> None:
    """What follows a committed finish: metrics, status events, then Redis (retry or drop each lease)."""
    metrics.record_round(broker, outcomes, accepted, claimed)
    emit_round(outcomes, accepted, claimed, previous, worker)
    if outcomes:
        release(broker, outcomes, accepted)
        lost = len(outcomes) - len(accepted)
        if lost:
            logger.warning(
                "%d finished attempt(s) no longer held their lease; their outcome was discarded", lost
            )


class AtomicFinishRefused(Exception):
    """An atomic job's success was not recorded: its lease was lost, or a cancel request committed first.

    Raised inside the handler's transaction, so leaving ``transaction.atomic()`` rolls back the handler's
    writes together with the refused finish.
    """

    def __init__(self, outcome: Outcome, status: str | None) -> None:
        self.outcome, self.status = outcome, status
        held = "the lease was lost" if status is None else f"the job would end {status}"
        super().__init__(f"the success of job {outcome.job.id} was refused: {held}")


def finish_atomic(outcome: Outcome, worker: str) -> None:
    """Record one atomic job's success in the caller's open transaction, the one its handler wrote in.

    The round's finish statement (``finish_attempts``) for one row, so the lease token fences it and a
    cancel request committed before it wins; anything but ``succeeded`` raises ``AtomicFinishRefused``.
    The row stays locked until the caller commits, so a cancel request arriving meanwhile waits and is
    refused. After the commit call ``after_atomic_finish``.
    """
    if not connection.in_atomic_block:
        raise RuntimeError("finish_atomic must run inside the handler's transaction.atomic() block")
    accepted, _, _ = settle_statement([outcome], [], worker, prepare=None)
    status = accepted.get(outcome.job.id)
    if status != JobStatus.SUCCEEDED:
        raise AtomicFinishRefused(outcome, status)


def after_atomic_finish(broker: Broker, outcomes: Sequence[Outcome], worker: str) -> None:
    """After ``finish_atomic`` committed each of ``outcomes``: the round's post-commit part for them
    (the worker's loop releases a round's worth at once)."""
    after_commit(
        broker, outcomes, dict.fromkeys((o.job.id for o in outcomes), JobStatus.SUCCEEDED), [], [], worker
    )


def settle(
    broker: Broker, outcomes: Sequence[Outcome], popped: Sequence[Popped], worker: str
) -> list[Claimed]:
    """The worker's round: record finished attempts and claim new pops in ONE transaction, then release.

    Returns the popped jobs the claim admitted; the rest are acked and dropped
    (invariant 1: everything in Redis is a hint).
    """
    accepted, claimed, previous = settle_statement(outcomes, popped, worker)
    after_commit(broker, outcomes, accepted, claimed, previous, worker)
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
        cursor.execute(_GIVE_BACK_SQL, ([c.id for c in jobs], [c.token for c in jobs]))
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
