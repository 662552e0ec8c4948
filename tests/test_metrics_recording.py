"""Workers count every outcome and pickup in Redis, so all processes add to the same metrics."""

from __future__ import annotations

import pytest

from jobs import metrics, registry, services
from jobs.models import Job, JobStatus
from tests.helpers import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


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


def test_labels_outside_the_registry_and_configuration_are_folded():
    assert metrics.type_label("no.such.type") == "unregistered"
    assert metrics.queue_label("some-adhoc-queue") == "other"
    assert metrics.queue_label("default") == "default"


def test_the_app_wires_the_registry_into_type_labels_at_start_up(monkeypatch):
    """metrics does not import the registry: JobsConfig.ready() hands it ``registry.find``."""
    assert metrics._find_type is registry.find
    assert metrics.type_label("test.ok") == "test.ok"

    monkeypatch.setattr(metrics, "_find_type", None)  # before start-up: labels as given
    assert metrics.type_label("no.such.type") == "no.such.type"
    metrics.set_type_lookup(lambda name: None)
    assert metrics.type_label("test.ok") == "unregistered"
