"""Pure pieces of the lifecycle: backoff policy, status sets, and the settle outcome rules."""

from __future__ import annotations

import random

import pytest

from jobs.backoff import Backoff
from jobs.models import ACTIVE_STATUSES, RUNNABLE_STATUSES, TERMINAL_STATUSES, JobStatus


def test_backoff_doubles_per_attempt_up_to_the_cap():
    policy = Backoff(base=2, max=30, jitter=0)
    assert [policy.delay(n) for n in range(1, 7)] == [2, 4, 8, 16, 30, 30]


def test_backoff_jitter_stays_within_its_fraction_and_varies():
    policy = Backoff(base=10, max=100, jitter=0.25)
    rng = random.Random(7)
    delays = [policy.delay(1, rng) for _ in range(200)]
    assert all(7.5 <= d <= 12.5 for d in delays)
    assert len({round(d, 6) for d in delays}) > 150


@pytest.mark.parametrize("kwargs", [{"base": -1}, {"max": -1}, {"jitter": 1.5}])
def test_backoff_rejects_nonsense(kwargs):
    with pytest.raises(ValueError):
        Backoff(**kwargs)


def test_every_status_is_exactly_one_of_runnable_running_or_terminal():
    assert RUNNABLE_STATUSES | {JobStatus.RUNNING} | TERMINAL_STATUSES == set(JobStatus)
    assert not RUNNABLE_STATUSES & TERMINAL_STATUSES
    assert RUNNABLE_STATUSES | {JobStatus.RUNNING} == ACTIVE_STATUSES
