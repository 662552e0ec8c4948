"""Job types used only by the tests; worker processes import them through JOBQUEUE_IMPORTS."""

from __future__ import annotations

import os
import time

from jobs.context import current_job
from jobs.errors import PermanentError
from jobs.registry import job


@job("test.ok")
def ok(value: object = None) -> object:
    return value


@job("test.fail", max_attempts=3, backoff={"base": 0.2, "max": 1.0, "jitter": 0.25})
def always_fails(message: str = "boom") -> None:
    raise ValueError(message)


@job("test.permanent")
def permanent(message: str = "cannot ever work") -> None:
    raise PermanentError(message)


@job("test.flaky", backoff={"base": 0.1, "max": 0.5, "jitter": 0.0})
def flaky(fail_times: int = 1) -> str:
    """Fails its first ``fail_times`` attempts, then succeeds."""
    ctx = current_job()
    assert ctx is not None
    if ctx.attempt <= fail_times:
        raise RuntimeError(f"flaky failure on attempt {ctx.attempt}")
    return f"succeeded on attempt {ctx.attempt}"


def sleep_cooperatively(seconds: float, step: float = 0.02) -> str:
    """Sleeps in steps of ``step`` seconds and stops when the job is cancelled or timed out."""
    ctx = current_job()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if ctx is not None:
            ctx.check_cancelled()
        time.sleep(step)
    return "slept"


@job("test.sleep")
def cooperative_sleep(seconds: float = 1.0, step: float = 0.02) -> str:
    """Sleeps in small steps (checks for a cancel every ``step`` s): stops when cancelled or timed out."""
    return sleep_cooperatively(seconds, step)


def _wait_for_the_request(seconds: float) -> None:
    """Return as soon as a cancel request is committed (read from PostgreSQL, usually before the worker
    signals it) or signalled, or ``seconds`` pass; the handler then goes on as if nothing happened."""
    from jobs.models import Job

    ctx = current_job()
    assert ctx is not None
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not ctx.cancelled.is_set():
        if Job.objects.filter(pk=ctx.job_id, cancel_requested_at__isnull=False).exists():
            return
        time.sleep(0.005)


@job("test.finish_despite_cancel")
def finish_despite_cancel(seconds: float = 30.0) -> str:
    """Ignores a cancel: once requested (or after ``seconds``) it returns a result as if nothing happened."""
    _wait_for_the_request(seconds)
    return "finished anyway"


@job("test.raise_despite_cancel")
def raise_despite_cancel(seconds: float = 30.0, permanent: bool = False) -> None:
    """Ignores a cancel: once requested (or after ``seconds``) it raises an error of its own."""
    _wait_for_the_request(seconds)
    if permanent:
        raise PermanentError("gave up on its own")
    raise ValueError("failed on its own")


@job("test.hang")
def hang(seconds: float = 3600.0) -> None:
    """Ignores cancel and timeout signals: only replacing the process stops it."""
    time.sleep(seconds)


@job("test.crash_once", backoff={"base": 0.1, "max": 0.1, "jitter": 0.0})
def crash_once() -> str:
    """Kills its own worker process on the first attempt (as a segfault would)."""
    ctx = current_job()
    assert ctx is not None
    if ctx.attempt == 1:
        os._exit(17)
    return "survived"


@job("test.needs_args")
def needs_args(count: int) -> int:
    return count * 2


ATOMIC_EFFECTS_TABLE = "test_atomic_effects"


def create_atomic_effects_table() -> None:
    """The table ``test.atomic_write`` writes to (no model: tests create it in the test database)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TABLE IF NOT EXISTS {ATOMIC_EFFECTS_TABLE} "
            "(job_id uuid NOT NULL, attempt int NOT NULL, worker text NOT NULL)"
        )


def atomic_effects(job_ids: list[str]) -> dict[str, int]:
    """{job id: rows ``test.atomic_write`` committed for it} for those of ``job_ids`` that have rows."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT job_id::text, count(*) FROM {ATOMIC_EFFECTS_TABLE} WHERE job_id = ANY(%s::uuid[]) "
            "GROUP BY job_id",
            [[str(i) for i in job_ids]],
        )
        return dict(cursor.fetchall())


@job("test.atomic_write", atomic=True, max_attempts=30, backoff={"base": 0.05, "max": 0.1, "jitter": 0.0})
def atomic_write(
    seconds: float = 0.0, cooperative: bool = True, fail_times: int = 0, wait_for_cancel: bool = False
) -> str:
    """Inserts one row into ``test_atomic_effects`` in its job's transaction, then sleeps ``seconds``
    (checking for a cancel when ``cooperative``), waits for a committed cancel request when
    ``wait_for_cancel`` (and returns anyway), and raises on its first ``fail_times`` attempts."""
    from django.db import connection

    ctx = current_job()
    assert ctx is not None
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {ATOMIC_EFFECTS_TABLE} (job_id, attempt, worker) VALUES (%s, %s, %s)",
            [ctx.job_id, ctx.attempt, ctx.worker],
        )
    if seconds and cooperative:
        sleep_cooperatively(seconds)
    elif seconds:
        time.sleep(seconds)
    if wait_for_cancel:
        _wait_for_the_request(30.0)
    if ctx.attempt <= fail_times:
        raise RuntimeError(f"failed after writing, on attempt {ctx.attempt}")
    return "written"
