"""The dashboard websocket: staff only, Origin-checked, forwards batched status events in order.

A real worker's run seen through the socket: ``tests/processes/test_events_from_workers.py``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session

from jobs import events
from jobs.dashboard.consumer import CLOSE_UNAUTHORIZED, DashboardConsumer
from tests.support.dashboard import (
    FRAME_LIMIT,
    _busiest_second,
    _communicator,
    _cookie_for,
    _frames_until,
    run,
)

pytestmark = pytest.mark.django_db(transaction=True)


def test_an_anonymous_connection_is_refused(channel_layer):
    async def scenario() -> tuple[bool, Any]:
        communicator = _communicator(None)
        connected, code = await communicator.connect(timeout=15)
        await communicator.disconnect(timeout=15)
        return connected, code

    connected, _ = run(scenario)
    assert not connected


def test_a_non_staff_user_is_refused(channel_layer):
    session = _cookie_for(staff=False)

    async def scenario() -> bool:
        communicator = _communicator(session)
        connected, _ = await communicator.connect(timeout=15)
        await communicator.disconnect(timeout=15)
        return connected

    assert not run(scenario)


def test_a_staff_session_from_a_foreign_origin_is_refused(channel_layer):
    session = _cookie_for(staff=True)

    async def scenario() -> tuple[bool, bool]:
        foreign = _communicator(session, origin=b"https://evil.example")
        refused, _ = await foreign.connect(timeout=15)
        await foreign.disconnect(timeout=15)
        missing = _communicator(session, origin=None)
        no_origin, _ = await missing.connect(timeout=15)
        await missing.disconnect(timeout=15)
        return refused, no_origin

    assert run(scenario) == (False, False)


def _message(jobs: list[dict], deltas: dict[str, int] | None = None, truncated: int = 0) -> dict:
    return {
        "type": events.MESSAGE_TYPE,
        "pid": 1,
        "sent_at": time.time(),
        "deltas": deltas or {},
        "jobs": jobs,
        "truncated": truncated,
    }


def _event(job_id: str, status: str, queue: str = "default", previous: str | None = None) -> dict:
    return events.job_event(
        id=job_id, type="test.ok", queue=queue, status=status, previous=previous, attempts=0
    )


def test_a_subscription_filters_jobs_server_side_but_not_the_counters(channel_layer):
    session = _cookie_for(staff=True)

    async def scenario() -> list[dict]:
        layer = get_channel_layer()
        communicator = _communicator(session)
        await communicator.connect(timeout=15)
        await communicator.receive_json_from(timeout=5)
        await communicator.send_json_to({"action": "subscribe", "filters": {"queue": ["high"]}, "job": None})
        await asyncio.sleep(0.2)  # the subscription is handled before the next group message
        await layer.group_send(
            events.GROUP,
            _message(
                [_event("a", "queued", "high"), _event("b", "queued", "low")],
                deltas={"queued": 2},
            ),
        )
        first = await communicator.receive_json_from(timeout=5)
        # "a" changes status and is still wanted; "c" is in another queue and stays out.
        await layer.group_send(
            events.GROUP,
            _message([_event("a", "running", "high", "queued"), _event("c", "running", "low", "queued")]),
        )
        second = await communicator.receive_json_from(timeout=5)
        await communicator.disconnect(timeout=15)
        return [first, second]

    first, second = run(scenario)
    assert [job["id"] for job in first["jobs"]] == ["a"]
    assert first["deltas"] == {"queued": 2}
    assert [(job["id"], job["status"]) for job in second["jobs"]] == [("a", "running")]


def test_a_job_that_leaves_the_filter_is_sent_once_more_so_the_page_can_drop_its_row(channel_layer):
    session = _cookie_for(staff=True)

    async def scenario() -> list[dict]:
        layer = get_channel_layer()
        communicator = _communicator(session)
        await communicator.connect(timeout=15)
        await communicator.receive_json_from(timeout=5)
        await communicator.send_json_to({"action": "subscribe", "filters": {"status": ["queued"]}})
        await asyncio.sleep(0.2)
        await layer.group_send(events.GROUP, _message([_event("a", "queued")]))
        first = await communicator.receive_json_from(timeout=5)
        await layer.group_send(events.GROUP, _message([_event("a", "running", previous="queued")]))
        second = await communicator.receive_json_from(timeout=5)
        await communicator.disconnect(timeout=15)
        return [first, second]

    first, second = run(scenario)
    assert [job["status"] for job in first["jobs"]] == ["queued"]
    assert [job["status"] for job in second["jobs"]] == ["running"]


def test_bursts_are_coalesced_into_a_few_frames_a_second_with_summed_deltas(channel_layer):
    session = _cookie_for(staff=True)

    async def scenario() -> list[dict]:
        layer = get_channel_layer()
        communicator = _communicator(session)
        await communicator.connect(timeout=15)
        await communicator.receive_json_from(timeout=5)
        for i in range(30):  # 30 emitter messages in ~0.3 s, as from several busy processes
            await layer.group_send(
                events.GROUP,
                _message([_event(f"job-{i % 5}", "running"), _event(f"new-{i}", "queued")], {"queued": 1}),
            )
            await asyncio.sleep(0.01)
        frames = await _frames_until(
            communicator, lambda frames: sum(f["deltas"].get("queued", 0) for f in frames) >= 30, timeout=10
        )
        await communicator.disconnect(timeout=15)
        return frames

    frames = run(scenario)
    assert len(frames) < 10  # 30 messages
    assert _busiest_second(frames) <= FRAME_LIMIT
    assert sum(frame["deltas"]["queued"] for frame in frames) == 30
    for frame in frames:  # the latest state of each job, once per frame
        ids = [job["id"] for job in frame["jobs"]]
        assert len(ids) == len(set(ids))


def test_a_frame_holds_at_most_200_jobs_and_counts_the_rest_as_truncated(channel_layer):
    session = _cookie_for(staff=True)

    async def scenario() -> list[dict]:
        layer = get_channel_layer()
        communicator = _communicator(session)
        await communicator.connect(timeout=15)
        await communicator.receive_json_from(timeout=5)
        await layer.group_send(events.GROUP, _message([_event(f"j{i}", "queued") for i in range(150)]))
        await layer.group_send(
            events.GROUP, _message([_event(f"k{i}", "queued") for i in range(150)], truncated=7)
        )
        frames = await _frames_until(
            communicator, lambda frames: sum(len(f["jobs"]) + f["truncated"] for f in frames) >= 307
        )
        await communicator.disconnect(timeout=15)
        return frames

    frames = run(scenario)
    assert all(len(frame["jobs"]) <= DashboardConsumer.MAX_JOBS_PER_FRAME for frame in frames)
    assert sum(len(frame["jobs"]) + frame["truncated"] for frame in frames) == 307
    assert frames[-1]["jobs"][-1]["id"] == "k149"  # the newest survive


def _log_out(session: str) -> None:
    Session.objects.filter(session_key=session).delete()  # logged out elsewhere


def _drop_staff(session: str) -> None:
    get_user_model().objects.filter(username="op").update(is_staff=False)


@pytest.mark.parametrize("revoke", [_log_out, _drop_staff], ids=["session_ends", "staff_flag_lost"])
def test_the_socket_closes_when_the_user_may_no_longer_watch(channel_layer, monkeypatch, revoke):
    monkeypatch.setattr(DashboardConsumer, "SESSION_RECHECK_SECONDS", 0.2)
    session = _cookie_for(staff=True)

    async def scenario() -> dict:
        communicator = _communicator(session)
        connected, _ = await communicator.connect(timeout=15)
        assert connected
        await communicator.receive_json_from(timeout=5)
        await sync_to_async(revoke)(session)
        closed = await communicator.receive_output(timeout=5)
        await communicator.disconnect(timeout=15)  # what daphne sends once the socket is closed
        return closed

    closed = run(scenario)
    assert closed["type"] == "websocket.close" and closed["code"] == CLOSE_UNAUTHORIZED


def test_a_message_that_arrives_while_a_frame_is_being_sent_is_not_held_back(channel_layer, monkeypatch):
    """At idle no later message comes to flush it: the consumer must send it by itself."""
    original = DashboardConsumer.send_json

    async def slow_send(self: DashboardConsumer, content: dict, close: bool = False) -> None:
        if content.get("type") == "batch":
            await asyncio.sleep(0.5)
        await original(self, content, close)

    monkeypatch.setattr(DashboardConsumer, "send_json", slow_send)
    session = _cookie_for(staff=True)

    async def scenario() -> list[dict]:
        layer = get_channel_layer()
        communicator = _communicator(session)
        await communicator.connect(timeout=15)
        await communicator.receive_json_from(timeout=5)
        await layer.group_send(events.GROUP, _message([_event("first", "queued")]))
        await asyncio.sleep(0.2)  # the first frame is being sent now
        await layer.group_send(events.GROUP, _message([_event("second", "queued")]))
        frames = await _frames_until(communicator, lambda frames: len(frames) >= 2, timeout=5)
        await communicator.disconnect(timeout=15)
        return frames

    frames = run(scenario)
    assert [[job["id"] for job in frame["jobs"]] for frame in frames] == [["first"], ["second"]]


def test_an_idle_connection_outlives_the_channel_layers_blocking_receive(channel_layer):
    """channels-redis blocks 5 s per receive: the Redis socket timeout must not end that read first."""
    session = _cookie_for(staff=True)

    async def scenario() -> dict:
        layer = get_channel_layer()
        communicator = _communicator(session)
        await communicator.connect(timeout=15)
        await communicator.receive_json_from(timeout=5)
        await asyncio.sleep(7)  # nothing happens on the queue
        assert await communicator.receive_nothing(timeout=0.1)
        await layer.group_send(events.GROUP, _message([_event("late", "queued")]))
        frame = await communicator.receive_json_from(timeout=5)
        await communicator.disconnect(timeout=15)
        return frame

    assert [job["id"] for job in run(scenario)["jobs"]] == ["late"]
