"""Queue engine throughput: one-by-one enqueue, bulk enqueue, drain rate and pickup latency.

Usage: ``make bench`` (embedded PostgreSQL + Redis, test profile), or with servers of your own::

    DATABASE_URL=postgresql://... REDIS_URL=redis://... .venv/bin/python bench/throughput.py [options]

It never touches dev or test data: it works in its own database (``jobqueue_bench`` on the server
DATABASE_URL points at, created and migrated if missing, emptied between phases) and under its own
Redis key prefix (``jqbench-<random>``, deleted at the end). stdout gets the configuration and then
ONE summary line; stderr gets a line per phase (with CPU accounting and the load other processes put
on the machine meanwhile). See docs/benchmarks.md for what each figure means.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from benchenv import delete_redis_prefix, isolate  # noqa: E402  (bench/ is on sys.path)

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

QUEUE = "default"
BULK_BATCH = 1000
ACTIVE = ("scheduled", "queued", "running", "retrying")
# Served by the partial index on non-terminal statuses: cheap however many jobs have finished.
ACTIVE_EXISTS_SQL = (
    "SELECT EXISTS (SELECT 1 FROM jobs_job WHERE status IN ('scheduled', 'queued', 'running', 'retrying'))"
)
PYSPY_RATE = 100  # samples per second and process
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


# --------------------------------------------------------------------------- options


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20_000, help="jobs per phase (default 20000)")
    parser.add_argument("--processes", type=int, default=2, help="worker processes for the drain (default 2)")
    parser.add_argument("--threads", type=int, default=8, help="handler threads per process (default 8)")
    parser.add_argument(
        "--prefetch", type=int, default=16, help="worker --prefetch (default 16, as runworker)"
    )
    parser.add_argument(
        "--prefetch-max",
        type=int,
        default=None,
        help="worker --prefetch-max (default: runworker's, JOBQUEUE_PREFETCH_MAX)",
    )
    parser.add_argument("--latency-samples", type=int, default=200, help="pickup samples (default 200)")
    parser.add_argument(
        "--latency-gap", type=float, default=0.020, help="seconds between pickup samples (default 0.02)"
    )
    parser.add_argument("--runs", type=int, default=1, help="repeat every phase; medians and ranges shown")
    parser.add_argument("--skip-enqueue", action="store_true", help="skip the one-by-one enqueue phase")
    parser.add_argument("--skip-bulk", action="store_true", help="skip the enqueue_many phase")
    parser.add_argument("--skip-drain", action="store_true", help="skip the drain phase")
    parser.add_argument("--skip-latency", action="store_true", help="skip the pickup latency phase")
    parser.add_argument(
        "--profile-worker",
        action="store_true",
        help="run the drain under py-spy (or in-process under cProfile) and print the hot spots",
    )
    parser.add_argument(
        "--profiler",
        choices=("auto", "py-spy", "cprofile"),
        default="auto",
        help="with --profile-worker: py-spy if installed and working (auto), or force one",
    )
    parser.add_argument("--database", default="jobqueue_bench", help="database to create and use")
    parser.add_argument(
        "--django-debug", action="store_true", help="run with DJANGO_DEBUG=1 (default 0, as in production)"
    )
    parser.add_argument(
        "--wait-idle",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="before each run, wait up to this long for other work on the machine to use < 0.3 cores",
    )
    parser.add_argument("--poll-interval", type=float, default=0.05, help="drain completion poll (s)")
    parser.add_argument(
        "--keep-logs", action="store_true", help="keep the worker logs (and py-spy output); path printed"
    )
    parser.add_argument("--json", type=Path, help="also write every measured figure to this file")
    opts = parser.parse_args(argv)
    for name in ("jobs", "processes", "threads", "runs"):
        if getattr(opts, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if opts.prefetch < 0 or opts.latency_samples < 0:
        parser.error("--prefetch and --latency-samples must be >= 0")
    return opts


# --------------------------------------------------------------------------- isolation (before Django)


def configure_environment(opts: argparse.Namespace) -> dict[str, str]:
    """Point this process (and the workers it starts) at the bench database and a fresh key prefix."""
    return isolate(opts.database, debug=opts.django_debug)


# --------------------------------------------------------------------------- CPU accounting (Linux /proc)


def _proc_cpu(pid: int) -> float | None:
    """utime + stime of one process, in seconds."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _descendants(root: int) -> list[int]:
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(parents.get(pid, []))
    return found


def _machine_busy() -> tuple[float, float] | None:
    """(busy, total) jiffies of all CPUs since boot."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    total = sum(fields[:8])
    return total - idle, total


@dataclass
class CpuSnapshot:
    """CPU seconds used so far by the worker tree, this database's PostgreSQL backends, Redis, the machine."""

    workers: float
    backends: dict[int, float]
    redis: float | None
    machine: tuple[float, float] | None
    bench: float

    @classmethod
    def take(cls, worker_root: int | None, local_db: bool) -> CpuSnapshot:
        from django.db import connection

        workers = 0.0
        if worker_root is not None:
            workers = sum(_proc_cpu(pid) or 0.0 for pid in _descendants(worker_root))
        backends: dict[int, float] = {}
        if local_db:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
                for (pid,) in cursor.fetchall():
                    if (cpu := _proc_cpu(pid)) is not None:
                        backends[pid] = cpu
        try:
            info = redis_client().info("cpu")
            redis_cpu = float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
        except Exception:  # noqa: BLE001 - accounting is optional
            redis_cpu = None
        usage = os.times()
        return cls(workers, backends, redis_cpu, _machine_busy(), usage.user + usage.system)

    def since(self, before: CpuSnapshot, seconds: float) -> dict[str, float | None]:
        pg = sum(cpu - before.backends.get(pid, 0.0) for pid, cpu in self.backends.items())
        out: dict[str, float | None] = {
            "workers_cpu_s": self.workers - before.workers,
            "postgres_backends_cpu_s": pg if self.backends else None,
            "redis_cpu_s": None if self.redis is None or before.redis is None else self.redis - before.redis,
            "bench_cpu_s": self.bench - before.bench,
            "machine_busy_cores": None,
        }
        if self.machine and before.machine and self.machine[1] > before.machine[1]:
            busy = (self.machine[0] - before.machine[0]) / (self.machine[1] - before.machine[1])
            out["machine_busy_cores"] = busy * (os.cpu_count() or 1)
        return out


def _is_local(settings_dict: dict) -> bool:
    host = settings_dict.get("HOST") or ""
    return host == "" or host.startswith("/") or host in {"localhost", "127.0.0.1", "::1"}


# --------------------------------------------------------------------------- helpers (after Django)


def redis_client():
    from jobs.dispatch import redis_client as make

    return make()


def delete_prefix(prefix: str) -> int:
    return delete_redis_prefix(redis_client(), prefix)


def reset_data(prefix: str) -> None:
    """Empty the bench database's job tables and this run's Redis keys."""
    from django.db import connection

    from jobs.dispatch import reset_broker
    from jobs.models import Job

    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {connection.ops.quote_name(Job._meta.db_table)} CASCADE")
    delete_prefix(prefix)
    reset_broker()


def sql_one(query: str, params: list | None = None) -> tuple:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(query, params or [])
        return cursor.fetchone()


def ready_depth() -> int:
    from jobs.dispatch import get_broker

    broker = get_broker()
    return int(broker.client.zcard(broker.key("ready", QUEUE)))


def fill_queue(n: int) -> None:
    """``n`` queued noop jobs in PostgreSQL and in Redis (enqueue_many, 1,000 a call), then ANALYZE."""
    from django.db import connection

    from jobs import dispatch, services

    specs = [services.JobSpec(type="noop")] * BULK_BATCH
    left = n
    while left > 0:
        services.enqueue_many(specs[: min(left, BULK_BATCH)])
        left -= BULK_BATCH
    dispatch.flush(60)
    depth = ready_depth()
    if depth != n:
        raise SystemExit(f"expected {n} ids in the ready set, found {depth}: the Redis push failed")
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE jobs_job")  # what autovacuum would have done after 20,000 inserts


def note(message: str) -> None:
    """Progress and per-phase detail go to stderr; stdout carries the configuration and the summary."""
    print(message, file=sys.stderr, flush=True)


def background_load(seconds: float = 1.0) -> float | None:
    """Cores busy with other work right now (this script is idle meanwhile), from /proc/stat."""
    first = _machine_busy()
    time.sleep(seconds)
    second = _machine_busy()
    if first is None or second is None or second[1] <= first[1]:
        return None
    return (second[0] - first[0]) / (second[1] - first[1]) * (os.cpu_count() or 1)


def wait_for_quiet(limit_s: float, threshold: float = 0.3) -> float | None:
    """Wait (at most ``limit_s``) until other work uses < ``threshold`` cores; returns the last reading."""
    deadline = time.monotonic() + limit_s
    while True:
        load = background_load()
        if load is None or load < threshold or time.monotonic() >= deadline:
            return load
        time.sleep(4.0)


def quiet(opts: argparse.Namespace, phase: str, number: int, result: dict) -> None:
    """Record (and with --wait-idle, wait out) other work on the machine before a phase."""
    load = wait_for_quiet(opts.wait_idle) if opts.wait_idle else background_load()
    result["background_load_cores"][phase] = load
    shown = "n/a" if load is None else f"{load:.2f}"
    note(f"--- run {number}/{opts.runs}, {phase}: other work on the machine uses {shown} cores")


def percentile(values: list[float], p: int) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]


# --------------------------------------------------------------------------- worker subprocess


@dataclass
class WorkerRun:
    popen: subprocess.Popen
    log_path: Path
    started: float  # time.monotonic() just before the spawn
    started_wall: float  # time.time() at the same moment
    root_pid: int = 0  # the runworker (supervisor) process, under py-spy its child
    profile_path: Path | None = None

    def find_root(self) -> int:
        if self.profile_path is None:
            return self.popen.pid
        if not self.root_pid:
            for pid in _descendants(self.popen.pid)[1:]:
                with contextlib.suppress(OSError):
                    if b"runworker" in Path(f"/proc/{pid}/cmdline").read_bytes():
                        self.root_pid = pid
                        break
        return self.root_pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 60.0) -> int:
        root = self.find_root()
        if root and self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(root, signal.SIGTERM)
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)  # the session this script started
            return self.popen.wait(timeout=10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_worker(
    opts: argparse.Namespace, processes: int, workdir: Path, label: str, *, pyspy: str | None = None
) -> WorkerRun:
    cmd = cmd_worker(opts, processes)
    profile_path = None
    if pyspy:
        profile_path = workdir / f"{label}.pyspy.txt"
        # --gil: only the thread holding the GIL is sampled, so waiting threads never count as busy.
        spy = [pyspy, "record", "--format", "raw", "--function", "--subprocesses", "--gil"]
        spy += ["--rate", str(PYSPY_RATE)]
        cmd = [*spy, "--output", str(profile_path), "--", *cmd]
    log_path = workdir / f"{label}.log"
    with log_path.open("w") as log:
        started, started_wall = time.monotonic(), time.time()
        popen = subprocess.Popen(
            cmd, cwd=REPO, env=os.environ.copy(), stdout=log, stderr=log, start_new_session=True
        )
    return WorkerRun(popen, log_path, started, started_wall, profile_path=profile_path)


def cmd_worker(opts: argparse.Namespace, processes: int) -> list[str]:
    return [
        sys.executable,
        "manage.py",
        "runworker",
        "--queues",
        QUEUE,
        "--processes",
        str(processes),
        "--threads",
        str(opts.threads),
        "--prefetch",
        str(opts.prefetch),
        *(["--prefetch-max", str(opts.prefetch_max)] if opts.prefetch_max is not None else []),
    ]


@contextlib.contextmanager
def running_worker(opts, processes: int, workdir: Path, label: str, pyspy: str | None = None) -> Iterator:
    worker = start_worker(opts, processes, workdir, label, pyspy=pyspy)
    try:
        yield worker
    finally:
        if worker.alive():
            worker.stop()


def worker_log_summary(text: str) -> str:
    levels = Counter()
    reconciled = 0
    for line in text.splitlines():
        for level in ("WARNING", "ERROR", "CRITICAL"):
            if f" {level} " in line or f'"{level}"' in line or line.startswith(level):
                levels[level] += 1
        if "reconciler: re-dispatched" in line:
            with contextlib.suppress(ValueError, IndexError):
                reconciled += int(line.split("re-dispatched ")[1].split()[0])
    parts = [f"{n} {level.lower()}" for level, n in sorted(levels.items())] or ["no warnings"]
    if reconciled:
        parts.append(f"reconciler re-dispatched {reconciled} id(s)")
    return ", ".join(parts)


# --------------------------------------------------------------------------- phases


def phase_enqueue(opts: argparse.Namespace, prefix: str) -> dict:
    """One client, one ``enqueue("noop")`` per job, autocommit (as a web request outside atomic())."""
    from django.db import connection

    from jobs import dispatch, services

    reset_data(prefix)
    if not connection.get_autocommit() or connection.in_atomic_block:
        raise SystemExit("enqueue phase must run in autocommit mode")
    for _ in range(20):  # warm-up: connection, script load, registry
        services.enqueue("noop")
    n = opts.jobs
    local = _is_local(connection.settings_dict)
    before = CpuSnapshot.take(None, local)
    t0 = time.perf_counter()
    for _ in range(n):
        services.enqueue("noop")
    dispatch.flush(60)  # the clock stops when the last job is in Redis, not when the last call returned
    seconds = time.perf_counter() - t0
    other = _other_load(CpuSnapshot.take(None, local).since(before, seconds), seconds)
    stored = sql_one("SELECT count(*) FROM jobs_job")[0]
    depth = ready_depth()
    if stored != n + 20 or depth != n + 20:
        raise SystemExit(f"enqueue: expected {n + 20} jobs, PostgreSQL has {stored}, Redis {depth}")
    rate = n / seconds
    note(f"[enqueue]  {n} x enqueue('noop'): {seconds:.2f} s -> {rate:,.0f} jobs/s{_other_text(other)}")
    ceiling, share = insert_ceiling()
    note(
        f"           the same row as a bare prepared INSERT from this client: {ceiling:,.0f}/s; "
        f"enqueue() reaches {share:.0%} of it (median of 5 interleaved blocks of 1,000)"
    )
    return {
        "enqueue_per_s": rate,
        "enqueue_s": seconds,
        "enqueue_other_load_cores": other,
        "insert_ceiling_per_s": ceiling,
        "enqueue_share_of_ceiling": share,
    }


def insert_ceiling(blocks: int = 5, size: int = 1000) -> tuple[float, float]:
    """What one autocommit INSERT per job allows on this machine, measured beside ``enqueue()``.

    Alternates blocks of ``enqueue("noop")`` and of the bare single-row INSERT that ``enqueue`` sends
    (same statement and parameters, psycopg, prepared): returns the median bare rate and the median
    ratio enqueue/bare, so a slower or faster moment of the machine affects both sides alike.
    """
    import uuid

    from jobs import dispatch, services
    from jobs.services import sql

    insert = sql.QUERIES["insert_job"]  # the statement enqueue() sends for one job
    params = ["noop", "default", 0, "[]", "{}", "queued", 3, None, None, None, None, None]
    bare_rates, ratios = [], []
    for _ in range(blocks):
        t0 = time.perf_counter()
        for _ in range(size):
            services.enqueue("noop")
        dispatch.flush(60)
        enqueue_rate = size / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        for _ in range(size):
            sql.fetch(insert, [uuid.uuid4(), *params])
        bare = size / (time.perf_counter() - t0)
        bare_rates.append(bare)
        ratios.append(enqueue_rate / bare)
    return statistics.median(bare_rates), statistics.median(ratios)


def phase_bulk(opts: argparse.Namespace, prefix: str) -> dict:
    """``enqueue_many`` in batches of 1,000 (one INSERT + one Redis script call per batch)."""
    from django.db import connection

    from jobs import dispatch, services

    reset_data(prefix)
    specs = [services.JobSpec(type="noop")] * BULK_BATCH
    services.enqueue_many(specs[:100])  # warm-up
    n = opts.jobs
    local = _is_local(connection.settings_dict)
    before = CpuSnapshot.take(None, local)
    t0 = time.perf_counter()
    left = n
    while left > 0:
        services.enqueue_many(specs[: min(left, BULK_BATCH)])
        left -= BULK_BATCH
    dispatch.flush(60)  # the clock stops when the last job is in Redis
    seconds = time.perf_counter() - t0
    other = _other_load(CpuSnapshot.take(None, local).since(before, seconds), seconds)
    depth = ready_depth()
    if depth != n + 100:
        raise SystemExit(f"bulk: expected {n + 100} ids in Redis, found {depth}")
    rate = n / seconds
    note(
        f"[bulk]     {n} via enqueue_many x{BULK_BATCH}: {seconds:.2f} s -> {rate:,.0f} jobs/s"
        f"{_other_text(other)}"
    )
    return {"bulk_per_s": rate, "bulk_s": seconds, "bulk_other_load_cores": other}


def _verify_drain(n: int) -> dict:
    total, ok, once, first_start, last_finish = sql_one(
        "SELECT count(*), count(*) FILTER (WHERE status = 'succeeded'), "
        "count(*) FILTER (WHERE status = 'succeeded' AND attempts = 1), min(started_at), max(finished_at) "
        "FROM jobs_job"
    )
    rows, distinct, good = sql_one(
        "SELECT count(*), count(DISTINCT job_id), count(*) FILTER (WHERE outcome = 'succeeded') "
        "FROM jobs_jobattempt"
    )
    exactly_once = total == ok == once == rows == distinct == good == n
    return {
        "jobs": total,
        "succeeded": ok,
        "attempts_1": once,
        "attempt_rows": rows,
        "exactly_once": exactly_once,
        "first_started_at": first_start,
        "last_finished_at": last_finish,
    }


def phase_drain(opts: argparse.Namespace, prefix: str, workdir: Path, label: str, pyspy: str | None) -> dict:
    """Start ``runworker`` on a full queue; time spawn -> last job succeeded in PostgreSQL."""
    from django.db import connection

    n = opts.jobs
    reset_data(prefix)
    fill_queue(n)
    local = _is_local(connection.settings_dict)
    before = CpuSnapshot.take(None, local)
    deadline_s = 60 + n / 100
    with running_worker(opts, opts.processes, workdir, label, pyspy=pyspy) as worker:
        with connection.cursor() as cursor:
            while True:
                time.sleep(opts.poll_interval)
                cursor.execute(ACTIVE_EXISTS_SQL)
                if not cursor.fetchone()[0]:
                    done = time.monotonic()
                    break
                if not worker.alive():
                    raise SystemExit(f"worker exited early:\n{worker.log()[-3000:]}")
                if time.monotonic() - worker.started > deadline_s:
                    raise SystemExit(f"drain did not finish in {deadline_s:.0f}s:\n{worker.log()[-3000:]}")
        after = CpuSnapshot.take(worker.find_root(), local)
        worker.stop()
    wall = done - worker.started
    checks = _verify_drain(n)
    client = redis_client()
    left_ready = int(client.zcard(f"{prefix}:{{jq}}:ready:{QUEUE}"))
    left_leases = int(client.zcard(f"{prefix}:{{jq}}:leases"))
    span = (checks["last_finished_at"] - checks["first_started_at"]).total_seconds()
    startup = checks["first_started_at"].timestamp() - worker.started_wall
    cpu = after.since(before, wall)
    result = {
        "drain_per_s": n / wall,
        "drain_wall_s": wall,
        "drain_steady_per_s": n / span if span > 0 else float("nan"),
        "drain_span_s": span,
        "startup_s": startup,
        **{k: v for k, v in checks.items() if k not in ("first_started_at", "last_finished_at")},
        "redis_left_ready": left_ready,
        "redis_left_leases": left_leases,
        **cpu,
        "worker_log": worker_log_summary(worker.log()),
        "supervisor_pid": worker.find_root(),
    }
    tag = " (under py-spy)" if pyspy else ""
    note(
        f"[drain]    {n} noop, {opts.processes} proc x {opts.threads} threads, "
        f"prefetch {opts.prefetch}{tag}: "
        f"spawn->last success {wall:.2f} s -> {result['drain_per_s']:,.0f} jobs/s; "
        f"first start->last finish {span:.2f} s -> {result['drain_steady_per_s']:,.0f} jobs/s "
        f"(start-up {startup:.2f} s)",
    )
    note(
        f"           exactly once: {'yes' if result['exactly_once'] else 'NO'} "
        f"(succeeded {checks['succeeded']}/{n}, attempts==1 {checks['attempts_1']}, "
        f"attempt rows {checks['attempt_rows']}; left in Redis after stop: "
        f"{left_ready} ready, {left_leases} leases); "
        f"worker log: {result['worker_log']}",
    )
    note("           CPU during drain: " + _cpu_text(cpu, wall))
    result["other_load_cores"] = cpu["other_load_cores"]
    return result


def _other_load(cpu: dict, wall: float) -> float | None:
    """Cores used during a phase by processes other than ours (bench, its backends, workers, Redis)."""
    busy = cpu.get("machine_busy_cores")
    if busy is None or wall <= 0:
        return None
    keys = ("workers_cpu_s", "postgres_backends_cpu_s", "redis_cpu_s", "bench_cpu_s")
    return max(busy - sum(cpu.get(k) or 0.0 for k in keys) / wall, 0.0)


def _other_text(other: float | None) -> str:
    return "" if other is None else f" (other processes used {other:.2f} cores meanwhile)"


def _cpu_text(cpu: dict, wall: float) -> str:
    def fmt(key: str) -> str:
        value = cpu.get(key)
        return "n/a" if value is None else f"{value:.2f} s"

    busy = cpu.get("machine_busy_cores")
    other = _other_load(cpu, wall)
    cpu["other_load_cores"] = other
    return (
        f"workers {fmt('workers_cpu_s')}, PostgreSQL backends {fmt('postgres_backends_cpu_s')}, "
        f"Redis {fmt('redis_cpu_s')}, this script {fmt('bench_cpu_s')} over {wall:.2f} s wall; "
        f"machine busy {'n/a' if busy is None else f'{busy:.2f}'} of {os.cpu_count()} cores "
        f"(other processes {'n/a' if other is None else f'{other:.2f}'} cores)"
    )


def phase_drain_in_process(opts: argparse.Namespace, prefix: str) -> dict:
    """Fallback profiler: one Worker (burst) in this process under cProfile (3.12 profiles all threads)."""
    import cProfile
    import pstats

    from workers.worker import Worker, WorkerConfig

    n = opts.jobs
    reset_data(prefix)
    fill_queue(n)
    config = WorkerConfig.from_settings([QUEUE], opts.threads, opts.prefetch, True, opts.prefetch_max)
    profiler = cProfile.Profile()
    t0 = time.monotonic()
    profiler.enable()
    try:
        Worker(config).run()
    finally:
        profiler.disable()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    wall = time.monotonic() - t0
    checks = _verify_drain(n)
    note(
        f"[drain]    in-process Worker(burst) under cProfile, 1 process x {opts.threads} threads: "
        f"{wall:.2f} s "
        f"-> {n / wall:,.0f} jobs/s; exactly once: {'yes' if checks['exactly_once'] else 'NO'}",
    )
    stats = pstats.Stats(profiler)
    for key, title in (("cumulative", "cumulative"), ("tottime", "total (self)")):
        print(f"\n--- top 25 by {title} time (cProfile, all threads) ---")
        stats.sort_stats(key).print_stats(25)
    return {"profiled_drain_per_s": n / wall, "profiler": "cprofile", "exactly_once": checks["exactly_once"]}


def phase_latency(opts: argparse.Namespace, prefix: str, workdir: Path, label: str) -> dict:
    """Idle 1-process worker; one enqueue at a time; created_at -> started_at, both PostgreSQL now()."""
    from django.db import connection

    from jobs import services

    reset_data(prefix)
    samples = opts.latency_samples
    ids: list[str] = []

    def run_one(timeout: float = 30.0) -> str:
        job = services.enqueue("noop")
        deadline = time.monotonic() + timeout
        with connection.cursor() as cursor:
            while True:
                cursor.execute("SELECT status FROM jobs_job WHERE id = %s", [job.id])
                if cursor.fetchone()[0] not in ACTIVE:
                    return str(job.id)
                if time.monotonic() > deadline:
                    raise SystemExit(f"pickup: job {job.id} not finished after {timeout:.0f}s")
                time.sleep(0.001)

    with running_worker(opts, 1, workdir, label) as worker:
        run_one(timeout=60)  # the worker is up and idle after this
        for _ in range(4):
            run_one()
            time.sleep(opts.latency_gap)
        local = _is_local(connection.settings_dict)
        before = CpuSnapshot.take(worker.find_root(), local)
        t0 = time.perf_counter()
        for _ in range(samples):
            ids.append(run_one())
            time.sleep(opts.latency_gap)
        seconds = time.perf_counter() - t0
        other = _other_load(CpuSnapshot.take(worker.find_root(), local).since(before, seconds), seconds)
        log = worker.log
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT extract(epoch FROM started_at - created_at) * 1000, "
            "extract(epoch FROM finished_at - created_at) * 1000, status, attempts "
            "FROM jobs_job WHERE id = ANY(%s::uuid[])",
            [ids],
        )
        rows = cursor.fetchall()
    pickup = [float(r[0]) for r in rows]
    finish = [float(r[1]) for r in rows]
    ok = len(rows) == samples and all(r[2] == "succeeded" and r[3] == 1 for r in rows)
    result = {
        "pickup_p50_ms": percentile(pickup, 50),
        "pickup_p95_ms": percentile(pickup, 95),
        "pickup_p99_ms": percentile(pickup, 99),
        "pickup_max_ms": max(pickup),
        "finish_p50_ms": percentile(finish, 50),
        "finish_p95_ms": percentile(finish, 95),
        "latency_ok": ok,
        "pickup_other_load_cores": other,
        "latency_worker_log": worker_log_summary(log()),
    }
    note(
        f"[pickup]   {samples} single jobs, {opts.latency_gap * 1000:.0f} ms apart, idle 1-process worker: "
        f"created_at->started_at p50 {result['pickup_p50_ms']:.2f} ms, p95 {result['pickup_p95_ms']:.2f} ms, "
        f"p99 {result['pickup_p99_ms']:.2f} ms, max {result['pickup_max_ms']:.2f} ms; "
        f"created_at->finished_at p50 {result['finish_p50_ms']:.2f} ms, "
        f"p95 {result['finish_p95_ms']:.2f} ms; "
        f"all succeeded once: {'yes' if ok else 'NO'}{_other_text(other)}",
    )
    return result


# --------------------------------------------------------------------------- profile (py-spy raw)


def find_pyspy() -> str | None:
    candidate = Path(sys.executable).parent / "py-spy"
    if candidate.exists():
        return str(candidate)
    return shutil.which("py-spy")


def pyspy_works(pyspy: str) -> bool:
    """py-spy needs ptrace; try it on a short child once."""
    with tempfile.NamedTemporaryFile(suffix=".txt") as out:
        probe = [pyspy, "record", "--format", "raw", "--output", out.name, "--duration", "1", "--"]
        probe += [sys.executable, "-c", "import time; t = time.time()\nwhile time.time() - t < 0.5: pass"]
        try:
            done = subprocess.run(probe, capture_output=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return False
        return done.returncode == 0 and Path(out.name).stat().st_size > 0


@dataclass
class ProfileTable:
    samples: int = 0
    own: Counter = field(default_factory=Counter)
    cumulative: Counter = field(default_factory=Counter)
    roles: Counter = field(default_factory=Counter)
    processes: Counter = field(default_factory=Counter)


# Frames every stack of a worker process goes through (process start, command dispatch, fork, threads):
# left out of the tables so the cumulative list starts at the worker's own code.
ENTRY_FRAMES = (
    "<module> (manage.py",
    "main (manage.py",
    "execute_from_command_line (",
    "ManagementUtility.",
    "BaseCommand.",
    "Command.handle (workers/",
    "Supervisor.",
    "_child_main (",
    "Popen.",
    "ForkProcess.",
    "BaseProcess.",
    "Thread._bootstrap",
    "Thread.run (",
    "Worker.run (",
)

ROLE_MARKERS = (
    ("_executor", "executor threads"),
    ("_keeper", "keeper thread"),
    ("_waker", "waker thread"),
    ("Maintenance", "maintenance thread"),
    ("maintenance.py", "maintenance thread"),
    ("_loop", "main loop"),
    ("_shutdown", "shutdown"),
)


def parse_pyspy(path: Path, supervisor_pid: int) -> ProfileTable:
    """Collapsed stacks -> self and cumulative samples per function, worker children only."""
    table = ProfileTable()
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        frames = stack.split(";")
        # With --subprocesses each stack starts with the process chain: root;child;...; keep children only.
        pid_text = ""
        while frames and frames[0].startswith("process "):
            pid_text = frames.pop(0)[len("process ") :].split(":", 1)[0]
        if pid_text == str(supervisor_pid):
            continue
        frames = [f for f in frames if f and not f.startswith("thread (")]
        if not frames:
            continue
        frames = [f for f in frames if not f.startswith(ENTRY_FRAMES)] or frames[-1:]
        count = int(count_text)
        table.samples += count
        table.processes[pid_text] += count
        table.own[frames[-1]] += count
        for frame in set(frames):
            table.cumulative[frame] += count
        joined = ";".join(frames)
        role = next((name for marker, name in ROLE_MARKERS if marker in joined), "start-up / other")
        table.roles[role] += count
    return table


def print_profile(table: ProfileTable, wall: float) -> dict:
    total = table.samples or 1
    held = [n / (PYSPY_RATE * wall) for n in table.processes.values()]
    print(
        f"\n--- py-spy --gil, worker processes only: {table.samples} samples of the GIL-holding thread "
        f"at {PYSPY_RATE} Hz; GIL held {', '.join(f'{h:.0%}' for h in held)} of the "
        f"{wall:.2f} s drain in each of {len(held)} process(es) ---"
    )
    print("by thread role: " + ", ".join(f"{k} {v / total:.0%}" for k, v in table.roles.most_common()))
    for title, counter in (("cumulative", table.cumulative), ("total (self)", table.own)):
        print(f"\ntop 25 functions by {title} samples:")
        for frame, count in counter.most_common(25):
            print(f"  {count / total:6.1%}  {count:6d}  {frame}")
    return {
        "profile_samples": table.samples,
        "profile_roles": {k: v / total for k, v in table.roles.items()},
        "profile_cumulative": [(f, c / total) for f, c in table.cumulative.most_common(25)],
        "profile_self": [(f, c / total) for f, c in table.own.most_common(25)],
    }


# --------------------------------------------------------------------------- output


# The files on the measured paths (enqueue, settle, the worker loop); a change elsewhere is not reported.
ENGINE_PATHS = (
    "jobs/services",
    "jobs/events.py",
    "jobs/metrics.py",
    "jobs/dispatch.py",
    "jobs/registry.py",
    "jobs/models.py",
    "workers",
)


def engine_revision() -> str:
    """The commit measured, and whether the engine's files differ from it (read-only git calls)."""
    git = ["git", "--no-optional-locks", "-C", str(REPO)]
    try:
        head = subprocess.run(
            [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        )
        dirty = subprocess.run(
            [*git, "status", "--porcelain", "--untracked-files=no", "--", *ENGINE_PATHS],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown (no git)"
    if head.returncode != 0:
        return "unknown (not a git checkout)"
    changed = sorted({line[3:] for line in dirty.stdout.splitlines() if line.strip()})
    return head.stdout.strip() + (f" + uncommitted changes in {', '.join(changed)}" if changed else "")


def describe(opts: argparse.Namespace, env: dict[str, str], pyspy: str | None) -> dict:
    import django
    import psycopg
    import redis as redis_py
    from django.conf import settings
    from django.db import connection

    from workers import worker as worker_module

    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('server_version')")
        pg_version = cursor.fetchone()[0]
        pg_settings = {}
        for name in (
            "fsync",
            "synchronous_commit",
            "full_page_writes",
            "wal_level",
            "shared_buffers",
            "max_connections",
        ):
            cursor.execute("SELECT current_setting(%s)", [name])
            pg_settings[name] = cursor.fetchone()[0]
    info = redis_client().info("server")
    persistence = redis_client().info("persistence")
    redis_conf = redis_client().config_get("save") | redis_client().config_get("appendonly")
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count()
    db = connection.settings_dict
    config = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "revision": engine_revision(),
        "python": platform.python_version(),
        "django": django.get_version(),
        "psycopg": psycopg.__version__,
        "redis_py": redis_py.__version__,
        "postgresql": pg_version,
        "postgresql_settings": pg_settings,
        "redis": info.get("redis_version"),
        "redis_persistence": {**redis_conf, "aof_enabled": persistence.get("aof_enabled")},
        "cpus": os.cpu_count(),
        "cpus_usable": affinity,
        "loadavg": os.getloadavg(),
        "platform": platform.platform(),
        "database": f"{db['NAME']} on {db['HOST'] or 'localhost'}",
        "redis_prefix": env["JOBQUEUE_REDIS_PREFIX"],
        "django_debug": settings.DEBUG,
        "worker": {
            "processes": opts.processes,
            "threads": opts.threads,
            "prefetch": opts.prefetch,
            "prefetch_max": worker_module.WorkerConfig.from_settings(
                [QUEUE], opts.threads, opts.prefetch, False, opts.prefetch_max
            ).prefetch_max,
            "prefetch_horizon_s": worker_module.PREFETCH_HORIZON,
            "lease_seconds": settings.JOBQUEUE_LEASE_SECONDS,
            "flush_size": worker_module.FLUSH_SIZE,
            "flush_age_s": worker_module.FLUSH_AGE,
            "conn_max_age": db.get("CONN_MAX_AGE"),
        },
        "jobs": opts.jobs,
        "latency_samples": opts.latency_samples,
        "latency_gap_s": opts.latency_gap,
        "runs": opts.runs,
        "profiler": ("py-spy" if pyspy else "cprofile") if opts.profile_worker else None,
    }
    print("jobqueue throughput benchmark")
    print(f"  date          {config['date']}")
    print(f"  revision      {config['revision']}")
    print(
        f"  machine       {config['platform']}, {config['cpus']} CPUs ({affinity} usable), loadavg "
        + " ".join(f"{x:.2f}" for x in config["loadavg"])
    )
    print(
        f"  python        {config['python']}, Django {config['django']}, psycopg {config['psycopg']}, "
        f"redis-py {config['redis_py']}"
    )
    print(
        f"  postgresql    {pg_version} ({config['database']}): "
        + ", ".join(f"{k}={v}" for k, v in pg_settings.items())
    )
    print(
        f"  redis         {config['redis']} (prefix {config['redis_prefix']}, "
        f"save={redis_conf.get('save')!r}, "
        f"appendonly={redis_conf.get('appendonly')})"
    )
    print(f"  django        DEBUG={settings.DEBUG}, CONN_MAX_AGE={db.get('CONN_MAX_AGE')}")
    w = config["worker"]
    print(
        f"  worker        runworker --queues {QUEUE} --processes {w['processes']} --threads {w['threads']} "
        f"--prefetch {w['prefetch']} --prefetch-max {w['prefetch_max']} "
        f"(window horizon {w['prefetch_horizon_s']}s, "
        f"FLUSH_SIZE={w['flush_size']}, FLUSH_AGE={w['flush_age_s']}s, "
        f"lease {w['lease_seconds']:g}s)"
    )
    print(
        f"  workload      {opts.jobs} noop jobs per phase, {opts.latency_samples} pickup samples "
        f"{opts.latency_gap * 1000:.0f} ms apart, {opts.runs} run(s)"
        + (f", profiler {config['profiler']}" if config["profiler"] else "")
    )
    return config


def _agg(values: list[float], fmt: str) -> str:
    if not values:
        return "n/a"
    med = statistics.median(values)
    if len(values) == 1:
        return format(med, fmt)
    return f"{format(med, fmt)} [{format(min(values), fmt)}-{format(max(values), fmt)}]"


def summary_line(runs: list[dict]) -> str:
    def col(key: str) -> list[float]:
        return [r[key] for r in runs if key in r]

    parts = [f"runs={len(runs)}"]
    for key, label, fmt in (
        ("enqueue_per_s", "enqueue/s", ",.0f"),
        ("insert_ceiling_per_s", "bare_insert/s", ",.0f"),
        ("enqueue_share_of_ceiling", "enqueue_share", ".2f"),
        ("bulk_per_s", "bulk/s", ",.0f"),
        ("drain_per_s", "drain/s", ",.0f"),
        ("drain_steady_per_s", "drain_excl_startup/s", ",.0f"),
        ("pickup_p50_ms", "pickup_p50_ms", ".2f"),
        ("pickup_p95_ms", "pickup_p95_ms", ".2f"),
        ("pickup_p99_ms", "pickup_p99_ms", ".2f"),
        ("profiled_drain_per_s", "profiled_drain/s", ",.0f"),
    ):
        if col(key):
            parts.append(f"{label}={_agg(col(key), fmt)}")
    others = [
        v for r in runs for k, v in r.items() if k.endswith("other_load_cores") and isinstance(v, float)
    ]
    if others:
        parts.append(f"max_other_load_cores={max(others):.2f}")
    checks = [r["exactly_once"] for r in runs if "exactly_once" in r]
    checks += [r["latency_ok"] for r in runs if "latency_ok" in r]
    if checks:
        parts.append(f"exactly_once={'yes' if all(checks) else 'NO'}")
    return "SUMMARY " + " ".join(parts)


# --------------------------------------------------------------------------- main


@contextlib.contextmanager
def bench_lock(database_url: str) -> Iterator[None]:
    """One bench at a time per bench database (they empty each other's tables otherwise)."""
    import psycopg

    conn = psycopg.connect(database_url, autocommit=True)
    try:
        got = conn.execute("SELECT pg_try_advisory_lock(hashtext('jobqueue-bench'))").fetchone()[0]
        if not got:
            raise SystemExit("another bench/throughput.py is using this database; try again later")
        yield
    finally:
        conn.close()


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    env = configure_environment(opts)

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    prefix = env["JOBQUEUE_REDIS_PREFIX"]
    pyspy = None
    if opts.profile_worker and opts.profiler != "cprofile":
        pyspy = find_pyspy()
        if pyspy and not pyspy_works(pyspy):
            print("py-spy cannot sample here (ptrace refused?); falling back to cProfile", file=sys.stderr)
            pyspy = None
        if pyspy is None and opts.profiler == "py-spy":
            raise SystemExit("--profiler py-spy: py-spy is not installed or cannot attach")

    with bench_lock(env["DATABASE_URL"]):
        call_command("migrate", verbosity=0, interactive=False)
        config = describe(opts, env, pyspy)
        runs: list[dict] = []
        workdir = Path(tempfile.mkdtemp(prefix="jqbench-"))
        finished = False
        try:
            for number in range(1, opts.runs + 1):
                result: dict = {"background_load_cores": {}}

                if not opts.skip_enqueue:
                    quiet(opts, "enqueue", number, result)
                    result |= phase_enqueue(opts, prefix)
                if not opts.skip_bulk:
                    quiet(opts, "bulk", number, result)
                    result |= phase_bulk(opts, prefix)
                if not opts.skip_drain:
                    quiet(opts, "drain", number, result)
                    if opts.profile_worker and pyspy is None:
                        result |= phase_drain_in_process(opts, prefix)
                    else:
                        label = f"drain-{number}"
                        drained = phase_drain(opts, prefix, workdir, label, pyspy)
                        if pyspy:
                            drained["profiled_drain_per_s"] = drained.pop("drain_per_s")
                            drained.pop("drain_steady_per_s")
                            table = parse_pyspy(workdir / f"{label}.pyspy.txt", drained["supervisor_pid"])
                            drained |= print_profile(table, drained["drain_wall_s"])
                        result |= drained
                if not opts.skip_latency and opts.latency_samples:
                    quiet(opts, "pickup", number, result)
                    result |= phase_latency(opts, prefix, workdir, f"latency-{number}")
                runs.append(result)
            finished = True
        finally:
            reset_data(prefix)
            delete_prefix(prefix)
            connection.close()
            if finished and not opts.keep_logs:
                shutil.rmtree(workdir, ignore_errors=True)
            else:
                note(f"worker logs and profiles kept in {workdir}")
        line = summary_line(runs)
        print(line, flush=True)
        if opts.json:
            opts.json.write_text(
                json.dumps({"config": config, "runs": runs, "summary": line}, indent=2, default=str)
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
