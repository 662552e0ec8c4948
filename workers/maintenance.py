"""Recovery that runs inside every worker: the lease reaper and the reconciler.

Each pass is guarded by a short Redis lock so that one worker at a time does it;
the locks only save work (invariant 4): two reapers or reconcilers at once are
harmless because PostgreSQL is written first with guarded statements.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta

import redis
from django.conf import settings
from django.db import DatabaseError, close_old_connections
from django.utils import timezone

from jobs import services
from workers.broker import Broker

logger = logging.getLogger("workers.maintenance")


class Maintenance:
    """Runs in its own thread of a worker process; ``stop`` ends it."""

    def __init__(self, broker: Broker, worker: str) -> None:
        self.broker = broker
        self.worker = worker
        self.stopped = threading.Event()
        self.next_due_ms: int | None = None  # earliest delayed job, as the last dequeue reported it
        self.clock_offset_ms = 0.0  # Redis TIME minus local time
        self.epoch: str | None = None
        self.last_reconcile: datetime | None = None
        self.last_full_reconcile = 0.0
        self.next_reconcile = 0.0
        self.reap_interval = settings.JOBQUEUE_REAP_INTERVAL
        self.reconcile_interval = settings.JOBQUEUE_RECONCILE_INTERVAL
        self.full_interval = settings.JOBQUEUE_FULL_RECONCILE_INTERVAL

    def redis_now_ms(self) -> float:
        return time.time() * 1000 + self.clock_offset_ms

    def stop(self) -> None:
        self.stopped.set()

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                self.tick()
            except (redis.RedisError, DatabaseError) as exc:
                logger.warning("maintenance pass failed (%s: %s); will retry", type(exc).__name__, exc)
                close_old_connections()
            except Exception:  # noqa: BLE001 - maintenance must never take the worker down
                logger.exception("maintenance pass crashed; will retry")
            self.stopped.wait(self.reap_interval)

    def tick(self) -> None:
        """One pass: clock sync, epoch check, reaper, and (when due) the reconciler."""
        self.clock_offset_ms = self.broker.now_ms() - time.time() * 1000
        epoch, created = self.broker.epoch()
        known, self.epoch = self.epoch, epoch
        lost_data = created or (known is not None and epoch != known)
        if known is not None and epoch != known:
            # This process saw another epoch before: Redis lost its data (restart without persistence,
            # FLUSHALL, failover to an empty replica) while we were running.
            logger.warning(
                "Redis epoch changed (%s -> %s): Redis lost its data or was flushed; "
                "rebuilding the dispatch index from PostgreSQL",
                known,
                epoch,
            )
        elif created:
            # No epoch yet and none seen by us: a first start on this Redis (or a worker that started
            # after Redis lost its data). Not alarming by itself: the full reconcile below checks every
            # active job against Redis and warns only about jobs that really are missing from it.
            logger.info("new Redis: recording epoch %s; checking PostgreSQL's active jobs against it", epoch)
        if lost_data:
            self.last_reconcile = None
            self.next_reconcile = 0.0
        self.reap()
        if time.monotonic() >= self.next_reconcile:
            self.reconcile(full=lost_data)
            self.next_reconcile = time.monotonic() + self.reconcile_interval

    def _locked(self, name: str, ttl_s: float, action: Callable[[], None]) -> bool:
        token = self.broker.acquire_lock(name, int(ttl_s * 1000))
        if token is None:
            return False
        try:
            action()
        finally:
            self.broker.release_lock(name, token)
        return True

    def reap(self) -> None:
        def run() -> None:
            while services.expire_leases(self.broker) >= 1000:
                pass

        self._locked("reaper", max(self.reap_interval * 2, 10), run)
        close_old_connections()

    def reconcile(self, *, full: bool = False) -> None:
        started = timezone.now()
        full = (
            full
            or self.last_reconcile is None
            or time.monotonic() - self.last_full_reconcile > self.full_interval
        )
        # The window reaches back past the rows the previous pass skipped as too fresh.
        lookback = self.reconcile_interval * 2 + services.RECONCILE_SETTLE_SECONDS
        # (full is already true when there was no previous pass; the None check narrows the type)
        since = (
            None if full or self.last_reconcile is None else self.last_reconcile - timedelta(seconds=lookback)
        )

        def run() -> None:
            services.reconcile(self.broker, since=since)

        if self._locked("reconciler", max(self.reconcile_interval, 60), run):
            self.last_reconcile = started
            if full:
                self.last_full_reconcile = time.monotonic()
        close_old_connections()
