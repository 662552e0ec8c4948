"""Admin job changelist on a million jobs: median page time, SQL queries per page and the slowest query.

Usage (embedded PostgreSQL + Redis, test profile)::

    .venv/bin/python -m jobqueue_site.embedded run --profile test -- \
        .venv/bin/python bench/admin_changelist.py

or with a server of your own: ``DATABASE_URL=postgresql://... REDIS_URL=redis://... .venv/bin/python
bench/admin_changelist.py``. It never touches dev or test data: it works in its own database
(``jobqueue_admin_bench`` on the server DATABASE_URL points at, created and migrated if missing),
seeds it once with one ``INSERT … SELECT generate_series`` (kept between runs; ``--reseed`` redoes
it), then loads admin pages as a logged-in superuser through Django's test client, in-process
(no HTTP server: the figures are Django + PostgreSQL time). It prints one line per view and then
ONE summary line. docs/benchmarks.md records the figures.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlencode

from benchenv import isolate  # noqa: E402  (bench/ is on sys.path)

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# Share of each status in the seeded table, in percent (finished jobs dominate a real table).
STATUS_MIX = (
    ("succeeded", 85),
    ("failed", 5),
    ("cancelled", 3),
    ("queued", 3),
    ("scheduled", 2),
    ("retrying", 1),
    ("running", 1),
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="jobs to seed (default 1000000)")
    parser.add_argument("--repeat", type=int, default=7, help="timed loads per view (default 7)")
    parser.add_argument("--database", default="jobqueue_admin_bench", help="database to create and use")
    parser.add_argument("--reseed", action="store_true", help="empty and seed the table even if it is full")
    opts = parser.parse_args(argv)
    if opts.rows < 1 or opts.repeat < 1:
        parser.error("--rows and --repeat must be at least 1")
    return opts


# --------------------------------------------------------------------------- isolation (before Django)


def configure_environment(opts: argparse.Namespace) -> None:
    """Point Django at the bench database, production-like (DEBUG off), reachable by the test client."""
    isolate(
        opts.database,
        "jqbench-admin",
        DJANGO_ALLOWED_HOSTS="testserver",
        DJANGO_SECURE_SSL_REDIRECT="0",
        JOBQUEUE_LOG_LEVEL="WARNING",
    )


# --------------------------------------------------------------------------- seeding


def _status_case() -> str:
    """``CASE`` over ``i % 100`` that yields STATUS_MIX."""
    parts, upper = [], 0
    for status, share in STATUS_MIX:
        upper += share
        parts.append(f"WHEN i % 100 < {upper} THEN '{status}'")
    return "CASE " + " ".join(parts) + " END"


SEED_SQL = f"""
INSERT INTO jobs_job (id, type, queue, priority, args, kwargs, status, attempts, max_attempts, run_at,
                      idempotency_key, result, error, worker, lease_token, cancel_requested_at,
                      created_at, updated_at, started_at, finished_at)
SELECT gen_random_uuid(),
       (%(types)s::text[])[1 + (i / 3) %% cardinality(%(types)s::text[])],
       CASE WHEN i %% 10 = 0 THEN 'high' WHEN i %% 10 < 3 THEN 'low' ELSE 'default' END,
       (i %% 21) - 10,
       '[]'::jsonb,
       jsonb_build_object('n', i, 'to', 'user' || i || '@example.com', 'subject', 'Hello'),
       s.status,
       CASE WHEN s.status IN ('queued', 'scheduled') THEN 0 WHEN s.status = 'failed' THEN 3 ELSE 1 END,
       3,
       CASE WHEN s.status IN ('scheduled', 'retrying') THEN now() + interval '1 hour' END,
       CASE WHEN i %% 10 = 0 THEN 'bench-key-' || i END,
       CASE WHEN s.status = 'succeeded' THEN '{{"ok": true}}'::jsonb END,
       CASE WHEN s.status IN ('failed', 'retrying') THEN 'ValueError: simulated failure' ELSE '' END,
       CASE WHEN s.status IN ('queued', 'scheduled') THEN ''
            ELSE 'bench-host:' || (100 + i %% 8) || ':ab12' END,
       CASE WHEN s.status = 'running' THEN md5(i::text) END,
       NULL,
       t.created, t.created + interval '2 seconds',
       CASE WHEN s.status NOT IN ('queued', 'scheduled') THEN t.created + interval '1 second' END,
       CASE WHEN s.status IN ('succeeded', 'failed', 'cancelled')
            THEN t.created + interval '1 second' + (i %% 1000) * interval '1 millisecond' END
  FROM generate_series(1, %(rows)s) AS i
  CROSS JOIN LATERAL (SELECT {_status_case().replace("%", "%%")} AS status) AS s
  CROSS JOIN LATERAL (SELECT now() - (%(rows)s - i) * interval '1 second' AS created) AS t
"""


def seed(rows: int, reseed: bool) -> str:
    """Fill jobs_job with ``rows`` jobs (one statement), then VACUUM ANALYZE as autovacuum would."""
    from django.db import connection

    from jobs import registry

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM jobs_job")
        present = cursor.fetchone()[0]
        if present == rows and not reseed:
            return f"kept {present:,} seeded jobs"
        started = time.perf_counter()
        cursor.execute("TRUNCATE jobs_job CASCADE")  # the bench database only: attempts, dead letters, …
        types = [t.name for t in registry.all_types()] or ["noop"]
        cursor.execute(SEED_SQL, {"types": types, "rows": rows})
        inserted = time.perf_counter() - started
        cursor.execute("VACUUM ANALYZE jobs_job")
    return f"seeded {rows:,} jobs in {inserted:.1f} s (one INSERT … SELECT generate_series) + VACUUM ANALYZE"


# --------------------------------------------------------------------------- timing


@dataclass
class ViewResult:
    name: str
    url: str
    median_ms: float
    cpu_ms: float  # median CPU time of this process per load: Django's own work, steady on a busy machine
    min_ms: float
    max_ms: float
    queries: int
    sql_ms: float  # all queries of one load together
    slowest_ms: float
    slowest_sql: str
    full_counts: int  # COUNT(*) without a LIMIT: must stay 0


def _is_full_count(sql: str) -> bool:
    upper = sql.upper()
    return "COUNT(" in upper and "LIMIT" not in upper


def time_view(client, name: str, url: str, repeat: int) -> ViewResult:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def load() -> None:
        response = client.get(url)
        if response.status_code != 200:
            raise SystemExit(f"{name}: {url} answered {response.status_code}")

    load()  # warm: templates, the session, PostgreSQL's buffers
    samples, cpu = [], []
    for _ in range(repeat):
        started, started_cpu = time.perf_counter(), time.process_time()
        load()
        samples.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - started_cpu) * 1000)
    with CaptureQueriesContext(connection) as captured:
        load()
    timed = [(float(q["time"]) * 1000, q["sql"]) for q in captured.captured_queries]
    slowest_ms, slowest_sql = max(timed, default=(0.0, ""))
    return ViewResult(
        name=name,
        url=url,
        median_ms=statistics.median(samples),
        cpu_ms=statistics.median(cpu),
        min_ms=min(samples),
        max_ms=max(samples),
        queries=len(timed),
        sql_ms=sum(ms for ms, _sql in timed),
        slowest_ms=slowest_ms,
        slowest_sql=" ".join(slowest_sql.split())[:160],
        full_counts=sum(_is_full_count(sql) for _ms, sql in timed),
    )


def full_count_ms() -> float:
    """What Django's default changelist would pay on every load: COUNT(*) of the whole table."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM jobs_job")  # warm
        started = time.perf_counter()
        cursor.execute("SELECT count(*) FROM jobs_job")
        cursor.fetchone()
    return (time.perf_counter() - started) * 1000


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    configure_environment(opts)

    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.test import Client, override_settings
    from django.urls import reverse
    from django.utils import timezone

    from jobs.models import Job

    # DEBUG is off as in production, but no collectstatic manifest is needed to render pages.
    override_settings(
        STORAGES={
            **settings.STORAGES,
            "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
        }
    ).enable()
    call_command("migrate", verbosity=0)
    print(f"database {opts.database}: {seed(opts.rows, opts.reseed)}", flush=True)

    user, _ = get_user_model().objects.update_or_create(
        username="bench-admin", defaults={"is_staff": True, "is_superuser": True, "is_active": True}
    )
    client = Client()
    client.force_login(user)

    base = reverse("admin:jobs_job_changelist")
    sample = Job.objects.order_by("seq").values_list("id", flat=True)[opts.rows // 2]
    now = timezone.now()
    week = {"created_at__gte": (now - timedelta(days=7)).isoformat(), "created_at__lt": now.isoformat()}
    middle = max(opts.rows // 200, 2)
    views = [
        ("unfiltered", base),
        ("page 2", f"{base}?p=2"),
        ("status=failed", f"{base}?status__exact=failed"),
        ("status=running", f"{base}?status__exact=running"),
        ("queue=high", f"{base}?queue=high"),
        ("type", f"{base}?type=report.generate"),
        ("created 7 days", f"{base}?{urlencode(week)}"),
        ("search id prefix", f"{base}?q={str(sample)[:8]}"),
        ("search type", f"{base}?q=email"),
        ("detail", reverse("admin:jobs_job_change", args=[sample])),
        (f"page {middle}", f"{base}?p={middle}"),  # OFFSET half the table: the known slow case
    ]
    results = []
    for name, url in views:
        result = time_view(client, name, url, opts.repeat)
        results.append(result)
        print(
            f"  {name:<17} median {result.median_ms:7.1f} ms (min {result.min_ms:.1f}, "
            f"max {result.max_ms:.1f}; CPU {result.cpu_ms:.0f})  {result.queries} queries, "
            f"{result.sql_ms:.0f} ms SQL, "
            f"slowest {result.slowest_ms:.1f} ms: {result.slowest_sql}",
            flush=True,
        )
    counts = full_count_ms()
    print(f"  for comparison: SELECT count(*) FROM jobs_job takes {counts:.0f} ms (never run by the admin)")

    pages = [r for r in results if r.name not in ("detail", f"page {middle}")]
    slowest = max(pages, key=lambda r: r.slowest_ms)
    full_counts = sum(r.full_counts for r in results)
    figures = ", ".join(f"{r.name} {r.median_ms:.0f}" for r in results)
    print(
        f"admin changelist, {opts.rows:,} jobs, median ms of {opts.repeat}: {figures}; "
        f"{min(r.queries for r in pages)}-{max(r.queries for r in pages)} queries/page; "
        f"SQL per page {min(r.sql_ms for r in pages):.0f}-{max(r.sql_ms for r in pages):.0f} ms, "
        f"Django CPU per page {min(r.cpu_ms for r in pages):.0f}-{max(r.cpu_ms for r in pages):.0f} ms; "
        f"slowest query {slowest.slowest_ms:.1f} ms ({slowest.name}); "
        f"full-table COUNT(*): {full_counts} (would cost {counts:.0f} ms); "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    return 1 if full_counts else 0


if __name__ == "__main__":
    sys.exit(main())
