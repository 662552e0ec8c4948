"""``/api/stats/``, ``/api/metrics/``, ``/metrics`` (Prometheus) and ``/api/health/``."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from jobs import services
from jobs.api.stats import windows
from jobs.dispatch import reset_broker
from tests.support.api import (
    claim,
    client_for,
    dead_job,
    make_user,
    parse_exposition,
    postgres_unreachable,
    retrying_job,
    succeeded_job,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _isolated(broker, settings) -> None:
    """Own Redis prefix per test, and PostgreSQL counts read fresh on every request."""
    settings.JOBQUEUE_API_STATS_PG_TTL = 0


# --------------------------------------------------------------------------- stats and JSON metrics


def test_stats_count_jobs_by_status_and_queue_and_reconcile_redis_with_postgresql(broker):
    succeeded_job(broker)
    dead_job(broker)
    claim(broker, services.enqueue("test.ok"))  # running
    retrying_job(broker, queue="low")
    queued = [services.enqueue("test.ok"), services.enqueue("test.ok", queue="high")]
    services.enqueue("test.ok", delay=3600)
    client = client_for(make_user("reader", "view_job"))

    stats = client.get("/api/stats/").json()

    assert stats["counts"] == {
        "scheduled": 1,
        "queued": 2,
        "running": 1,
        "retrying": 1,
        "succeeded": 1,
        "failed": 1,
        "cancelled": 0,
    }
    oldest = {queue: stats["queues"][queue].pop("oldest_age_seconds") for queue in ("default", "high", "low")}
    assert stats["queues"]["default"] == {"ready": 1, "delayed": 1, "running": 1}
    assert stats["queues"]["high"] == {"ready": 1, "delayed": 0, "running": 0}
    assert stats["queues"]["low"] == {"ready": 0, "delayed": 1, "running": 0}
    # The oldest waiting job's age: a number for queues with ready work, null otherwise.
    assert 0 <= oldest["default"] < 60 and 0 <= oldest["high"] < 60
    assert oldest["low"] is None
    assert stats["redis"] == {"ready": 2, "delayed": 2, "running": 1}
    assert stats["reconciliation"] == {
        "redis_active": 5,
        "postgres_active": 5,
        "difference": 0,
        "in_sync": True,
    }
    assert (
        stats["postgres"]["by_queue"]["low"]["retrying"] == 1 and stats["postgres"]["open_dead_letters"] == 1
    )
    assert stats["postgres"]["total_jobs"] >= 7
    assert stats["last_hour"]["started"] == 4  # four claims: done, dead, running, retrying
    assert stats["last_hour"]["succeeded"] == 1 and stats["last_hour"]["failed"] == 1
    assert stats["last_hour"]["retried"] == 1 and stats["last_hour"]["failures"] == 2
    # All of it happened moments ago: the sliding minute still holds every one (whatever the second).
    assert stats["last_hour"]["finished"] == 2 and stats["last_minute"]["finished"] == 2
    assert stats["workers"] == {"alive": 0, "stale": 0}

    # A push Redis lost (and the reconciler has not repaired yet) shows as a difference.
    broker.client.zrem(broker.key("ready", "high"), str(queued[1].pk))
    drift = client.get("/api/stats/").json()["reconciliation"]
    assert drift == {"redis_active": 4, "postgres_active": 5, "difference": 1, "in_sync": False}


def test_the_postgresql_counts_are_cached_briefly_in_redis(broker, settings):
    settings.JOBQUEUE_API_STATS_PG_TTL = 30
    client = client_for(make_user("reader", "view_job"))
    assert client.get("/api/stats/").json()["counts"]["queued"] == 0

    services.enqueue("test.ok")

    stats = client.get("/api/stats/").json()
    assert stats["counts"]["queued"] == 0  # PostgreSQL's view, as cached
    assert stats["redis"]["ready"] == 1  # Redis's, live
    assert broker.client.pttl(broker.key("api", "stats", "postgres")) > 0


def test_metrics_summarise_totals_queues_and_dead_letters(broker):
    succeeded_job(broker)
    dead_job(broker)
    retrying_job(broker)
    services.enqueue("test.ok")
    services.enqueue("test.ok", delay=600)

    response = client_for(make_user("reader", "view_job")).get("/api/metrics/")

    assert response.status_code == 200
    metrics = response.json()
    assert metrics["total_jobs"] >= 5
    assert {key: value for key, value in metrics.items() if key != "total_jobs"} == {
        "active_jobs": 3,
        "completed_jobs": 1,
        "failed_jobs": 1,
        "cancelled_jobs": 0,
        "dead_letter_jobs": 1,
        "queue_length": 1,
        "retry_queue_length": 1,
        "scheduled_jobs": 1,
        "running_jobs": 0,
        "workers_alive": 0,
        # Finished moments ago (one succeeded, one failed; one more failure is retrying): the sliding
        # minute estimate still counts each of them in full.
        "throughput_last_minute": 2,
        "failures_last_minute": 2,
    }


def test_the_last_minute_is_a_sliding_estimate_over_two_buckets():
    buckets = [{} for _ in range(58)] + [{"succeeded": 10}, {"succeeded": 4, "failed": 1}]

    minute, hour = windows(buckets, now=15.0)  # a quarter into the current minute

    assert minute["succeeded"] == round(4 + 10 * 0.75) and minute["failed"] == 1
    assert hour["succeeded"] == 14 and hour["finished"] == 15


def test_stats_and_metrics_need_authentication_and_redis(settings):
    client = client_for(make_user("reader", "view_job"))
    for url in ("/api/stats/", "/api/metrics/"):
        assert APIClient().get(url).status_code == 401
    settings.REDIS_URL = "unix:///nonexistent/redis.sock"
    reset_broker()

    for url in ("/api/stats/", "/api/metrics/"):
        response = client.get(url)
        assert response.status_code == 503 and response["Retry-After"] == "5"
        assert response.json() == {"detail": "Redis is unavailable; retry shortly."}


# --------------------------------------------------------------------------- Prometheus


def test_prometheus_metrics_need_a_staff_session_or_a_token_with_view_job():
    anonymous = APIClient().get("/metrics")
    plain_user = client_for(make_user("plain")).get("/metrics")
    staff = APIClient()
    staff.force_login(make_user("ops", staff=True))

    assert anonymous.status_code == 401 and anonymous["WWW-Authenticate"] == "Token"
    assert anonymous.content == b"# error: Authentication credentials were not provided.\n"
    assert plain_user.status_code == 403
    assert staff.get("/metrics").status_code == 200
    assert client_for(make_user("scraper", "view_job"), keyword="Bearer").get("/metrics").status_code == 200


def test_prometheus_metrics_are_served_whatever_the_scraper_accepts():
    client = client_for(make_user("ops", staff=True))
    accept = "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.2"

    response = client.get("/metrics", HTTP_ACCEPT=accept)

    assert response.status_code == 200
    parse_exposition(response.content.decode())


def test_prometheus_reports_postgresql_down_instead_of_failing_the_scrape(tmp_path):
    ops = make_user("ops", staff=True)
    client = APIClient()
    client.force_authenticate(ops)

    with postgres_unreachable(tmp_path):
        response = client.get("/metrics")

    assert response.status_code == 200
    samples = parse_exposition(response.content.decode())
    assert samples["jobqueue_postgres_up"] == 0 and "jobqueue_dead_letters_open" not in samples


# --------------------------------------------------------------------------- health


def test_health_reports_both_services_without_credentials():
    response = APIClient().get("/api/health/")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"]["status"] == "ok" and body["database"]["latency_ms"] >= 0
    assert body["redis"]["status"] == "ok" and body["redis"]["latency_ms"] >= 0


def test_health_is_503_when_redis_is_down(settings):
    settings.REDIS_URL = "unix:///nonexistent/redis.sock"
    reset_broker()

    response = APIClient().get("/api/health/")

    assert response.status_code == 503 and response["Retry-After"] == "5"
    body = response.json()
    assert body["status"] == "unavailable" and body["database"]["status"] == "ok"
    assert body["redis"] == {"status": "down", "latency_ms": None, "error": "ConnectionError"}


def test_health_is_503_when_postgresql_is_down(tmp_path):
    with postgres_unreachable(tmp_path):
        response = APIClient().get("/api/health/")

    assert response.status_code == 503
    body = response.json()
    assert body["database"] == {"status": "down", "latency_ms": None, "error": "OperationalError"}
    assert body["redis"]["status"] == "ok"
    assert APIClient().get("/api/health/").status_code == 200
