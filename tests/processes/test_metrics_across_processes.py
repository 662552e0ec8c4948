"""Metrics add up across real worker processes: the counts in Redis, and the Prometheus exposition."""

from __future__ import annotations

import pytest

from jobs import metrics, services
from jobs.models import Job, JobAttempt, JobStatus
from tests.support.api import client_for, make_user, parse_exposition
from tests.support.helpers import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def _isolated(broker, settings) -> None:
    """Own Redis prefix per test, and PostgreSQL counts read fresh on every request."""
    settings.JOBQUEUE_API_STATS_PG_TTL = 0


def test_outcomes_durations_and_pickups_are_counted_across_worker_processes(start_worker, broker):
    services.enqueue_many([{"type": "test.ok", "kwargs": {"value": i}} for i in range(40)])
    services.enqueue("test.permanent")
    start_worker("--queues", "default", "--processes", "2")
    wait_until(
        lambda: Job.objects.filter(status__in=[JobStatus.SUCCEEDED, JobStatus.FAILED]).count() == 41,
        what="all jobs to finish",
    )

    # Each worker process writes its counts about once a second.
    snap = wait_until(
        lambda: (
            (s := metrics.snapshot(broker)).pickup.get("default") and s.pickup["default"].count == 41 and s
        ),
        what="both processes' counts to be flushed",
    )
    assert snap.outcomes[("test.ok", "default", "succeeded")] == 40
    assert snap.outcomes[("test.permanent", "default", "failed")] == 1
    assert snap.duration["test.ok"].count == 40
    assert snap.pickup["default"].count == 41
    assert sum(bucket.get("succeeded", 0) for bucket in snap.per_minute) == 40
    assert sum(bucket.get("started", 0) for bucket in snap.per_minute) == 41


@pytest.mark.usefixtures("_isolated")
def test_prometheus_metrics_add_up_across_two_worker_processes(start_worker, broker):
    scraper = client_for(make_user("prometheus", "view_job"), keyword="Bearer")
    services.enqueue_many([{"type": "test.sleep", "kwargs": {"seconds": 0.05}} for _ in range(40)])
    submitter = client_for(make_user("submitter", "add_job"))
    assert submitter.post("/api/jobs/", {"type": "test.permanent"}, format="json").status_code == 201

    start_worker("--queues", "default", "--processes", "2", "--threads", "2", "--prefetch", "1")
    wait_until(
        lambda: Job.objects.filter(status__in=[JobStatus.SUCCEEDED, JobStatus.FAILED]).count() == 41,
        timeout=60,
        what="all 41 jobs to finish",
    )
    wait_until(lambda: len(broker.workers(60_000)) == 2, what="both worker processes to heartbeat")
    finished = 'jobqueue_jobs_finished_total{queue="default",status="%s",type="%s"}'
    # Worker processes write their counts to Redis about once a second.
    wait_until(
        lambda: (
            parse_exposition(scraper.get("/metrics").content.decode()).get(
                finished % ("succeeded", "test.sleep")
            )
            == 40
        ),
        what="the workers' counts to be flushed",
    )

    response = scraper.get("/metrics")

    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    samples = parse_exposition(response.content.decode())
    assert len(set(JobAttempt.objects.values_list("worker", flat=True))) == 2, "both processes ran jobs"
    assert samples[finished % ("succeeded", "test.sleep")] == 40
    assert samples[finished % ("failed", "test.permanent")] == 1
    duration = [
        v
        for k, v in samples.items()
        if k.startswith("jobqueue_job_duration_seconds_bucket{") and k.endswith(',type="test.sleep"}')
    ]
    assert duration == sorted(duration) and duration[-1] == 40  # cumulative, ending at +Inf
    assert samples['jobqueue_job_duration_seconds_bucket{le="+Inf",type="test.sleep"}'] == 40
    assert samples['jobqueue_job_duration_seconds_count{type="test.sleep"}'] == 40
    assert samples['jobqueue_job_duration_seconds_sum{type="test.sleep"}'] >= 40 * 0.05
    assert samples['jobqueue_job_duration_seconds_bucket{le="0.025",type="test.sleep"}'] == 0
    assert samples['jobqueue_pickup_latency_seconds_count{queue="default"}'] == 41
    assert samples['jobqueue_pickup_latency_seconds_bucket{le="+Inf",queue="default"}'] == 41
    for state in ("ready", "delayed", "running"):
        assert samples[f'jobqueue_queue_depth{{queue="default",state="{state}"}}'] == 0
    assert samples['jobqueue_workers{state="alive"}'] == 2
    assert samples["jobqueue_dead_letters_open"] == 1 and samples["jobqueue_postgres_up"] == 1

    # The JSON views agree with the exposition.
    metrics = scraper.get("/api/metrics/").json()
    assert (
        metrics["completed_jobs"] == 40 and metrics["failed_jobs"] == 1 and metrics["dead_letter_jobs"] == 1
    )
    assert metrics["active_jobs"] == 0 and metrics["workers_alive"] == 2
    stats = scraper.get("/api/stats/").json()
    assert stats["last_hour"]["finished"] == 41 and stats["last_hour"]["started"] == 41
    assert stats["reconciliation"]["in_sync"] is True
    assert len(scraper.get("/api/workers/").json()) == 2
