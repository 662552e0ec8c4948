"""Queue metrics kept in Redis, so every worker process adds to the same counters.

The worker records each settle round with one pipelined round trip (no scripts in
the pipeline: docs/design.md, "Batching"). Labels come only from the registry
and JOBQUEUE_QUEUES, so their number stays bounded. Readers (the stats API and
``/metrics``) use ``snapshot()``. The keys are the broker's (``Broker.add_metrics`` /
``read_metrics``); which types count as registered is told by the app at start-up
(``set_type_lookup``), so this helper does not import the registry.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import redis
from django.conf import settings

if TYPE_CHECKING:
    from jobs.values import Claimed, Outcome
    from workers.broker import Broker

logger = logging.getLogger("jobs.metrics")

# Upper bounds in seconds; the last bucket is +Inf.
BUCKETS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    300,
)
FLUSH_INTERVAL = 1.0  # seconds between writes of the gathered counts to Redis
MINUTE_TTL = 2 * 3600  # per-minute throughput buckets cover the last hour with margin
OTHER = "other"
UNREGISTERED = "unregistered"
HASHES = ("outcomes", "duration", "duration_sum", "pickup", "pickup_sum")

_find_type: Callable[[str], object | None] | None = None


def _bucket(seconds: float) -> int:
    for index, bound in enumerate(BUCKETS):
        if seconds <= bound:
            return index
    return len(BUCKETS)


def set_type_lookup(find: Callable[[str], object | None] | None) -> None:
    """Install how type labels are checked: ``find(name)`` is None for a type nobody registered.

    ``jobs.apps`` passes ``registry.find`` at start-up (in every process, workers included); until then
    (or after ``None``) types are labelled as given.
    """
    global _find_type
    _find_type = find


def type_label(name: str) -> str:
    """The type, or "unregistered": labels stay bounded by the registry, whatever jobs claim to be."""
    find = _find_type
    return name if find is None or find(name) is not None else UNREGISTERED


def queue_label(name: str) -> str:
    return name if name in settings.JOBQUEUE_QUEUES else OTHER


class _Pending:
    """Counts gathered since the last flush (one per process; flushed by a thread about once a second)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.hashes: dict[str, Counter[str]] = {}  # metric name -> field -> increment
        self.minutes: dict[int, Counter[str]] = {}
        self.thread: threading.Thread | None = None
        self.broker: Broker | None = None

    def take(self) -> tuple[dict[str, Counter[str]], dict[int, Counter[str]]]:
        with self.lock:
            hashes, minutes = self.hashes, self.minutes
            self.hashes, self.minutes = {}, {}
        return hashes, minutes


_pending = _Pending()


def _after_fork() -> None:
    global _pending
    _pending = _Pending()


os.register_at_fork(after_in_child=_after_fork)


def record_round(
    broker: Broker, outcomes: Sequence[Outcome], final: dict[str, str], claimed: Sequence[Claimed]
) -> None:
    """Count a settle round in memory: outcomes PostgreSQL accepted (with their final status) and claims.

    Called on the worker's hot path, so it only adds to local counters; a background thread writes
    them to Redis about once a second in one pipelined round trip.
    """
    if not (final or claimed):
        return
    counts: Counter[str] = Counter()
    durations: Counter[str] = Counter()
    duration_sums: Counter[str] = Counter()
    pickups: Counter[str] = Counter()
    pickup_sums: Counter[str] = Counter()
    minute: Counter[str] = Counter()
    for outcome in outcomes:
        status = final.get(outcome.job.id)
        if status is None:
            continue
        job_type, queue = type_label(outcome.job.type), queue_label(outcome.job.queue)
        counts[f"{job_type}|{queue}|{status}"] += 1
        minute[status] += 1
        seconds = max((outcome.finished_at - outcome.job.started_at).total_seconds(), 0.0)
        durations[f"{job_type}|{_bucket(seconds)}"] += 1
        # Sums are floats (HINCRBYFLOAT): Counter adds them fine, but typeshed types its values as int.
        duration_sums[job_type] += seconds  # type: ignore[assignment]
    for job in claimed:
        due = max(job.created_at, job.run_at) if job.run_at else job.created_at
        seconds = max((job.started_at - due).total_seconds(), 0.0)
        queue = queue_label(job.queue)
        pickups[f"{queue}|{_bucket(seconds)}"] += 1
        pickup_sums[queue] += seconds  # type: ignore[assignment]  # a float sum, as above
        minute["started"] += 1
    _add(
        broker,
        {
            "outcomes": counts,
            "duration": durations,
            "duration_sum": duration_sums,
            "pickup": pickups,
            "pickup_sum": pickup_sums,
        },
        minute,
    )


def _add(broker: Broker, hashes: dict[str, Counter[str]], minute: Counter[str]) -> None:
    pending = _pending
    if pending.broker is not None and pending.broker.prefix != broker.prefix:
        flush(pending)  # counts belong to the prefix they were made under
    with pending.lock:
        for name, counter in hashes.items():
            if counter:
                pending.hashes.setdefault(name, Counter()).update(counter)
        if minute:
            pending.minutes.setdefault(int(time.time() // 60), Counter()).update(minute)
        pending.broker = broker
        if pending.thread is None:
            pending.thread = threading.Thread(
                target=_flusher, args=(pending,), name="jobqueue-metrics", daemon=True
            )
            pending.thread.start()


_stopping = threading.Event()


def _flusher(pending: _Pending) -> None:
    while not _stopping.wait(FLUSH_INTERVAL):
        flush(pending)
    flush(pending)  # the last counts, at exit


def _stop_at_exit() -> None:
    """Write what is left and end the flusher: no daemon thread may wake while Python finalises."""
    _stopping.set()
    thread = _pending.thread
    if thread is not None:
        thread.join(2.0)


atexit.register(_stop_at_exit)


def flush(pending: _Pending | None = None) -> None:
    """Write the counts gathered so far to Redis (the flusher thread calls this; so may tests)."""
    pending = pending or _pending
    broker = pending.broker
    hashes, minutes = pending.take()
    if broker is None or not (hashes or minutes):
        return
    try:
        broker.add_metrics(hashes, minutes, MINUTE_TTL)
    except redis.RedisError as exc:  # metrics must never fail a round; these counts are lost
        logger.debug("could not record metrics: %s", exc)


def count_final(broker: Broker, job_type: str, queue: str, status: str) -> None:
    """Count a job that reached a final status outside a worker round (an operator's cancel)."""
    outcome = f"{type_label(job_type)}|{queue_label(queue)}|{status}"
    try:
        broker.add_metrics({"outcomes": {outcome: 1}}, {int(time.time() // 60): {status: 1}}, MINUTE_TTL)
    except redis.RedisError as exc:
        logger.debug("could not record metrics: %s", exc)


@dataclass(frozen=True)
class Histogram:
    """Non-cumulative counts per bucket (len(BUCKETS) + 1 for +Inf), their sum and count."""

    buckets: list[int]
    sum: float

    @property
    def count(self) -> int:
        return sum(self.buckets)


@dataclass(frozen=True)
class Snapshot:
    outcomes: dict[tuple[str, str, str], int]  # (type, queue, final status) -> count
    duration: dict[str, Histogram]  # by type
    pickup: dict[str, Histogram]  # by queue
    per_minute: list[dict[str, int]]  # the last 60 minutes, oldest first, incl. the current one


def _histograms(raw: dict[str, str], sums: dict[str, str]) -> dict[str, Histogram]:
    result: dict[str, list[int]] = {}
    for field, value in raw.items():
        label, _, index = field.rpartition("|")
        result.setdefault(label, [0] * (len(BUCKETS) + 1))[int(index)] += int(value)
    return {label: Histogram(buckets, float(sums.get(label, 0))) for label, buckets in result.items()}


def _outcome_key(field: str) -> tuple[str, str, str]:
    job_type, queue, status = field.split("|", 2)  # as record_round writes it: type|queue|status
    return job_type, queue, status


def snapshot(broker: Broker) -> Snapshot:
    flush()  # this process's own counts first, so a reader sees what it just did
    now_minute = int(time.time() // 60)
    hashes, minutes = broker.read_metrics(HASHES, range(now_minute - 59, now_minute + 1))
    return Snapshot(
        outcomes={_outcome_key(field): int(value) for field, value in hashes["outcomes"].items()},
        duration=_histograms(hashes["duration"], hashes["duration_sum"]),
        pickup=_histograms(hashes["pickup"], hashes["pickup_sum"]),
        per_minute=[{name: int(value) for name, value in bucket.items()} for bucket in minutes],
    )
