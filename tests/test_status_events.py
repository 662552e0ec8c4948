"""Status events: one per transition, packed per flush, announced after commit, without payloads."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from channels.layers import get_channel_layer
from django.db import transaction

from jobs import events, services
from jobs.models import Job, JobStatus
from tests.helpers import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def test_packing_keeps_the_latest_state_per_job_and_counts_deltas():
    emitter = events.Emitter()
    emitter.enabled = False  # pack by hand, no thread
    emitter._events = [
        events.job_event(id="a", type="t", queue="q", status="queued", previous=None, attempts=0),
        events.job_event(id="a", type="t", queue="q", status="running", previous="queued", attempts=1),
        events.job_event(id="b", type="t", queue="q", status="queued", previous=None, attempts=0),
        events.job_event(id="a", type="t", queue="q", status="succeeded", previous="running", attempts=1),
    ]
    message = emitter.take()

    assert message["type"] == events.MESSAGE_TYPE
    assert message["deltas"] == {"queued": 1, "succeeded": 1}
    assert [(job["id"], job["status"]) for job in message["jobs"]] == [("b", "queued"), ("a", "succeeded")]
    assert message["truncated"] == 0
    assert emitter.take() is None


def test_a_message_carries_at_most_200_jobs_and_says_how_many_it_dropped():
    emitter = events.Emitter()
    emitter._events = [
        events.job_event(id=str(i), type="t", queue="q", status="queued", previous=None, attempts=0)
        for i in range(250)
    ]
    message = emitter.take()
    assert len(message["jobs"]) == events.MAX_JOBS_PER_MESSAGE
    assert message["truncated"] == 50
    assert message["deltas"] == {"queued": 250}


def test_events_never_carry_payloads_or_results():
    event = events.job_event(
        id="a",
        type="t",
        queue="q",
        status="failed",
        previous="running",
        attempts=3,
        error="ValueError: bad\nTraceback ...",
    )
    emitter = events.Emitter()
    emitter._events = [event]
    (sent,) = emitter.take()["jobs"]
    assert "kwargs" not in sent and "args" not in sent and "result" not in sent
    assert sent["error"] == "ValueError: bad"


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
