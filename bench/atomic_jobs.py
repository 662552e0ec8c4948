"""What ``atomic=True`` costs: drain rate of atomic no-op jobs against batched no-op jobs, same run.

Usage (embedded PostgreSQL + Redis, test profile)::

    .venv/bin/python -m jobqueue_site.embedded run --profile test -- .venv/bin/python bench/atomic_jobs.py

or with ``DATABASE_URL`` and ``REDIS_URL`` exported. Per run and per kind, in alternating order (so
load drifting on a shared machine hits both alike): ``enqueue_many`` ``--jobs`` no-op jobs, start
``runworker`` on the full queue and time spawn -> last job succeeded in PostgreSQL (and first start ->
last finish, without the start-up), checking every job ran exactly once. An atomic job is finished in
a transaction of its own on its handler's thread (one BEGIN/UPDATE.../COMMIT and one Redis ack per
job) where batched jobs share one statement per round of up to 128. Works in its own database
(``jobqueue_bench_atomic``, emptied between phases) and Redis key prefix; prints one line per phase
and a SUMMARY line with medians.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from benchenv import isolate  # noqa: E402  (bench/ is on sys.path)
from tasks_drain import phase_drain, reset, sql_one  # noqa: E402  (the same drain, timed the same way)

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

KINDS = {"batched": "bench.batched_noop", "atomic": "bench.atomic_noop"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000, help="jobs per phase (default 10000)")
    parser.add_argument("--runs", type=int, default=3, help="alternating runs of both kinds (default 3)")
    parser.add_argument("--processes", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--threads", type=int, default=8, help="threads per worker process (default 8)")
    parser.add_argument("--prefetch", type=int, default=64, help="worker --prefetch (default 64)")
    parser.add_argument("--database", default="jobqueue_bench_atomic", help="database to create and use")
    opts = parser.parse_args(argv)
    if min(opts.jobs, opts.runs, opts.processes, opts.threads) < 1:
        parser.error("--jobs, --runs, --processes and --threads must be at least 1")
    return opts


def phase_enqueue(job_type: str, n: int, prefix: str) -> None:
    from django.db import connection

    from jobs import services

    reset(prefix)
    for start in range(0, n, 1000):
        services.enqueue_many([{"type": job_type} for _ in range(min(1000, n - start))])
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE jobs_job")
    stored = sql_one("SELECT count(*) FROM jobs_job")[0]
    if stored != n:
        raise SystemExit(f"{job_type}: expected {n} jobs in PostgreSQL, found {stored}")


def _median(values: list[float]) -> str:
    med = statistics.median(values)
    return f"{med:,.0f}" if len(values) == 1 else f"{med:,.0f} [{min(values):,.0f}-{max(values):,.0f}]"


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    prefix = isolate(opts.database, JOBQUEUE_IMPORTS="bench.atomic_types")["JOBQUEUE_REDIS_PREFIX"]

    import os

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    import bench.atomic_types  # noqa: F401  (registers the two types in this process, for enqueue)

    call_command("migrate", verbosity=0, interactive=False)
    print(
        f"atomic_jobs: {opts.jobs} no-op jobs per phase, {opts.runs} alternating run(s), runworker --queues "
        f"default --processes {opts.processes} --threads {opts.threads} --prefetch {opts.prefetch}; "
        f"{os.cpu_count()} CPUs, loadavg {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    results: dict[str, list[dict]] = {kind: [] for kind in KINDS}
    workdir = Path(tempfile.mkdtemp(prefix="jqbench-atomic-"))
    try:
        for number in range(1, opts.runs + 1):
            order = list(KINDS) if number % 2 else list(reversed(KINDS))
            for kind in order:
                phase_enqueue(KINDS[kind], opts.jobs, prefix)
                result = phase_drain(opts, kind, workdir, f"{kind}-{number}")
                results[kind].append(result)
                print(
                    f"[run {number}] {kind:8s} drain spawn->last {result['drain_per_s']:,.0f}/s, first "
                    f"start->last finish {result['drain_steady_per_s']:,.0f}/s (start-up "
                    f"{result['startup_s']:.2f} s); exactly once "
                    f"{'yes' if result['exactly_once'] else 'NO'}; {result['warnings']} warnings "
                    f"(loadavg {os.getloadavg()[0]:.2f})",
                    flush=True,
                )
    finally:
        reset(prefix)
        connection.close()
    parts = []
    for kind, runs in results.items():
        parts.append(f"{kind}_drain/s={_median([r['drain_per_s'] for r in runs])}")
        parts.append(f"{kind}_drain_excl_startup/s={_median([r['drain_steady_per_s'] for r in runs])}")
    ratio = statistics.median(r["drain_steady_per_s"] for r in results["atomic"]) / statistics.median(
        r["drain_steady_per_s"] for r in results["batched"]
    )
    ok = all(r["exactly_once"] for runs in results.values() for r in runs)
    print(
        "SUMMARY " + " ".join(parts) + f" atomic/batched={ratio:.2f} exactly_once={'yes' if ok else 'NO'}",
        flush=True,
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
