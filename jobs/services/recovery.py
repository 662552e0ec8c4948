"""Recovery, run inside the workers: repair what a crash or a lost Redis left behind.

Kept apart from the round because it starts from the other side: PostgreSQL's view of jobs whose
worker died (``expire_leases``) or that Redis no longer holds (``reconcile``), both safe to repeat
and to run in several workers at once (invariant 4).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from jobs import metrics
from jobs.models import ACTIVE_STATUSES, AttemptOutcome, Job, JobStatus
from jobs.services._common import logger, ms
from jobs.services.rounds import after_failure, emit_round, release, settle_statement
from jobs.values import Claimed
from workers.broker import Broker, Placement, ready_score


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
        # The claim sets lease_token and started_at whenever it sets status 'running', so a running row
        # lacking either holds no lease of ours; the None checks only narrow the nullable columns.
        if token is None or started is None or token != tokens.get(str(job_id)):
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
        accepted, _, _ = settle_statement(outcomes, [], "")
        release(broker, outcomes, accepted)
        metrics.record_round(broker, outcomes, accepted, [])
        emit_round(outcomes, accepted, [], [], "")
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

    Runs in priority order, in batches; safe to repeat and to run twice at once (invariant 4). Each batch
    is decided in three steps, so that only jobs really missing from Redis are re-added and counted:

    1. read the active rows from PostgreSQL;
    2. ask Redis (``reconcile.lua`` in check mode, atomically per batch) which of them it lacks;
    3. re-read those rows: one that changed since step 1 was claimed, finished, retried or cancelled
       meanwhile (its own transition put Redis right), so only rows unchanged since step 1 are
       handed to ``reconcile.lua``, which again adds only ids that are nowhere in Redis.

    Returns how many entries were added (what the warning reports).
    """
    lease_ms = int(settings.JOBQUEUE_LEASE_SECONDS * 1000)
    # Rows changed in the last few seconds are skipped: a push after a commit (enqueue, retry, run now)
    # is normally still in flight, and a job only just committed is not yet "lost".
    queryset = Job.objects.filter(
        status__in=list(ACTIVE_STATUSES), updated_at__lt=timezone.now() - timedelta(seconds=settle_seconds)
    )
    if since is not None:
        queryset = queryset.filter(updated_at__gte=since)
    ordered = queryset.order_by("-priority", "seq").values_list(
        "id", "seq", "queue", "priority", "status", "run_at", "lease_token", "updated_at"
    )
    added = present = moved = 0
    last: tuple[int, int] | None = None
    while True:
        page = ordered
        if last is not None:
            prio, seq = last
            page = page.filter(priority__lt=prio) | page.filter(priority=prio, seq__gt=seq)
        rows = list(page[:batch])
        if not rows:
            break
        placements: list[Placement] = []
        running: list[tuple[str, str, str]] = []
        seen: dict[str, tuple[str, str | None, datetime]] = {}
        for job_id, seq, queue, priority, status, run_at, token, updated in rows:
            if status == JobStatus.RUNNING:
                if not token:
                    continue
                running.append((str(job_id), token, queue))
            else:
                run_at_ms = ms(run_at) if run_at is not None and status != JobStatus.QUEUED else None
                placements.append(Placement(str(job_id), queue, ready_score(priority, seq), run_at_ms))
            seen[str(job_id)] = (status, token, updated)
        missing = set(broker.reconcile_missing(placements, running))
        present += len(seen) - len(missing)
        if missing:
            # Re-read after the Redis check: a row that moved on since step 1 is not lost.
            unchanged = {
                str(job_id)
                for job_id, status, token, updated in Job.objects.filter(pk__in=list(missing)).values_list(
                    "id", "status", "lease_token", "updated_at"
                )
                if seen[str(job_id)] == (status, token, updated)
            }
            moved += len(missing) - len(unchanged)
            if unchanged:
                added += broker.reconcile(
                    [p for p in placements if p.id in unchanged],
                    [r for r in running if r[0] in unchanged],
                    lease_ms,
                )
        last = (rows[-1][3], rows[-1][1])
        if len(rows) < batch:
            break
    if added:
        logger.warning("reconciler: re-dispatched %d job(s) that Redis had lost", added)
    logger.debug(
        "reconciler: %d job(s) present in Redis, %d moved on while checked, %d re-dispatched",
        present,
        moved,
        added,
    )
    return added
