"""A real worker's status events: they reach the channel layer after commit, in order, and a staff
dashboard socket receives them batched."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.db import transaction

from jobs import events, services
from jobs.models import Job, JobStatus
from tests.support.dashboard import (
    FRAME_LIMIT,
    _busiest_second,
    _communicator,
    _cookie_for,
    _frames_until,
    run,
)
from tests.support.helpers import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

LIFECYCLE = ["queued", "running", "succeeded"]


def _listen(messages: list[dict], ready: asyncio.Event, stop: asyncio.Event):
    async def run() -> None:
        layer = get_channel_layer()
        channel = await layer.new_channel()
        await layer.group_add(events.GROUP, channel)
        ready.set()
        try:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    messages.append(await asyncio.wait_for(layer.receive(channel), 0.2))
        finally:
            await layer.group_discard(events.GROUP, channel)

    return run


def test_a_worker_run_reaches_the_channel_layer_after_commit_in_order(start_worker, settings, redis_prefix):
    """queued → running → succeeded arrive, in that order, in batched messages from two processes."""
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [settings.REDIS_URL], "prefix": f"{redis_prefix}:channels"},
        }
    }
    import threading
    import time

    messages: list[dict] = []
    loop = asyncio.new_event_loop()
    ready, stop = asyncio.Event(), asyncio.Event()
    thread = threading.Thread(target=lambda: loop.run_until_complete(_listen(messages, ready, stop)()))
    thread.start()
    wait_until(ready.is_set, what="the listener to join the group")
    try:
        with transaction.atomic():
            job = services.enqueue("test.ok", kwargs={"value": "secret-ish"})
            time.sleep(1.0)  # ten flushes and receives: an event sent before the commit would be here
            assert not messages
        start_worker("--queues", "default", env={"JOBQUEUE_REDIS_PREFIX": redis_prefix})
        wait_until(lambda: Job.objects.get(pk=job.pk).status == JobStatus.SUCCEEDED, what="the job to run")
        seen = wait_until(
            lambda: (
                [j["status"] for m in messages for j in m["jobs"] if j["id"] == str(job.pk)][-1:]
                == ["succeeded"]
                and [j["status"] for m in messages for j in m["jobs"] if j["id"] == str(job.pk)]
            ),
            what="the succeeded event",
        )
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(5)
    assert seen == ["queued", "running", "succeeded"] or seen == ["queued", "succeeded"]
    assert all("secret-ish" not in str(m) for m in messages)


def _statuses(frames: list[dict], job_id: str) -> list[str]:
    return [job["status"] for frame in frames for job in frame.get("jobs", ()) if job["id"] == job_id]


def test_a_staff_connection_receives_a_real_worker_run_in_order_and_batched(channel_layer, start_worker):
    session = _cookie_for(staff=True)

    async def scenario() -> tuple[list[dict], list[str]]:
        communicator = _communicator(session)
        connected, _ = await communicator.connect(timeout=15)
        assert connected
        hello = await communicator.receive_json_from(timeout=5)
        assert hello["type"] == "hello" and hello["user"] == "op"
        jobs = await sync_to_async(
            lambda: [str(services.enqueue("test.ok", kwargs={"value": i}).pk) for i in range(20)]
        )()
        queued = await _frames_until(
            communicator, lambda frames: all(_statuses(frames, job) for job in jobs), timeout=20
        )
        await sync_to_async(start_worker)("--queues", "default", env={"JOBQUEUE_REDIS_PREFIX": channel_layer})
        ran = await _frames_until(
            communicator,
            lambda frames: all(_statuses(frames, job)[-1:] == ["succeeded"] for job in jobs),
        )
        await communicator.disconnect(timeout=15)
        return queued + ran, jobs

    frames, jobs = run(scenario)
    assert {frame["type"] for frame in frames} == {"batch"}
    for job in jobs:
        seen = _statuses(frames, job)
        assert seen[0] == "queued" and seen[-1] == "succeeded"
        positions = [LIFECYCLE.index(status) for status in seen]
        assert positions == sorted(positions), f"{job}: {seen} went backwards"
    # Batched: 20 jobs x 2-3 transitions arrive in a handful of frames, never more than a few a second.
    assert len(frames) < 20
    assert max(len(frame["jobs"]) for frame in frames) > 1
    assert _busiest_second(frames) <= FRAME_LIMIT
    totals: dict[str, int] = {}
    for frame in frames:
        for status, n in frame["deltas"].items():
            totals[status] = totals.get(status, 0) + n
    assert totals.get("succeeded") == 20
    assert totals.get("queued", 0) == 0 and totals.get("running", 0) == 0
    assert all("value" not in str(job) for frame in frames for job in frame["jobs"])  # no payloads
