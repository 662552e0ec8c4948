"""The reconciler's warnings are trustworthy: it reports exactly the jobs Redis lacks, and a first start on a
new Redis is no alarm (only a change of epoch is)."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from django.utils import timezone

from jobs import dispatch, services
from tests.support.helpers import claim_as
from workers.broker import Broker, Placement
from workers.maintenance import Maintenance

pytestmark = pytest.mark.django_db(transaction=True)


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_reconciler_reports_and_redispatches_exactly_the_jobs_redis_lost(broker: Broker, caplog) -> None:
    running = services.enqueue("test.ok")
    claimed = claim_as("w1", broker, running)
    queued = services.enqueue_many([{"type": "test.ok"} for _ in range(20)])
    later = timezone.now() + timedelta(hours=1)
    delayed = services.enqueue_many([{"type": "test.ok", "run_at": later} for _ in range(5)])
    dispatch.flush()
    assert services.reconcile(broker, settle_seconds=0) == 0  # nothing lost yet: nothing reported
    assert _warnings(caplog) == []

    lost_queued, lost_delayed = queued[3:7], delayed[:2]
    assert broker.cancel([(str(j.id), j.queue) for j in [*lost_queued, *lost_delayed]]) == []
    assert broker.ack([(str(running.id), claimed.token)]) == 1  # the running job's lease is gone too

    with caplog.at_level(logging.WARNING, logger="jobs.services"):
        assert services.reconcile(broker, settle_seconds=0) == 7
    assert _warnings(caplog) == ["reconciler: re-dispatched 7 job(s) that Redis had lost"]
    assert {broker.location(str(j.id), j.queue) for j in lost_queued} == {"ready"}
    assert {broker.location(str(j.id), j.queue) for j in lost_delayed} == {"delayed"}
    assert broker.location(str(running.id), running.queue) == "leased"
    # Everything else stayed where it was, and a second pass finds nothing more.
    assert {broker.location(str(j.id), j.queue) for j in queued} == {"ready"}
    caplog.clear()
    assert services.reconcile(broker, settle_seconds=0) == 0
    assert _warnings(caplog) == []


def test_first_start_on_a_new_redis_is_info_and_an_epoch_change_is_a_warning(broker: Broker, caplog) -> None:
    services.enqueue_many([{"type": "test.ok"} for _ in range(5)])  # a busy queue before any worker ran
    dispatch.flush()
    caplog.set_level(logging.INFO, logger="workers.maintenance")
    maintenance = Maintenance(broker, "w1")
    maintenance.tick()
    infos = [r.getMessage() for r in caplog.records if r.name == "workers.maintenance"]
    assert len(infos) == 1 and infos[0].startswith("new Redis: recording epoch ")
    assert _warnings(caplog) == []

    caplog.clear()
    maintenance.tick()  # the same epoch again: nothing to say
    assert [r for r in caplog.records if r.name == "workers.maintenance"] == []

    caplog.clear()
    broker.client.delete(broker.key("epoch"))  # Redis lost its data (as far as the epoch tells)
    maintenance.tick()
    (warning,) = _warnings(caplog)
    assert warning.startswith("Redis epoch changed (") and "lost its data or was flushed" in warning


def test_reconcile_check_mode_reports_the_missing_ids_and_writes_nothing(broker: Broker) -> None:
    broker.enqueue([Placement("here", "default", 1)])
    placements = [Placement("here", "default", 1), Placement("gone", "default", 2, 10**15)]
    running = [("leased-gone", "tok", "default")]
    assert broker.reconcile_missing(placements, running) == ["gone", "leased-gone"]
    assert broker.location("gone", "default") is None and broker.location("leased-gone", "default") is None
    assert broker.reconcile(placements, running, 60_000) == 2
    assert broker.reconcile_missing(placements, running) == []
