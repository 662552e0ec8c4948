"""What the django.tasks layer costs: no-op ``@task`` jobs against no-op ``@job`` jobs, enqueued one by one.

Usage (embedded PostgreSQL + Redis, test profile)::

    .venv/bin/python -m jobqueue_site.embedded run --profile test -- .venv/bin/python bench/tasks_drain.py

or with ``DATABASE_URL`` and ``REDIS_URL`` exported. Per run and per API, in alternating order
(so load drifting on a shared machine hits both alike): enqueue ``--jobs`` jobs one at a time in
autocommit (``bench.tasks_noop.noop.enqueue()`` against ``jobs.services.enqueue("noop")``), then
start ``runworker`` on the full queue and time spawn -> last job succeeded in PostgreSQL, checking
every job ran exactly once. Works in its own database (``jobqueue_bench_tasks``, emptied between
phases) and Redis key prefix; prints one line per phase and a SUMMARY line with medians.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

from benchenv import delete_redis_prefix, isolate  # noqa: E402  (bench/ is on sys.path)

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

QUEUE = "default"
ACTIVE_EXISTS_SQL = (
    "SELECT EXISTS (SELECT 1 FROM jobs_job WHERE status IN ('scheduled', 'queued', 'running', 'retrying'))"
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20_000, help="jobs per phase (default 20000)")
    parser.add_argument("--runs", type=int, default=3, help="alternating runs of both APIs (default 3)")
    parser.add_argument("--processes", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--threads", type=int, default=8, help="threads per worker process (default 8)")
    parser.add_argument("--prefetch", type=int, default=64, help="worker --prefetch (default 64)")
    parser.add_argument("--database", default="jobqueue_bench_tasks", help="database to create and use")
    opts = parser.parse_args(argv)
    if min(opts.jobs, opts.runs, opts.processes, opts.threads) < 1:
        parser.error("--jobs, --runs, --processes and --threads must be at least 1")
    return opts


def configure_environment(opts: argparse.Namespace) -> str:
    """Point this process and its workers at the bench database and a fresh Redis prefix (returned)."""
    # bench/ is no installed app: workers import the no-op task module by name.
    return isolate(opts.database, JOBQUEUE_IMPORTS="bench.tasks_noop")["JOBQUEUE_REDIS_PREFIX"]


def reset(prefix: str) -> None:
    from django.db import connection

    from jobs.dispatch import get_broker, reset_broker

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE jobs_job, jobs_idempotencykey CASCADE")
    delete_redis_prefix(get_broker().client, prefix)
    reset_broker()
    # Workers take a missing epoch for a Redis that lost its data and rebuild the index from PostgreSQL
    # while draining; a live site's Redis has one, so create it before measuring.
    get_broker().epoch()


def sql_one(query: str) -> tuple:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(query)
        return cursor.fetchone()


def enqueuer(api: str) -> Callable[[], object]:
    """The same no-op either way: a ``@task`` through django.tasks, or the ``noop`` @job type."""
    if api == "django.tasks":
        from bench.tasks_noop import noop

        return noop.enqueue
    from jobs import services

    return partial(services.enqueue, "noop")


def phase_enqueue(api: str, n: int, prefix: str) -> dict:
    """``n`` one-by-one enqueues in autocommit, as a web request outside atomic() does them."""
    from django.db import connection

    reset(prefix)
    enqueue = enqueuer(api)
    for _ in range(20):  # warm-up: connection, scripts, task resolution
        enqueue()
    started = time.perf_counter()
    for _ in range(n - 20):
        enqueue()
    seconds = time.perf_counter() - started
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE jobs_job")
    stored = sql_one("SELECT count(*) FROM jobs_job")[0]
    if stored != n:
        raise SystemExit(f"{api}: expected {n} jobs in PostgreSQL, found {stored}")
    return {"enqueue_per_s": (n - 20) / seconds}


@contextlib.contextmanager
def running_worker(opts: argparse.Namespace, log_path: Path) -> Iterator[tuple[subprocess.Popen, float]]:
    cmd = [sys.executable, "manage.py", "runworker", "--queues", QUEUE, "--processes", str(opts.processes)]
    cmd += ["--threads", str(opts.threads), "--prefetch", str(opts.prefetch)]
    with log_path.open("w") as log:
        started_wall = time.time()
        popen = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=log, start_new_session=True)
    try:
        yield popen, started_wall
    finally:
        if popen.poll() is None:
            popen.send_signal(signal.SIGTERM)
        try:
            popen.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(popen.pid, signal.SIGKILL)  # the session this script started
            popen.wait(timeout=10)


def phase_drain(opts: argparse.Namespace, api: str, workdir: Path, label: str) -> dict:
    """Spawn ``runworker`` on the full queue; time spawn -> last success, then verify exactly once."""
    n = opts.jobs
    log_path = workdir / f"{label}.log"
    with running_worker(opts, log_path) as (popen, started_wall):
        spawned = time.monotonic()
        while sql_one(ACTIVE_EXISTS_SQL)[0]:
            time.sleep(0.05)
            if popen.poll() is not None:
                raise SystemExit(f"worker exited early:\n{log_path.read_text()[-3000:]}")
            if time.monotonic() - spawned > 120 + n / 50:
                raise SystemExit(f"drain did not finish:\n{log_path.read_text()[-3000:]}")
        wall = time.monotonic() - spawned
    total, once, first_start, last_finish = sql_one(
        "SELECT count(*), count(*) FILTER (WHERE status = 'succeeded' AND attempts = 1), "
        "min(started_at), max(finished_at) FROM jobs_job"
    )
    attempts = sql_one("SELECT count(*) FROM jobs_jobattempt WHERE outcome = 'succeeded'")[0]
    span = (last_finish - first_start).total_seconds()
    log = log_path.read_text(errors="replace")
    return {
        "drain_per_s": n / wall,
        "drain_steady_per_s": n / span if span > 0 else float("nan"),
        "startup_s": first_start.timestamp() - started_wall,
        "exactly_once": total == once == attempts == n,
        "warnings": sum(1 for line in log.splitlines() if " WARNING " in line or " ERROR " in line),
        "log_lines": log.count("\n"),
    }


def phase_overhead(n: int) -> dict:
    """CPU per job in the worker's execute() for both APIs, in this process: no queue, no database, no
    other process, so the framework layer's own cost shows even when the drain is bound elsewhere."""
    import logging
    import uuid as uuid_module

    from django.utils import timezone

    from bench.tasks_noop import noop
    from jobs.context import JobContext
    from jobs.values import Claimed
    from workers.execution import Running, execute

    now = timezone.now()
    tasks_logger = logging.getLogger("django.tasks")
    level = tasks_logger.level

    def per_job_us(job_type: str) -> float:
        jobs = [
            Claimed(str(uuid_module.uuid4()), "t", i, job_type, QUEUE, 0, [], {}, 1, 3, None, None, now, now)
            for i in range(n)
        ]
        started = time.perf_counter()
        for job in jobs:
            ctx = JobContext(job.id, job.type, job.queue, 1, 3, "bench")
            execute(Running(job=job, ctx=ctx, timeout=300), "bench")
        return (time.perf_counter() - started) / n * 1e6

    # Log lines are formatted as in a worker, then written to /dev/null rather than over this output.
    handlers = {h for name in ("", "django") for h in logging.getLogger(name).handlers}
    streams = [h for h in handlers if isinstance(h, logging.StreamHandler)]
    with open(os.devnull, "w") as devnull:
        saved = [h.setStream(devnull) for h in streams]
        try:
            result = {"services_us": per_job_us("noop"), "tasks_us": per_job_us(noop.module_path)}
            tasks_logger.setLevel(logging.WARNING)  # Django logs every task start and finish at INFO
            result["tasks_quiet_us"] = per_job_us(noop.module_path)
        finally:
            tasks_logger.setLevel(level)
            for handler, stream in zip(streams, saved, strict=True):
                handler.setStream(stream)
    return result


def _median(values: list[float]) -> str:
    med = statistics.median(values)
    return f"{med:,.0f}" if len(values) == 1 else f"{med:,.0f} [{min(values):,.0f}-{max(values):,.0f}]"


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    prefix = configure_environment(opts)

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0, interactive=False)
    print(
        f"tasks_drain: {opts.jobs} no-op jobs per phase, {opts.runs} alternating run(s), runworker --queues "
        f"{QUEUE} --processes {opts.processes} --threads {opts.threads} --prefetch {opts.prefetch}; "
        f"Django {django.get_version()}, {os.cpu_count()} CPUs, loadavg {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    results: dict[str, list[dict]] = {"jobs.services": [], "django.tasks": []}
    overheads: list[dict] = []
    workdir = Path(tempfile.mkdtemp(prefix="jqbench-tasks-"))
    try:
        for number in range(1, opts.runs + 1):
            overheads.append(phase_overhead(opts.jobs))
            o = overheads[-1]
            print(
                f"[run {number}] execute() per job, in-process: jobs.services {o['services_us']:.1f} us, "
                f"django.tasks {o['tasks_us']:.1f} us ({o['tasks_quiet_us']:.1f} us with the django.tasks "
                "logger at WARNING)",
                flush=True,
            )
            order = list(results) if number % 2 else list(reversed(results))
            for api in order:
                result = phase_enqueue(api, opts.jobs, prefix)
                result |= phase_drain(opts, api, workdir, f"{api}-{number}")
                results[api].append(result)
                print(
                    f"[run {number}] {api:13s} enqueue {result['enqueue_per_s']:,.0f}/s; drain spawn->last "
                    f"{result['drain_per_s']:,.0f}/s, first start->last finish "
                    f"{result['drain_steady_per_s']:,.0f}/s "
                    f"(start-up {result['startup_s']:.2f} s); exactly once "
                    f"{'yes' if result['exactly_once'] else 'NO'}; worker log {result['log_lines']} lines, "
                    f"{result['warnings']} warnings (loadavg {os.getloadavg()[0]:.2f})",
                    flush=True,
                )
    finally:
        reset(prefix)
        connection.close()
    parts = []
    for api, runs in results.items():
        short = "tasks" if api == "django.tasks" else "services"
        parts.append(f"{short}_enqueue/s={_median([r['enqueue_per_s'] for r in runs])}")
        parts.append(f"{short}_drain/s={_median([r['drain_per_s'] for r in runs])}")
        parts.append(f"{short}_drain_excl_startup/s={_median([r['drain_steady_per_s'] for r in runs])}")
    for key in ("services_us", "tasks_us", "tasks_quiet_us"):
        parts.append(f"execute_{key}={statistics.median(o[key] for o in overheads):.1f}")
    ok = all(r["exactly_once"] for runs in results.values() for r in runs)
    print("SUMMARY " + " ".join(parts) + f" exactly_once={'yes' if ok else 'NO'}", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
