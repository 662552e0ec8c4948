"""Scheduler firing latency: how late a due schedule's job is enqueued (fire time -> job queued).

Usage, inside the embedded servers that ``make test`` and ``make bench`` use::

    .venv/bin/python -m jobqueue_site.embedded run --profile test -- \
        .venv/bin/python bench/schedule_latency.py

or with DATABASE_URL and REDIS_URL exported. It works in its own database (``jobqueue_bench_schedule``
on the server DATABASE_URL points at, created and migrated if missing, emptied before and after) and
under its own Redis key prefix (deleted at the end), runs one real ``manage.py runscheduler`` (production
settings: DJANGO_DEBUG=0), and measures two scenarios:

- spread: ``--firings`` schedules, each due ``--gap`` seconds after the previous one, so every firing
  is a wake-up of an idle scheduler (the figure docs/benchmarks.md reports);
- burst: the same schedules all due at one instant (rows are fired one transaction each, in order).

For each firing it records two delays from the fire time (``next_run_at``): the job row's
``created_at`` (PostgreSQL's clock at the start of the firing transaction) and the moment the job id
reached the Redis ready set (after the commit: from then on a worker can pop it), observed by a
BZPOPMIN in this process. All clocks are this machine's.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from benchenv import delete_redis_prefix, isolate  # noqa: E402  (bench/ is on sys.path)

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

QUEUE = "default"
nan = float("nan")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--firings", type=int, default=100, help="schedules fired per scenario (default 100)")
    parser.add_argument(
        "--gap", type=float, default=0.2, help="seconds between spread fire times (default 0.2)"
    )
    parser.add_argument(
        "--lead", type=float, default=2.0, help="seconds until the first fire time (default 2)"
    )
    parser.add_argument("--skip-burst", action="store_true", help="measure the spread scenario only")
    parser.add_argument("--database", default="jobqueue_bench_schedule", help="database to create and use")
    opts = parser.parse_args(argv)
    if opts.firings < 1 or opts.gap < 0 or opts.lead < 0.5:
        parser.error("--firings must be >= 1, --gap >= 0 and --lead >= 0.5")
    return opts


# --------------------------------------------------------------------------- isolation (before Django)


def configure_environment(opts: argparse.Namespace) -> dict[str, str]:
    return isolate(opts.database, JOBQUEUE_PRUNE_INTERVAL="0")


# --------------------------------------------------------------------------- helpers (after Django)


def reset_data(prefix: str) -> None:
    from django.db import connection

    from jobs.dispatch import redis_client

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE scheduling_schedule, jobs_idempotencykey, jobs_job CASCADE")
    delete_redis_prefix(redis_client(), prefix)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[rank]


@contextlib.contextmanager
def running_scheduler(env: dict[str, str], log_path: Path) -> Iterator[subprocess.Popen]:
    from jobs.dispatch import get_broker

    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "runscheduler"],
            cwd=REPO,
            env={**os.environ, **env},
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    broker = get_broker()
    deadline = time.monotonic() + 60
    while not broker.client.exists(broker.key("lock", "scheduler")):
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"runscheduler did not start; see {log_path}")
        time.sleep(0.05)
    try:
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


class ReadyWatcher(threading.Thread):
    """BZPOPMIN on the ready set: when each job id became poppable (this process's clock)."""

    def __init__(self, expected: int) -> None:
        super().__init__(daemon=True)
        from jobs.dispatch import get_broker, redis_client

        self.client = redis_client(socket_timeout=10)
        self.key = get_broker().key("ready", QUEUE)
        self.expected = expected
        self.seen: dict[str, float] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        while len(self.seen) < self.expected and not self.stop.is_set():
            popped = self.client.bzpopmin(self.key, timeout=1)
            if popped:
                self.seen[popped[1]] = time.time()


def scenario(name: str, opts: argparse.Namespace, schedule_ids: list[int]) -> dict:
    """Make the schedules due (spread or all at once), wait for every job, return the delays in ms."""
    from django.db import connection

    from jobs.models import Job
    from scheduling.firing import idempotency_key
    from scheduling.models import Schedule
    from scheduling.signals import publish_change

    watcher = ReadyWatcher(len(schedule_ids))
    watcher.start()
    start = datetime.now(UTC) + timedelta(seconds=opts.lead)
    fire_times: dict[int, datetime] = {}
    for index, schedule_id in enumerate(schedule_ids):
        fire = start + timedelta(seconds=opts.gap * index if name == "spread" else 0)
        fire_times[schedule_id] = fire
        Schedule.objects.filter(pk=schedule_id).update(next_run_at=fire)
    publish_change()
    keys = {idempotency_key(sid, fire): sid for sid, fire in fire_times.items()}
    deadline = time.monotonic() + opts.lead + opts.gap * len(schedule_ids) + 60
    while True:
        rows = list(
            Job.objects.filter(idempotency_key__in=list(keys)).values_list(
                "id", "idempotency_key", "created_at"
            )
        )
        if len(rows) == len(keys) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    watcher.join(timeout=10)
    watcher.stop.set()
    connection.close()
    if len(rows) != len(keys):
        raise SystemExit(f"{name}: only {len(rows)} of {len(keys)} firings happened")
    early = 0
    created_ms, ready_ms = [], []
    for job_id, key, created_at in rows:
        fire = fire_times[keys[key]]
        created_ms.append((created_at - fire).total_seconds() * 1000)
        early += created_at < fire
        if str(job_id) in watcher.seen:
            ready_ms.append((watcher.seen[str(job_id)] - fire.timestamp()) * 1000)
    result = {
        "firings": len(rows),
        "fired_early": early,
        "created_p50_ms": statistics.median(created_ms),
        "created_p95_ms": percentile(created_ms, 95),
        "created_max_ms": max(created_ms),
    }
    if ready_ms:
        result |= {
            "ready_seen": len(ready_ms),
            "ready_p50_ms": statistics.median(ready_ms),
            "ready_p95_ms": percentile(ready_ms, 95),
            "ready_max_ms": max(ready_ms),
        }
    return result


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    env = configure_environment(opts)

    import django

    django.setup()
    from django.core.management import call_command

    from jobs.dispatch import redis_client
    from scheduling.models import Schedule

    prefix = env["JOBQUEUE_REDIS_PREFIX"]
    call_command("migrate", verbosity=0, interactive=False)
    reset_data(prefix)
    info = redis_client().info("server")
    print("jobqueue scheduler latency benchmark")
    print(f"  date          {datetime.now(UTC).isoformat(timespec='seconds')}")
    print(f"  machine       {platform.platform()}, {os.cpu_count()} CPUs, loadavg {os.getloadavg()[0]:.2f}")
    print(
        f"  python        {platform.python_version()}, Django {django.get_version()}, "
        f"Redis {info.get('redis_version')}"
    )
    print(f"  workload      {opts.firings} schedules (type noop), spread {opts.gap:g}s apart, then a burst")
    schedules = [
        Schedule.objects.create(name=f"bench-{i}", type="noop", cron="0 0 1 1 *") for i in range(opts.firings)
    ]
    ids = [s.pk for s in schedules]
    results: dict[str, dict] = {}
    workdir = Path(tempfile.mkdtemp(prefix="jqbench-sched-"))
    try:
        with running_scheduler(env, workdir / "scheduler.log"):
            for name in ("spread",) + (() if opts.skip_burst else ("burst",)):
                results[name] = scenario(name, opts, ids)
                r = {"ready_p50_ms": nan, "ready_p95_ms": nan, "ready_max_ms": nan, **results[name]}
                print(
                    f"  {name:<7} {r['firings']} firings: fire->row p50 {r['created_p50_ms']:.1f} ms, "
                    f"p95 {r['created_p95_ms']:.1f} ms, max {r['created_max_ms']:.1f} ms; "
                    f"fire->ready in Redis p50 {r['ready_p50_ms']:.1f} ms, p95 {r['ready_p95_ms']:.1f} ms, "
                    f"max {r['ready_max_ms']:.1f} ms ({r.get('ready_seen', 0)} seen); "
                    f"fired early: {r['fired_early']}"
                )
    finally:
        reset_data(prefix)
    parts = [f"{n}_{k}={v:.1f}" for n, r in results.items() for k, v in r.items() if k.endswith("_ms")]
    print(
        "SUMMARY " + " ".join(parts) + f" early={sum(r['fired_early'] for r in results.values())}", flush=True
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
