"""What several parts of the services share: the logger, the broker, and announcing jobs after commit.

Submission and the operator actions both end by making committed jobs visible (Redis, dashboards);
the worker's round and recovery have their own, batched, announcement in ``rounds``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime

from jobs import events
from jobs.models import Job, JobStatus
from workers.broker import Broker, Placement, ready_score

logger = logging.getLogger("jobs.services")  # one name for the whole package, as before the split


def broker() -> Broker:
    """The process's broker (imported late: ``jobs.dispatch`` owns its lifecycle)."""
    from jobs.dispatch import get_broker

    return get_broker()


def ms(moment: datetime) -> int:
    """A datetime as the epoch milliseconds Redis scores use."""
    return int(moment.timestamp() * 1000)


def placement_for(job: Job) -> Placement:
    """Where a runnable job belongs in Redis (ready now, or delayed until run_at)."""
    run_at_ms = ms(job.run_at) if job.run_at is not None and job.status != JobStatus.QUEUED else None
    return Placement(
        id=str(job.id), queue=job.queue, ready_score=ready_score(job.priority, job.seq), run_at_ms=run_at_ms
    )


def announce(jobs: list[Job], previous: str | None = None) -> None:
    """After commit: push the jobs to Redis and tell the dashboards."""
    dispatch([placement_for(job) for job in jobs])
    emit_jobs(jobs, previous)


def dispatch(placements: list[Placement]) -> None:
    """Hand committed jobs to the background pusher: they are durable already; Redis only makes them visible.

    If Redis is down the pusher logs it and the reconciler pushes them later.
    """
    from jobs.dispatch import push

    push(placements)


def emit_jobs(jobs: Iterable[Job], previous: str | None) -> None:
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
