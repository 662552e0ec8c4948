"""Queue statistics without a full table scan: Redis for what moves, PostgreSQL only where it is cheap.

- Redis (live): queue depths (ready/delayed ZCARDs, running = leases), the workers' outcome counters
  and per-minute buckets (``jobs.metrics``), worker heartbeats.
- PostgreSQL (the truth, cached in Redis for ``JOBQUEUE_API_STATS_PG_TTL`` seconds, default 5): active
  jobs by status and queue (an index-only scan of ``job_status_queue_prio`` over active rows only),
  jobs ever created (the ``seq`` sequence) and open dead letters (``deadletter_open`` index).

Both views of the active jobs are reported side by side, so a dispatch index that drifted from
PostgreSQL (a lost push the reconciler has not repaired yet) is visible as ``reconciliation.difference``.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connection
from django.utils import timezone

from jobs import metrics
from jobs.dispatch import stale_after_ms
from jobs.models import ACTIVE_STATUSES, JOB_SEQ_SEQUENCE, JobStatus
from workers.broker import Broker

ACTIVE = sorted(str(status) for status in ACTIVE_STATUSES)
TERMINAL = (JobStatus.SUCCEEDED.value, JobStatus.FAILED.value, JobStatus.CANCELLED.value)
MAX_QUEUES = 50


def _pg_ttl() -> float:
    return float(getattr(settings, "JOBQUEUE_API_STATS_PG_TTL", 5.0))


def _query_postgres() -> dict[str, Any]:
    by_status = dict.fromkeys(ACTIVE, 0)
    by_queue: dict[str, dict[str, int]] = {}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT status, queue, count(*) FROM jobs_job WHERE status = ANY(%s) GROUP BY status, queue",
            [ACTIVE],
        )
        for status, queue, count in cursor.fetchall():
            by_status[status] += count
            by_queue.setdefault(queue, dict.fromkeys(ACTIVE, 0))[status] += count
        cursor.execute(f"SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM {JOB_SEQ_SEQUENCE}")
        (total,) = cursor.fetchone()
        cursor.execute("SELECT count(*) FROM jobs_deadletter WHERE resolution = ''")
        (open_dead,) = cursor.fetchone()
        # When the longest-waiting runnable job per queue became due (active rows only, via the index).
        cursor.execute(
            "SELECT queue, min(COALESCE(run_at, created_at)) FROM jobs_job "
            "WHERE status = 'queued' OR (status IN ('scheduled', 'retrying') AND run_at <= now()) "
            "GROUP BY queue"
        )
        waiting_since = {queue: since.timestamp() for queue, since in cursor.fetchall()}
    # Bounded output: the busiest queues by name, the rest folded into "other".
    if len(by_queue) > MAX_QUEUES:
        ranked = sorted(by_queue, key=lambda q: -sum(by_queue[q].values()))
        kept = {q: by_queue[q] for q in ranked[:MAX_QUEUES]}
        other = kept.setdefault(metrics.OTHER, dict.fromkeys(ACTIVE, 0))
        for queue in ranked[MAX_QUEUES:]:
            for status, count in by_queue[queue].items():
                other[status] += count
        by_queue = kept
    return {
        "by_status": by_status,
        "active": sum(by_status.values()),
        "by_queue": by_queue,
        "total_jobs": int(total),
        "open_dead_letters": int(open_dead),
        "waiting_since": waiting_since,
        "as_of": timezone.now().isoformat(),
    }


def postgres_view(broker: Broker) -> dict[str, Any]:
    """PostgreSQL's cheap counts, shared by all web processes through a short-lived Redis key.

    A broker key rather than ``django.core.cache``: the cache's KEY_PREFIX is fixed when settings
    load, while the broker's keys follow ``JOBQUEUE_REDIS_PREFIX`` (one per test, one per bench run),
    so two deployments or test runs sharing a Redis never read each other's counts."""
    ttl = _pg_ttl()
    if ttl > 0 and (cached := broker.cached_stats()):
        return json.loads(cached)
    view = _query_postgres()
    if ttl > 0:
        broker.cache_stats(json.dumps(view), int(ttl * 1000))
    return view


@dataclass(frozen=True)
class RedisView:
    queues: dict[str, dict[str, int]]  # queue -> ready, delayed, running
    running: int


def redis_view(broker: Broker, queues: list[str]) -> RedisView:
    depths = broker.depths(queues)
    running, per_queue = broker.running()
    return RedisView(
        queues={queue: {**depths[queue], "running": per_queue.get(queue, 0)} for queue in queues},
        running=running,
    )


def _window(buckets: list[dict[str, int]], weights: list[float]) -> dict[str, int]:
    def total(name: str) -> int:
        return round(
            sum(bucket.get(name, 0) * weight for bucket, weight in zip(buckets, weights, strict=True))
        )

    window = {
        "started": total("started"),
        "succeeded": total(JobStatus.SUCCEEDED),
        "failed": total(JobStatus.FAILED),
        "retried": total(JobStatus.RETRYING),
        "cancelled": total(JobStatus.CANCELLED),
    }
    window["finished"] = window["succeeded"] + window["failed"] + window["cancelled"]
    window["failures"] = window["failed"] + window["retried"]
    return window


def windows(
    per_minute: list[dict[str, int]], now: float | None = None
) -> tuple[dict[str, int], dict[str, int]]:
    """(last minute, last hour) from per-minute buckets, oldest first, the current (partial) one last.

    The last minute is a sliding estimate: the current bucket plus the previous one weighted by the
    part of it still inside the window (the usual sliding-window-counter approximation).
    """
    elapsed = ((now if now is not None else time.time()) % 60) / 60
    minute = (
        _window(per_minute[-2:], [1 - elapsed, 1.0]) if len(per_minute) >= 2 else _window(per_minute, [1.0])
    )
    hour = _window(per_minute, [1.0] * len(per_minute))
    return minute, hour


def build_stats(broker: Broker) -> dict[str, Any]:
    """Everything ``GET /api/stats/`` returns."""
    pg = postgres_view(broker)
    queues = list(
        dict.fromkeys([*settings.JOBQUEUE_QUEUES, *(q for q in pg["by_queue"] if q != metrics.OTHER)])
    )
    live = redis_view(broker, queues)
    now = time.time()
    for queue, depth in live.queues.items():
        since = pg.get("waiting_since", {}).get(queue)
        # Oldest job's age: how long the longest-waiting due job of the queue has waited (None if none).
        depth["oldest_age_seconds"] = round(max(now - since, 0.0), 3) if since and depth["ready"] else None
    snap = metrics.snapshot(broker)
    finished: Counter[str] = Counter()
    for (_type, _queue, status), count in snap.outcomes.items():
        finished[status] += count
    workers = broker.workers(stale_after_ms())
    alive = sum(1 for worker in workers if worker.get("alive"))
    last_minute, last_hour = windows(snap.per_minute)
    dispatch = {
        "ready": sum(q["ready"] for q in live.queues.values()),
        "delayed": sum(q["delayed"] for q in live.queues.values()),
        "running": live.running,
    }
    redis_active = sum(dispatch.values())
    return {
        "generated_at": timezone.now().isoformat(),
        "counts": {**pg["by_status"], **{status: finished.get(status, 0) for status in TERMINAL}},
        "queues": live.queues,
        "redis": dispatch,
        "last_minute": last_minute,
        "last_hour": last_hour,
        "workers": {"alive": alive, "stale": len(workers) - alive},
        "postgres": pg,
        "reconciliation": {
            "redis_active": redis_active,
            "postgres_active": pg["active"],
            "difference": pg["active"] - redis_active,
            "in_sync": pg["active"] == redis_active,
        },
    }


def build_metrics(broker: Broker) -> dict[str, int]:
    """The flat summary of ``GET /api/metrics/`` (sources as in ``build_stats``)."""
    stats = build_stats(broker)
    counts, pg = stats["counts"], stats["postgres"]
    return {
        "total_jobs": pg["total_jobs"],
        "active_jobs": pg["active"],
        "completed_jobs": counts[JobStatus.SUCCEEDED],
        "failed_jobs": counts[JobStatus.FAILED],
        "cancelled_jobs": counts[JobStatus.CANCELLED],
        "dead_letter_jobs": pg["open_dead_letters"],
        "queue_length": stats["redis"]["ready"],
        "retry_queue_length": counts[JobStatus.RETRYING],
        "scheduled_jobs": counts[JobStatus.SCHEDULED],
        "running_jobs": stats["redis"]["running"],
        "workers_alive": stats["workers"]["alive"],
        "throughput_last_minute": stats["last_minute"]["finished"],
        "failures_last_minute": stats["last_minute"]["failures"],
    }
