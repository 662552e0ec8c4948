"""Chaos soak: the real system under a mixed load while processes and servers are killed at random.

Usage: ``make chaos`` (300 s of faults, 50,000 jobs) or ``make chaos ARGS=--short`` (CI: 90 s, 5,000
jobs), or ``.venv/bin/python bench/chaos.py [options]``. docs/reliability.md describes it in full.

It runs daphne (the web process), ``manage.py runscheduler`` and ``--supervisors`` ``manage.py
runworker --processes 2`` supervisors against PostgreSQL and Redis that it starts itself under a
temporary directory (the embedded servers of jobqueue_site/embedded.py), so it may restart them, flush
Redis and ``pg_ctl restart -m immediate``. With ``--servers env`` it uses DATABASE_URL / REDIS_URL
instead, in a database of its own and under its own Redis key prefix: then it neither restarts them
nor FLUSHALLs (a "flush" deletes only its own prefix), and says so in the fault table.

While it enqueues the mix (no-ops, sleeps, random and permanent failures, timeouts, a hard-limit hang,
delayed jobs, cancels through ``jobs.services.cancel``, cron schedules firing every minute), it injects
one fault every few seconds. Then it lets everything settle and checks, from PostgreSQL, the invariants
listed in ``check_invariants``. It prints the faults (kind, count) and the invariants (name,
violations), and exits 1 on any violation. Every loop is bounded in time or count; every socket is a
unix socket or loopback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from benchenv import delete_redis_prefix, isolate  # noqa: E402  (bench/ is on sys.path)

REPO = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(REPO))

QUEUES = ("high", "default", "low")
LEASE_SECONDS = 6.0
ACTIVE = ("scheduled", "queued", "running", "retrying")
TERMINAL = ("succeeded", "failed", "cancelled")
SCHEDULES = 3
TAIL_JOBS = 330  # the fault-free load after the faults (Soak.tail)
FAULT_KINDS = (
    "kill_worker_child",
    "kill_supervisor",
    "stop_worker_child",
    "redis_restart",
    "redis_flush",
    "pg_restart",
    "pg_terminate",
    "kill_scheduler",
)
WEIGHTS = {
    "kill_worker_child": 4.0,
    "kill_supervisor": 1.5,
    "stop_worker_child": 1.5,
    "redis_restart": 1.0,
    "redis_flush": 1.0,
    "pg_restart": 1.0,
    "pg_terminate": 1.5,
    "kill_scheduler": 1.0,
}


def note(message: str) -> None:
    print(f"chaos {time.strftime('%H:%M:%S')}: {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- options


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", action="store_true", help="CI preset: 5,000 jobs, 90 s of faults")
    parser.add_argument("--jobs", type=int, help="jobs enqueued during the run (default 50000; short 5000)")
    parser.add_argument("--duration", type=float, help="seconds of fault injection (default 300; short 90)")
    parser.add_argument(
        "--fault-gap",
        type=float,
        nargs=2,
        metavar=("MIN", "MAX"),
        default=(2.0, 5.0),
        help="seconds between faults, drawn uniformly (default 2 5)",
    )
    parser.add_argument(
        "--faults",
        default=",".join(FAULT_KINDS),
        help=f"comma-separated fault kinds to inject (default all: {','.join(FAULT_KINDS)})",
    )
    parser.add_argument("--seed", type=int, help="random seed (default: random, printed)")
    parser.add_argument("--supervisors", type=int, default=2, help="runworker supervisors (default 2)")
    parser.add_argument("--processes", type=int, default=2, help="worker processes each (default 2)")
    parser.add_argument("--threads", type=int, default=8, help="handler threads per process (default 8)")
    parser.add_argument(
        "--settle-timeout", type=float, help="most seconds to wait for quiescence (default 300; short 120)"
    )
    parser.add_argument(
        "--servers",
        choices=("own", "env"),
        default="own",
        help="own: start PostgreSQL + Redis under a temp dir (default); env: use DATABASE_URL/REDIS_URL",
    )
    parser.add_argument("--database", default="jobqueue_chaos", help="database to create and use")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, server data)")
    parser.add_argument("--json", type=Path, help="also write faults and invariants to this file")
    opts = parser.parse_args(argv)
    short = opts.short
    opts.jobs = opts.jobs if opts.jobs is not None else (5000 if short else 50_000)
    opts.duration = opts.duration if opts.duration is not None else (90.0 if short else 300.0)
    if opts.settle_timeout is None:
        opts.settle_timeout = 120.0 if short else 300.0
    opts.fault_kinds = [kind.strip() for kind in opts.faults.split(",") if kind.strip()]
    unknown = sorted(set(opts.fault_kinds) - set(FAULT_KINDS))
    if unknown:
        parser.error(f"--faults: unknown kind(s) {', '.join(unknown)}; known: {', '.join(FAULT_KINDS)}")
    if opts.jobs < 1 or opts.duration < 10 or opts.supervisors < 1 or opts.processes < 1:
        parser.error("--jobs >= 1, --duration >= 10, --supervisors >= 1 and --processes >= 1")
    if not 0.1 <= opts.fault_gap[0] <= opts.fault_gap[1]:
        parser.error("--fault-gap MIN MAX: 0.1 <= MIN <= MAX")
    if opts.seed is None:
        opts.seed = secrets.randbelow(2**31)
    return opts


# --------------------------------------------------------------------------- servers


class Servers:
    """The servers the soak runs against; only ``owned`` ones may be restarted or flushed whole."""

    owned = False

    def database_url(self) -> str:
        return os.environ["DATABASE_URL"]

    def redis_url(self) -> str:
        return os.environ["REDIS_URL"]

    def pg_restart(self) -> None:
        raise NotImplementedError

    def redis_shutdown(self) -> None:
        raise NotImplementedError

    def redis_start(self) -> None:
        raise NotImplementedError

    def redis_up(self) -> bool:
        return True

    def stop(self) -> None:
        pass


class OwnedServers(Servers):
    """An embedded PostgreSQL + Redis pair under ``root`` (jobqueue_site/embedded.py's code, own dir)."""

    owned = True

    def __init__(self, where: Path) -> None:
        from jobqueue_site import embedded

        self.embedded = embedded

        @dataclass(frozen=True)
        class SoakProfile(embedded.Profile):
            base: Path = where

            @property
            def root(self) -> Path:  # type: ignore[override]
                return self.base

            @property
            def fast(self) -> bool:  # type: ignore[override]
                return True

        where.chmod(0o711)  # PostgreSQL may run as another user (embedded.py, when we are root)
        self.profile = SoakProfile("chaos")
        self._db_url, _ = embedded._pg_start(self.profile)
        self._redis_url, _ = embedded._redis_start(self.profile)
        # The embedded "fast" profile turns synchronous_commit off, which lets an immediate restart lose
        # commits the clients were told about: a server fault, not the engine's. fsync stays off (a
        # process crash, unlike a machine crash, loses nothing the kernel was given).
        import psycopg

        with psycopg.connect(self._db_url, autocommit=True) as conn:
            conn.execute("ALTER SYSTEM SET synchronous_commit = on")
            conn.execute("SELECT pg_reload_conf()")
        self.redis_down = False

    def database_url(self) -> str:
        return self._db_url

    def redis_url(self) -> str:
        return self._redis_url

    def pg_restart(self) -> None:
        emb, prof = self.embedded, self.profile
        cmd = [str(emb._pg_bin("pg_ctl")), "-D", str(prof.pgdata), "-l", str(prof.pg_log)]
        result = emb._run_as(emb._pg_account(), [*cmd, "-m", "immediate", "-w", "-t", "60", "restart"], 90)
        if result.returncode != 0:
            raise RuntimeError(f"pg_ctl restart failed: {result.stderr.strip()}")

    def redis_shutdown(self) -> None:
        import redis

        client = redis.Redis.from_url(self._redis_url, socket_timeout=5)
        with contextlib.suppress(redis.ConnectionError):
            client.shutdown(nosave=True)
        client.close()
        deadline = time.monotonic() + 10
        while self.embedded._redis_pid(self.profile) is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        self.redis_down = True

    def redis_start(self) -> None:
        self.embedded._redis_start(self.profile)
        self.redis_down = False

    def redis_up(self) -> bool:
        return not self.redis_down

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.embedded._redis_stop(self.profile)
        with contextlib.suppress(Exception):
            self.embedded._pg_stop(self.profile)


# --------------------------------------------------------------------------- processes


@dataclass
class Proc:
    """One process of the system under test, in its own session (so its whole group can be killed)."""

    name: str
    cmd: list[str]
    log: Path
    env: dict[str, str]
    popen: subprocess.Popen | None = None
    starts: int = 0

    def start(self) -> None:
        with self.log.open("a") as log:
            log.write(f"\n===== chaos: start #{self.starts + 1} at {time.strftime('%H:%M:%S')}\n")
            log.flush()
            self.popen = subprocess.Popen(
                self.cmd, cwd=REPO, env=self.env, stdout=log, stderr=log, start_new_session=True
            )
        self.starts += 1

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def children(self) -> list[int]:
        if not self.alive():
            return []
        try:
            text = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text()
        except OSError:
            return []
        return [int(pid) for pid in text.split()]

    def group_members(self) -> list[int]:
        """Live processes of this process's session other than itself (orphans after a kill -9)."""
        found = []
        if self.popen is None:
            return found
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == self.pid:
                continue
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = (entry / "stat").read_text()
                fields = stat[stat.rindex(")") + 2 :].split()
                if int(fields[3]) == self.pid and fields[0] != "Z":  # pgid
                    found.append(int(entry.name))
        return found

    def kill_group(self) -> None:
        if self.popen is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGCONT)
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(5)

    def stop(self, timeout: float = 45.0) -> None:
        """SIGTERM, then SIGKILL of the whole group if it outlives ``timeout``."""
        if self.popen is None:
            return
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGCONT)
                self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                note(f"{self.name} did not stop in {timeout:.0f}s: killing its group")
        self.kill_group()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --------------------------------------------------------------------------- the soak


@dataclass
class Soak:
    opts: argparse.Namespace
    servers: Servers
    workdir: Path
    env: dict[str, str]
    rng: random.Random
    web: Proc | None = None
    scheduler: Proc | None = None
    supervisors: list[Proc] = field(default_factory=list)
    faults: Counter[str] = field(default_factory=Counter)
    fault_log: list[tuple[float, str, str]] = field(default_factory=list)
    pending: list[tuple[float, str, Any]] = field(default_factory=list)  # (due, action, arg)
    stopped: set[int] = field(default_factory=set)
    enqueued: int = 0
    enqueue_errors: int = 0
    cancels: Counter[str] = field(default_factory=Counter)
    recent: list[str] = field(default_factory=list)
    acknowledged: list[str] = field(default_factory=list)  # ids enqueue_many returned (committed)
    orphans_seen: int = 0
    caught_up: bool = True
    started_at: float = 0.0
    port: int = 0
    token: str = ""

    # ---- processes

    def start_all(self) -> None:
        from jobqueue_site.devrun import daphne_command

        py = sys.executable
        self.port = free_port()
        logs = self.workdir / "logs"
        logs.mkdir(exist_ok=True)
        self.web = Proc("web", daphne_command("127.0.0.1", self.port), logs / "web.log", self.env)
        self.scheduler = Proc(
            "scheduler", [py, "manage.py", "runscheduler"], logs / "scheduler.log", self.env
        )
        worker = [py, "manage.py", "runworker", "--queues", ",".join(QUEUES)]
        worker += ["--processes", str(self.opts.processes), "--threads", str(self.opts.threads)]
        self.supervisors = [
            Proc(f"supervisor-{n}", worker, logs / f"supervisor-{n}.log", self.env)
            for n in range(self.opts.supervisors)
        ]
        for proc in [self.web, self.scheduler, *self.supervisors]:
            proc.start()

    def all_procs(self) -> list[Proc]:
        return [p for p in [self.web, self.scheduler, *self.supervisors] if p is not None]

    def worker_children(self) -> list[int]:
        return [pid for sup in self.supervisors for pid in sup.children() if pid not in self.stopped]

    # ---- load

    def job_specs(self, count: int, window_left: float) -> list[Any]:
        from jobs.values import JobSpec

        specs = []
        for _ in range(count):
            roll = self.rng.random()
            queue = self.rng.choice(QUEUES)
            if roll < 0.55:
                spec = JobSpec(type="chaos.noop", kwargs={"n": self.rng.randrange(1000)}, queue=queue)
            elif roll < 0.67:
                spec = JobSpec(
                    type="chaos.sleep", kwargs={"seconds": self.rng.uniform(0.02, 0.5)}, queue=queue
                )
            elif roll < 0.79:
                spec = JobSpec(type="chaos.flaky", kwargs={"rate": 0.4}, queue=queue)
            elif roll < 0.83:
                kwargs = {"to": "soak@example.invalid", "subject": "chaos", "failure_rate": 0.3}
                spec = JobSpec(type="email.send", kwargs=kwargs, queue=queue)
            elif roll < 0.86:
                spec = JobSpec(type="chaos.fail", queue=queue)
            elif roll < 0.88:
                spec = JobSpec(type="chaos.permanent", queue=queue)
            elif roll < 0.90:
                spec = JobSpec(type="chaos.timeout", queue=queue)
            elif roll < 0.9006:
                spec = JobSpec(type="chaos.hang", kwargs={"seconds": 4.0}, queue=queue)
            elif roll < 0.98:
                delay = self.rng.uniform(0.5, max(1.0, min(30.0, window_left)))
                spec = JobSpec(type="chaos.noop", queue=queue, delay=delay)
            else:  # long enough to be running when a cancel comes
                spec = JobSpec(
                    type="chaos.sleep", kwargs={"seconds": self.rng.uniform(1.0, 3.0)}, queue=queue
                )
            specs.append(spec)
        return specs

    def enqueue(self, count: int, window_left: float) -> None:
        from django.db import connection

        from jobs import services

        try:
            jobs = services.enqueue_many(self.job_specs(count, window_left))
        except Exception as exc:  # noqa: BLE001 - PostgreSQL may be restarting: try again next tick
            self.enqueue_errors += 1
            note(f"enqueue of {count} failed ({type(exc).__name__}); retried next tick")
            connection.close()
            return
        self.enqueued += len(jobs)
        self.acknowledged.extend(str(job.pk) for job in jobs)
        self.recent = (self.recent + [str(job.pk) for job in jobs])[-2000:]

    def cancel_some(self, count: int) -> None:
        from django.db import connection

        from jobs import services
        from jobs.errors import IllegalTransition

        for job_id in self.rng.sample(self.recent, min(count, len(self.recent))):
            try:
                job = services.cancel(job_id)
                self.cancels["requested" if job.status == "running" else "cancelled"] += 1
            except IllegalTransition:
                self.cancels["already finished"] += 1
            except Exception as exc:  # noqa: BLE001 - a server may be down
                self.cancels[f"error {type(exc).__name__}"] += 1
                connection.close()

    def create_schedules(self) -> None:
        from scheduling.models import Schedule

        for n in range(SCHEDULES):
            Schedule.objects.create(
                name=f"chaos-every-minute-{n}",
                type="chaos.noop",
                kwargs={"n": n},
                cron="* * * * *",
                timezone="UTC",
                misfire_policy="run_all",
                catch_up_limit=10,
            )

    # ---- faults

    def inject(self, kind: str) -> str:
        """Inject one fault of ``kind``; returns what was done, or "" when it does not apply now."""
        rng = self.rng
        if kind == "kill_worker_child":
            children = self.worker_children()
            if not children:
                return ""
            pid = rng.choice(children)
            os.kill(pid, signal.SIGKILL)
            return f"SIGKILL worker child {pid}"
        if kind == "kill_supervisor":
            live = [s for s in self.supervisors if s.alive()]
            if len(live) < 2:  # keep one running, so work goes on while the other is down
                return ""
            sup = rng.choice(live)
            children = sup.children()
            os.kill(sup.pid, signal.SIGKILL)
            self.pending.append((time.monotonic() + rng.uniform(1.0, 3.0), "restart_supervisor", sup))
            return f"SIGKILL {sup.name} {sup.pid} (children {children} orphaned)"
        if kind == "stop_worker_child":
            children = self.worker_children()
            if not children:
                return ""
            pid = rng.choice(children)
            os.kill(pid, signal.SIGSTOP)
            self.stopped.add(pid)
            pause = LEASE_SECONDS + rng.uniform(1.0, 4.0)
            self.pending.append((time.monotonic() + pause, "sigcont", pid))
            return f"SIGSTOP worker child {pid} for {pause:.1f}s (lease {LEASE_SECONDS:.0f}s)"
        if kind == "redis_restart":
            if not self.servers.owned or not self.servers.redis_up():
                return ""
            self.servers.redis_shutdown()
            self.pending.append((time.monotonic() + rng.uniform(1.0, 3.0), "redis_start", None))
            return "Redis SHUTDOWN NOSAVE"
        if kind == "redis_flush":
            if not self.servers.redis_up():
                return ""
            import redis

            client = redis.Redis.from_url(self.servers.redis_url(), socket_timeout=5)
            try:
                if self.servers.owned:
                    client.flushall()
                    return "Redis FLUSHALL"
                deleted = delete_redis_prefix(client, self.env["JOBQUEUE_REDIS_PREFIX"])
                return f"deleted the {deleted} keys of the soak's prefix (shared Redis: no FLUSHALL)"
            finally:
                client.close()
        if kind == "pg_restart":
            if not self.servers.owned:
                return ""
            started = time.monotonic()
            self.servers.pg_restart()
            return f"pg_ctl restart -m immediate ({time.monotonic() - started:.1f}s)"
        if kind == "pg_terminate":
            import psycopg
            from benchenv import with_database

            with psycopg.connect(
                with_database(self.env["DATABASE_URL"], "postgres"), autocommit=True
            ) as conn:
                rows = conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = %s AND pid <> pg_backend_pid()",
                    [self.opts.database],
                ).fetchall()
            return f"pg_terminate_backend of {len(rows)} connections"
        if kind == "kill_scheduler":
            assert self.scheduler is not None
            if not self.scheduler.alive():
                return ""
            os.kill(self.scheduler.pid, signal.SIGKILL)
            self.pending.append((time.monotonic() + rng.uniform(1.0, 5.0), "restart_scheduler", None))
            return f"SIGKILL scheduler {self.scheduler.pid}"
        raise ValueError(kind)

    def run_pending(self, everything: bool = False) -> None:
        now = time.monotonic()
        due = [item for item in self.pending if everything or item[0] <= now]
        self.pending = [item for item in self.pending if item not in due]
        for _, action, arg in sorted(due, key=lambda item: item[0]):
            if action == "sigcont":
                with contextlib.suppress(ProcessLookupError):
                    os.kill(arg, signal.SIGCONT)
                self.stopped.discard(arg)
            elif action == "redis_start":
                self.servers.redis_start()
            elif action == "restart_supervisor":
                orphans = arg.group_members()
                self.orphans_seen += len(orphans)
                arg.kill_group()  # what a container runtime does to the rest of a dead supervisor's group
                arg.start()
            elif action == "restart_scheduler":
                assert self.scheduler is not None
                self.scheduler.kill_group()
                self.scheduler.start()

    def fault_loop(self) -> None:
        from django.db import close_old_connections

        opts, rng = self.opts, self.rng
        duration = opts.duration
        enqueue_window = duration * 0.95  # load until the end; delayed jobs fall due inside the window
        weights = [WEIGHTS[k] for k in opts.fault_kinds]
        self.started_at = start = time.monotonic()
        next_fault = start + rng.uniform(*opts.fault_gap)
        last_report = start
        while (now := time.monotonic()) < start + duration:
            elapsed = now - start
            want = min(opts.jobs, int(opts.jobs * min(1.0, elapsed / enqueue_window)))
            if want > self.enqueued:
                self.enqueue(min(want - self.enqueued, 2000), enqueue_window - elapsed)
            if self.recent and rng.random() < 0.3:
                self.cancel_some(rng.randint(1, 5))
            self.run_pending()
            if opts.fault_kinds and now >= next_fault:
                kind = rng.choices(opts.fault_kinds, weights)[0]
                try:
                    done = self.inject(kind)
                except Exception as exc:  # noqa: BLE001 - a fault that failed to apply is reported, not fatal
                    done = ""
                    note(f"fault {kind} could not be injected: {exc}")
                if done:
                    self.faults[kind] += 1
                    self.fault_log.append((round(now - start, 1), kind, done))
                    note(f"t={now - start:5.1f}s fault {kind}: {done}")
                next_fault = time.monotonic() + rng.uniform(*opts.fault_gap)
            if now - last_report >= 15:
                last_report = now
                total = sum(self.faults.values())
                note(f"t={elapsed:5.0f}s enqueued {self.enqueued}/{opts.jobs}, faults {total}")
            close_old_connections()
            time.sleep(0.2)
        if self.enqueued < opts.jobs:  # PostgreSQL was down at the wrong moments: enqueue the rest now
            for _ in range(100):
                if self.enqueued >= opts.jobs:
                    break
                self.enqueue(min(opts.jobs - self.enqueued, 2000), 0.0)
                time.sleep(0.2 if self.enqueued < opts.jobs else 0)

    def recover(self) -> None:
        """End of faults: wake and restart everything, so the system can settle."""
        self.run_pending(everything=True)
        for pid in list(self.stopped):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        self.stopped.clear()
        if not self.servers.redis_up():
            self.servers.redis_start()
        for proc in self.all_procs():
            if not proc.alive():
                note(f"{proc.name} was not running at the end of the faults: restarting it")
                proc.kill_group()
                proc.start()

    def settle(self) -> tuple[bool, float]:
        """Stop the scheduler, then wait until PostgreSQL holds no active job. Returns (settled, seconds)."""
        from django.db import connection

        assert self.scheduler is not None
        if self.scheduler.alive():
            self.caught_up = self.wait_for_schedules()
        self.scheduler.stop()
        started = time.monotonic()
        deadline = started + self.opts.settle_timeout
        last = -1
        while time.monotonic() < deadline:
            try:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT count(*) FROM jobs_job WHERE status = ANY(%s)", [list(ACTIVE)])
                    (active,) = cursor.fetchone()
            except Exception:  # noqa: BLE001
                connection.close()
                active = -1
            if active == 0:
                return True, time.monotonic() - started
            if active != last:
                note(f"settling: {active} active jobs")
                last = active
            time.sleep(1.0)
        return False, time.monotonic() - started

    def wait_for_schedules(self, limit: float = 90.0) -> bool:
        """Before the scheduler stops: wait until it has fired every due time (next_run_at in the future)."""
        from django.db import connection

        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            try:
                behind = sql("SELECT count(*) FROM scheduling_schedule WHERE next_run_at <= now()")[0][0]
            except Exception:  # noqa: BLE001
                connection.close()
                behind = -1
            if behind == 0:
                return True
            time.sleep(0.5)
        return False

    def tail(self, before: dict[str, Any] | None) -> tuple[tuple[str, int, list[str]], dict[str, Any] | None]:
        """After the faults, a small fault-free load: its counter increments must equal PostgreSQL's.

        Whole counters cannot be compared after a Redis restart or FLUSHALL (they start again from
        zero) or a kill -9 (up to a second of counts unflushed); increments over a quiet stretch can.
        """
        from jobs import services
        from jobs.values import JobSpec

        name = "outcome counters grow exactly as PostgreSQL after the faults"
        if before is None:
            return (name, 1, ["/api/stats/ did not answer before the tail load"]), None
        pg_before = dict(sql("SELECT status, count(*) FROM jobs_job GROUP BY status"))
        specs = [JobSpec(type="chaos.noop", queue=self.rng.choice(QUEUES)) for _ in range(300)]
        specs += [JobSpec(type="chaos.permanent") for _ in range(20)]
        services.enqueue_many(specs)
        for job in services.enqueue_many([JobSpec(type="chaos.noop", delay=3600) for _ in range(10)]):
            services.cancel(job.pk)
        settled, _ = self.settle()
        time.sleep(2.5)  # the metrics flushers write about once a second
        after = self.api_stats()
        if not settled or after is None:
            return (name, 1, ["the tail load did not settle, or /api/stats/ did not answer"]), after
        pg_after = dict(sql("SELECT status, count(*) FROM jobs_job GROUP BY status"))
        problems = []
        for status in TERMINAL:
            counted = after["counts"][status] - before["counts"][status]
            stored = pg_after.get(status, 0) - pg_before.get(status, 0)
            if counted != stored:
                problems.append(f"{status}: counters +{counted}, PostgreSQL +{stored}")
        return (name, len(problems), problems), after

    def api_stats(self) -> dict[str, Any] | None:
        """GET /api/stats/ from daphne once its PostgreSQL view (cached for seconds) is newer than now."""
        from django.utils import timezone

        since = timezone.now()
        url = f"http://127.0.0.1:{self.port}/api/stats/"
        request = urllib.request.Request(url, headers={"Authorization": f"Token {self.token}"})
        stats = None
        for _ in range(40):
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    stats = json.loads(response.read())
                if datetime.fromisoformat(stats["postgres"]["as_of"]) >= since:
                    return stats
            except Exception as exc:  # noqa: BLE001
                note(f"/api/stats/ not answering yet: {exc}")
            time.sleep(1.0)
        return stats


# --------------------------------------------------------------------------- invariants

INVARIANT_SQL = {
    "every job is terminal": """
        SELECT id FROM jobs_job WHERE status NOT IN ('succeeded', 'failed', 'cancelled')""",
    "every succeeded job has exactly one succeeded attempt": """
        SELECT j.id FROM jobs_job j WHERE j.status = 'succeeded'
           AND (SELECT count(*) FROM jobs_jobattempt a
                 WHERE a.job_id = j.id AND a.outcome = 'succeeded') <> 1""",
    "no job that did not succeed has a succeeded attempt": """
        SELECT DISTINCT a.job_id FROM jobs_jobattempt a JOIN jobs_job j ON j.id = a.job_id
         WHERE a.outcome = 'succeeded' AND j.status <> 'succeeded'""",
    "no attempt starts after its job finished": """
        SELECT DISTINCT a.job_id FROM jobs_jobattempt a JOIN jobs_job j ON j.id = a.job_id
         WHERE a.started_at > j.finished_at""",
    "attempt numbers are 1..n without gaps": """
        SELECT job_id FROM jobs_jobattempt GROUP BY job_id
        HAVING min(number) <> 1 OR max(number) <> count(*)""",
    "a job's attempt count equals its attempt rows": """
        SELECT j.id FROM jobs_job j
         WHERE j.attempts <> (SELECT count(*) FROM jobs_jobattempt a WHERE a.job_id = j.id)""",
    "every failed job has a dead letter with every attempt's error": """
        SELECT j.id FROM jobs_job j LEFT JOIN jobs_deadletter d ON d.job_id = j.id
         WHERE j.status = 'failed' AND (
               d.id IS NULL
            OR (SELECT array_agg((e->>'attempt')::int ORDER BY (e->>'attempt')::int)
                  FROM jsonb_array_elements(d.errors) e)
               IS DISTINCT FROM
               (SELECT array_agg(a.number ORDER BY a.number) FROM jobs_jobattempt a WHERE a.job_id = j.id)
            OR EXISTS (SELECT 1 FROM jsonb_array_elements(d.errors) e
                         JOIN jobs_jobattempt a ON a.job_id = j.id AND a.number = (e->>'attempt')::int
                        WHERE a.error IS DISTINCT FROM e->>'error'))""",
    "no dead letter for a job that did not fail": """
        SELECT d.job_id FROM jobs_deadletter d JOIN jobs_job j ON j.id = d.job_id
         WHERE j.status <> 'failed'""",
    "no schedule fired a due time twice": """
        SELECT min(id::text) FROM jobs_job WHERE idempotency_key LIKE 'schedule:%%'
         GROUP BY idempotency_key HAVING count(*) > 1""",
}


def sql(query: str, params: list | None = None) -> list[tuple]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(query, params or [])
        return cursor.fetchall() if cursor.description else []


def schedule_gaps() -> list[str]:
    """Minutes in (created_at, next_run_at) of each schedule with no job: a due time never fired.

    With the run_all policy every due time is fired, and next_run_at only moves past a time by firing
    it, so every minute between the schedule's creation and its next fire time must have a job.
    """
    from scheduling.models import Schedule

    missing = []
    for schedule in Schedule.objects.all():
        if schedule.next_run_at is None:
            missing.append(f"{schedule.name}: no next fire time ({schedule.last_error})")
            continue
        fired = {
            row[0]
            for row in sql(
                "SELECT run_at FROM jobs_job WHERE idempotency_key LIKE %s", [f"schedule:{schedule.pk}:%"]
            )
        }
        moment = schedule.created_at.replace(second=0, microsecond=0) + timedelta(minutes=1)
        for _ in range(10_000):
            if moment >= schedule.next_run_at:
                break
            if moment not in fired:
                missing.append(f"{schedule.name}: {moment.isoformat()}")
            moment += timedelta(minutes=1)
    return missing


def check_invariants(
    stats: dict[str, Any] | None, acknowledged: list[str]
) -> tuple[list[tuple[str, int, list[str]]], list[str]]:
    """(name, violations, sample ids) per invariant, and notes on what the counters could not show."""
    results = []
    present = {str(row[0]) for row in sql("SELECT id FROM jobs_job")}
    lost = [job_id for job_id in acknowledged if job_id not in present]
    results.append(("every enqueue that returned is in PostgreSQL", len(lost), lost[:5]))
    for name, query in INVARIANT_SQL.items():
        rows = sql(query)
        results.append((name, len(rows), [str(row[0]) for row in rows[:5]]))
    gaps = schedule_gaps()
    results.append(("each schedule fired every due minute", len(gaps), gaps[:5]))

    counts = dict(sql("SELECT status, count(*) FROM jobs_job GROUP BY status"))
    total = sum(counts.values())
    (dead,) = sql("SELECT count(*) FROM jobs_deadletter WHERE resolution = ''")[0]
    notes = []
    if stats is None:
        results.append(("/api/stats/ answered", 1, []))
        return results, notes
    pg, redis_view = stats["postgres"], stats["redis"]
    problems = []
    if pg["active"] != 0 or any(stats["counts"][status] for status in ACTIVE):
        problems.append(f"active jobs shown: {pg['active']}")
    if not stats["reconciliation"]["in_sync"]:
        problems.append(f"reconciliation difference {stats['reconciliation']['difference']}")
    if any(redis_view.values()):
        problems.append(f"Redis still holds job ids: {redis_view}")
    if pg["open_dead_letters"] != dead or dead != counts.get("failed", 0):
        problems.append(
            f"open dead letters {pg['open_dead_letters']} vs {dead} rows vs {counts.get('failed')} failed"
        )
    if pg["total_jobs"] < total:
        problems.append(f"total_jobs {pg['total_jobs']} < {total} rows")
    results.append(
        ("/api/stats/ agrees with PostgreSQL (active, dispatch index, dead letters)", len(problems), problems)
    )
    over = []
    for status in TERMINAL:
        counter, rows = stats["counts"][status], counts.get(status, 0)
        notes.append(f"{status}: counter {counter}, PostgreSQL {rows}")
        if counter > rows:
            over.append(f"{status} counter {counter} > {rows} rows")
    results.append(("outcome counters never exceed PostgreSQL", len(over), over))
    notes.append(
        "total_jobs (the seq sequence) "
        f"{pg['total_jobs']} vs {total} rows: a rolled-back insert still uses up sequence numbers"
    )
    return results, notes


# --------------------------------------------------------------------------- main


def print_tables(soak: Soak, results: list[tuple[str, int, list[str]]], notes: list[str]) -> None:
    out = sys.stdout
    print("\nFaults injected", file=out)
    print(f"  {'kind':<22} {'count':>6}", file=out)
    for kind in FAULT_KINDS:
        shown = soak.faults.get(kind, 0)
        suffix = "" if kind in soak.opts.fault_kinds else "  (not enabled)"
        if not soak.servers.owned and kind in ("redis_restart", "pg_restart"):
            suffix = "  (shared servers: not injected)"
        if not soak.servers.owned and kind == "redis_flush":
            suffix = "  (shared Redis: the soak's prefix only)"
        print(f"  {kind:<22} {shown:>6}{suffix}", file=out)
    print(f"  {'total':<22} {sum(soak.faults.values()):>6}", file=out)
    print("\nInvariants checked", file=out)
    print(f"  {'name':<75} {'violations':>10}", file=out)
    for name, violations, sample in results:
        print(f"  {name:<75} {violations:>10}", file=out)
        for item in sample:
            print(f"      e.g. {item}", file=out)
    print(
        "\nCounters vs PostgreSQL (counts lost to kill -9, Redis restarts and FLUSHALL are expected):",
        file=out,
    )
    for line in notes:
        print(f"  {line}", file=out)


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    rng = random.Random(opts.seed)
    workdir = Path(tempfile.mkdtemp(prefix="jqchaos-"))
    note(f"seed {opts.seed}, {opts.jobs} jobs, {opts.duration:.0f}s of faults, work dir {workdir}")
    if opts.servers == "own":
        for name in ("DATABASE_URL", "REDIS_URL"):
            os.environ.pop(name, None)
        servers: Servers = OwnedServers(workdir)
        os.environ["DATABASE_URL"], os.environ["REDIS_URL"] = servers.database_url(), servers.redis_url()
    else:
        servers = Servers()
    ok = False
    soak: Soak | None = None
    try:
        env = isolate(
            opts.database,
            prefix="jqchaos",
            JOBQUEUE_IMPORTS="chaos_types",
            JOBQUEUE_LEASE_SECONDS=str(LEASE_SECONDS),
            JOBQUEUE_HEARTBEAT_SECONDS="1",
            JOBQUEUE_REAP_INTERVAL="2",
            JOBQUEUE_RECONCILE_INTERVAL="10",
            JOBQUEUE_KILL_GRACE="2",
            JOBQUEUE_SHUTDOWN_GRACE="10",
            JOBQUEUE_SCHEDULER_LOCK_TTL="5",
            JOBQUEUE_PRUNE_INTERVAL="0",
            DJANGO_SECURE_SSL_REDIRECT="0",
            JOBQUEUE_LOG_LEVEL="WARNING",
        )
        env = os.environ.copy() | {"PYTHONPATH": os.pathsep.join([str(BENCH), str(REPO)])}
        sys.path.insert(0, str(BENCH))
        import django

        django.setup()
        from django.contrib.auth import get_user_model
        from django.core.management import call_command
        from rest_framework.authtoken.models import Token

        call_command("migrate", verbosity=0, interactive=False)
        sql("TRUNCATE jobs_job, scheduling_schedule, jobs_idempotencykey CASCADE")
        user, _ = get_user_model().objects.get_or_create(username="chaos", defaults={"is_superuser": True})
        user.is_superuser = user.is_staff = True
        user.save()
        token, _ = Token.objects.get_or_create(user=user)

        soak = Soak(opts, servers, workdir, env, rng, token=token.key)
        soak.start_all()
        soak.create_schedules()
        note("web, scheduler and supervisors started; faults begin")
        soak.fault_loop()
        note(f"faults over: {sum(soak.faults.values())} injected; recovering")
        soak.recover()
        settled, took = soak.settle()
        note(f"{'settled' if settled else 'did NOT settle'} after {took:.0f}s")
        time.sleep(2.0)  # the workers' metrics flushers write about once a second
        stats = soak.api_stats()
        tail: tuple[str, int, list[str]] = ("outcome counters grow exactly as PostgreSQL", 1, ["unsettled"])
        if settled:
            tail, stats = soak.tail(stats)
        for proc in soak.supervisors + [soak.web]:
            if proc is not None:
                proc.stop()
        results, notes = check_invariants(stats, soak.acknowledged)
        results.append(tail)
        if not settled:
            results.insert(0, (f"the system settled within {opts.settle_timeout:.0f}s", 1, []))
        if not soak.caught_up:
            results.insert(0, ("the scheduler fired every due time before it was stopped", 1, []))
        counts = dict(sql("SELECT status, count(*) FROM jobs_job GROUP BY status"))
        (attempts,) = sql("SELECT count(*) FROM jobs_jobattempt")[0]
        print(f"chaos soak: seed {opts.seed}, {opts.duration:.0f}s of faults, settled in {took:.0f}s")
        outcomes = dict(sql("SELECT outcome, count(*) FROM jobs_jobattempt GROUP BY outcome"))
        (fired,) = sql("SELECT count(*) FROM jobs_job WHERE idempotency_key LIKE 'schedule:%%'")[0]
        print(
            f"jobs: {sum(counts.values())} in PostgreSQL ({soak.enqueued} of the load, {fired} fired by the "
            f"schedules, {TAIL_JOBS} of the tail); by status {dict(sorted(counts.items()))}"
        )
        print(f"attempts: {attempts}; by outcome {dict(sorted(outcomes.items()))}")
        print(f"cancels: {dict(soak.cancels)}; enqueue calls retried after an error: {soak.enqueue_errors}")
        print(
            f"orphaned worker processes found after a supervisor kill -9 (then killed): {soak.orphans_seen}"
        )
        print_tables(soak, results, notes)
        violations = sum(v for _, v, _ in results)
        print(f"\nRESULT: {'PASS' if violations == 0 else 'FAIL'} ({violations} violations)")
        if opts.json:
            opts.json.write_text(
                json.dumps(
                    {
                        "seed": opts.seed,
                        "duration": opts.duration,
                        "jobs": counts,
                        "faults": dict(soak.faults),
                        "fault_log": soak.fault_log,
                        "invariants": results,
                        "notes": notes,
                        "stats": stats,
                    },
                    indent=2,
                    default=str,
                )
            )
        if violations:
            print("fault sequence (t, kind, what):")
            for entry in soak.fault_log:
                print(f"  {entry}")
        ok = violations == 0
        return 0 if ok else 1
    finally:
        if soak is not None:
            for proc in soak.all_procs():
                proc.stop(timeout=20)
        with contextlib.suppress(Exception):
            from django.db import connections

            connections.close_all()
        if not servers.owned:
            with contextlib.suppress(Exception):
                import redis

                client = redis.Redis.from_url(servers.redis_url())
                delete_redis_prefix(client, os.environ.get("JOBQUEUE_REDIS_PREFIX", "jqchaos-none"))
        servers.stop()
        if ok and not opts.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            note(f"logs kept in {workdir / 'logs'}")


if __name__ == "__main__":
    sys.exit(main())
