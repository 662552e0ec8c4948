"""The job types bench/atomic_jobs.py drains: the same no-op, batched and atomic (JOBQUEUE_IMPORTS)."""

from __future__ import annotations

from jobs.registry import job


@job("bench.batched_noop")
def batched_noop() -> None:
    return None


@job("bench.atomic_noop", atomic=True)
def atomic_noop() -> None:
    return None
