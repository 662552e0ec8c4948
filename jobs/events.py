"""Status events: every transition in ``jobs.services`` is announced after commit to dashboard websockets.

Emitting must cost the hot path almost nothing, so events are only appended to
a process-local buffer. One long-lived thread per process (with its own asyncio
loop, so the channel layer keeps one connection pool) packs the buffer at most
``FLUSHES_PER_SECOND`` times a second into a single ``group_send``: counter
deltas per status plus the latest state of at most ``MAX_JOBS_PER_MESSAGE`` jobs.
Payloads (args, kwargs, results) are never sent. A message that had to drop jobs
says so (``truncated``), and the page resyncs from the API.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from typing import Any

logger = logging.getLogger("jobs.events")

GROUP = "jobqueue.jobs"
MESSAGE_TYPE = "jobs.batch"
FLUSHES_PER_SECOND = 10
MAX_JOBS_PER_MESSAGE = 200
MAX_BUFFERED = 50_000  # beyond this, keep only counts (the page resyncs)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def job_event(
    *,
    id: Any,
    type: str,
    queue: str,
    status: str,
    previous: str | None,
    attempts: int,
    max_attempts: int | None = None,
    priority: int | None = None,
    worker: str = "",
    created_at: datetime | None = None,
    started_at: datetime | None = None,
    finished_at: datetime | None = None,
    run_at: datetime | None = None,
    error: str = "",
) -> dict[str, Any]:
    """One transition, as the dashboard sees it (no payload, no result; the error's first line only)."""
    return {
        "id": str(id),
        "type": type,
        "queue": queue,
        "status": str(status),
        "previous": str(previous) if previous is not None else None,
        "attempts": attempts,
        "max_attempts": max_attempts,
        "priority": priority,
        "worker": worker,
        # Datetimes stay objects here (formatting costs more than the rest of the event); take()
        # formats only the ones that go into a message.
        "created_at": created_at,
        "started_at": started_at,
        "finished_at": finished_at,
        "run_at": run_at,
        "error": error,
        "at": time.time(),
    }


def _formatted(event: dict[str, Any]) -> dict[str, Any]:
    error = event["error"]
    return {
        **event,
        "created_at": _iso(event["created_at"]),
        "started_at": _iso(event["started_at"]),
        "finished_at": _iso(event["finished_at"]),
        "run_at": _iso(event["run_at"]),
        "error": error.splitlines()[0][:300] if error else "",
    }


class Emitter:
    """The process's buffer and its flushing thread (started on first use, restarted after fork)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: list[dict[str, Any]] = []
        self._dropped: Counter[str] = Counter()  # status counts of events beyond MAX_BUFFERED
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self.enabled = True

    def emit(self, events: Iterable[dict[str, Any]]) -> None:
        if not self.enabled:
            return
        with self._lock:
            for event in events:
                if len(self._events) < MAX_BUFFERED:
                    self._events.append(event)
                else:
                    self._dropped[event["status"]] += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="jobqueue-events", daemon=True)
                self._thread.start()

    def take(self) -> dict[str, Any] | None:
        """Pack everything buffered into one message (or None when there is nothing)."""
        with self._lock:
            events, self._events = self._events, []
            dropped, self._dropped = self._dropped, Counter()
        if not events and not dropped:
            return None
        deltas: Counter[str] = Counter(dropped)
        latest: dict[str, dict[str, Any]] = {}
        for event in events:
            deltas[event["status"]] += 1
            if event["previous"]:
                deltas[event["previous"]] -= 1
            latest.pop(event["id"], None)  # re-insert so the newest transitions come last
            latest[event["id"]] = event
        jobs = list(latest.values())
        truncated = max(len(jobs) - MAX_JOBS_PER_MESSAGE, 0) + sum(dropped.values())
        return {
            "type": MESSAGE_TYPE,
            "pid": os.getpid(),
            "sent_at": time.time(),
            "deltas": {status: n for status, n in deltas.items() if n},
            "jobs": [_formatted(job) for job in jobs[-MAX_JOBS_PER_MESSAGE:]],
            "truncated": truncated,
        }

    def _run(self) -> None:
        try:
            asyncio.run(self._loop())
        except Exception:  # noqa: BLE001 - events are best effort; never take the process down
            logger.exception("status event emitter stopped")
        finally:
            with self._lock:
                self._thread = None

    async def _loop(self) -> None:
        from channels.layers import get_channel_layer

        interval = 1 / FLUSHES_PER_SECOND
        while True:
            started = time.monotonic()
            message = self.take()
            # Looked up per flush (a dict lookup) so a settings change takes effect; the layer's
            # connection pool belongs to this thread's loop and lives as long as it.
            layer = get_channel_layer()
            if layer is None:
                logger.info("no channel layer configured: status events are not sent")
                self.enabled = False
                return
            if message is not None:
                try:
                    await layer.group_send(GROUP, message)
                except Exception as exc:  # noqa: BLE001 - Redis down: drop this batch, pages resync later
                    logger.debug("could not send status events: %s", exc)
            if self._stopping.is_set():
                return  # at exit, after sending what was buffered
            await asyncio.sleep(max(interval - (time.monotonic() - started), 0.01))

    def stop(self, timeout: float = 2.0) -> None:
        """Send what is buffered and end the thread (at exit: no daemon thread may outlive Python)."""
        self._stopping.set()
        with self._lock:
            thread = self._thread
        if thread is not None:
            thread.join(timeout)


_emitter = Emitter()


def emit(events: Iterable[dict[str, Any]]) -> None:
    """Queue transitions for the dashboard; call only after the transaction that made them committed."""
    _emitter.emit(events)


def _after_fork() -> None:
    global _emitter
    _emitter = Emitter()


os.register_at_fork(after_in_child=_after_fork)
atexit.register(lambda: _emitter.stop())
