"""Status events: one per transition, packed per flush, announced after commit, without payloads.

Here: packing. A real worker's events on the channel layer: ``tests/processes/test_events_from_workers.py``.
"""

from __future__ import annotations

import pytest

from jobs import events

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
