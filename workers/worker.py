"""One worker process: a loop that pops, claims, runs and settles jobs in batches.

Threads and what each owns:

- the loop (main thread): one ``dequeue`` script call, one PostgreSQL
  transaction (finish earlier outcomes + claim the new pops, ``services.settle``)
  and one ack per round; it blocks on a local event queue, never on a sleep;
- ``threads`` executor threads run handlers and post their outcomes;
- a waker blocks on the queues' Redis wake markers while the loop has room
  and nothing to pop, and posts a wake-up;
- a control thread blocks on this worker's Redis control list and signals a
  cancelled job's handler the moment ``cancel.lua`` pushes its id there;
- a keeper extends leases and heartbeats, forwards the cancel requests the
  control list missed (the fallback) and enforces timeouts (cooperative
  first, then the process is replaced);
- maintenance runs the lease reaper and the reconciler under Redis locks.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import redis
from django.conf import settings
from django.db import InterfaceError, OperationalError, close_old_connections, connection

from jobs import services
from jobs.context import JobContext
from jobs.dispatch import redis_client
from jobs.models import AttemptOutcome
from jobs.values import Outcome
from workers.broker import Broker, Popped
from workers.execution import CANCELLED_BY_OPERATOR, Finished, Running, effective_timeout, execute
from workers.maintenance import Maintenance

logger = logging.getLogger("workers.worker")

FLUSH_SIZE = 128  # outcomes per settle at most
FLUSH_AGE = 0.010  # seconds an outcome may wait for company
IDLE_WAIT = 1.0  # upper bound on any block, so shutdown is seen promptly
PREFETCH_HORIZON = 0.1  # seconds of work claimed ahead of the threads when jobs are short
EXIT_REPLACE = 3  # exit code asking the supervisor for a fresh process (a handler could not be stopped)

_WAKE = object()
_STOP = object()


@dataclass(frozen=True)
class WorkerConfig:
    queues: tuple[str, ...]
    threads: int = 8
    prefetch: int = 16
    prefetch_max: int = 256
    burst: bool = False
    lease_seconds: float = 30.0
    shutdown_grace: float = 30.0
    kill_grace: float = 5.0
    heartbeat_seconds: float = 5.0
    default_timeout: float = 300.0

    @classmethod
    def from_settings(
        cls, queues: Sequence[str], threads: int, prefetch: int, burst: bool, prefetch_max: int | None = None
    ) -> WorkerConfig:
        return cls(
            queues=tuple(queues),
            threads=threads,
            prefetch=prefetch,
            # --prefetch 0 means "never claim ahead of a free thread": no window either.
            prefetch_max=0
            if prefetch == 0
            else max(prefetch, settings.JOBQUEUE_PREFETCH_MAX if prefetch_max is None else prefetch_max),
            burst=burst,
            lease_seconds=settings.JOBQUEUE_LEASE_SECONDS,
            shutdown_grace=settings.JOBQUEUE_SHUTDOWN_GRACE,
            kill_grace=settings.JOBQUEUE_KILL_GRACE,
            heartbeat_seconds=settings.JOBQUEUE_HEARTBEAT_SECONDS,
            default_timeout=settings.JOBQUEUE_DEFAULT_TIMEOUT,
        )


class PrefetchWindow:
    """How many jobs to claim beyond the free threads: ``prefetch`` for slow jobs, up to ``maximum`` for fast.

    Every round has a fixed cost (a script call, one statement, an ack), so a round that carries a
    handful of short jobs wastes most of it: with 24 jobs a round a noop drain ran at ~2,600 jobs/s, with
    ~140 at ~6,000. The window follows the rate at which jobs finish and claims about
    ``PREFETCH_HORIZON`` seconds of work ahead, so a claimed job never waits long for a thread, and a
    slow job never waits behind more than the configured ``prefetch``.
    """

    def __init__(self, minimum: int, maximum: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.minimum, self.maximum = minimum, max(minimum, maximum)
        self.size = minimum
        self._clock = clock
        self._rate = 0.0
        self._count = 0
        self._since = clock()

    def finished(self, count: int) -> None:
        """Record ``count`` settled outcomes; re-size about every 50 ms."""
        self._count += count
        now = self._clock()
        elapsed = now - self._since
        if elapsed < 0.05:
            return
        rate = self._count / elapsed
        # Grow at once, shrink gradually; after an idle spell start again from what was just seen.
        self._rate = rate if rate >= self._rate or elapsed > 1.0 else 0.7 * self._rate + 0.3 * rate
        self._count, self._since = 0, now
        self.size = max(self.minimum, min(self.maximum, int(self._rate * PREFETCH_HORIZON)))


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:4]}"


class Worker:
    """Runs jobs from ``config.queues`` until stopped; call ``run()`` in the main thread."""

    def __init__(self, config: WorkerConfig, *, alive: Callable[[], None] | None = None) -> None:
        self.config = config
        self.name = worker_name()
        self.broker = Broker(redis_client(), prefix=settings.JOBQUEUE_REDIS_PREFIX)
        # BZPOPMIN holds its connection: the waker gets its own, with a socket timeout above the block.
        self.blocking = Broker(
            redis_client(socket_timeout=IDLE_WAIT + 5), prefix=settings.JOBQUEUE_REDIS_PREFIX
        )
        # BLPOP on the control list holds a connection too: the control thread gets its own.
        self.control = Broker(
            redis_client(socket_timeout=IDLE_WAIT + 5), prefix=settings.JOBQUEUE_REDIS_PREFIX
        )
        self.lease_ms = int(config.lease_seconds * 1000)
        self.window = PrefetchWindow(config.prefetch, config.prefetch_max)
        self.events: queue.SimpleQueue = queue.SimpleQueue()
        self.work: queue.SimpleQueue = queue.SimpleQueue()
        self.inflight: dict[str, Running] = {}  # claimed and not yet settled (waiting or running)
        # Cancels that arrived before the loop registered their claim: id -> monotonic arrival.
        self.early_cancels: dict[str, float] = {}
        self.unclaimed: list[Popped] = []  # popped, claim not yet committed (kept across a DB outage)
        self.outcomes: list[Outcome] = []
        self.finished: list[Outcome] = []  # atomic jobs' successes, committed by their threads, unreleased
        self.stopping = threading.Event()
        self.hungry = threading.Event()  # the loop has room and Redis had nothing ready
        self.replace_reason: str | None = None
        self.alive = alive or (lambda: None)
        self.maintenance = Maintenance(self.broker, self.name)
        self._threads: list[threading.Thread] = []

    # ------------------------------------------------------------------ lifecycle

    def run(self) -> int:
        """Work until SIGTERM/SIGINT (or, with burst, until nothing is ready); returns the exit code."""
        self._install_signals()
        self._start_threads()
        logger.info(
            "worker %s started: queues=%s threads=%d prefetch=%d..%d",
            self.name,
            ",".join(self.config.queues),
            self.config.threads,
            self.config.prefetch,
            self.config.prefetch_max,
        )
        try:
            self._loop()
        finally:
            code = self._shutdown()
        return code

    def stop(self) -> None:
        self.stopping.set()
        self.events.put(_STOP)

    def _install_signals(self) -> None:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, lambda *_: self.stop())
            signal.signal(signal.SIGINT, lambda *_: self.stop())

    def _start_threads(self) -> None:
        targets = [(self._executor, f"exec-{i}") for i in range(self.config.threads)]
        targets += [(self._waker, "waker"), (self._controller, "control"), (self._keeper, "keeper")]
        targets += [(self.maintenance.run, "maintenance")]
        for target, name in targets:
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    # ------------------------------------------------------------------ the loop

    def _loop(self) -> None:
        first_outcome_at: float | None = None
        empty = False
        backoff = 0.0
        while not self.stopping.is_set() and self.replace_reason is None:
            self.alive()
            # Finished-but-unsettled jobs free their place now: this round settles them.
            room = (
                self.capacity
                - len(self.inflight)
                + len(self.outcomes)
                + len(self.finished)
                - len(self.unclaimed)
            )
            flush_due = bool(self.outcomes) and (
                len(self.outcomes) >= FLUSH_SIZE
                or (first_outcome_at is not None and time.monotonic() - first_outcome_at >= FLUSH_AGE)
            )
            want_pop = room > 0 and not empty
            if (
                want_pop
                or flush_due
                or self.unclaimed
                or ((self.outcomes or self.finished) and self.events.empty())
            ):
                try:
                    popped_count = self._round(room if want_pop else 0)
                except (OperationalError, InterfaceError, redis.RedisError) as exc:
                    backoff = min(max(backoff * 2, 0.25), 5.0)
                    logger.warning(
                        "worker round failed (%s: %s); retrying in %.2fs", type(exc).__name__, exc, backoff
                    )
                    _drop_connection()
                    self._wait_events(backoff)
                    continue
                backoff = 0.0
                first_outcome_at = None
                if want_pop:
                    empty = popped_count < room
                if empty and not self.inflight and self.config.burst:
                    logger.info("burst mode: nothing left to run, exiting")
                    return
            if empty and len(self.inflight) < self.capacity:
                self.hungry.set()
            # Block for the next event: an outcome, a wake-up from the waker, or a stop. Delayed jobs
            # are timed here, by the local clock: Redis's blocking timeouts are only ~100 ms precise.
            timeout = IDLE_WAIT
            if self.outcomes:
                timeout = max(FLUSH_AGE - (time.monotonic() - (first_outcome_at or time.monotonic())), 0)
            due_in = self._due_in()
            if empty and due_in is not None:
                timeout = min(timeout, max(due_in, 0.002))
            event = self._wait_events(timeout)
            if event is _WAKE or (event is None and due_in is not None and self._due_in() == 0):
                empty = False
            elif isinstance(event, Outcome):
                if first_outcome_at is None:
                    first_outcome_at = time.monotonic()
                empty = False  # a thread is free again: look for more work at the next round
            elif type(event) is Finished:
                empty = False  # a thread is free again

    @property
    def capacity(self) -> int:
        """Jobs this process may hold claimed at once: its threads plus the prefetch window."""
        return self.config.threads + self.window.size

    def _due_in(self) -> float | None:
        """Seconds until the earliest delayed job the last dequeue saw is due (0 when overdue)."""
        due = self.maintenance.next_due_ms
        if due is None:
            return None
        return max((due - self.maintenance.redis_now_ms()) / 1000, 0.0)

    def _wait_events(self, timeout: float) -> object:
        """Take one event (waiting up to ``timeout``) and then everything else already queued."""
        first = None
        try:
            first = self.events.get(timeout=timeout) if timeout > 0 else self.events.get_nowait()
        except queue.Empty:
            return None
        result = first
        while True:
            self._absorb(first)
            if first is _WAKE:
                result = _WAKE
            try:
                first = self.events.get_nowait()
            except queue.Empty:
                return result

    def _absorb(self, event: object) -> None:
        if isinstance(event, Outcome):
            self.outcomes.append(event)
        elif type(event) is Finished:  # an atomic job its thread committed: the round only releases it
            self.finished.append(event.outcome)

    def _round(self, room: int) -> int:
        """One dequeue, one transaction, one ack: the batching contract."""
        popped: list[Popped] = []
        if room > 0 and not self.stopping.is_set():
            result = self.broker.dequeue(self.config.queues, room, self.lease_ms, self.name)
            popped = result.jobs
            self.maintenance.next_due_ms = result.next_due_ms
        self.unclaimed.extend(popped)
        outcomes = self.outcomes
        claimed = services.settle(self.broker, outcomes, self.unclaimed, self.name)
        self.outcomes = []
        self.unclaimed = []
        self.window.finished(len(outcomes))
        for outcome in outcomes:
            self.inflight.pop(outcome.job.id, None)
        if self.finished:
            self._release_finished()
        for job in claimed:
            running = Running(
                job=job,
                ctx=JobContext(
                    job_id=job.id,
                    type=job.type,
                    queue=job.queue,
                    attempt=job.attempt,
                    max_attempts=job.max_attempts,
                    worker=self.name,
                ),
                timeout=effective_timeout(job, self.config.default_timeout),
            )
            self.inflight[job.id] = running
            if self.early_cancels and self.early_cancels.pop(job.id, None) is not None:
                running.signal(CANCELLED_BY_OPERATOR)
            self.work.put(running)
        return len(popped)

    def _release_finished(self) -> None:
        """Atomic jobs their threads committed since the last round: one ack, their events and metrics."""
        finished, self.finished = self.finished, []
        self.window.finished(len(finished))
        for outcome in finished:
            self.inflight.pop(outcome.job.id, None)
        try:
            services.after_atomic_finish(self.broker, finished, self.name)
        except redis.RedisError as exc:  # committed: the leases expire and the reaper finds them finished
            logger.warning("releasing %d atomic job(s) failed: %s", len(finished), exc)

    # ------------------------------------------------------------------ threads

    def _executor(self) -> None:
        while True:
            running = self.work.get()
            if running is _STOP:
                return
            try:
                outcome = execute(running, self.name)
            except Exception as exc:  # noqa: BLE001 - a bug here must not kill the thread
                logger.exception("executor failed on job %s", running.job.id)
                outcome = services.after_failure(running.job, AttemptOutcome.FAILED, f"worker error: {exc!r}")
                running.done = True
            self.events.put(outcome)

    def _waker(self) -> None:
        while not self.stopping.is_set():
            if not self.hungry.wait(IDLE_WAIT):
                continue
            self.hungry.clear()
            try:
                self.blocking.wait_for_work(self.config.queues, IDLE_WAIT)
            except redis.RedisError as exc:
                logger.warning("waiting for work failed (%s); retrying", exc)
                time.sleep(IDLE_WAIT)
            self.events.put(_WAKE)

    def _controller(self) -> None:
        """Signal cancelled jobs the moment ``cancel.lua`` pushes their ids onto our control list."""
        while not self.stopping.is_set() or self.inflight:  # running jobs may be cancelled during shutdown
            try:
                ids = self.control.next_cancels(self.name, IDLE_WAIT)
            except redis.RedisError as exc:
                logger.warning("waiting for cancel requests failed (%s); retrying", exc)
                self.stopping.wait(IDLE_WAIT)
                continue
            now = time.monotonic()
            for job_id in ids:
                self.cancel_job(job_id, now)
            if self.early_cancels:  # ids that finished before their push arrived, or were never ours
                for job_id, at in list(self.early_cancels.items()):
                    if now - at > 60:
                        self.early_cancels.pop(job_id, None)

    def cancel_job(self, job_id: str, now: float | None = None) -> None:
        """Signal ``job_id``'s handler to stop; a claim the loop has not registered yet is signalled then."""
        if running := self.inflight.get(job_id):
            running.signal(CANCELLED_BY_OPERATOR)
        else:
            self.early_cancels[job_id] = time.monotonic() if now is None else now
            # The loop may have registered it meanwhile (it checks early_cancels after registering).
            if (running := self.inflight.get(job_id)) and self.early_cancels.pop(job_id, None) is not None:
                running.signal(CANCELLED_BY_OPERATOR)

    def _keeper(self) -> None:
        """Extend leases, heartbeat, pass on cancels, enforce timeouts; every second at most."""
        next_extend = next_beat = 0.0
        while not self.stopping.is_set() or self.inflight:
            now = time.monotonic()
            try:
                if now >= next_extend:
                    self._extend_leases()
                    next_extend = now + self.config.lease_seconds / 3
                if now >= next_beat and not self.stopping.is_set():
                    self.broker.heartbeat(self.name, self._info(), int(self.config.heartbeat_seconds * 3000))
                    next_beat = now + self.config.heartbeat_seconds
            except redis.RedisError as exc:
                logger.warning("lease/heartbeat update failed: %s", exc)
            self._enforce_deadlines()
            if self.stopping.wait(0.2) and not self.inflight:
                return

    def _extend_leases(self) -> None:
        held = [(r.job.id, r.job.token, r.job.queue) for r in list(self.inflight.values())]
        held += [(p.id, p.token, p.queue) for p in list(self.unclaimed)]
        for start in range(0, len(held), 1000):
            result = self.broker.extend(held[start : start + 1000], self.lease_ms, worker=self.name)
            for job_id in result.cancel:  # the fallback: a control-list push lost with a connection
                if running := self.inflight.get(job_id):
                    running.signal(CANCELLED_BY_OPERATOR)
            for job_id in result.lost:
                if running := self.inflight.get(job_id):
                    running.signal("lease lost: another worker now owns this job")

    def _enforce_deadlines(self) -> None:
        now = time.monotonic()
        for running in list(self.inflight.values()):
            if running.started is None or running.done:
                continue
            if running.signalled_at is None and now - running.started > running.timeout:
                running.signal(f"timed out after {running.timeout:g}s", timed_out=True)
            elif running.signalled_at is not None and now - running.signalled_at > self.config.kill_grace:
                self.replace_reason = (
                    f"job {running.job.id} ({running.job.type}) ignored '{running.ctx.reason}' for "
                    f"{self.config.kill_grace:g}s"
                )
                self.events.put(_STOP)
                return

    def _info(self) -> dict[str, object]:
        return {
            "hostname": socket.gethostname(),
            "pid": os.getpid(),
            "queues": list(self.config.queues),
            "concurrency": self.config.threads,
            "current_jobs": [r.job.id for r in list(self.inflight.values()) if r.started is not None],
        }

    # ------------------------------------------------------------------ shutdown

    def _shutdown(self) -> int:
        """Stop popping; let running jobs finish within the grace period; give back the rest."""
        self.stopping.set()
        if self.replace_reason:
            return self._replace()
        waiting = self._drain_work_queue()
        deadline = time.monotonic() + self.config.shutdown_grace
        try:
            self._settle_now()
            self._give_back(waiting)
            while any(not r.done for r in self.inflight.values()) and time.monotonic() < deadline:
                self._wait_events(0.05)
                # Record what finished at once: a second Ctrl-C (SIGKILL) must not lose a finished
                # job's success and have the reaper run it again. The 50 ms wait batches them.
                if self.outcomes:
                    self._settle_now()
            self._wait_events(0)
            self._settle_now()
            leftover = list(self.inflight.values())
            if leftover:
                logger.warning(
                    "shutdown grace of %gs ran out: giving back %d running job(s)",
                    self.config.shutdown_grace,
                    len(leftover),
                )
                self._give_back(leftover)
        except (OperationalError, InterfaceError, redis.RedisError) as exc:
            logger.error("could not settle on shutdown (%s); leases will expire and the reaper recovers", exc)
        self._finish_threads()
        logger.info("worker %s stopped", self.name)
        return 0

    def _replace(self) -> int:
        """A handler ignored its cancel/timeout: record it, give back the others, exit for a new process."""
        logger.error("replacing this worker process: %s", self.replace_reason)
        self._drain_work_queue()
        self._wait_events(0)
        stuck = [r for r in self.inflight.values() if r.signalled_at is not None and not r.done]
        for running in stuck:
            reason = f"{running.ctx.reason}; the handler did not stop, so its worker process was replaced"
            kind = AttemptOutcome.TIMED_OUT if running.timed_out else AttemptOutcome.CANCELLED
            self.outcomes.append(services.after_failure(running.job, kind, reason))
        try:
            self._settle_now()
            self._give_back([r for r in self.inflight.values() if r.job.id not in {s.job.id for s in stuck}])
        except (OperationalError, InterfaceError, redis.RedisError) as exc:
            logger.error("could not settle before replacement (%s); leases will expire", exc)
        self._finish_threads(wait=False)
        return EXIT_REPLACE

    def _drain_work_queue(self) -> list[Running]:
        """Take back the jobs no thread has started."""
        drained = []
        while True:
            try:
                drained.append(self.work.get_nowait())
            except queue.Empty:
                return drained

    def _settle_now(self) -> None:
        if self.outcomes or self.unclaimed or self.finished:
            self._round(0)

    def _give_back(self, jobs: list[Running]) -> None:
        if not jobs:
            return
        services.give_back(self.broker, [r.job for r in jobs])
        for running in jobs:
            self.inflight.pop(running.job.id, None)

    def _finish_threads(self, wait: bool = True) -> None:
        self.maintenance.stop()
        for _ in range(self.config.threads):
            self.work.put(_STOP)
        with contextlib.suppress(redis.RedisError):
            self.broker.remove_worker(self.name)
            self.broker.drop_cancels(self.name)
        if wait:
            for thread in self._threads:
                thread.join(timeout=2)


def _drop_connection() -> None:
    """After a database error, close this thread's connection so the next round reconnects."""
    with contextlib.suppress(Exception):  # the connection is already broken
        connection.close()
    close_old_connections()
