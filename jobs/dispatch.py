"""The process's connection to the Redis dispatch index, and the pusher that feeds it after commit.

Kept apart from services so tests and the worker can hand in their own Broker, and so a forked child
never reuses its parent's sockets or threads.

Why pushes are asynchronous: a job is durable once its INSERT commits; the Redis push only makes it
visible to workers sooner. Waiting for that second round trip halved one-by-one ``enqueue()`` rate, so
``push()`` hands placements to one daemon thread per process, which sends whatever has accumulated in
one ``enqueue`` script call per queue. A push that never happens (Redis down, process killed) is what the
reconciler repairs, exactly as before; ``flush()`` waits for the pushes queued so far (tests, scripts
that exit at once), and at exit the pusher sends what is left and ends its thread.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections.abc import Sequence

import redis
from django.conf import settings

from workers.broker import Broker, Placement

logger = logging.getLogger("jobs.dispatch")

LINGER_SECONDS = 0.002
"""While jobs stream in, wait this long before a send so one script call carries several of them."""
LINGER_AFTER_SECONDS = 0.005
"""Only linger when the previous send was this recent: a lone job (the idle case) goes out at once."""

_lock = threading.Lock()
_broker: Broker | None = None


def redis_client(**overrides: object) -> redis.Redis:
    """A client for settings.REDIS_URL with short timeouts, so an outage fails fast instead of hanging."""
    options: dict[str, object] = {
        "decode_responses": True,
        "socket_connect_timeout": 2.0,
        "socket_timeout": 5.0,
        "health_check_interval": 30,
    }
    options.update(overrides)
    return redis.Redis.from_url(settings.REDIS_URL, **options)


def get_broker() -> Broker:
    global _broker
    if _broker is None:
        with _lock:
            if _broker is None:
                _broker = Broker(redis_client(), prefix=settings.JOBQUEUE_REDIS_PREFIX)
    return _broker


def stale_after_ms() -> int:
    """A worker that missed about three heartbeats is stale: the one rule every page and metric uses
    (its info hash in Redis expires at the same age)."""
    return int(settings.JOBQUEUE_HEARTBEAT_SECONDS * 3 * 1000)


def reset_broker() -> None:
    """Forget the cached broker (after fork, or when settings change in tests); queued pushes keep theirs."""
    global _broker
    _broker = None


class Pusher:
    """One daemon thread that pushes committed jobs to Redis, batching whatever piled up meanwhile."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._pending: list[tuple[Broker, Sequence[Placement]]] = []
        self._busy = False
        self._closing = False
        self._thread: threading.Thread | None = None

    def push(self, broker: Broker, placements: Sequence[Placement]) -> None:
        """Queue placements for ``broker``; returns at once."""
        if not placements:
            return
        with self._cond:
            self._pending.append((broker, placements))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="jobqueue-pusher", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Wait until every placement queued so far has been sent (or given up on); False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._pending and not self._busy, timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Send what is pending, then end the thread (at exit: no daemon thread may outlive Python)."""
        self.flush(timeout)
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _run(self) -> None:
        last_send = 0.0
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending or self._closing)
                if not self._pending:
                    return
            if time.monotonic() - last_send < LINGER_AFTER_SECONDS:
                time.sleep(LINGER_SECONDS)  # jobs are streaming in: one script call for the next few
            with self._cond:
                batch, self._pending, self._busy = self._pending, [], True
            try:
                self._send(batch)
            finally:
                last_send = time.monotonic()
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    @staticmethod
    def _send(batch: list[tuple[Broker, Sequence[Placement]]]) -> None:
        by_broker: dict[int, tuple[Broker, list[Placement]]] = {}
        for broker, placements in batch:
            by_broker.setdefault(id(broker), (broker, []))[1].extend(placements)
        for broker, placements in by_broker.values():
            try:
                broker.enqueue(placements)
            except redis.RedisError as exc:
                logger.warning(
                    "Redis unavailable (%s): %d job(s) recorded in PostgreSQL, to be dispatched by the "
                    "reconciler",
                    exc,
                    len(placements),
                )
            except Exception:  # never let the thread die: the reconciler still repairs what is missed
                logger.exception("pushing %d job(s) to Redis failed; the reconciler will", len(placements))


_pusher = Pusher()


def push(placements: Sequence[Placement]) -> None:
    """Send committed jobs to Redis from the background pusher (see the module docstring)."""
    _pusher.push(get_broker(), placements)


def flush(timeout: float | None = 10.0) -> bool:
    """Wait until this process's pending pushes reached Redis (or failed and were logged)."""
    return _pusher.flush(timeout)


def _after_fork() -> None:
    global _pusher
    reset_broker()
    _pusher = Pusher()  # the parent's thread and lock do not exist in the child


os.register_at_fork(after_in_child=_after_fork)
atexit.register(lambda: _pusher.close(5.0))
