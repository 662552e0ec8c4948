"""Helpers shared by the dashboard websocket tests (``tests/integration/test_dashboard_consumer.py`` and
the process tests that watch real workers through it); this module holds no tests."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.test import Client

from jobs.dashboard.consumer import DashboardConsumer

FRAME_LIMIT = DashboardConsumer.FRAMES_PER_SECOND + DashboardConsumer.FRAME_BURST


def _cookie_for(*, staff: bool, username: str = "op") -> str:
    user = get_user_model().objects.create_user(username, password="pw-123-long", is_staff=staff)
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


def _communicator(session: str | None, origin: bytes | None = b"http://localhost") -> WebsocketCommunicator:
    from jobqueue_site.asgi import application

    headers = [(b"origin", origin)] if origin else []
    if session:
        headers.append((b"cookie", f"sessionid={session}".encode()))
    return WebsocketCommunicator(application, "/ws/dashboard/", headers=headers)


def run(scenario: Callable[[], Awaitable[Any]]) -> Any:
    """Run an async scenario; database calls inside go back to this thread (and its connection)."""
    return async_to_sync(scenario)()


async def _frames_until(
    communicator: WebsocketCommunicator, done: Callable[[list[dict]], bool], timeout: float = 60.0
) -> list[dict]:
    frames: list[dict] = []
    deadline = time.monotonic() + timeout
    while not done(frames):
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"timed out; frames so far: {frames}")
        try:
            frames.append(await communicator.receive_json_from(timeout=min(left, 5)))
        except TimeoutError:
            continue
    return frames


def _busiest_second(frames: list[dict]) -> int:
    """The most frames the server sent within any one second."""
    times = sorted(frame["frame_at"] for frame in frames)
    return max((sum(1 for t in times if start <= t < start + 1) for start in times), default=0)
