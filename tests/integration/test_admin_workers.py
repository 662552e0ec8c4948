"""The admin's Workers page: heartbeats read from Redis, linked from the admin index, staff only."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from jobs.dispatch import reset_broker
from tests.support.admin import WORKERS, rows
from workers.broker import Broker

DAY_MS = 24 * 3600 * 1000


def heartbeat(broker: Broker, worker: str, *, seconds_ago: float = 0, **info: object) -> None:
    """Record a heartbeat as a worker does; ``seconds_ago`` back-dates it (a worker gone quiet)."""
    broker.heartbeat(worker, info, DAY_MS)
    if seconds_ago:
        broker.client.zadd(broker.key("workers"), {worker: broker.now_ms() - int(seconds_ago * 1000)})


@pytest.mark.django_db
def test_workers_page_lists_hostname_pid_queues_concurrency_current_jobs_and_state(admin_client, broker):
    job_id = "0b5e52b1-4c1e-4d6a-9b0e-2f4a0f6f1c11"
    heartbeat(
        broker,
        "web-1:101:aaaa",
        hostname="web-1",
        pid=101,
        queues=["high", "default"],
        concurrency=8,
        current_jobs=[job_id],
    )
    heartbeat(
        broker,
        "web-2:202:bbbb",
        seconds_ago=120,
        hostname="web-2",
        pid=202,
        queues=["low"],
        concurrency=2,
        current_jobs=[],
    )

    response = admin_client.get(reverse(WORKERS))

    assert response.status_code == 200
    alive, stale = rows(response.content.decode())  # alive first
    assert "web-1" in alive and ">101<" in alive and "high, default" in alive and ">8<" in alive
    assert f'href="{reverse("admin:jobs_job_change", args=[job_id])}"' in alive and job_id[:8] in alive
    assert '<span class="jq-badge jq-alive">alive</span>' in alive
    assert "web-2" in stale and ">202<" in stale and "low" in stale
    assert '<span class="jq-badge jq-stale">stale</span>' in stale
    assert re.search(r"\(2 min \d+ s ago\)", stale)
    assert "1 alive, 1 stale" in response.content.decode()


@pytest.mark.django_db
def test_a_worker_whose_info_expired_still_shows_by_its_id(admin_client, broker):
    broker.client.zadd(broker.key("workers"), {"old-host:77:cccc": broker.now_ms() - 3_600_000})

    html = admin_client.get(reverse(WORKERS)).content.decode()

    (row,) = rows(html)
    assert "old-host" in row and "stale" in row and "—" in row


@pytest.mark.django_db
def test_workers_page_without_workers_says_how_to_start_one(admin_client, broker):
    response = admin_client.get(reverse(WORKERS))

    assert response.status_code == 200
    assert "No worker has sent a heartbeat" in response.content.decode()


@pytest.mark.django_db
def test_workers_page_is_linked_from_the_admin_index(admin_client, broker):
    html = admin_client.get(reverse("admin:index")).content.decode()

    assert f'href="{reverse(WORKERS)}"' in html


@pytest.mark.django_db
def test_workers_page_is_for_staff_only(client, django_user_model, broker):
    url = reverse(WORKERS)
    assert client.get(url).status_code == 302  # anonymous: to the login page

    client.force_login(django_user_model.objects.create_user(username="visitor", password="pw-123456"))
    response = client.get(url)
    assert response.status_code == 302 and "/admin/login/" in response["Location"]

    client.force_login(
        django_user_model.objects.create_user(username="staff", password="pw-123456", is_staff=True)
    )
    assert client.get(url).status_code == 200  # any staff member, no model permission needed


@pytest.mark.django_db
def test_workers_have_no_add_change_or_delete_pages(admin_client, broker):
    assert admin_client.get("/admin/workers/worker/add/").status_code == 404
    assert admin_client.get("/admin/workers/worker/1/change/").status_code == 404


@pytest.fixture
def unreachable_redis(settings):
    settings.REDIS_URL = "unix:///nonexistent/jobqueue-test-redis.sock"
    reset_broker()
    yield
    reset_broker()


@pytest.mark.django_db
def test_workers_page_says_so_when_redis_is_unreachable(admin_client, unreachable_redis):
    response = admin_client.get(reverse(WORKERS))

    assert response.status_code == 200
    assert "Redis is unreachable" in response.content.decode()
