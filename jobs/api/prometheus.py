"""``GET /metrics``: the Prometheus text exposition format 0.0.4, rendered from Redis.

Every worker process adds to the same Redis counters and histograms (``jobs.metrics``), so whichever
web process answers a scrape reports the whole fleet: no per-process registry, no multiprocess
directory. Labels come only from the registry and ``JOBQUEUE_QUEUES`` (bounded cardinality).
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Iterable

from django.conf import settings
from django.db import DatabaseError

from jobs import metrics
from jobs.api.stats import postgres_view, redis_view
from workers.broker import Broker

logger = logging.getLogger("jobs.api")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def number(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def labels(**pairs: str) -> str:
    return "{" + ",".join(f'{name}="{escape(str(value))}"' for name, value in pairs.items()) + "}"


def family(name: str, kind: str, help_text: str, samples: Iterable[str]) -> list[str]:
    return [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", *samples]


def histogram(name: str, label: str, data: dict[str, metrics.Histogram]) -> list[str]:
    """Cumulative ``_bucket`` lines (``le`` bounds, then +Inf), ``_sum`` and ``_count`` per label value."""
    lines = []
    bounds = [*metrics.BUCKETS, math.inf]
    for value in sorted(data):
        hist = data[value]
        running = 0
        for bound, count in zip(bounds, hist.buckets, strict=True):
            running += count
            lines.append(f"{name}_bucket{labels(**{label: value, 'le': number(float(bound))})} {running}")
        lines.append(f"{name}_sum{labels(**{label: value})} {number(hist.sum)}")
        lines.append(f"{name}_count{labels(**{label: value})} {hist.count}")
    return lines


def render(broker: Broker) -> str:
    snap = metrics.snapshot(broker)
    queues = list(settings.JOBQUEUE_QUEUES)
    live = redis_view(broker, queues)
    other_running = live.running - sum(q["running"] for q in live.queues.values())
    workers = broker.workers(int(3 * settings.JOBQUEUE_HEARTBEAT_SECONDS * 1000))
    alive = sum(1 for worker in workers if worker.get("alive"))

    out: list[str] = []
    out += family(
        "jobqueue_jobs_finished_total",
        "counter",
        "Attempts whose outcome PostgreSQL accepted, by the job's resulting status "
        "(succeeded, failed = dead letter, retrying, cancelled).",
        (
            f"jobqueue_jobs_finished_total{labels(type=t, queue=q, status=s)} {count}"
            for (t, q, s), count in sorted(snap.outcomes.items())
        ),
    )
    depth_samples = []
    for queue, depth in live.queues.items():
        for state in ("ready", "delayed", "running"):
            depth_samples.append(f"jobqueue_queue_depth{labels(queue=queue, state=state)} {depth[state]}")
    if other_running:
        depth_samples.append(
            f"jobqueue_queue_depth{labels(queue=metrics.OTHER, state='running')} {other_running}"
        )
    out += family(
        "jobqueue_queue_depth",
        "gauge",
        "Jobs in the Redis dispatch index: ready to pop, delayed (scheduled or retrying), running (leased).",
        depth_samples,
    )
    out += family(
        "jobqueue_workers",
        "gauge",
        "Worker processes by heartbeat state.",
        [
            f"jobqueue_workers{labels(state='alive')} {alive}",
            f"jobqueue_workers{labels(state='stale')} {len(workers) - alive}",
        ],
    )
    out += family(
        "jobqueue_job_duration_seconds",
        "histogram",
        "Run time of finished attempts, by job type.",
        histogram("jobqueue_job_duration_seconds", "type", snap.duration),
    )
    out += family(
        "jobqueue_pickup_latency_seconds",
        "histogram",
        "Time from a job being due to a worker claiming it, by queue.",
        histogram("jobqueue_pickup_latency_seconds", "queue", snap.pickup),
    )
    out += _postgres_families(broker)
    return "\n".join(out) + "\n"


def _postgres_families(broker: Broker) -> list[str]:
    """Active jobs by status, open dead letters; ``jobqueue_postgres_up 0`` rather than a failed scrape."""
    try:
        pg = postgres_view(broker)
    except DatabaseError as exc:
        logger.warning("metrics: PostgreSQL unavailable: %s", exc)
        return family(
            "jobqueue_postgres_up",
            "gauge",
            "Whether PostgreSQL answered this scrape.",
            ["jobqueue_postgres_up 0"],
        )
    by_status: Counter[str] = Counter(pg["by_status"])
    out = family(
        "jobqueue_postgres_up",
        "gauge",
        "Whether PostgreSQL answered this scrape.",
        ["jobqueue_postgres_up 1"],
    )
    out += family(
        "jobqueue_jobs_active",
        "gauge",
        "Non-terminal jobs in PostgreSQL by status (cached a few seconds).",
        (
            f"jobqueue_jobs_active{labels(status=status)} {count}"
            for status, count in sorted(by_status.items())
        ),
    )
    out += family(
        "jobqueue_dead_letters_open",
        "gauge",
        "Dead letters neither retried nor discarded.",
        [f"jobqueue_dead_letters_open {pg['open_dead_letters']}"],
    )
    out += family(
        "jobqueue_jobs_created_total",
        "counter",
        "Jobs ever created (the job sequence; includes pruned jobs).",
        [f"jobqueue_jobs_created_total {pg['total_jobs']}"],
    )
    return out
