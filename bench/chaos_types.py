"""Job types of the chaos soak (bench/chaos.py); its workers import them through JOBQUEUE_IMPORTS.

Each is small and bounded: the longest runs a few seconds. Failures are deliberate and named in the
error text, so a dead letter's errors can be told apart from an engine fault.
"""

from __future__ import annotations

import random
import time

from jobs.context import current_job
from jobs.errors import PermanentError
from jobs.registry import job

FAST_BACKOFF = {"base": 0.2, "max": 1.0, "jitter": 0.25}


def _sleep(seconds: float) -> None:
    """Sleeps in small steps and stops when the job is cancelled or timed out."""
    ctx = current_job()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if ctx is not None:
            ctx.check_cancelled()
        time.sleep(0.02)


@job("chaos.noop")
def noop(n: int = 0) -> int:
    return n


@job("chaos.sleep", backoff=FAST_BACKOFF)
def sleep(seconds: float = 0.5) -> str:
    _sleep(seconds)
    return "slept"


@job("chaos.flaky", max_attempts=3, backoff=FAST_BACKOFF)
def flaky(rate: float = 0.3) -> str:
    """Fails each attempt with probability ``rate``: some succeed after retries, some die."""
    if random.random() < rate:
        raise RuntimeError(f"chaos: random failure (rate {rate})")
    return "ok"


@job("chaos.fail", max_attempts=2, backoff=FAST_BACKOFF)
def fail() -> None:
    raise ValueError("chaos: always fails")


@job("chaos.permanent")
def permanent() -> None:
    raise PermanentError("chaos: permanent failure")


@job("chaos.timeout", max_attempts=2, timeout=0.5, backoff=FAST_BACKOFF)
def slow(seconds: float = 3.0) -> str:
    """Outlives its 0.5 s timeout cooperatively: every attempt times out."""
    _sleep(seconds)
    return "never"


@job("chaos.hang", max_attempts=1, timeout=0.5)
def hang(seconds: float = 3.0) -> None:
    """Ignores its timeout (plain sleep): the hard limit replaces the worker process."""
    time.sleep(seconds)
