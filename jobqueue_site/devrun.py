"""``make run``: prepare the dev database, then run web, worker and scheduler in one terminal.

Why: one command should give a working system (migrated schema, admin CSS, a login) and one
Ctrl-C should stop all of it cleanly, letting workers finish in-flight jobs. Run inside
``python -m jobqueue_site.embedded run --profile dev --``, which provides DATABASE_URL/REDIS_URL.

Ours rather than honcho/foreman or supervisord: those start a Procfile's processes side by side,
but ``make run`` must first migrate, collect static files and create the admin login, check the
port is free, wait for the web server to answer before printing the URLs and the login, and turn
one Ctrl-C into one SIGTERM per child (so workers finish their jobs) with a SIGKILL deadline; that
is most of this module, and a process manager would add a dependency without removing it.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, NoReturn

REPO = Path(__file__).resolve().parent.parent
CREDENTIALS = REPO / ".local" / "dev" / "admin-credentials.txt"
DEV_ENV = REPO / ".local" / "dev" / "env"
"""While ``make run`` runs: its DATABASE_URL/REDIS_URL, for ``manage.py`` in another terminal (see
``dev_env()``). Removed when it stops; a file left by a killed run is ignored (its pid is gone).
``JOBQUEUE_DEV_ENV_FILE`` names another file (the tests use it so as not to touch a real run's)."""
DEV_ENV_NAMES = ("DATABASE_URL", "REDIS_URL")
ADMIN_USERNAME = "admin"
QUEUES = "high,default,low"
STOP_GRACE = 35.0  # > JOBQUEUE_SHUTDOWN_GRACE (30 s): workers get to finish in-flight jobs
COLOURS = {"web": "36", "worker": "33", "sched": "35", "devrun": "1"}

_print_lock = threading.Lock()
_colour = sys.stdout.isatty() and not os.environ.get("NO_COLOR")


def _prefix(name: str) -> bytes:
    label = f"{name:<6} | "
    return (f"\033[{COLOURS[name]}m{label}\033[0m" if _colour else label).encode()


def _emit(name: str, line: bytes) -> None:
    """Write one prefixed line; the lock keeps lines from different children whole."""
    if not line.endswith(b"\n"):
        line += b"\n"
    with _print_lock:
        sys.stdout.buffer.write(_prefix(name) + line)
        sys.stdout.buffer.flush()


def daphne_command(host: str, port: int) -> list[str]:
    """The web process: daphne serving HTTP and websockets (``make run``, browser tests, benches)."""
    return [sys.executable, "-m", "daphne", "-b", host, "-p", str(port), "jobqueue_site.asgi:application"]


def say(message: str) -> None:
    for line in message.splitlines() or [""]:
        _emit("devrun", line.encode())


def _interrupt(signum: int, _frame: object) -> NoReturn:
    raise KeyboardInterrupt


# --- One-off preparation ----------------------------------------------------------------------


def manage(*args: str, env: dict[str, str] | None = None) -> None:
    """Run a management command in a fresh process (as a deploy would), failing loudly."""
    result = subprocess.run([sys.executable, "manage.py", *args], cwd=REPO, env=env)
    if result.returncode != 0:
        raise SystemExit(f"devrun: `manage.py {' '.join(args)}` failed (exit {result.returncode})")


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        os.fchmod(fd, 0o600)  # also when the file already existed with a wider mode
        handle.write(text)


def ensure_admin(base_url: str) -> str:
    """Create a superuser on an empty database; return what to tell the user about logging in."""
    from django.contrib.auth import get_user_model
    from django.db import connections

    try:
        exists = get_user_model().objects.filter(is_superuser=True).exists()
    finally:
        connections.close_all()
    if exists:
        if CREDENTIALS.exists():
            return f"admin login: see {CREDENTIALS.relative_to(REPO)}"
        return "admin login: an existing superuser (reset with `manage.py changepassword`)"
    password = secrets.token_urlsafe(18)
    env = os.environ | {
        "DJANGO_SUPERUSER_USERNAME": ADMIN_USERNAME,
        "DJANGO_SUPERUSER_PASSWORD": password,
        "DJANGO_SUPERUSER_EMAIL": "admin@example.invalid",
    }
    manage("createsuperuser", "--noinput", env=env)
    _write_private(CREDENTIALS, f"url: {base_url}admin/\nusername: {ADMIN_USERNAME}\npassword: {password}\n")
    return (
        f"admin login: {ADMIN_USERNAME} / {password}  (shown once; saved in {CREDENTIALS.relative_to(REPO)})"
    )


def dev_env_path() -> Path:
    return Path(os.environ.get("JOBQUEUE_DEV_ENV_FILE") or DEV_ENV)


def write_dev_env(path: Path | None = None) -> None:
    """Record this run's server URLs (and its pid, so a reader can tell a stale file) in ``path``."""
    path = path or dev_env_path()
    lines = [
        "# Written by `make run` while it runs; manage.py reads it when DATABASE_URL/REDIS_URL are unset.",
        f"DEVRUN_PID={os.getpid()}",
        *(f"{name}={os.environ[name]}" for name in DEV_ENV_NAMES if os.environ.get(name)),
    ]
    _write_private(path, "\n".join(lines) + "\n")


def remove_dev_env(path: Path | None = None) -> None:
    """Remove ``path`` if this process wrote it (a later ``make run`` may have replaced it)."""
    path = path or dev_env_path()
    with contextlib.suppress(OSError):
        if _read_env_file(path).get("DEVRUN_PID") == str(os.getpid()):
            path.unlink()


def _read_env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        name, sep, value = line.partition("=")
        if sep and not line.startswith("#"):
            values[name.strip()] = value.strip()
    return values


def _devrun_alive(pid: str) -> bool:
    try:
        cmdline = Path(f"/proc/{int(pid)}/cmdline").read_bytes()
    except (ValueError, OSError):
        return False
    return b"devrun" in cmdline  # `python -m jobqueue_site.devrun`; not a pid recycled by something else


def dev_env(path: Path | None = None) -> dict[str, str]:
    """DATABASE_URL/REDIS_URL of the running ``make run`` (empty when none runs or the file is stale)."""
    path = path or dev_env_path()
    try:
        values = _read_env_file(path)
    except OSError:
        return {}
    if not _devrun_alive(values.get("DEVRUN_PID", "")):
        return {}
    return {name: values[name] for name in DEV_ENV_NAMES if values.get(name)}


def check_port_free(host: str, port: int) -> None:
    """Fail before starting anything: otherwise the readiness probe could hit another server."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise SystemExit(f"devrun: cannot use {host}:{port} ({exc.strerror}); set HOST/PORT") from None


# --- Children ---------------------------------------------------------------------------------


@dataclass
class Child:
    name: str
    argv: list[str]
    proc: subprocess.Popen[bytes] = field(init=False)
    reader: threading.Thread = field(init=False)

    def start(self) -> None:
        # Own process group: a terminal Ctrl-C reaches only devrun, which then sends one SIGTERM.
        self.proc = subprocess.Popen(
            self.argv,
            cwd=REPO,
            env=os.environ | {"PYTHONUNBUFFERED": "1"},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            process_group=0,
        )
        assert self.proc.stdout is not None
        self.reader = threading.Thread(target=self._pump, args=(self.proc.stdout,), daemon=True)
        self.reader.start()

    def _pump(self, stream: IO[bytes]) -> None:
        for line in iter(stream.readline, b""):
            _emit(self.name, line)

    def signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signum)


def wait_for_http(host: str, port: int, web: Child, ready: threading.Event, stop: threading.Event) -> None:
    """Poll until the web server answers any HTTP request, then set ``ready``."""
    while not stop.is_set() and web.proc.poll() is None:
        conn = http.client.HTTPConnection(host, port, timeout=2)
        try:
            conn.request("GET", "/admin/login/")
            conn.getresponse().read()
            ready.set()
            return
        except OSError:
            time.sleep(0.2)
        finally:
            conn.close()


def shutdown(children: list[Child]) -> None:
    """SIGTERM each child's main process, wait up to STOP_GRACE, then SIGKILL whole groups."""
    for child in children:
        if child.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                child.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE
    while any(c.proc.poll() is None for c in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    for child in children:
        if child.proc.poll() is None:
            say(f"{child.name} did not stop within {STOP_GRACE:.0f}s; killing it")
        child.signal_group(signal.SIGKILL)  # also reaps leftovers of children that did exit
        child.proc.wait()
        child.reader.join(timeout=2)


def main() -> int:
    host = os.environ.get("HOST", "127.0.0.1")
    try:
        port = int(os.environ.get("PORT", "8000"))
    except ValueError:
        raise SystemExit(f"devrun: PORT must be a number, got {os.environ['PORT']!r}") from None
    probe_host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    shown_host = f"[{probe_host}]" if ":" in probe_host else probe_host
    base_url = f"http://{shown_host}:{port}/"
    signal.signal(signal.SIGTERM, _interrupt)  # during setup, SIGTERM behaves like Ctrl-C
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "jobqueue_site.settings")
    try:
        check_port_free(host, port)
        manage("migrate", "--noinput")
        manage("collectstatic", "--noinput", "--verbosity", "0")
        import django
        from django.core.management import get_commands

        django.setup()
        login = ensure_admin(base_url)
        commands = get_commands()
    except KeyboardInterrupt:
        say("interrupted during setup")
        return 130

    children = [Child("web", daphne_command(host, port))]
    children.append(Child("worker", [sys.executable, "manage.py", "runworker", "--queues", QUEUES]))
    if "runscheduler" in commands:
        children.append(Child("sched", [sys.executable, "manage.py", "runscheduler"]))

    stop = threading.Event()
    signalled: list[str] = []

    def on_signal(signum: int, _frame: object) -> None:
        if not signalled:
            signalled.append(signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    for child in children:
        child.start()
    write_dev_env()
    ready = threading.Event()
    web = children[0]
    threading.Thread(target=wait_for_http, args=(probe_host, port, web, ready, stop), daemon=True).start()

    failed: Child | None = None
    announced = False
    while not stop.wait(0.2):
        if ready.is_set() and not announced:
            announced = True
            say(
                f"jobqueue is up\n"
                f"  dashboard     {base_url}\n"
                f"  admin         {base_url}admin/\n"
                f"  API           {base_url}api/\n"
                f"  {login}\n"
                f"  DATABASE_URL  {os.environ.get('DATABASE_URL', '(unset: settings default)')}\n"
                f"  REDIS_URL     {os.environ.get('REDIS_URL', '(unset: settings default)')}\n"
                f"  manage.py in another terminal finds these through {dev_env_path()}\n"
                f"Ctrl-C stops everything."
            )
        failed = next((c for c in children if c.proc.poll() is not None), None)
        if failed is not None:
            break

    if failed is not None:
        say(f"{failed.name} exited unexpectedly (exit {failed.proc.returncode}); stopping the others")
    else:
        say(f"{signalled[0] if signalled else 'signal'} received; stopping (up to {STOP_GRACE:.0f}s)")
    remove_dev_env()
    shutdown(children)
    say("stopped")
    return 1 if failed is not None else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        remove_dev_env()  # also after an unexpected error; a no-op when already removed
