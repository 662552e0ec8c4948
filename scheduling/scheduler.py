"""``manage.py runscheduler``: the loop that fires due schedules and prunes finished jobs.

Threads and what each owns:

- the loop (main thread): leader election, one transaction per due schedule row
  (``firing.fire_due``), then a wait until the next due time;
- a listener blocks on the Redis channel schedule changes are announced on and wakes the loop;
- a pruner, started by the leader every ``JOBQUEUE_PRUNE_INTERVAL``, deletes old finished jobs
  in small batches so firing is never held up behind it.

Leadership is a Redis lock with a TTL, renewed every third of it; a follower sleeps until the
lock would lapse (at most half a TTL) and then tries to take it, so it takes over within about a
TTL of the leader's death. The lock only saves work (invariant 4): firing is made unique by the
row lock and the idempotency key, so two leaders (after a FLUSHALL, a partition, or while Redis
is unreachable and every scheduler fires) are harmless.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from dataclasses import dataclass
from datetime import timedelta

import redis
from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection
from django.utils import timezone

from jobs.dispatch import redis_client
from scheduling import firing, pruning
from workers.broker import Broker

logger = logging.getLogger("scheduling.scheduler")

LOCK_NAME = "scheduler"
CONTENDED_WAIT = 0.1  # a due row another scheduler holds: look again shortly, do not spin
LISTEN_BLOCK = 5.0  # the listener's own block (it is a daemon thread; shutdown never waits on it)


@dataclass(frozen=True)
class SchedulerConfig:
    lock_ttl: float = 15.0
    misfire_grace: float = 60.0
    retention: tuple[tuple[str, float], ...] = ()
    prune_interval: float = 3600.0
    prune_batch: int = pruning.DEFAULT_BATCH
    once: bool = False

    @classmethod
    def from_settings(cls, *, once: bool = False) -> SchedulerConfig:
        return cls(
            lock_ttl=settings.JOBQUEUE_SCHEDULER_LOCK_TTL,
            misfire_grace=settings.JOBQUEUE_SCHEDULER_MISFIRE_GRACE,
            retention=tuple(settings.JOBQUEUE_RETENTION.items()),
            prune_interval=settings.JOBQUEUE_PRUNE_INTERVAL,
            prune_batch=settings.JOBQUEUE_PRUNE_BATCH,
            once=once,
        )

    @property
    def renew_every(self) -> float:
        return self.lock_ttl / 3


class Scheduler:
    """Fires schedules until SIGTERM/SIGINT (or, with ``once``, fires what is due and returns)."""

    def __init__(self, config: SchedulerConfig) -> None:
        self.config = config
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.broker = Broker(redis_client(), prefix=settings.JOBQUEUE_REDIS_PREFIX)
        self.stopping = threading.Event()
        self.wake = threading.Event()
        self.token: str | None = None
        self.renewed_at = 0.0  # monotonic time of the last acquire/renew
        self.redis_down = False
        self.next_prune = 0.0  # monotonic; the first leader round prunes
        self.pruner: threading.Thread | None = None
        self.grace = timedelta(seconds=config.misfire_grace)
        self.backoff = 0.0  # after a failed round: 0.25 s doubling to 5 s (database) or 1 s to 30 s (bug)

    # ------------------------------------------------------------------ lifecycle

    def run(self) -> int:
        """Returns the exit code: 0 after a clean stop."""
        self._install_signals()
        if self.config.once:
            # No election: row locks and idempotency keys make concurrent one-shot runs safe.
            fired, _more = firing.fire_due(grace=self.grace, stop=self.stopping)
            logger.info("scheduler --once: fired %d job(s)", len(fired))
            return 0
        threading.Thread(target=self._listen, name="listener", daemon=True).start()
        logger.info(
            "scheduler %s started (lock TTL %.1fs, misfire grace %.0fs)",
            self.name,
            self.config.lock_ttl,
            self.config.misfire_grace,
        )
        try:
            while not self.stopping.is_set():
                self.wake.clear()  # before reading the schedules: a change from now on wakes the wait below
                timeout = self._round()
                self.wake.wait(timeout)
        finally:
            self._shutdown()
        return 0

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()

    def _install_signals(self) -> None:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, lambda *_: self.stop())
            signal.signal(signal.SIGINT, lambda *_: self.stop())

    def _shutdown(self) -> None:
        if self.pruner is not None:
            self.pruner.join(timeout=5)
        if self.token is not None:
            try:
                self.broker.release_lock(LOCK_NAME, self.token)
            except redis.RedisError as exc:
                logger.warning("could not release the scheduler lock (%s); it lapses by its TTL", exc)
            self.token = None
        logger.info("scheduler %s stopped", self.name)

    # ------------------------------------------------------------------ one round

    def _round(self) -> float:
        """Elect, fire (as leader), and return how long to wait before the next round."""
        close_old_connections()
        if not self._lead():
            return self._follower_wait()
        try:
            _fired, more = firing.fire_due(grace=self.grace, stop=self.stopping)
            next_due = firing.next_due_at()
        except DatabaseError as exc:
            self.backoff = min(max(self.backoff * 2, 0.25), 5.0)
            logger.warning(
                "scheduler round failed (%s: %s); retrying in %.2fs", type(exc).__name__, exc, self.backoff
            )
            connection.close()
            return self.backoff
        except Exception:  # noqa: BLE001 - one bad round must not end the scheduler
            self.backoff = min(max(self.backoff * 2, 1.0), 30.0)
            logger.exception("scheduler round crashed; retrying in %.0fs", self.backoff)
            return self.backoff
        self.backoff = 0.0
        self._maybe_prune()
        if more:
            return 0.0
        wait = self.config.renew_every
        if next_due is not None:
            due_in = (next_due - timezone.now()).total_seconds()
            # A due row another scheduler holds locked: it is firing it; look again shortly.
            wait = min(wait, due_in if due_in > 0 else CONTENDED_WAIT)
        return max(wait, 0.0)

    def _lead(self) -> bool:
        """Take or renew the leader lock. With Redis unreachable every scheduler fires (still once)."""
        ttl_ms = int(self.config.lock_ttl * 1000)
        now = time.monotonic()
        if self.token is not None and now - self.renewed_at < self.config.renew_every / 2:
            return True  # renewed moments ago: spare a firing woken at its due time the round trip
        try:
            if self.token is not None and not self.broker.renew_lock(LOCK_NAME, self.token, ttl_ms):
                logger.warning("scheduler %s lost the leader lock", self.name)
                self.token = None
            if self.token is None:
                self.token = self.broker.acquire_lock(LOCK_NAME, ttl_ms)
                if self.token is not None:
                    logger.info("scheduler %s is the leader", self.name)
            self.renewed_at = now
        except redis.RedisError as exc:
            if not self.redis_down:
                logger.warning("Redis unreachable (%s): firing without the leader lock", exc)
            self.redis_down = True
            return True
        if self.redis_down:
            logger.info("Redis reachable again")
            self.redis_down = False
        return self.token is not None

    def _follower_wait(self) -> float:
        """Until the leader's lock would lapse, at most half a TTL."""
        wait = self.config.lock_ttl / 2
        try:
            remaining_ms = self.broker.lock_ttl_ms(LOCK_NAME)
        except redis.RedisError:
            return wait
        if remaining_ms is not None and remaining_ms >= 0:
            wait = min(wait, remaining_ms / 1000 + 0.01)
        elif remaining_ms == -2:  # gone (released or expired): try again at once
            wait = 0.0
        return wait

    # ------------------------------------------------------------------ pruning

    def _maybe_prune(self) -> None:
        if not self.config.prune_interval or not self.config.retention:
            return
        if time.monotonic() < self.next_prune or (self.pruner is not None and self.pruner.is_alive()):
            return
        self.next_prune = time.monotonic() + self.config.prune_interval
        self.pruner = threading.Thread(target=self._prune, name="pruner", daemon=True)
        self.pruner.start()

    def _prune(self) -> None:
        try:
            pruning.prune(dict(self.config.retention), batch=self.config.prune_batch, stop=self.stopping)
        except Exception:  # noqa: BLE001 - pruning must never take the scheduler down
            logger.exception("pruning failed; next attempt in %.0fs", self.config.prune_interval)
        finally:
            connection.close()

    # ------------------------------------------------------------------ waking on changes

    def _listen(self) -> None:
        """Block on the schedules channel; every message (and every reconnect) wakes the loop."""
        listener = Broker(redis_client(socket_timeout=LISTEN_BLOCK + 5), prefix=self.broker.prefix)
        backoff = 0.5
        while not self.stopping.is_set():
            pubsub = None
            try:
                pubsub = listener.subscribe_schedule_changes()
                self.wake.set()  # changes may have been missed while unsubscribed
                backoff = 0.5
                while not self.stopping.is_set():
                    if pubsub.get_message(timeout=LISTEN_BLOCK) is not None:
                        self.wake.set()
            except redis.RedisError as exc:
                logger.debug("schedule listener: %s; resubscribing in %.1fs", exc, backoff)
                self.stopping.wait(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                if pubsub is not None:
                    pubsub.close()
