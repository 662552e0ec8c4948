"""``GET /metrics``: Prometheus text exposition (format 0.0.4) of the fleet's Redis aggregates.

Every worker process adds to the same Redis counters and histograms (``jobs.metrics``), so whichever
web process answers a scrape reports the whole fleet: no multiprocess directory. ``prometheus_client``
writes the text from one custom collector over those aggregates, registered in a registry made per
request; the global default registry would add the ``process_*``/``python_*`` metrics of whichever web
process happened to serve, which describe that process, not the queue. Labels come only from the job
registry and ``JOBQUEUE_QUEUES`` (bounded cardinality).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator

from django.conf import settings
from django.db import DatabaseError
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from jobs import metrics
from jobs.api.stats import postgres_view, redis_view
from jobs.dispatch import stale_after_ms
from workers.broker import Broker

logger = logging.getLogger("jobs.api")

# What ``generate_latest`` writes. Not ``CONTENT_TYPE_LATEST``: newer prometheus_client releases
# announce text format 1.0.0 there, and scrapers that ask for 0.0.4 expect to be told 0.0.4.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

DEPTH_STATES = ("ready", "delayed", "running")


def histogram_family(
    name: str, help_text: str, label: str, data: dict[str, metrics.Histogram]
) -> HistogramMetricFamily:
    """One labelled series per key of ``data``; Redis keeps per-bucket counts, Prometheus wants them
    cumulative, ending at ``+Inf``."""
    family = HistogramMetricFamily(name, help_text, labels=[label])
    bounds = [floatToGoString(bound) for bound in (*metrics.BUCKETS, math.inf)]
    for value in sorted(data):
        hist = data[value]
        cumulative, running = [], 0
        for bound, count in zip(bounds, hist.buckets, strict=True):
            running += count
            cumulative.append((bound, float(running)))
        family.add_metric([value], cumulative, hist.sum)
    return family


class QueueCollector(Collector):
    """The queue's metric families, read from Redis (and PostgreSQL's cached counts) at each scrape."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    def collect(self) -> Iterator[Metric]:
        broker = self.broker
        snap = metrics.snapshot(broker)
        live = redis_view(broker, list(settings.JOBQUEUE_QUEUES))
        workers = broker.workers(stale_after_ms())

        finished = CounterMetricFamily(
            "jobqueue_jobs_finished_total",
            "Attempts whose outcome PostgreSQL accepted, by the job's resulting status "
            "(succeeded, failed = dead letter, retrying, cancelled).",
            labels=["type", "queue", "status"],
        )
        for (job_type, queue, status), count in sorted(snap.outcomes.items()):
            finished.add_metric([job_type, queue, status], count)
        yield finished

        depth = GaugeMetricFamily(
            "jobqueue_queue_depth",
            "Jobs in the Redis dispatch index: ready to pop, delayed (scheduled or retrying), "
            "running (leased).",
            labels=["queue", "state"],
        )
        for queue, depths in live.queues.items():
            for state in DEPTH_STATES:
                depth.add_metric([queue, state], depths[state])
        # Leases on queues outside JOBQUEUE_QUEUES (a worker started with other --queues).
        other_running = live.running - sum(q["running"] for q in live.queues.values())
        if other_running:
            depth.add_metric([metrics.OTHER, "running"], other_running)
        yield depth

        alive = sum(1 for worker in workers if worker.get("alive"))
        by_state = GaugeMetricFamily(
            "jobqueue_workers", "Worker processes by heartbeat state.", labels=["state"]
        )
        by_state.add_metric(["alive"], alive)
        by_state.add_metric(["stale"], len(workers) - alive)
        yield by_state

        yield histogram_family(
            "jobqueue_job_duration_seconds",
            "Run time of finished attempts, by job type.",
            "type",
            snap.duration,
        )
        yield histogram_family(
            "jobqueue_pickup_latency_seconds",
            "Time from a job being due to a worker claiming it, by queue.",
            "queue",
            snap.pickup,
        )
        yield from self._postgres()

    def _postgres(self) -> Iterator[Metric]:
        """Active jobs by status, open dead letters; ``jobqueue_postgres_up 0`` rather than a failed
        scrape, so the Redis half still reaches Prometheus while PostgreSQL is down."""
        up_help = "Whether PostgreSQL answered this scrape."
        try:
            pg = postgres_view(self.broker)
        except DatabaseError as exc:
            logger.warning("metrics: PostgreSQL unavailable: %s", exc)
            yield GaugeMetricFamily("jobqueue_postgres_up", up_help, value=0)
            return
        yield GaugeMetricFamily("jobqueue_postgres_up", up_help, value=1)
        active = GaugeMetricFamily(
            "jobqueue_jobs_active",
            "Non-terminal jobs in PostgreSQL by status (cached a few seconds).",
            labels=["status"],
        )
        for status, count in sorted(pg["by_status"].items()):
            active.add_metric([status], count)
        yield active
        yield GaugeMetricFamily(
            "jobqueue_dead_letters_open",
            "Dead letters neither retried nor discarded.",
            value=pg["open_dead_letters"],
        )
        yield CounterMetricFamily(
            "jobqueue_jobs_created_total",
            "Jobs ever created (the job sequence; includes pruned jobs).",
            value=pg["total_jobs"],
        )


def render(broker: Broker) -> str:
    """The exposition text for one scrape, from a registry that holds only our collector."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(QueueCollector(broker))
    return generate_latest(registry).decode()
