"""Cancel latency: ``POST /api/jobs/{id}/cancel/`` of a running job until it is ``cancelled`` in PostgreSQL.

Usage, with servers (e.g. ``.venv/bin/python -m jobqueue_site.embedded up --profile test``)::

    DATABASE_URL=postgresql://... REDIS_URL=redis://... .venv/bin/python bench/cancel_latency.py [options]

One real ``runworker`` process runs a cooperative handler (``test.sleep`` of tests/support/jobtypes.py,
calling ``ctx.check_cancelled()`` every ``--step`` seconds, 50 ms by default). For each of ``--cancels``
jobs, one at a time: wait until PostgreSQL says ``running``, wait a random 0-200 ms (so the request
lands anywhere in the handler's step and in the worker's lease-extension cycle), POST the cancel
through the API (in-process Django test client: the real view, permissions and service), then poll
PostgreSQL every 2 ms until the job is ``cancelled``. The figure is from just before the POST to the
poll that saw ``cancelled``. Works in its own database (``jobqueue_bench_cancel``) and under its own
Redis prefix, deleted at the end. stdout: the configuration, then ONE summary line.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

from benchenv import delete_redis_prefix, isolate  # noqa: E402  (bench/ is on sys.path)

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

QUEUE = "cancelbench"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cancels", type=int, default=40, help="jobs cancelled while running (default 40)")
    parser.add_argument("--step", type=float, default=0.05, help="handler's check interval, s (0.05)")
    parser.add_argument("--threads", type=int, default=4, help="worker threads (default 4)")
    parser.add_argument("--lease-seconds", default="30", help="JOBQUEUE_LEASE_SECONDS (default 30)")
    parser.add_argument("--database", default="jobqueue_bench_cancel", help="database to create and use")
    return parser.parse_args(argv)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def wait_for(predicate, timeout: float, interval: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    env = isolate(
        opts.database,
        "jqcancel",
        JOBQUEUE_IMPORTS="tests.support.jobtypes",
        JOBQUEUE_LEASE_SECONDS=opts.lease_seconds,
        JOBQUEUE_KILL_GRACE="30",
        JOBQUEUE_LOG_LEVEL="WARNING",
        DJANGO_SECURE_SSL_REDIRECT="0",
    )
    import django

    warnings.filterwarnings("ignore", message="No directory at")  # no collectstatic: the API needs none
    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    from jobs import dispatch, services
    from jobs.dispatch import redis_client
    from jobs.models import Job, JobStatus

    call_command("migrate", verbosity=0, interactive=False)
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {connection.ops.quote_name(Job._meta.db_table)} CASCADE")
    user, _ = get_user_model().objects.get_or_create(
        username="cancel-bench", defaults={"is_superuser": True, "is_staff": True}
    )
    token, _ = Token.objects.get_or_create(user=user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")

    print(
        f"CONFIG cancels={opts.cancels} step={opts.step} threads={opts.threads} "
        f"lease_seconds={opts.lease_seconds} (extension every {float(opts.lease_seconds) / 3:g}s) "
        f"python={sys.version.split()[0]} cpus={os.cpu_count()}"
    )
    workdir = Path(tempfile.mkdtemp(prefix="jqcancel-"))
    log_path = workdir / "worker.log"
    cmd = [sys.executable, "manage.py", "runworker", "--queues", QUEUE, "--processes", "1"]
    cmd += ["--threads", str(opts.threads)]
    kwargs: dict[str, float] = {"seconds": 120.0}
    if opts.step > 0:  # --step 0: the handler's own default (for a checkout whose test.sleep has no step)
        kwargs["step"] = opts.step
    latencies: list[float] = []
    api_times: list[float] = []
    with log_path.open("w") as log:
        worker = subprocess.Popen(cmd, cwd=REPO, env=os.environ.copy(), stdout=log, stderr=log)
    try:
        for _ in range(opts.cancels):
            job = services.enqueue("test.sleep", queue=QUEUE, kwargs=kwargs, max_attempts=1)
            dispatch.flush()
            wait_for(
                lambda job=job: Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING).exists(),
                60,
                0.005,
                "the job to start (see the worker log)",
            )
            time.sleep(random.uniform(0, 0.2))
            started = time.monotonic()
            response = client.post(f"/api/jobs/{job.pk}/cancel/", HTTP_HOST="localhost")
            api_times.append(time.monotonic() - started)
            if response.status_code != 202:
                raise SystemExit(f"cancel answered {response.status_code}: {response.content[:200]!r}")
            wait_for(
                lambda job=job: Job.objects.filter(pk=job.pk, status=JobStatus.CANCELLED).exists(),
                120,
                0.002,
                "the job to be cancelled",
            )
            latencies.append(time.monotonic() - started)
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
        delete_redis_prefix(redis_client(), env["JOBQUEUE_REDIS_PREFIX"])
    shutil.rmtree(workdir, ignore_errors=True)
    ms = [1000 * x for x in latencies]
    print(
        f"SUMMARY cancels={len(ms)} p50_ms={statistics.median(ms):.0f} p95_ms={percentile(ms, 0.95):.0f} "
        f"max_ms={max(ms):.0f} min_ms={min(ms):.0f} api_p50_ms={1000 * statistics.median(api_times):.0f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
