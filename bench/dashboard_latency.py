"""Dashboard latency: a status change until a websocket client sees it, at idle and during a 10,000-job drain.

Usage (embedded PostgreSQL + Redis, as ``make bench`` uses)::

    .venv/bin/python -m jobqueue_site.embedded run --profile test -- \
        .venv/bin/python bench/dashboard_latency.py

or with ``DATABASE_URL`` / ``REDIS_URL`` of your own. Like ``bench/throughput.py`` it works in its own
database (``jobqueue_bench_dashboard``, created and migrated if missing, emptied between phases) and
under its own Redis key prefix (deleted at the end).

What it measures: daphne (``jobqueue_site.asgi``, DEBUG off) runs as the dashboard process; a staff
websocket client (a small reader thread in this process) subscribes to everything. For every job state a frame
carries, latency = arrival time in the client - the event's ``at`` (taken right after the commit, in
the process that made the transition). Both clocks are this machine's. The dashboard process's CPU
time comes from ``/proc/<pid>/stat``.

``--screenshot PATH`` then runs a minute of mixed demo load against a DEBUG daphne and saves what the
dashboard shows in headless Chromium (``/usr/bin/chromium``) to PATH.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchenv import delete_redis_prefix, isolate  # noqa: E402  (bench/ is on sys.path)

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tests.support.browser import CHROMIUM_ARGS, chromium_path  # noqa: E402  (one list of flags for tests and bench)

CLK_TCK = os.sysconf("SC_CLK_TCK")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000, help="jobs drained in the load phase (10000)")
    parser.add_argument(
        "--idle-samples", type=int, default=100, help="jobs enqueued one by one at idle (100)"
    )
    parser.add_argument("--idle-gap", type=float, default=1.0, help="seconds between idle samples (1.0)")
    parser.add_argument("--processes", type=int, default=2, help="worker processes (2)")
    parser.add_argument("--threads", type=int, default=8, help="threads per worker process (8)")
    parser.add_argument("--prefetch", type=int, default=64, help="worker --prefetch (64)")
    parser.add_argument("--database", default="jobqueue_bench_dashboard")
    parser.add_argument("--screenshot", type=Path, help="also save a dashboard screenshot under load here")
    parser.add_argument("--screenshot-seconds", type=float, default=60.0, help="mixed load before it (60)")
    parser.add_argument("--json", type=Path, help="write every figure to this file")
    return parser.parse_args(argv)


# --------------------------------------------------------------------------- setup (before Django)


def configure_environment(opts: argparse.Namespace) -> dict[str, str]:
    return isolate(opts.database, "jqdash", DJANGO_SECURE_SSL_REDIRECT="0", JOBQUEUE_LOG_LEVEL="WARNING")


def note(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def percentile(values: list[float], p: int) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]


# --------------------------------------------------------------------------- processes


@contextlib.contextmanager
def process(cmd: list[str], log_path: Path, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen]:
    """A subprocess in its own session; SIGTERM at the end, SIGKILL if it lingers."""
    with log_path.open("w") as log:
        popen = subprocess.Popen(
            cmd, cwd=REPO, env=env or os.environ.copy(), stdout=log, stderr=log, start_new_session=True
        )
    try:
        yield popen
    finally:
        if popen.poll() is None:
            popen.send_signal(signal.SIGTERM)
            try:
                popen.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(popen.pid, signal.SIGKILL)
                popen.wait(timeout=10)


@contextlib.contextmanager
def daphne(workdir: Path, label: str, env: dict[str, str] | None = None) -> Iterator[tuple[int, int]]:
    """(port, pid) of a listening ``daphne jobqueue_site.asgi:application``."""
    port = free_port()
    from jobqueue_site.devrun import daphne_command

    with process(daphne_command("127.0.0.1", port), workdir / f"{label}.log", env) as popen:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
                break
            if popen.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"daphne did not start; see {workdir / label}.log")
            time.sleep(0.1)
        yield port, popen.pid


def worker(opts: argparse.Namespace, workdir: Path, label: str, queues: str = "default") -> Any:
    cmd = [sys.executable, "manage.py", "runworker", "--queues", queues, "--processes", str(opts.processes)]
    cmd += ["--threads", str(opts.threads), "--prefetch", str(opts.prefetch)]
    return process(cmd, workdir / f"{label}.log")


# --------------------------------------------------------------------------- the websocket client


class Recorder:
    """A staff websocket client on a thread of its own: keeps (arrival time, frame) for every frame.

    A minimal RFC 6455 client on a plain socket (it only reads; the server's frames are unmasked):
    autobahn's asyncio flavour cannot be loaded in a process where Django already set up daphne's
    Twisted one, and this keeps the client's own cost small and visible.
    """

    def __init__(self, port: int, session_key: str) -> None:
        self.port, self.session_key = port, session_key
        self.frames: list[tuple[float, dict[str, Any]]] = []
        self.hello = threading.Event()
        self.sock: socket.socket | None = None
        self.thread = threading.Thread(target=self._read, daemon=True)

    def __enter__(self) -> Recorder:
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock = socket.create_connection(("127.0.0.1", self.port), 30)
        self.sock.sendall(
            (
                "GET /ws/dashboard/ HTTP/1.1\r\n"
                f"Host: 127.0.0.1:{self.port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                f"Origin: http://127.0.0.1:{self.port}\r\n"
                f"Cookie: sessionid={self.session_key}\r\n\r\n"
            ).encode()
        )
        self.reader = self.sock.makefile("rb")
        status = self.reader.readline()
        if b" 101 " not in status:
            sys.exit(f"the dashboard websocket refused the bench client: {status!r}")
        while self.reader.readline() not in (b"\r\n", b""):
            pass
        self.sock.settimeout(None)
        self.thread.start()
        if not self.hello.wait(30):
            sys.exit("the dashboard websocket did not say hello")
        return self

    def _exact(self, n: int) -> bytes:
        data = self.reader.read(n)
        if len(data) < n:
            raise EOFError
        return data

    def _read(self) -> None:
        message = b""
        with contextlib.suppress(EOFError, OSError, ValueError):
            while True:
                first, second = self._exact(2)
                length = second & 0x7F
                if length == 126:
                    length = struct.unpack("!H", self._exact(2))[0]
                elif length == 127:
                    length = struct.unpack("!Q", self._exact(8))[0]
                payload = self._exact(length)
                opcode = first & 0x0F
                if opcode == 8:  # close
                    return
                if opcode == 9:  # ping: daphne closes a connection that does not answer within 30 s
                    self._send(0xA, payload)
                    continue
                if opcode not in (0, 1):
                    continue  # pong/binary: nothing the dashboard sends us
                message += payload
                if not first & 0x80:
                    continue  # more fragments follow
                arrived = time.time()
                frame = json.loads(message)
                message = b""
                if frame.get("type") == "hello":
                    self.hello.set()
                else:
                    self.frames.append((arrived, frame))

    def _send(self, opcode: int, payload: bytes) -> None:
        """A client frame (masked, as RFC 6455 requires); only pongs here, so payloads are small."""
        mask = os.urandom(4)
        masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
        assert self.sock is not None and len(payload) < 126
        self.sock.sendall(bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked)

    def __exit__(self, *exc: object) -> None:
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_RDWR)
            self.sock.close()
        self.thread.join(10)

    def since(self, start: float) -> list[tuple[float, dict[str, Any]]]:
        return [(arrived, frame) for arrived, frame in list(self.frames) if arrived >= start]


def summarize(frames: list[tuple[float, dict[str, Any]]], seconds: float) -> dict[str, Any]:
    latencies = [arrived - job["at"] for arrived, frame in frames for job in frame["jobs"]]
    hops = [arrived - frame["frame_at"] for arrived, frame in frames]
    out: dict[str, Any] = {
        "frames": len(frames),
        "frames_per_second": len(frames) / seconds if seconds else None,
        "job_states_delivered": len(latencies),
        "jobs_per_frame_max": max((len(frame["jobs"]) for _, frame in frames), default=0),
        "truncated": sum(frame["truncated"] for _, frame in frames),
        "deltas": {},
    }
    for _, frame in frames:
        for status, n in frame["deltas"].items():
            out["deltas"][status] = out["deltas"].get(status, 0) + n
    if latencies:
        out |= {
            "latency_p50_ms": percentile(latencies, 50) * 1000,
            "latency_p95_ms": percentile(latencies, 95) * 1000,
            "latency_max_ms": max(latencies) * 1000,
        }
    if hops:
        out["server_to_client_p50_ms"] = percentile(hops, 50) * 1000
    return out


# --------------------------------------------------------------------------- phases (after Django)


def reset_data() -> None:
    from django.db import connection

    from jobs.dispatch import reset_broker

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE jobs_job CASCADE")
    reset_broker()


def active_jobs() -> bool:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT EXISTS (SELECT 1 FROM jobs_job"
            " WHERE status IN ('scheduled', 'queued', 'running', 'retrying'))"
        )
        return bool(cursor.fetchone()[0])


def wait_idle(timeout: float) -> float:
    """Seconds until no job is active (polled every 50 ms)."""
    started = time.monotonic()
    while active_jobs():
        if time.monotonic() - started > timeout:
            sys.exit(f"jobs still active after {timeout}s")
        time.sleep(0.05)
    return time.monotonic() - started


def wait_for_workers(count: int, timeout: float = 60) -> None:
    from jobs.dispatch import get_broker

    deadline = time.monotonic() + timeout
    while sum(1 for w in get_broker().workers(15_000) if w.get("alive")) < count:
        if time.monotonic() > deadline:
            sys.exit("the worker did not start")
        time.sleep(0.1)


def staff_session() -> str:
    from django.contrib.auth import get_user_model
    from django.test import Client

    user, _ = get_user_model().objects.get_or_create(
        username="bench-dashboard", defaults={"is_staff": True, "is_superuser": True}
    )
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


def idle_phase(opts: argparse.Namespace, port: int, session: str, workdir: Path) -> dict[str, Any]:
    from jobs import services

    reset_data()
    with worker(opts, workdir, "idle-worker"), Recorder(port, session) as recorder:
        wait_for_workers(opts.processes)
        time.sleep(1)
        start = time.time()
        for _ in range(opts.idle_samples):
            services.enqueue("noop")
            time.sleep(opts.idle_gap)
        wait_idle(60)
        time.sleep(1)
        seconds = time.time() - start
        return summarize(recorder.since(start), seconds)


def drain_phase(opts: argparse.Namespace, port: int, pid: int, session: str, workdir: Path) -> dict[str, Any]:
    """Idle workers first; then ``--jobs`` noop jobs arrive in bulk (1,000 a call) and are drained.

    The window runs from the first enqueue until nothing is active, so worker start-up is not in it.
    """
    from jobs import services

    reset_data()
    batch = [services.JobSpec(type="noop")] * 1000
    with worker(opts, workdir, "drain-worker"):
        wait_for_workers(opts.processes)
        with Recorder(port, session) as recorder:
            cpu_before, start, wall = cpu_seconds(pid), time.monotonic(), time.time()
            for left in range(opts.jobs, 0, -1000):
                services.enqueue_many(batch[: min(left, 1000)])
            wait_idle(600)
            elapsed = time.monotonic() - start
            cpu = cpu_seconds(pid) - cpu_before
            time.sleep(1)  # the last frames
            out = summarize(recorder.since(wall), elapsed)
    out |= {
        "jobs": opts.jobs,
        "drain_seconds": elapsed,
        "jobs_per_second": opts.jobs / elapsed,
        "dashboard_cpu_seconds": cpu,
        "dashboard_cpu_share_of_one_core": cpu / elapsed,
        "dashboard_cpu_share_of_machine": cpu / elapsed / (os.cpu_count() or 1),
    }
    return out


def baseline_cpu(pid: int, seconds: float = 10.0) -> float:
    before = cpu_seconds(pid)
    time.sleep(seconds)
    return (cpu_seconds(pid) - before) / seconds


def screenshot_phase(opts: argparse.Namespace, path: Path, workdir: Path) -> None:
    """A minute of mixed demo load (noop, email.send with failures, image.process, report.generate)."""
    from playwright.sync_api import sync_playwright

    from jobs import services

    reset_data()
    env = {**os.environ, "DJANGO_DEBUG": "1"}  # static files from the app directories
    with (
        daphne(workdir, "screenshot-daphne", env) as (port, _pid),
        worker(opts, workdir, "screenshot-worker", "high,default,low"),
    ):
        session = staff_session()
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"  # Playwright's loop lives in this thread
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
            context = browser.new_context(viewport={"width": 1440, "height": 1100})
            context.add_cookies([{"name": "sessionid", "value": session, "url": f"http://127.0.0.1:{port}"}])
            page = context.new_page()
            page.goto(f"http://127.0.0.1:{port}/")
            deadline = time.monotonic() + opts.screenshot_seconds
            tick = 0
            while time.monotonic() < deadline:
                specs: list[dict[str, Any]] = [{"type": "noop"}] * 40
                specs += [
                    {"type": "email.send", "kwargs": {"to": f"user{i}@example.com", "failure_rate": 0.3}}
                    for i in range(15)
                ]
                specs += [{"type": "image.process", "kwargs": {"width": 200, "height": 200, "steps": 2}}] * 3
                specs += [{"type": "noop", "queue": "high", "priority": 10}] * 10
                if tick % 4 == 0:
                    specs.append({"type": "report.generate", "kwargs": {"name": f"daily-{tick}"}})
                services.enqueue_many(specs)
                tick += 1
                page.wait_for_timeout(500)
            page.screenshot(path=str(path))
            browser.close()
    note(f"screenshot saved to {path}")


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    env = configure_environment(opts)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    workdir = Path(tempfile.mkdtemp(prefix="jqdash-"))
    note(f"logs in {workdir}; database {opts.database}; Redis prefix {env['JOBQUEUE_REDIS_PREFIX']}")
    result: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "jobs": opts.jobs,
        "processes": opts.processes,
        "threads": opts.threads,
        "prefetch": opts.prefetch,
    }
    try:
        session = staff_session()
        with daphne(workdir, "daphne") as (port, pid):
            with Recorder(port, session):
                result["dashboard_idle_cpu_share_of_one_core"] = baseline_cpu(pid)
            note("idle phase …")
            result["idle"] = idle_phase(opts, port, session, workdir)
            note(f"idle: {json.dumps(result['idle'])}")
            note("drain phase …")
            result["drain"] = drain_phase(opts, port, pid, session, workdir)
            note(f"drain: {json.dumps(result['drain'])}")
        if opts.screenshot:
            screenshot_phase(opts, opts.screenshot, workdir)
    finally:
        from jobs.dispatch import redis_client

        delete_redis_prefix(redis_client(), env["JOBQUEUE_REDIS_PREFIX"])
    idle, drain = result["idle"], result["drain"]
    print(
        f"dashboard latency (status change -> websocket client): idle p50 {idle['latency_p50_ms']:.0f} ms, "
        f"p95 {idle['latency_p95_ms']:.0f} ms; draining {opts.jobs} jobs ({drain['jobs_per_second']:.0f}/s) "
        f"p50 {drain['latency_p50_ms']:.0f} ms, p95 {drain['latency_p95_ms']:.0f} ms, "
        f"{drain['frames_per_second']:.1f} frames/s; dashboard process CPU "
        f"{drain['dashboard_cpu_share_of_one_core']:.1%} of one core during the drain "
        f"({result['dashboard_idle_cpu_share_of_one_core']:.1%} idle)"
    )
    if opts.json:
        opts.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
