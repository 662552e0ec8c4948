"""The dashboard's websocket: forwards status-event batches to staff browsers, a few frames a second.

Emitters (``jobs.events``) already pack transitions into at most ~10 messages a
second per process. One dashboard may still receive those from many processes,
so each connection coalesces what arrives into at most ``FRAMES_PER_SECOND``
frames a second (a token bucket: up to ``FRAME_BURST`` frames go out at once, so
the two or three transitions of one job on a quiet system are not held back),
each with counter deltas summed, the latest state per job and at most
``MAX_JOBS_PER_FRAME`` jobs, and filters jobs server-side to what the page
subscribed to. A frame that had to drop jobs says so (``truncated``) and the page
resyncs from the API, as it does after a reconnect.

Only authenticated, active staff sessions are accepted (the Origin is checked
by ``AllowedHostsOriginValidator`` in ``jobqueue_site.asgi``); the session is
re-checked every ``SESSION_RECHECK_SECONDS`` so a logout or a revoked staff flag
closes the socket instead of streaming on. The page's side of the protocol is
``jobs/static/jobs/dashboard/live.js``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, OrderedDict
from importlib import import_module
from types import SimpleNamespace
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings

from jobs import events

logger = logging.getLogger(__name__)

# Close codes the page understands (4000-4999 are for applications).
CLOSE_UNAUTHORIZED = 4401  # the session ended or lost its staff flag while connected
FILTER_KEYS = ("status", "queue", "type")
MAX_FILTER_VALUES = 50


def _is_staff(user: Any) -> bool:
    return bool(user is not None and user.is_authenticated and user.is_active and user.is_staff)


def _session_user_is_staff(session_key: str | None) -> bool:
    """Load the session afresh (not the copy cached in the scope) and check its user is still staff."""
    if not session_key:
        return False
    from django.contrib.auth import get_user

    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    if not store.exists(session_key):
        return False
    # django.contrib.auth.get_user only needs ``request.session``; it verifies the session auth hash,
    # so a password change also ends the stream.
    return _is_staff(get_user(SimpleNamespace(session=store)))


class DashboardConsumer(AsyncJsonWebsocketConsumer):
    """One dashboard page: staff only; forwards coalesced, filtered ``jobs.batch`` messages as frames.

    Client → server: ``{"action": "subscribe", "filters": {"status": [...], "queue": [...],
    "type": [...]}, "job": "<id>" | null}`` (empty lists mean everything; ``job`` narrows the jobs
    to one, for the job page). Server → client: ``{"type": "hello", ...}`` once, then
    ``{"type": "batch", "deltas": {...}, "jobs": [...], "truncated": n, "sent_at": t, "frame_at": t}``
    frames.
    Counter deltas are never filtered: the counters are global.
    """

    FRAMES_PER_SECOND = 4
    FRAME_BURST = 2
    MAX_JOBS_PER_FRAME = 200
    SESSION_RECHECK_SECONDS = 30.0
    # Ids recently sent to this page: a job that leaves the filter is still forwarded once, so a row
    # the page shows is updated (and dropped) rather than left stale.
    SHOWN_MEMORY = 1000

    async def connect(self) -> None:
        self.joined = False
        self.filters: dict[str, frozenset[str]] = {key: frozenset() for key in FILTER_KEYS}
        self.job_id: str | None = None
        self.shown: OrderedDict[str, None] = OrderedDict()
        self.pending_jobs: dict[str, dict[str, Any]] = {}
        self.pending_deltas: Counter[str] = Counter()
        self.pending_truncated = 0
        self.pending_since: float | None = None
        self.tokens = float(self.FRAME_BURST)
        self.tokens_at = time.monotonic()
        self.flush_task: asyncio.Task[None] | None = None
        self.recheck_task: asyncio.Task[None] | None = None
        user = self.scope.get("user")
        if not _is_staff(user):
            # Closing before accept() refuses the handshake (HTTP 403): nothing is ever sent.
            await self.close()
            return
        self.session_key = getattr(self.scope.get("session"), "session_key", None)
        await self.channel_layer.group_add(events.GROUP, self.channel_name)
        self.joined = True
        await self.accept()
        await self.send_json(
            {
                "type": "hello",
                "user": user.get_username(),
                "frames_per_second": self.FRAMES_PER_SECOND,
                "server_time": time.time(),
            }
        )
        self.recheck_task = asyncio.create_task(self._recheck_session())

    async def disconnect(self, code: int) -> None:
        for task in (self.flush_task, self.recheck_task):
            if task is not None and task is not asyncio.current_task():
                task.cancel()
        if getattr(self, "joined", False):
            self.joined = False
            await self.channel_layer.group_discard(events.GROUP, self.channel_name)

    # ------------------------------------------------------------------ client messages

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if not isinstance(content, dict) or content.get("action") != "subscribe":
            return
        raw = content.get("filters") if isinstance(content.get("filters"), dict) else {}
        self.filters = {key: self._values(raw.get(key)) for key in FILTER_KEYS}
        job = content.get("job")
        self.job_id = str(job)[:64] if job else None
        # Jobs buffered under the old filters may not match the new ones; the page resyncs anyway.
        self.pending_jobs.clear()
        self.shown.clear()

    @staticmethod
    def _values(value: Any) -> frozenset[str]:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            return frozenset()
        return frozenset(str(item)[:200] for item in value[:MAX_FILTER_VALUES] if item not in (None, ""))

    # ------------------------------------------------------------------ channel layer

    async def jobs_batch(self, message: dict[str, Any]) -> None:
        """A packed message from one process's emitter: filter it and add it to the next frame."""
        if not self.joined:
            return
        for status, n in message.get("deltas", {}).items():
            self.pending_deltas[status] += n
        self.pending_truncated += int(message.get("truncated") or 0)
        for job in message.get("jobs", ()):
            if not self._wanted(job):
                continue
            job_id = job["id"]
            held = self.pending_jobs.pop(job_id, None)
            # Messages from different processes may arrive out of order: keep the newest transition.
            self.pending_jobs[job_id] = job if held is None or job.get("at", 0) >= held.get("at", 0) else held
        overflow = len(self.pending_jobs) - self.MAX_JOBS_PER_FRAME
        if overflow > 0:
            for job_id in list(self.pending_jobs)[:overflow]:
                del self.pending_jobs[job_id]
            self.pending_truncated += overflow
        if self.pending_since is None:
            self.pending_since = message.get("sent_at") or time.time()
        if self.flush_task is None or self.flush_task.done():
            self.flush_task = asyncio.create_task(self._flush_soon())

    def _wanted(self, job: dict[str, Any]) -> bool:
        if self.job_id is not None:
            return job.get("id") == self.job_id
        if job.get("id") in self.shown:
            return True
        return all(not wanted or job.get(key) in wanted for key, wanted in self.filters.items())

    async def _flush_soon(self) -> None:
        # Loops rather than returning after one frame: messages that arrive while a frame is being
        # sent must not wait for the next message to be flushed (at idle there may be none).
        while self.joined and (self.pending_jobs or self.pending_deltas or self.pending_truncated):
            now = time.monotonic()
            self.tokens = min(self.FRAME_BURST, self.tokens + (now - self.tokens_at) * self.FRAMES_PER_SECOND)
            self.tokens_at = now
            if self.tokens < 1:
                # Everything arriving meanwhile joins this frame: that is the coalescing.
                await asyncio.sleep((1 - self.tokens) / self.FRAMES_PER_SECOND)
                continue
            self.tokens -= 1
            await self._flush()

    async def _flush(self) -> None:
        deltas = {status: n for status, n in self.pending_deltas.items() if n}
        jobs = list(self.pending_jobs.values())
        truncated, sent_at = self.pending_truncated, self.pending_since
        self.pending_jobs, self.pending_deltas, self.pending_truncated = {}, Counter(), 0
        self.pending_since = None
        if not (deltas or jobs or truncated) or not self.joined:
            return
        for job in jobs:
            self.shown.pop(job["id"], None)
            self.shown[job["id"]] = None
        while len(self.shown) > self.SHOWN_MEMORY:
            self.shown.popitem(last=False)
        await self.send_json(
            {
                "type": "batch",
                "deltas": deltas,
                "jobs": jobs,
                "truncated": truncated,
                "sent_at": sent_at,  # when the oldest emitter message in this frame was sent
                "frame_at": time.time(),
            }
        )

    # ------------------------------------------------------------------ session re-check

    async def _recheck_session(self) -> None:
        while self.joined:
            await asyncio.sleep(self.SESSION_RECHECK_SECONDS)
            try:
                still_staff = await database_sync_to_async(_session_user_is_staff)(self.session_key)
            except Exception:  # noqa: BLE001 - a database hiccup is not a logout; check again later
                logger.warning("dashboard session re-check failed", exc_info=True)
                continue
            if not still_staff:
                logger.info("dashboard session ended; closing the websocket")
                self.joined = False
                with contextlib.suppress(Exception):
                    await self.channel_layer.group_discard(events.GROUP, self.channel_name)
                await self.close(code=CLOSE_UNAUTHORIZED)
                return
